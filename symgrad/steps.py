"""Steps as data: each step is one equation with the rule that justifies it and, once checked,
the result of checking it. Nothing here computes or prints at import; a ``Derivation``'s methods
(``to_latex``, ``check``, ``codegen`` …) reach the later stages (``verify``, ``output``,
``codegen``) only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from sympy import Basic, Symbol

from symgrad.model import Model

if TYPE_CHECKING:
    from rich.console import RenderableType


class Rule(str, Enum):
    """Why a step holds. The value is what the outputs print."""

    DEFINITION = "definition"
    LOG_RULE = "derivative of the logarithm"
    QUOTIENT_RULE = "quotient rule"
    CASE_SPLIT = "case split on the Kronecker delta"
    MATRIX_FORM = "matrix form"
    CHAIN_RULE = "chain rule"
    SUBSTITUTE = "substitute earlier steps"
    SPLIT_SUM = "split the sum at i = j"
    CANCEL = "cancel common factors"
    COLLECT = "collect terms"
    ASSUMPTION = "apply an assumption"
    VECTOR_FORM = "vector form"
    DELTA_SUM = "sum over a Kronecker delta"
    ELEMENTWISE = "elementwise: a diagonal Jacobian"
    POWER_RULE = "power rule"
    DIFFERENTIATE = "differentiate term by term"
    SIMPLIFY = "simplify"
    UNFOLD = "unfold a definition"
    IDENTITY = "the identity's right-hand side"
    BY_CASES = "derivative by cases"  # relu' = 1 for x > 0, 0 for x < 0 (not at the kink)
    KINK_CONVENTION = "convention at a kink"  # the value taken where it is not differentiable


@dataclass(frozen=True)
class Check:
    """Outcome of checking one step. ``None`` means *not decided*, never *passed*."""

    exact: bool | None
    numeric: bool | None
    detail: str = ""
    scope: str = ""  # e.g. "all n" (a proof in index notation) or "instantiation only: n = 1, 2"

    @property
    def proven(self) -> bool:
        return self.exact is True and self.numeric is not False


@dataclass(frozen=True)
class Step:
    """``lhs = rhs`` for every value of ``free_indices`` (each running over 1..n)."""

    title: str
    rule: Rule
    lhs: Basic
    rhs: Basic
    free_indices: tuple[Symbol, ...] = ()
    assumptions: tuple[str, ...] = ()
    note: str = ""
    check: Check | None = None

    def with_check(self, check: Check) -> Step:
        return replace(self, check=check)


@dataclass(frozen=True)
class Derivation:
    """An ordered list of steps about a model; the result is the last step's right-hand side.

    ``steps`` and ``result`` are SymPy objects, which SymPy's own printers write as the math
    (``str(d.result)`` is ``a - y``). The methods render, check and generate code; a notebook
    shows the derivation itself (``_repr_markdown_``/``_repr_latex_``), and so does rich
    (``__rich__``).

        >>> import symgrad
        >>> d = symgrad.derive("softmax-cross-entropy", n=3)
        >>> d.proven, str(d.result)
        (True, 'a - y')
    """

    name: str
    title: str
    model: Model
    steps: tuple[Step, ...]
    convention: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def result(self) -> Basic:
        """The last step's right-hand side: the gradient (a SymPy matrix expression or entry)."""
        return self.steps[-1].rhs

    @property
    def checked(self) -> bool:
        """Whether every step has been checked (proven, refuted or undecided)."""
        return all(s.check is not None for s in self.steps)

    @property
    def proven(self) -> bool:
        """Whether every step was checked and proven."""
        return self.checked and all(s.check is not None and s.check.proven for s in self.steps)

    def with_steps(self, steps: Iterable[Step]) -> Derivation:
        return replace(self, steps=tuple(steps))

    # checking and output: each imports its stage when called ---------------------------------
    def check(self, progress: Callable[[int, int, str], None] | None = None) -> Derivation:
        """This derivation with every step checked (exact and numeric): itself if it already is,
        else a new one (``symgrad.derive(..., check=False)`` leaves the steps unchecked)."""
        if self.checked:
            return self
        from symgrad.verify import check_derivation

        return check_derivation(self, progress)

    def to_latex(self, standalone: bool = False, *, notation: str = "plain", bold: str = "mathbf",
                 label: str | None = None) -> str:
        """An amsmath ``align*`` block (``standalone``: a whole document that pdflatex compiles),
        as ``symgrad derive --format latex`` writes it."""
        return self._render("latex", standalone=standalone, notation=notation, bold=bold, label=label)

    def to_markdown(self, *, notation: str = "plain", bold: str = "mathbf") -> str:
        """Markdown with one ``$$ … $$`` display per step (GitHub, Jupyter, KaTeX)."""
        return self._render("markdown", notation=notation, bold=bold)

    def to_json(self) -> str:
        """The JSON certificate: every side as ``srepr``, which plain SymPy re-checks."""
        return self._render("json")

    def to_text(self, *, notation: str = "plain") -> str:
        """Plain text as the terminal shows it (no colour), 200 columns wide."""
        return self._render("text", notation=notation)

    def _render(self, fmt: str, **options: Any) -> str:
        from symgrad.api import render

        return render(self, fmt, **options)

    def codegen(self, target: str = "numpy") -> str:
        """The source of a module with ``forward(...)`` and ``backward(...)`` for ``target``
        ("numpy", "jax", "torch"), written from this derivation (``symgrad.codegen``)."""
        import importlib

        generate: Callable[[Derivation, str], str] = importlib.import_module("symgrad.codegen").generate
        return generate(self, target)

    # rich display ----------------------------------------------------------------------------
    def _repr_latex_(self) -> str:
        """Notebooks: one display per step (a whole derivation in one display exceeds MathJax's
        input buffer), with the layout convention as visible text."""
        from symgrad.output.markdown import render_notebook_latex

        return render_notebook_latex(self)

    def _repr_markdown_(self) -> str:
        """What Jupyter shows first: the Markdown export (MathJax and KaTeX safe)."""
        from symgrad.output.markdown import render_markdown

        return render_markdown(self)

    def __rich__(self) -> RenderableType:
        from symgrad.output.text import rich_renderable

        return rich_renderable(self)
