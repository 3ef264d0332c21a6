"""The few notational objects SymPy lacks, so that a step can be *written* the way a paper
writes it and still be turned mechanically into the explicit objects the checker proves.

- ``Vec(base, n)``: the whole vector whose entries are ``base[1] … base[n]`` (bold in print).
- ``PartialD(f, x)``: ∂f/∂x of a scalar or vector ``f`` by a vector ``x``, numerator layout,
  i.e. shape (len f, len x) and entry (i, j) = ∂f_i/∂x_j.
- ``MatVar(base, rows, cols)``: a whole matrix (W, Z, A …) whose entries are ``base[r, c]``.
- ``GradientMatrix(f, X)``: ∂f/∂X of a scalar f, shaped like X (dW, db, dZ as ML code holds them).
- ``SumExcluding(term, i, j, n)``: Σ_{i≠j} term, the off-diagonal part of a sum over 1..n.

Every object here knows how to become explicit (``as_explicit`` / ``doit``) for a concrete n.
symgrad's own printing lives in ``symgrad.output``; SymPy's own printers (``str``,
``sympy.latex``, ``sympy.pretty``) write these objects as the math too (``a - y``, not
``Vec(a, 3) - Vec(y, 3)``), like a ``MatrixSymbol``, through ``_sympystr``/``_latex``/``_pretty``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from typing import Any

from sympy import Add, Basic, Derivative, Expr, Integer, Sum, Symbol, sympify
from sympy.matrices.expressions import MatrixExpr
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.printing.latex import LatexPrinter


def _printer_of_symgrad(printer: Any) -> bool:
    """Whether ``printer`` is one of symgrad's (``symgrad.output``, the markup printer below)."""
    return type(printer).__module__.split(".")[0] == "symgrad"


def _as_printed_before(printer: Any, expr: Basic, **kwargs: Any) -> Any:
    """What ``printer`` makes of ``expr`` by its own methods, as SymPy dispatches when the object
    has no print method of its own: symgrad's printers keep their notation byte for byte."""
    for cls in type(expr).__mro__:
        method = getattr(printer, "_print_" + cls.__name__, None)
        if method is not None:
            return method(expr, **kwargs)
    return printer.emptyPrinter(expr)


class _PrintsAsMath:
    """SymPy's printers write the object as the math (``_math_str``, ``_math_latex``,
    ``_math_pretty``); symgrad's printers as before."""

    def _sympystr(self, printer: Any, **kwargs: Any) -> Any:
        if _printer_of_symgrad(printer):
            return _as_printed_before(printer, self, **kwargs)
        return self._math_str(printer)

    def _latex(self, printer: Any, **kwargs: Any) -> Any:
        if _printer_of_symgrad(printer):
            return _as_printed_before(printer, self, **kwargs)
        return self._math_latex(printer)

    def _pretty(self, printer: Any, **kwargs: Any) -> Any:
        if _printer_of_symgrad(printer):
            return _as_printed_before(printer, self, **kwargs)
        return self._math_pretty(printer)

    def _math_str(self, printer: Any) -> str:
        raise NotImplementedError

    def _math_latex(self, printer: Any) -> str:
        raise NotImplementedError

    def _math_pretty(self, printer: Any) -> Any:
        raise NotImplementedError


def _name_symbol(head: Basic) -> Symbol:
    """The plain symbol a whole vector or matrix is printed as (its IndexedBase's label)."""
    return Symbol(_label(head))


class _Named(_PrintsAsMath, MatrixExpr):
    """A whole vector or matrix named by its ``IndexedBase`` (printed bold, entries base[…]).
    SymPy's printers write it as a ``MatrixSymbol`` of that name (plain, or bold with
    ``mat_symbol_style="bold"``)."""

    def _math_str(self, printer: Any) -> str:
        return str(printer._print(_name_symbol(self.base)))

    def _math_latex(self, printer: Any) -> str:
        return str(printer._print_Symbol(_name_symbol(self.base), style=printer._settings["mat_symbol_style"]))

    def _math_pretty(self, printer: Any) -> Any:
        return printer._print_Symbol(_name_symbol(self.base), printer._settings["mat_symbol_style"] == "bold")

    @property
    def base(self):
        return self.args[0]


class Vec(_Named):
    """A column vector named by an ``IndexedBase``; entry k (0-based) is ``base[k + 1]``."""

    def __new__(cls, base, n):
        return Basic.__new__(cls, base, sympify(n))

    @property
    def length(self):
        return self.args[1]

    @property
    def shape(self):
        return (self.length, Integer(1))

    def _entry(self, i, j, **kwargs):
        return self.base[i + 1]


class MatVar(_Named):
    """A matrix named by an ``IndexedBase`` (W, Z, A, Y …); entry (r, c), 0-based, is base[r + 1, c + 1]."""

    def __new__(cls, base, rows, cols):
        return Basic.__new__(cls, base, sympify(rows), sympify(cols))

    @property
    def shape(self):
        return (self.args[1], self.args[2])

    def _entry(self, i, j, **kwargs):
        return self.base[i + 1, j + 1]


