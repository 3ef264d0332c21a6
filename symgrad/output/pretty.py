"""Unicode pretty printing for terminals: SymPy's PrettyPrinter with subscripts for entries,
∂ fractions, Σ_{i≠j}, diag(a), aᵀ and elided large matrices."""

from __future__ import annotations

import re
import sys
import threading
import types
from contextlib import contextmanager

from sympy import Eq, ImmutableMatrix, Indexed, MatrixBase, Piecewise, Symbol
from sympy.printing.pretty.pretty import PrettyPrinter
from sympy.printing.pretty.pretty_symbology import pretty_use_unicode
from sympy.printing.pretty.stringpict import prettyForm, stringPict

from symgrad.output.notation import (PLAIN, SHORT_GREEK, Notation, layer_name, subscript, superscript,
                                     superscript_letters)
from symgrad.output.ordering import OrderingMixin, ends_in_sum, ordered_factors, ordered_terms

MAX_MATRIX = 6
SUBSCRIPT_DIGITS = set(subscript("0123456789"))
SUPERSCRIPT_LETTERS = set(superscript_letters())


def display_name(name: str) -> str:
    """A_prev → Aᵖʳᵉᵛ, so that an entry's indices (Aᵖʳᵉᵛ_q,s) are not read as part of its name."""
    head, _, tail = name.partition("_")
    return head + superscript(tail) if tail and tail.isalpha() and tail.islower() else name


def _indices(expr: Indexed) -> str:
    """Subscript indices: ᵢₛ for letters (as the titles write them), ₁,₂ for numbers."""
    if all(not i.is_Integer and len(str(i)) == 1 for i in expr.indices):
        return subscript("".join(str(i) for i in expr.indices))
    return subscript(",".join(str(i) for i in expr.indices))


def course_name(latex: str) -> str:
    """A course-notation LaTeX name for a terminal: Z^{[L]} → Z^[L], \\mathcal{L} → ℒ."""
    text = re.sub(r"\^\{(\[[^\]]*\])\}", r"^\1", latex)
    return text.replace("\\mathcal{L}", "ℒ").replace("{", "").replace("}", "")


@contextmanager
def unicode_drawing():
    """SymPy draws Σ, brackets and fraction bars, and joins forms with · and parentheses, from a
    module-wide flag that it sets from sys.stdout's encoding. Our drawing needs Unicode whatever
    the stream (an ASCII stdout has no tall Σ: KeyError 'sum'), and the caller's setting is put
    back afterwards: a notebook's own SymPy printing is not changed by ours. Also a decorator."""
    previous = pretty_use_unicode(True)
    try:
        yield
    finally:
        pretty_use_unicode(previous)


