"""``differentiate`` returns SymPy's own derivative, node for node, on random expressions: the
steps the engine prints and the certificates users commit must not change because the checker
takes a faster route to the same expression."""

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sympy import (Abs, Derivative, Function, Integer, IndexedBase, KroneckerDelta, Max, Piecewise, Rational, Sum, Symbol, erf, exp,
                   log, sqrt, tanh)

from symgrad.differentiate import differentiate
from symgrad.functions import ELEMENTWISE, abstract_sympy

x, y = Symbol("x", real=True), Symbol("y", real=True)
i, j, k = (Symbol(name, integer=True, positive=True) for name in "ijk")
n = Symbol("n", integer=True, positive=True)
z, w = IndexedBase("z"), IndexedBase("w")

LEAVES = [x, y, z[i], z[j], z[1], z[2], w[i, j], w[j, 1], i, Integer(2), Integer(-1), Rational(1, 3)]
UNARY = [exp, log, tanh, erf, sqrt, Abs, lambda e: -e, lambda e: 1 / e,
         lambda e: Piecewise((e, x > 0), (2 * e, True)), lambda e: Max(e, 0),
         lambda e: KroneckerDelta(i, j) * e]
UNARY += [ELEMENTWISE[name].value for name in ("sigmoid", "softplus", "relu")]
UNARY += [abstract_sympy("g"), abstract_sympy("g", 1)]  # a declared function: chain rule by fdiff
POWERS = [Integer(2), Integer(3), Integer(-1), Integer(-2), Rational(1, 2), y]


def expressions():
    leaves = st.sampled_from(LEAVES)

    def extend(children):
        pair = st.tuples(children, children)
        return st.one_of(
            pair.map(lambda p: p[0] + p[1]),
            pair.map(lambda p: p[0] * p[1]),
            st.tuples(children, st.sampled_from(POWERS)).map(lambda p: p[0] ** p[1]),
            st.tuples(st.sampled_from(UNARY), children).map(lambda p: p[0](p[1])),
            st.tuples(children, st.sampled_from([n, Integer(3)])).map(
                lambda p: Sum(p[0].xreplace({i: k}) * z[k], (k, 1, p[1]))),
        )

    return st.recursive(leaves, extend, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(), st.sampled_from([x, y, z[j], z[i], z[1], w[i, j], w[1, 2]]))
@example(Sum(exp(z[k]) * z[k], (k, 1, n)) * log(z[j]), z[j])
@example(KroneckerDelta(i, j) * tanh(x) ** y, x)
@example(x * Derivative(Function("f")(x, y), y, x, evaluate=False), x)  # SymPy makes it canonical
def test_the_same_expression_as_sympy(expr, wrt):
    try:
        expected = expr.diff(wrt)
    except Exception as error:  # noqa: BLE001 - whatever SymPy says, we say
        try:
            differentiate(expr, wrt)
        except type(error):
            return
        raise AssertionError(f"SymPy raised {error!r}, differentiate did not") from None
    assert differentiate(expr, wrt) == expected, (expr, wrt)