class _Differential(_PrintsAsMath, MatrixExpr):
    """∂f/∂x as a whole; subclasses fix the layout (shape and which derivative sits at (i, j)).
    SymPy's printers write it ∂f/∂x (``str``: ``Derivative(f, x)``)."""

    def _math_str(self, printer: Any) -> str:
        return f"Derivative({printer._print(self.f)}, {printer._print(self.x)})"

    def _math_latex(self, printer: Any) -> str:
        return rf"\frac{{\partial {printer._print(self.f)}}}{{\partial {printer._print(self.x)}}}"

    def _math_pretty(self, printer: Any) -> Any:
        from sympy.printing.pretty.stringpict import prettyForm

        top = prettyForm(*printer._print(self.f).left("∂" if printer._use_unicode else "d"))
        bottom = prettyForm(*printer._print(self.x).left("∂" if printer._use_unicode else "d"))
        return prettyForm.__truediv__(top, bottom)

    def __new__(cls, f, x):
        return Basic.__new__(cls, f, x)

    @property
    def f(self):
        return self.args[0]

    @property
    def x(self):
        return self.args[1]


class PartialD(_Differential):
    """∂f/∂x in numerator layout: a row (1 × n) for a scalar f, an m × n Jacobian for a vector f."""

    @property
    def shape(self):
        rows = self.f.length if isinstance(self.f, Vec) else Integer(1)
        return (rows, self.x.length)

    def _entry(self, i, j, **kwargs):
        numerator = self.f.base[i + 1] if isinstance(self.f, Vec) else self.f
        return Derivative(numerator, self.x.base[j + 1])


class GradientMatrix(_Differential):
    """∂f/∂X of a scalar f by a matrix or vector X, shaped like X (the layout ML code uses for
    dW, db, dZ): entry (r, c) = ∂f/∂X_rc."""

    @property
    def shape(self):
        return self.x.shape

    def _entry(self, i, j, **kwargs):
        return Derivative(self.f, _entry_of(self.x, i, j))


def _entry_of(variable, i, j):
    """Entry (i, j), 0-based, of a Vec or MatVar, as the Indexed it stands for."""
    if isinstance(variable, Vec):
        return variable.base[i + 1]
    return variable.base[i + 1, j + 1]


class SumExcluding(_PrintsAsMath, Expr):
    """Σ_{i=1, i≠j}^{n} term: the sum over every index except ``j`` (j itself lies in 1..n).
    SymPy's LaTeX writes it Σ_{i=1, i≠j}^{n}; ``str`` and ``pretty`` the equal full sum minus
    the j-th term (which ``sympify`` reads back)."""

    is_commutative = True

    def __new__(cls, term, index, excluded, upper):
        return Expr.__new__(cls, sympify(term), index, sympify(excluded), sympify(upper))

    @property
    def term(self):
        return self.args[0]

    @property
    def index(self):
        return self.args[1]

    @property
    def excluded(self):
        return self.args[2]

    @property
    def upper(self):
        return self.args[3]

    @property
    def free_symbols(self):
        return (self.term.free_symbols - {self.index}) | self.excluded.free_symbols | self.upper.free_symbols

    def _math_str(self, printer: Any) -> str:
        return str(printer._print(self._as_full_sum()))

    def _math_latex(self, printer: Any) -> str:
        index, excluded = printer._print(self.index), printer._print(self.excluded)
        term = str(printer._print(self.term))
        if isinstance(self.term, Add) or term.lstrip().startswith("-"):
            term = rf"\left({term}\right)"
        return rf"\sum_{{\substack{{{index}=1\\ {index} \neq {excluded}}}}}^{{{printer._print(self.upper)}}} {term}"

    def _math_pretty(self, printer: Any) -> Any:
        from sympy.printing.pretty.stringpict import prettyForm

        return prettyForm(*printer._print(self._as_full_sum()).parens())

    def _as_full_sum(self) -> Basic:
        return Add(self.full_sum(), -self.term.xreplace({self.index: self.excluded}))

    def _eval_derivative(self, s):
        return SumExcluding(self.term.diff(s), self.index, self.excluded, self.upper)

    def full_sum(self) -> Sum:
        """The same term summed over every index, 1..n."""
        return Sum(self.term, (self.index, 1, self.upper))

    def doit(self, **hints):
        """Explicit terms for integer bounds; otherwise the full sum minus the j-th term
        (valid because the excluded index lies in 1..n)."""
        if self.upper.is_Integer and self.excluded.is_Integer:
            return Add(*[self.term.xreplace({self.index: Integer(v)})
                         for v in range(1, int(self.upper) + 1) if v != int(self.excluded)])
        return self.full_sum() - self.term.xreplace({self.index: self.excluded})


def index_symbol(name: str) -> Symbol:
    """A positive integer index (i, j, k …), the kind SymPy's delta-summation needs."""
    return Symbol(name, integer=True, positive=True)