class TerminalPrinter(OrderingMixin, PrettyPrinter):
    """``width``: the columns an equation may take; matrices show as many columns as fit
    (first ones, ⋯, the last). ``notation``: names as in the LaTeX (course: Z^[L], A^[L-1])."""

    def __init__(self, notation=None, width: int | None = None, inline: bool = False):
        super().__init__({"use_unicode": True, "wrap_line": False})
        # the module-wide flag (``unicode_drawing``) for a caller that draws without that
        # context; the renderers below draw inside it, which puts the caller's setting back
        pretty_use_unicode(True)
        self.notation = notation
        self.width = width
        self.inline = inline  # ∂L/∂z on one line (a summary line), not a stacked fraction

    def _renamed(self, name: str) -> str | None:
        """The notation's own LaTeX for ``name`` where it differs from the plain one (course)."""
        latex = self.notation.names.get(name) if self.notation is not None else None
        return latex if latex is not None and latex != PLAIN.get(name, name) else None

    def name(self, name: str) -> str:
        renamed = self._renamed(name)
        if renamed:
            return course_name(renamed)
        return (self.notation or Notation()).terminal_name(name) or display_name(name)

    def _entry(self, expr: Indexed) -> str:
        """An entry's name and indices: Wᵢⱼ, Aᵖʳᵉᵛₚₜ; W₂,ᵢⱼ (a comma after a layer number, so
        W₂ row 1 is never read as W₂₁), W^[2]ᵢⱼ."""
        name = self.name(expr.base.label.name)
        indices = _indices(expr)
        if name[-1:] in SUBSCRIPT_DIGITS and not indices.startswith("_"):
            return f"{name},{indices}"
        return name + indices

    def _print_Min(self, expr):
        """min(1, max(−1, uᵢ)) as written in math: SymPy's pretty printer has no rule for Min or
        Max and falls back to str(), which would print u[i] and Max(-1, u[i])."""
        return self._helper_print_function(expr.func, expr.args, func_name=type(expr).__name__.lower())

    _print_Max = _print_Min

    def _print_Symbol(self, expr, bold_name=False):
        if self._renamed(expr.name) or (not expr.is_integer and layer_name(expr.name)):
            return prettyForm(self.name(expr.name))  # a course name (n^[L-1]), a layer's W₂
        if expr.name in SHORT_GREEK:
            return prettyForm(SHORT_GREEK[expr.name][1])
        head, _, tail = expr.name.partition("_")
        if head and tail.isalpha() and tail.islower():
            # a size n_prev reads nₚᵣₑᵥ, as in the titles; a matrix's name (dA_prev, capital in
            # its head) dAᵖʳᵉᵛ, as the matrix Aᵖʳᵉᵛ reads, so that its entries' indices stay apart
            return prettyForm(head + (superscript(tail) if not head.islower() else subscript(tail)))
        return super()._print_Symbol(expr, bold_name)

    def _print_Indexed(self, expr: Indexed):
        return prettyForm(self._entry(expr))

    def _print_Vec(self, expr):
        return prettyForm(self.name(expr.base.label.name))

    _print_MatVar = _print_Vec

    def _fraction(self, numerator, denominator):
        """∂numerator/∂denominator: stacked, or on one line for ``inline`` (bracketed like a
        product's factor, so that its ᵀ or a factor 2 applies to the whole)."""
        top, bottom = "∂" + self._name(numerator), "∂" + self._name(denominator)
        if self.inline:
            return prettyForm(f"{top}/{bottom}", binding=prettyForm.DIV)
        return prettyForm(top) / prettyForm(bottom)

    def _print_GradientMatrix(self, expr):
        return self._fraction(expr.f, expr.x)

    def _print_OneMatrix(self, expr):
        if self._elementwise_term:  # the 1 of 1 − s, as lecturers write it
            return prettyForm("1")
        if expr.shape[0] == 1 and expr.shape[1] != 1:  # a row of ones: b 1ᵀ adds b to every column
            return prettyForm("1" + subscript(str(expr.shape[1])) + "ᵀ")
        return prettyForm("1" + subscript(str(expr.shape[0])))

    _elementwise_term = 0

    def _print_HadamardProduct(self, expr):
        """s ⊙ (1 − s), and e^z ⊘ (1 + e^z) for a factor to the power −1; a sum or a matrix
        product among the factors is bracketed."""
        from sympy.matrices.expressions import HadamardPower, HadamardProduct, MatAdd, MatMul

        def piece_of(factor):
            piece = self._elementwise(factor)
            return prettyForm(*piece.parens()) if isinstance(factor, (MatAdd, MatMul, HadamardProduct)) else piece

        over = [f for f in expr.args if not (isinstance(f, HadamardPower) and f.exp == -1)]
        under = [f.base for f in expr.args if isinstance(f, HadamardPower) and f.exp == -1]
        form = None
        for factor in over:
            piece = piece_of(factor)
            form = piece if form is None else prettyForm(*stringPict.next(form, " ⊙ ", piece))
        form = form if form is not None else prettyForm("1")
        if under:
            if len(over) > 1:
                form = prettyForm(*form.parens())
            divisor = under[0] if len(under) == 1 else HadamardProduct(*under)
            form = prettyForm(*stringPict.next(form, " ⊘ ", piece_of(divisor)))
        form.binding = prettyForm.MUL
        return form

    def _print_HadamardPower(self, expr):
        if expr.exp == -1:
            return self._print_HadamardProduct(type("_Quotient", (), {"args": (expr,)})())
        base = self._elementwise(expr.base)
        if expr.base.__class__.__name__ not in ("Vec", "MatVar"):
            base = prettyForm(*base.parens())
        return prettyForm(*base.right("^⊙" + str(expr.exp)))

    def abstract_name(self, function) -> str:
        """A declared function g1 and its derivatives: g₁′, g^[1]′ (course)."""
        return self.name(function.base_name) + "′" * function.order

    def _print_AbstractFunction(self, expr):
        return prettyForm(*prettyForm(*self._print(expr.args[0]).parens()).left(self.abstract_name(type(expr))))

    def _print_ElementwiseApplyFunction(self, expr):
        """A function entry by entry: exp(z), tanh(Z), 𝟙[Z > 0] (the step with θ(0) = 0), g′(Z)."""
        from symgrad.functions import AbstractFunction

        body = expr.function.expr
        if isinstance(body, AbstractFunction):
            return prettyForm(*prettyForm(*self._print(expr.expr).parens()).left(self.abstract_name(body.func)))
        if body.func.__name__ == "Heaviside" and len(body.args) == 2 and body.args[1] == 0:
            inside = prettyForm(*self._print(expr.expr).right(" > 0"))
            return prettyForm(*prettyForm(*inside.parens("[", "]")).left("𝟙"))
        return prettyForm(*prettyForm(*self._print(expr.expr).parens()).left(expr.function.expr.func.__name__))

    def _elementwise(self, expr):
        from sympy.matrices.expressions import MatAdd

        self._elementwise_term += isinstance(expr, MatAdd)
        try:
            return self._print(expr)
        finally:
            self._elementwise_term -= isinstance(expr, MatAdd)

    def _name(self, expr) -> str:
        """A one-line name for the numerator/denominator of a ∂ fraction."""
        if isinstance(expr, Symbol):
            return self.name(expr.name)
        if isinstance(expr, Indexed):
            return self._entry(expr)
        if expr.__class__.__name__ in ("Vec", "MatVar"):
            return self.name(expr.base.label.name)
        return str(expr)

    def _print_Derivative(self, expr):
        (variable,) = expr.variables
        return self._fraction(expr.expr, variable)

    def _print_PartialD(self, expr):
        return self._fraction(expr.f, expr.x)

    def _print_SumExcluding(self, expr):
        from sympy import Sum

        # Printed as a sum whose "lower limit" reads i≠j and with no upper limit shown.
        label = Symbol(f"{expr.index}≠{expr.excluded}")
        form = self._print(Sum(expr.term, (label, 1, 1)))
        lines = form.render(wrap_line=False).split("\n")
        lines = [line.replace(f"{label} = 1", f"{label}    ") for line in lines[1:]]
        return prettyForm("\n".join(lines), baseline=form.baseline - 1)

    def _print_Piecewise(self, expr: Piecewise):
        if len(expr.args) == 2 and isinstance(expr.args[0][1], Eq):
            condition = expr.args[0][1]
            other = Symbol(f"{condition.lhs}≠{condition.rhs}")
            expr = Piecewise(expr.args[0], (expr.args[1][0], other), evaluate=False)
        return super()._print_Piecewise(expr)

    def _print_Mul(self, expr):
        """An unevaluated product such as (−y_i/a_i)·(−a_i a_j): every negative factor is
        parenthesised (SymPy would print ⋅-a_i, and Σ -y/a⋅a reads two ways)."""
        factors = ordered_factors(list(expr.args))
        negative = [not f.is_Number and not f.is_Add and f.could_extract_minus_sign() for f in factors]
        if len(factors) < 2 or not any(negative):
            with _units_not_imported():
                return super()._print_Mul(expr)
        form = None
        for factor, minus in zip(factors, negative):
            piece = self._print(factor)
            if minus or factor.is_Add:  # (−yᵢ/aᵢ)⋅aᵢ⋅(δᵢⱼ − aⱼ): one reading, also after a Σ
                piece = prettyForm(*piece.parens())
            form = piece if form is None else prettyForm(*stringPict.next(form, "⋅", piece))
        return form

    def _print_Add(self, expr, order=None):
        """As in the LaTeX: positive terms lead (a − y), and a term ending in a sum (Σ yᵢ, or
        aⱼ⋅Σ yᵢ) that other terms follow is bracketed, so −yⱼ is never read inside the Σ."""
        terms = ordered_terms(list(self._as_ordered_terms(expr, order=order)))
        if len(terms) < 2 or not any(ends_in_sum(t) for t in terms[:-1]):
            return super()._print_Add(expr, order)
        return self._join_terms(terms, bracket=lambda body, last: body.is_Add or (not last and ends_in_sum(body)))

    def _wrap(self, printed):
        return prettyForm(*printed.parens())

    def _join_factors(self, sign: str, parts: list):
        form = parts[0]
        for part in parts[1:]:
            form = prettyForm(*stringPict.next(form, "⋅", part))
        return prettyForm(*form.left(sign)) if sign else form

    def _print_MatAdd(self, expr):
        """a − y rather than SymPy's "a -y"; a matrix of ones as a term prints 1 (1 − s)."""
        self._elementwise_term += 1
        try:
            return self._join_terms(ordered_terms(list(expr.args)))
        finally:
            self._elementwise_term -= 1

    def _join_terms(self, terms: list, bracket=lambda body, last: False):
        """Terms in the order given, each with its sign (a − y); ``bracket(term, is_last)`` says
        which (sign-free) terms to put in parentheses."""
        form = None
        for negative, piece in self._signed_pieces(terms, bracket):
            if form is None:
                form = prettyForm(*piece.left("-")) if negative else piece
            else:
                form = prettyForm(*stringPict.next(form, " - " if negative else " + ", piece))
        form.binding = prettyForm.ADD  # a product around this sum brackets it
        return form

    def _signed_pieces(self, terms: list, bracket) -> list[tuple[bool, prettyForm]]:
        pieces = []
        for k, term in enumerate(terms):
            negative = term.could_extract_minus_sign()
            body = -term if negative else term
            piece = self._print(body)
            if bracket(body, k == len(terms) - 1):
                piece = prettyForm(*piece.parens())
            pieces.append((negative, piece))
        return pieces

    def top_level_terms(self, expr) -> list[tuple[bool, prettyForm]] | None:
        """The terms of a sum as (is it subtracted, its picture without the sign), in the order
        and with the brackets the whole sum prints them: the places a long equation may break
        onto a continuation line. None for anything that is not a sum of two or more terms."""
        from sympy import Add
        from sympy.matrices.expressions import MatAdd

        if isinstance(expr, MatAdd):
            return self._signed_pieces(ordered_terms(list(expr.args)), lambda body, last: False)
        if not isinstance(expr, Add):
            return None
        terms = ordered_terms(list(self._as_ordered_terms(expr, order=None)))
        closes = any(ends_in_sum(t) for t in terms[:-1])
        return self._signed_pieces(
            terms, lambda body, last: body.is_Add or (closes and not last and ends_in_sum(body)))

    def _print_DiagMatrix(self, expr):
        inner = prettyForm(*self._print(expr.args[0]).parens())
        return prettyForm(*inner.left("diag"))

    def _print_Transpose(self, expr):
        inner = self._print(expr.arg)
        compound = not isinstance(expr.arg, (Symbol,)) and expr.arg.__class__.__name__ not in ("Vec", "MatVar")
        if compound or str(inner)[-1:] in SUPERSCRIPT_LETTERS:
            inner = prettyForm(*inner.parens())  # (∂L/∂z)ᵀ inline too; (Aᵖʳᵉᵛ)ᵀ, not Aᵖʳᵉᵛᵀ
        return prettyForm(*inner.right("ᵀ"))

    def _print_MatrixBase(self, expr: MatrixBase):
        rows, cols = expr.shape
        keep_r = [0, 1, None, rows - 1] if rows > MAX_MATRIX else list(range(rows))

        def cell(r, c):
            if r is None and c is None:
                return Symbol("⋱")
            if r is None:
                return Symbol("⋮")
            if c is None:
                return Symbol("⋯")
            return expr[r, c]

        def printed(keep_c):
            if keep_c == list(range(cols)) and keep_r == list(range(rows)):
                return super(TerminalPrinter, self)._print_MatrixBase(expr)
            small = ImmutableMatrix(len(keep_r), len(keep_c), [cell(r, c) for r in keep_r for c in keep_c])
            return super(TerminalPrinter, self)._print_MatrixBase(small)

        candidates = [list(range(cols))] if cols <= MAX_MATRIX else []
        candidates += [[*range(k - 1), None, cols - 1] for k in range(min(cols - 1, MAX_MATRIX), 1, -1)]
        form = None
        for keep_c in candidates:
            form = printed(keep_c)
            if self.width is None or form.width() <= self.width:
                return form
        return form if form is not None else printed(list(range(cols)))

    _print_ImmutableMatrix = _print_MatrixBase
    _print_ImmutableDenseMatrix = _print_MatrixBase


class _NoQuantity:
    """Stands in for sympy.physics.units.Quantity while that module is not loaded."""


@contextmanager
def _units_not_imported():
    """SymPy's pretty ``_print_Mul`` imports sympy.physics.units (every unit system: about a
    tenth of a second, a fifth of a cold ``derive``) only to ask whether a factor is a Quantity.
    While that module is not loaded no expression can hold a Quantity, so for the call a stand-in
    module answers no. Only with one thread running: no other import can see the stand-in."""
    name = "sympy.physics.units"
    if name in sys.modules or threading.active_count() > 1:
        yield
        return
    stand_in = types.ModuleType(name)
    stand_in.Quantity = _NoQuantity
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


@unicode_drawing()
def pretty(expr, notation=None) -> str:
    return TerminalPrinter(notation).doprint(expr)
