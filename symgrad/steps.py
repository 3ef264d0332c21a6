"""Steps as data: each step is one equation with the rule that justifies it and, once checked,
the result of checking it. Nothing here computes or prints; see ``derive``, ``verify``, ``render``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from sympy import Basic, Symbol

from symgrad.model import Model


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

    def with_check(self, check: Check) -> "Step":
        return replace(self, check=check)


@dataclass(frozen=True)
class Derivation:
    """An ordered list of steps about a model; the result is the last step's right-hand side.

    Renders itself: ``_repr_latex_`` for Jupyter, ``__rich__`` for rich consoles.
    """

    name: str
    title: str
    model: Model
    steps: tuple[Step, ...]
    convention: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def result(self) -> Basic:
        return self.steps[-1].rhs

    @property
    def checked(self) -> bool:
        return all(s.check is not None for s in self.steps)

    @property
    def proven(self) -> bool:
        return self.checked and all(s.check.proven for s in self.steps)

    def with_steps(self, steps) -> "Derivation":
        return replace(self, steps=tuple(steps))

    def _repr_latex_(self) -> str:
        """Notebooks: one display per step (a whole derivation in one display exceeds MathJax's
        input buffer), with the layout convention as visible text."""
        from symgrad.output.markdown import render_notebook_latex

        return render_notebook_latex(self)

    def _repr_markdown_(self) -> str:
        """What Jupyter shows first: the Markdown export (MathJax and KaTeX safe)."""
        from symgrad.output.markdown import render_markdown

        return render_markdown(self)

    def __rich__(self):
        from symgrad.output.text import rich_renderable

        return rich_renderable(self)
