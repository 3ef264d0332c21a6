"""Term and factor order the way people write them, shared by the LaTeX and terminal printers.

Terms: positive before negative (a_j − y_j, not −y_j + a_j). Factors: numbers, then signed
fractions like −y_i/a_i, then plain entries, then functions (y_i log a_i), then sums and
parenthesised sums (a_i (δ_ij − a_j)). The sort is stable, so a product built in a chosen order
(for the reader) keeps it within each group.
"""

from __future__ import annotations

from sympy import Add, Function, Indexed, Mul, Pow, Sum, Symbol


def ordered_terms(terms: list) -> list:
    positive = [t for t in terms if not t.could_extract_minus_sign()]
    return positive + [t for t in terms if t.could_extract_minus_sign()]


def _factor_rank(factor) -> int:
    if factor.is_Number:
        return 0
    if isinstance(factor, Mul) or (isinstance(factor, Pow) and factor.exp.is_negative):
        return 1
    if isinstance(factor, (Indexed, Symbol)) or (isinstance(factor, Pow) and factor.base.is_Atom):
        return 2
    if isinstance(factor, Function):
        return 3
    if isinstance(factor, Sum):
        return 4
    if isinstance(factor, Add):
        return 5
    return 2


def is_sum(expr) -> bool:
    """Σ, or the Σ_{i≠j} of ``notation.SumExcluding``."""
    return isinstance(expr, Sum) or expr.__class__.__name__ == "SumExcluding"


def ends_in_sum(term) -> bool:
    """A sum, or a product whose last printed factor is a sum (a_j Σ_i y_i): followed by other
    terms, it must be bracketed or the next term reads as part of the sum."""
    if isinstance(term, Mul):
        return is_sum(ordered_factors(list(term.args))[-1])
    return is_sum(term)


def ordered_factors(factors: list) -> list:
    """By rank (stable); entries of one family with numeric indices in numeric order (a_2 a_20,
    not a_20 a_2 as a string sort gives)."""
    ranked = sorted(factors, key=_factor_rank)
    numbered = [k for k, f in enumerate(ranked)
                if isinstance(f, Indexed) and all(i.is_Integer for i in f.indices)]
    in_order = sorted((ranked[k] for k in numbered),
                      key=lambda f: (f.base.label.name, tuple(int(i) for i in f.indices)))
    for k, f in zip(numbered, in_order):
        ranked[k] = f
    return ranked


class OrderingMixin:
    """Mix into a SymPy printer (before the printer class) to apply the orders above."""

    def _as_ordered_terms(self, expr, order=None):
        return ordered_terms(list(super()._as_ordered_terms(expr, order=order)))

    def _print_MatAdd(self, expr):
        from sympy.matrices.expressions import MatAdd

        terms = ordered_terms(list(expr.args))
        saved = self.order
        self._settings["order"] = "none"
        try:
            if hasattr(super(), "_print_MatAdd"):
                return super()._print_MatAdd(MatAdd(*terms, evaluate=False))
            out = ""
            for k, term in enumerate(terms):
                text = self._print(term)
                out += text if k == 0 else (" - " + text[1:].lstrip() if text.startswith("-") else " + " + text)
            return out
        finally:
            self._settings["order"] = saved

    def _print_MatMul(self, expr):
        """Factors side by side. SymPy's own printer first asks whether the product can shed a
        minus sign, which multiplies the matrices out: 4 s for a 64 × 64 product."""
        from sympy import Add
        from sympy.matrices.expressions import HadamardProduct, MatAdd

        factors = list(expr.args)
        sign = ""
        if factors[0] == -1:
            sign, factors = "-", factors[1:]
        parts = []
        from sympy.matrices.expressions import MatrixExpr

        saved = getattr(self, "_elementwise_term", 0)
        if sum(isinstance(f, MatrixExpr) for f in factors) > 1:
            self._elementwise_term = 0  # a column of ones in a product stays 1ₙ (1ₙ aᵀ V w); 2 − s keeps 2
        try:
            printed_factors = [self._print(factor) for factor in factors]
        finally:
            self._elementwise_term = saved
        for factor, printed in zip(factors, printed_factors):
            if isinstance(factor, (Add, MatAdd, HadamardProduct)):  # (g ⊙ s) xᵀ, one reading
                printed = self._wrap(printed)
            parts.append(printed)
        return self._join_factors(sign, parts)

    def _print_Mul(self, expr):
        factors = list(expr.args)
        if any(f.is_Number and f.is_negative for f in factors) or len(factors) < 2:
            return super()._print_Mul(expr)
        reordered = Mul(*ordered_factors(factors), evaluate=False)
        saved = self.order
        self._settings["order"] = "none"
        try:
            return super()._print_Mul(reordered)
        finally:
            self._settings["order"] = saved
