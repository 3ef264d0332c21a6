"""``symgrad.delta_sums.delta_summation`` against SymPy's ``deltasummation``.

The direct answer for Σ_x δ(x, v)·f(x) must be exactly SymPy's — the same Piecewise, the same
condition — for every summand, since the index prover's normal form and the derivation's
rewriting compare expressions structurally. Random summands mix the form the direct route
answers (one factor δ(x, v)) with every form it must hand to SymPy: two deltas on x, a delta
inside a sum, δ(x + 1, v), a value with other assumptions than x, a number, an empty range.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sympy import Dummy, IndexedBase, Integer, KroneckerDelta, Mul, Piecewise, Sum, Symbol, exp, log
from sympy.concrete.delta import deltasummation

from symgrad.delta_sums import _one_delta, delta_summation

a, y, z = IndexedBase("a"), IndexedBase("y"), IndexedBase("z")
i, j, k = (Symbol(name, integer=True, positive=True) for name in "ijk")
n = Symbol("n", integer=True, positive=True)
plain = Symbol("v")  # no assumptions: SymPy's solve keeps it, the direct route must agree
negative = Symbol("w", negative=True)  # SymPy's solve drops it for a positive x


def _factors(x):
    return st.sampled_from([a[x], y[x], exp(z[x]), log(a[x]), a[j], y[k], z[x] - a[j], KroneckerDelta(j, k),
                             Integer(3), 1 / a[x], Sum(y[x] * a[k], (k, 1, n))])


@st.composite
def summands(draw):
    x = draw(st.sampled_from([i, Dummy("i", integer=True, positive=True)]))
    value = draw(st.sampled_from([j, k, plain, negative, Integer(2), Integer(0)]))
    delta = draw(st.sampled_from([KroneckerDelta(x, value), KroneckerDelta(value, x), KroneckerDelta(x + 1, value),
                                  KroneckerDelta(x, j) + KroneckerDelta(x, k)]))
    others = draw(st.lists(_factors(x), max_size=3))
    if draw(st.booleans()):
        others.append(KroneckerDelta(x, k))  # a second delta on x
    upper = draw(st.sampled_from([n, Integer(3), Integer(1), Integer(0)]))
    limit = (x, Integer(1), upper)
    return delta * _product(others), limit


def _product(factors):
    out = Integer(1)
    for factor in factors:
        out *= factor
    return out


@settings(max_examples=400, deadline=None)
@given(summands(), st.booleans())
@example((Mul(3, z[i] - a[j], KroneckerDelta(i, j), a[i]), (i, Integer(1), n)), False)  # SymPy distributes the 3
def test_the_same_value_as_sympy_for_every_summand(case, no_piecewise):
    summand, limit = case
    assert delta_summation(summand, limit, no_piecewise) == deltasummation(summand, limit, no_piecewise)


def test_the_chain_rule_form_is_answered_directly_as_sympy_answers_it():
    """Σ_i (−y_i/a_i)·a_i(δ_ij − a_j) expanded: each term has one δ(i, j), answered without SymPy's
    general route (its solve) — and with SymPy's Piecewise on 1 ≤ j ≤ n."""
    term = -y[i] * KroneckerDelta(i, j)
    direct = _one_delta(term, (i, 1, n), False)
    assert direct is not None
    assert direct == deltasummation(term, (i, 1, n)) == Piecewise((-y[j], (j >= 1) & (j <= n)), (0, True))


def test_forms_it_does_not_know_go_to_sympy():
    for summand, limit in [(KroneckerDelta(i, j) * KroneckerDelta(i, k) * a[i], (i, 1, n)),
                           (KroneckerDelta(i + 1, j) * a[i], (i, 1, n)),
                           (KroneckerDelta(i, negative) * a[i], (i, 1, n)),
                           (KroneckerDelta(i, 2) * a[i], (i, 1, n)),
                           ((KroneckerDelta(i, j) + 1) * a[i], (i, 1, n)),
                           (KroneckerDelta(i, j) * a[i], (i, 1, 0))]:
        assert _one_delta(summand, limit, False) is None
        assert delta_summation(summand, limit) == deltasummation(summand, limit)
