"""Σ_x δ(x, v) · f(x) = f(v) for x's range holding v: SymPy's ``deltasummation``, answered
directly for the one form the chain rule keeps producing.

SymPy's general route expands the summand, looks for a delta that is linear in x, and finds
where it is non-zero with ``solve`` — on every call, although the summand of a chain-rule sum is
nearly always a product with one factor δ(x, j), j another index. For exactly that form the
answer is built here the way ``deltasummation`` builds it (the same ``Piecewise``, the same
condition, the same ``subs``), so nothing downstream can tell the difference; every other
summand goes to SymPy. ``tests/test_delta_sums.py`` compares both on random summands.
"""

from __future__ import annotations

from sympy import Basic, Interval, KroneckerDelta, Mul, Piecewise, S, Symbol
from sympy.concrete.delta import deltasummation


def delta_summation(summand: Basic, limit: tuple, no_piecewise: bool = False) -> Basic:
    """``sympy.concrete.delta.deltasummation(summand, limit, no_piecewise)``, the same value."""
    direct = _one_delta(summand, limit, no_piecewise)
    return direct if direct is not None else deltasummation(summand, limit, no_piecewise)


def _one_delta(summand: Basic, limit: tuple, no_piecewise: bool) -> Basic | None:
    """The sum when ``summand`` is δ(x, v) or a product with exactly one factor δ(x, v) (or
    δ(v, x)) and no other delta on x, v a symbol whose assumptions include x's (so SymPy's
    ``solve`` would answer v, not drop it); None for anything else."""
    x, lower, upper = limit
    if not isinstance(summand, (Mul, KroneckerDelta)) or ((upper - lower) < 0) == True:  # noqa: E712 (SymPy's test)
        return None
    # rebuilt factor by factor, as ``deltasummation`` rebuilds it (``_expand_delta``): a number
    # times a sum distributes there, 3·(z_i − a_j) → 3z_i − 3a_j, and the answer must be the same
    product = S.One
    for factor in Mul.make_args(summand):
        product = product * factor
    if not isinstance(product, (Mul, KroneckerDelta)):
        return None
    delta, rest = None, []
    for factor in Mul.make_args(product):
        if delta is None and isinstance(factor, KroneckerDelta) and len(factor.args) == 2 and x in factor.args:
            delta = factor
        elif factor.has(KroneckerDelta) and factor.has(x):
            return None  # a second delta on x, or one inside a sum or a power: SymPy's general route
        else:
            rest.append(factor)
    if delta is None:
        return None
    value = delta.args[1] if delta.args[0] == x else delta.args[0]
    if not isinstance(value, Symbol) or value == x or not _satisfies(value, x):
        return None
    term = Mul(*rest).subs(x, value)
    if no_piecewise:
        return term
    return Piecewise((term, Interval(lower, upper).as_relational(value)), (S.Zero, True))


def _satisfies(value: Symbol, x: Symbol) -> bool:
    """Whether every assumption on x (integer, positive, …) is known to hold for ``value``:
    SymPy's ``solve`` drops a solution known to contradict them. (A delta between such symbols
    is already 0 when built, so this guard has never been seen to decide anything; it keeps the
    direct route to values SymPy would certainly answer with.)"""
    return all(getattr(value, f"is_{fact}") == holds for fact, holds in x.assumptions0.items())