def index_symbols(expr: Basic) -> list[Symbol]:
    """The free index symbols of an expression (integer symbols such as j in Σ_i Y_ij = 1),
    sorted by name; IndexedBase labels like z do not count."""
    return sorted((x for x in expr.free_symbols if isinstance(x, Symbol) and x.is_integer), key=str)


class Entrywise(_PrintsAsMath, ElementwiseApplyFunction):
    """f applied to every entry (e^z, tanh(Z), 𝟙[Z > 0]): SymPy's ElementwiseApplyFunction without
    its shortcut for a 1 × 1 matrix, which applies f to the matrix itself (Heaviside of a vector
    raises), so that a derivation at a symbolic n can be instantiated at n = 1. SymPy's printers
    write it as the function applied to the whole (``exp(z)``, ``tanh(W*X + b)``)."""

    def __new__(cls, function, expr):
        return Basic.__new__(cls, function, expr)

    def _applied(self, argument: Basic) -> Basic:
        (variable,) = self.function.variables
        return self.function.expr.xreplace({variable: argument})

    _SLOT = "SYMGRADARGUMENT"

    def _argument_text(self, text: str, wrap: tuple[str, str]) -> str:
        """The argument's text, bracketed unless it is a name or the body is f(x) itself."""
        body = self._applied(Symbol(self._SLOT))
        named = isinstance(self.expr, (_Named, Symbol)) or type(self.expr).__name__ == "MatrixSymbol"
        applied = body.is_Function and bool(body.args) and body.args[0] == Symbol(self._SLOT)
        return text if named or applied else wrap[0] + text + wrap[1]

    def _written(self, printer: Any, wrap: tuple[str, str]) -> str:
        """The function's body printed with the argument's text in place of its variable."""
        text = self._argument_text(str(printer._print(self.expr)), wrap)
        return str(printer._print(self._applied(Symbol(self._SLOT)))).replace(self._SLOT, text)

    def _math_str(self, printer: Any) -> str:
        return self._written(printer, ("(", ")"))

    def _math_latex(self, printer: Any) -> str:
        return self._written(printer, (r"\left(", r"\right)"))

    def _math_pretty(self, printer: Any) -> Any:
        from sympy.printing.str import sstr

        return printer._print(self._applied(Symbol(self._argument_text(sstr(self.expr), ("(", ")")))))


def plain_sympy(expr: Basic) -> Basic:
    """Only SymPy's own classes (Σ_{i≠j} as Σ_i − the j-th term, Entrywise as SymPy's
    ElementwiseApplyFunction), so that ``sympify`` alone can read an exported expression."""
    expr = expr.replace(lambda e: isinstance(e, SumExcluding), lambda e: e.doit())
    return expr.replace(lambda e: isinstance(e, Entrywise), lambda e: Basic.__new__(ElementwiseApplyFunction, *e.args))


# -- names in step titles and notes ---------------------------------------------------------------
# A derivation writes the names in its titles as tokens — \name{L}, \bname{a} (the whole vector
# or matrix, bold), \entry{A_prev}{p,t} — and each printer writes them exactly as it writes them
# in the equations: plain or course notation, LaTeX or terminal. No printer guesses names in text.
NAME_TOKEN = re.compile(r"\\entry\{([^{}]*)\}\{([^{}]*)\}|\\(bname|name)\{([^{}]*)\}")


def _label(head) -> str:
    return str(getattr(head, "name", getattr(getattr(head, "label", None), "name", head)))


def name_markup(head) -> str:
    """A scalar or a size by name: L, T, n_prev."""
    return rf"\name{{{_label(head)}}}"


def bold_markup(head) -> str:
    """A whole vector or matrix: a, W, A_prev (bold)."""
    return rf"\bname{{{_label(head)}}}"


def entry_markup(head, indices) -> str:
    """An entry: a_j, A_prev[p, t]; ``indices`` a tuple of symbols, or a string of one-letter ones."""
    return rf"\entry{{{_label(head)}}}{{{','.join(str(x) for x in indices)}}}"


class _MarkupPrinter(LatexPrinter):
    """SymPy's LaTeX with every name a token: an assumption or a leftover sum in a note reads in
    the printer's notation like the rest."""

    def _print_Indexed(self, expr):
        return entry_markup(expr.base, expr.indices)

    def _print_Symbol(self, expr, style="plain"):
        return name_markup(expr)


def math_markup(expr: Basic) -> str:
    return _MarkupPrinter().doprint(expr)


def replace_names(markup: str, entry: Callable, name: Callable[[str], str], bold: Callable[[str], str]) -> str:
    """Each token written by the printer's own functions: ``entry(name, indices)`` (indices as
    SymPy integers or index symbols), ``name(name)``, ``bold(name)``."""
    def replace(match: re.Match) -> str:
        if match.group(1) is not None:
            indices = tuple(Integer(x) if x.isdigit() else index_symbol(x)
                            for x in match.group(2).split(",") if x)
            return entry(match.group(1), indices)
        return (bold if match.group(3) == "bname" else name)(match.group(4))
    return NAME_TOKEN.sub(replace, markup)
