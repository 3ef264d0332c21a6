"""Functions by cases (relu, leaky_relu, abs, maximum, minimum, clip, huber): derivations with
the derivative by cases and the kink convention as steps of their own, every step proven
(almost everywhere); identities decided region by region, false ones refuted even when they
are false only far from the sampling range.

Independent references: finite differences of the loss as the expression language builds it,
at random points on both sides of every kink and never near one (exact rational arithmetic,
so nothing is rounded), and ``jax.grad`` of a hand-written ``jax.numpy`` version where JAX is
installed."""

import random

import mpmath
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import assume, example, given, settings, strategies as st
from sympy import Heaviside, Integer, Max, Rational, Symbol, exp, log, tanh

from support import final_gradient_entries
from symgrad.derivation.engine import Problem, derive_problem
from symgrad.functions import ELEMENTWISE
from symgrad.identity_file import load_file
from symgrad.language import Variable, evaluate
from symgrad.steps import Rule
from symgrad.verify import check_derivation
from symgrad.verify.cases import KINKED, _kinks_of, kink_arguments, linear_witness, regions
from symgrad.verify.concrete import ConcreteModel
from symgrad.verify.identity import check_at_size
from symgrad.verify.numeric import AtKink, NumericProgram

# (loss, variables); z is the variable differentiated by
BY_CASES = [
    ("dot(v, relu(z))", {"z": "n", "v": "n"}),
    ("dot(v, leaky_relu(z, 0.1))", {"z": "n", "v": "n"}),
    ("sum(abs(z - y))", {"z": "n", "y": "n"}),
    ("dot(v, maximum(z, y))", {"z": "n", "v": "n", "y": "n"}),
    ("dot(v, minimum(z, 0.5))", {"z": "n", "v": "n"}),
    ("mean(maximum(0, 1 - y * z))", {"z": "n", "y": "n"}),
    ("dot(v, clip(z, -1, 1))", {"z": "n", "v": "n"}),
    ("sum(huber(z - y, 1.5))", {"z": "n", "y": "n"}),
    ("mean(relu(z) * relu(z))", {"z": "n"}),
]
N = 3


def _base(name, kind, n=N):
    from sympy import IndexedBase

    return [Symbol(name, real=True)] if kind == "scalar" else [IndexedBase(name, real=True)[k + 1] for k in range(n)]


def _loss(text, variables, n=N):
    return evaluate(text, {name: Variable(name, None if kind == "scalar" else n) for name, kind in variables.items()},
                    constants={"n": n})


def _points(loss, variables, seed, count=12, n=N):
    """Random rational points in [−3, 3], each kink argument at least 1/20 away from 0; every
    kink argument is seen on both sides across the points (asserted)."""
    rng = random.Random(seed)
    atoms = [a for name, kind in variables.items() for a in _base(name, kind, n)]
    kinks = kink_arguments(loss)  # the innermost ones: each must be seen on both sides
    every = [g for node in loss.atoms(*KINKED) for g in _kinks_of(node)]  # max(−1, z) − 1 too
    points, signs = [], {g: set() for g in kinks}
    while len(points) < count:
        point = {a: Rational(rng.randint(-192, 192), 64) for a in atoms}
        values = [g.xreplace(point) for g in kinks]
        if any(abs(g.xreplace(point)) < Rational(1, 20) for g in every):
            continue
        for g, v in zip(kinks, values):
            if v.is_number:
                signs[g].add(v > 0)
        points.append(point)
    one_sided = [g for g, seen in signs.items() if len(seen) < 2 and g.free_symbols]
    assert not one_sided, f"points on one side only of {one_sided}"
    return points


def _final(derivation):
    return final_gradient_entries(derivation, N)


def _finite_difference(loss, atom, point, h=Rational(1, 10 ** 12)):
    up, down = dict(point), dict(point)
    up[atom] += h
    down[atom] -= h
    return ((loss.xreplace(up) - loss.xreplace(down)) / (2 * h)).evalf(40)


@pytest.mark.parametrize("text, variables", BY_CASES, ids=[t for t, _ in BY_CASES])
def test_each_function_by_cases_derives_proven_and_matches_finite_differences_on_every_side(text, variables):
    derivation = check_derivation(derive_problem(Problem(text, variables, wrt="z", size=N)))
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    rules = [s.rule for s in derivation.steps]
    if "huber" not in text:  # huber' is continuous: no kink to settle
        assert Rule.BY_CASES in rules and Rule.KINK_CONVENTION in rules
        assert rules.index(Rule.BY_CASES) + 1 == rules.index(Rule.KINK_CONVENTION)
        convention = derivation.steps[rules.index(Rule.KINK_CONVENTION)]
        assert "almost everywhere" in convention.title
        assert "by cases" in derivation.steps[rules.index(Rule.BY_CASES)].check.detail  # no value at a kink
    loss = _loss(text, variables)
    final = _final(derivation)
    z = _base("z", "n")
    for point in _points(loss, variables, seed=text):
        for k in range(N):
            derived = final[k].xreplace(point).evalf(40)
            expected = _finite_difference(loss, z[k], point)
            assert abs(derived - expected) < 1e-9, (text, point, k, derived, expected)


@pytest.mark.parametrize("text, variables", BY_CASES[:4], ids=[t for t, _ in BY_CASES[:4]])
def test_a_wrong_derivative_by_cases_or_a_wrong_convention_is_refuted(text, variables):
    """Doubling the stated cases, or the kink-convention value, must fail its check."""
    derivation = derive_problem(Problem(text, variables, wrt="z", size=N))
    steps = list(derivation.steps)
    for rule in (Rule.BY_CASES, Rule.KINK_CONVENTION):
        (k,) = [k for k, s in enumerate(steps) if s.rule is rule]
        wrong = derivation.with_steps(steps[:k] + [replace(steps[k], rhs=steps[k].rhs * 2, check=None)] + steps[k + 1:])
        check = check_derivation(wrong).steps[k].check
        assert check.exact is not True and check.numeric is False, (rule, check)


@pytest.mark.parametrize("text, variables", BY_CASES, ids=[t for t, _ in BY_CASES])
def test_each_function_by_cases_derives_for_every_n(text, variables):
    derivation = check_derivation(derive_problem(Problem(text, variables, wrt="z", size="symbolic")))
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]


def test_relu_inside_a_layer_over_matrices_derives_at_symbolic_sizes():
    problem = Problem("mean(relu(W @ X + b) * Y)", {"W": "n x p", "X": "p x m", "b": "n", "Y": "n x m"}, wrt="W",
                      sizes={"n": "symbolic", "p": "symbolic", "m": "symbolic"})
    derivation = check_derivation(derive_problem(problem))
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]


# -- the convention at a kink --------------------------------------------------------------------
def test_the_kink_convention_is_the_minimum_norm_subgradient():
    x, a = Symbol("x", real=True), Rational(1, 10)
    zero = Integer(0)
    derivative = lambda name, *args: ELEMENTWISE[name].derivative(ELEMENTWISE[name].value(*args), *args)  # noqa: E731
    assert derivative("relu", zero) == 0  # not SymPy's Heaviside(0) = 1/2
    assert derivative("abs", zero) == 0
    assert derivative("leaky_relu", zero, a) == a
    assert derivative("maximum", zero, zero) == Rational(1, 2)
    assert ELEMENTWISE["maximum"].partial(1)(0, zero, zero) == Rational(1, 2)
    assert derivative("minimum", zero, zero) == Rational(1, 2)
    assert derivative("clip", Integer(-1), Integer(-1), Integer(1)) == 0
    assert derivative("clip", Integer(1), Integer(-1), Integer(1)) == 0
    assert derivative("clip", zero, Integer(-1), Integer(1)) == 1
    # and it is what SymPy's diff gives away from the kink
    for name in ("relu", "abs"):
        f = ELEMENTWISE[name]
        for value in (Rational(-3, 2), Rational(5, 4)):
            assert f.value(x).diff(x).xreplace({x: value}) == f.derivative(f.value(x), x).xreplace({x: value})
    assert Heaviside(0) == Rational(1, 2)  # the pitfall the convention avoids


def test_the_numeric_check_never_evaluates_at_a_kink():
    from sympy import IndexedBase

    from symgrad.model import Model

    z = IndexedBase("z", real=True)
    model = Model(name="t", sizes={"n": 1}, shapes={z: (Integer(1),)}, scalars=(), definitions=(), assumptions={})
    program = NumericProgram(ConcreteModel(model))
    import mpmath

    for expr in (Heaviside(z[1], 0), Max(0, z[1]) - z[1], abs(z[1])):
        compiled = program.compile(expr)
        with pytest.raises(AtKink):
            compiled(program.state_from([mpmath.mpf(0)], {}))
        compiled(program.state_from([mpmath.mpf("0.5")], {}))


# -- identities, decided by cases ----------------------------------------------------------------
def _verify(tmp_path, lhs, rhs, variables='{ x = "n" }', n="[1, 2]"):
    path = tmp_path / "ids.toml"
    path.write_text(f'[[identity]]\nname = "t"\nvars = {variables}\nn = {n}\nlhs = "{lhs}"\nrhs = "{rhs}"\n',
                    encoding="utf-8")
    (identity,) = load_file(path)
    return [check_at_size(identity, size) for size in identity.sizes]


@pytest.mark.parametrize("lhs, rhs, holds", [
    ("relu(x) - relu(-x)", "x", True),
    ("abs(x)", "relu(x) + relu(-x)", True),
    ("maximum(x, 0.5) + minimum(x, 0.5)", "x + 0.5", True),
    ("clip(x, -1, 1)", "maximum(-1, minimum(x, 1))", True),
    ("leaky_relu(x, 0.25)", "relu(x) - 0.25 * relu(-x)", True),
    ("huber(x, 2)", "x**2 / 2 - relu(abs(x) - 2)**2 / 2", True),
    ("grad(sum(huber(x, 1.5)), x)", "clip(x, -1.5, 1.5)", True),
    ("grad(sum(relu(x)), x)", "relu(x) / x", True),
    # false only far from [−2, 2]: refuted from the cases, never "holds" by sampling
    ("relu(x - 1000)", "0 * x", False),
    ("abs(x + 1000)", "x + 1000", False),
    ("clip(x, -1000, 1000)", "x", False),
    ("huber(x, 1000)", "x**2 / 2", False),
    ("maximum(x, 5000)", "5000 + 0 * x", False),
    # false near the origin
    ("relu(x)", "abs(x)", False),
    ("maximum(x, 0)", "x", False),
])
def test_verify_decides_identities_with_kinks(tmp_path, lhs, rhs, holds):
    for result in _verify(tmp_path, lhs, rhs):
        assert result.holds is holds, (result.method, result.detail)
        if holds:
            assert "almost everywhere" in result.method or "almost everywhere" in result.detail
        else:
            assert "at x" in result.detail or "x[" in result.detail  # the counterexample is shown


@settings(max_examples=15, deadline=None)
@given(st.integers(-10 ** 6, 10 ** 6), st.integers(1, 10 ** 4))
def test_far_away_kinks_are_found_wherever_they_are(c, width):
    """relu(x − c) = 0 is false for x > c, and clip(x, c, c + w) = x false outside [c, c + w],
    whatever c: refuted; relu(x − c) − relu(c − x) = x − c holds."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        assert _verify(tmp, f"relu(x - {c})", "0 * x", n="[1]")[0].holds is False
        assert _verify(tmp, f"clip(x, {c}, {c + width})", "x", n="[1]")[0].holds is False
        assert _verify(tmp, f"relu(x - {c}) - relu({c} - x)", f"x - {c}", n="[1]")[0].holds is True


def test_regions_drop_empty_ones_exactly_and_find_points_in_the_others():
    x = Symbol("x", real=True)
    leaves = regions(Max(0, x) - Max(0, -x) - x)
    assert all(value == 0 for _, value in leaves)
    leaves = regions(Max(0, x - 1000))
    inside = [linear_witness(conditions)[1] for conditions, value in leaves if value != 0]
    assert inside and all(point[x] > 1000 for point in inside)
    y = Symbol("y", real=True)
    decided, point = linear_witness(((x - y, 1), (y - 3, 1), (x - 2, -1)))  # x > y > 3, x < 2: empty
    assert decided and point is None
    decided, point = linear_witness(((x - y, 1), (y - 3, 1), (x - 7, -1)))
    assert decided and point[x] > point[y] > 3 and point[x] < 7


# -- against JAX -----------------------------------------------------------------------------------
JAX_LOSSES = {
    "dot(v, relu(z))": lambda jnp, jax, z, v, y: jnp.dot(v, jax.nn.relu(z)),
    "dot(v, leaky_relu(z, 0.1))": lambda jnp, jax, z, v, y: jnp.dot(v, jax.nn.leaky_relu(z, 0.1)),
    "sum(abs(z - y))": lambda jnp, jax, z, v, y: jnp.sum(jnp.abs(z - y)),
    "dot(v, maximum(z, y))": lambda jnp, jax, z, v, y: jnp.dot(v, jnp.maximum(z, y)),
    "dot(v, minimum(z, 0.5))": lambda jnp, jax, z, v, y: jnp.dot(v, jnp.minimum(z, 0.5)),
    "mean(maximum(0, 1 - y * z))": lambda jnp, jax, z, v, y: jnp.mean(jnp.maximum(0.0, 1 - y * z)),
    "dot(v, clip(z, -1, 1))": lambda jnp, jax, z, v, y: jnp.dot(v, jnp.clip(z, -1.0, 1.0)),
    "sum(huber(z - y, 1.5))": lambda jnp, jax, z, v, y: jnp.sum(jnp.where(
        jnp.abs(z - y) <= 1.5, (z - y) ** 2 / 2, 1.5 * (jnp.abs(z - y) - 0.75))),
    "mean(relu(z) * relu(z))": lambda jnp, jax, z, v, y: jnp.mean(jax.nn.relu(z) ** 2),
}


@pytest.mark.parametrize("text, variables", BY_CASES, ids=[t for t, _ in BY_CASES])
def test_each_function_by_cases_matches_jax_grad_on_every_side(text, variables):
    jax = pytest.importorskip("jax", reason="JAX is not installed (pip install 'jax[cpu]'): compared with "
                                            "finite differences only")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    derivation = check_derivation(derive_problem(Problem(text, variables, wrt="z", size=N)))
    final = _final(derivation)
    loss = _loss(text, variables)
    function = JAX_LOSSES[text]
    for point in _points(loss, variables, seed=f"jax:{text}"):
        vectors = {name: jnp.array([float(point[a]) for a in _base(name, "n")]) if name in variables
                   else jnp.zeros(N) for name in ("z", "v", "y")}
        expected = jax.grad(lambda z: function(jnp, jax, z, vectors["v"], vectors["y"]))(vectors["z"])
        for k in range(N):
            derived = float(final[k].xreplace(point).evalf(30))
            assert abs(derived - float(expected[k])) < 1e-12 * max(1, abs(derived)), (text, point, k)


def test_exact_point_values_of_cases_are_rational():
    """The exact evaluator decides a Piecewise and a Heaviside at rational points (a counterexample
    no rounding can hide) and calls a point outside every case undefined."""
    from sympy import IndexedBase, Piecewise

    from symgrad.model import Model
    from symgrad.verify.rational import ExactEvaluator, Undefined

    z = IndexedBase("z", real=True)
    model = Model(name="t", sizes={"n": 1}, shapes={z: (Integer(1),)}, scalars=(), definitions=(), assumptions={})
    evaluator = ExactEvaluator(ConcreteModel(model))
    at = lambda value: {z[1]: Fraction(value)}  # noqa: E731
    assert evaluator.value(Heaviside(z[1], 0), at(0), {}) == 0
    assert evaluator.value(Heaviside(z[1]), at(0), {}) == Fraction(1, 2)
    assert evaluator.value(Max(0, z[1] - 1000), at(1001), {}) == 1
    with pytest.raises(Undefined):
        evaluator.value(Piecewise((1, z[1] > 0), (0, z[1] < 0)), at(0), {})


# -- every region at once: the indicator route agrees with the regions taken one by one -----------
_X, _Y = Symbol("x", real=True), Symbol("y", real=True)
_ATOMS = [_X, _Y, _X - _Y, _X + 1, 2 * _Y - 3]


@st.composite
def kinked_expressions(draw):
    """A small random sum of products of kinked functions (relu, |·|, H, sign, max, min, a
    two-case Piecewise) of linear arguments in x and y, and smooth factors."""
    from sympy import Abs, Min, Piecewise, sign

    def kinked():
        a, b = draw(st.sampled_from(_ATOMS)), draw(st.sampled_from(_ATOMS))
        kind = draw(st.sampled_from(["relu", "abs", "H", "sign", "max", "min", "cases"]))
        return {"relu": lambda: Max(0, a), "abs": lambda: Abs(a), "H": lambda: Heaviside(a),
                "sign": lambda: sign(a), "max": lambda: Max(a, b), "min": lambda: Min(a, b),
                "cases": lambda: Piecewise((a * b, a > 0), (b, True))}[kind]()

    terms = []
    for _ in range(draw(st.integers(1, 4))):
        factor = kinked() * draw(st.sampled_from([1, -1, 2, _X, _Y, _X * _Y]))
        if draw(st.booleans()):
            factor *= kinked()
        terms.append(factor)
    return sum(terms)


@settings(max_examples=60, deadline=None)
@given(kinked_expressions(), kinked_expressions())
def test_every_region_at_once_proves_only_what_holds_region_by_region(first, second):
    """An identity the indicator route proves (each kink's [g > 0] a 0/1 variable) is zero on
    every nonempty region, checked region by region with its own exact point; and the same
    identity made false on one region (a difference plus a kinked term) is not proven."""
    from sympy import expand, sign

    from symgrad.verify.exact import _zero_on_every_region_at_once

    from sympy import Abs

    # the same function written another way: relu(a) = a H(a), |a| = a sign(a)
    rewritten = first.replace(lambda e: isinstance(e, Max) and e.args[0] == 0 and len(e.args) == 2,
                              lambda e: e.args[1] * Heaviside(e.args[1]))
    rewritten = rewritten.replace(lambda e: isinstance(e, Abs), lambda e: e.args[0] * sign(e.args[0]))
    true_one, false_one = first - rewritten, first - rewritten + Max(0, _X - 1000)
    for difference in (first - second, true_one, false_one):
        note = _zero_on_every_region_at_once(difference)
        if note is None:
            continue
        for conditions, leaf in regions(difference):
            decided, point = linear_witness(conditions)
            if point is not None:
                value = leaf.xreplace({v: Rational(p.numerator, p.denominator) for v, p in point.items()})
                assert expand(value) == 0, (difference, conditions)
    if true_one != 0:
        assert _zero_on_every_region_at_once(true_one) is not None, true_one
    assert _zero_on_every_region_at_once(false_one) is None


@st.composite
def smooth_kink_arguments(draw):
    """A kink argument as a network makes them: sums of products of rationals, variables and
    tanh / exp / log of such sums (what a ReLU after a tanh layer has as its kink)."""
    variables = [Symbol(name, real=True) for name in ("x", "w", "b")]

    def term(depth):
        factor = Rational(draw(st.integers(-9, 9)), draw(st.integers(1, 7)))
        chosen = draw(st.lists(st.sampled_from(variables), min_size=0, max_size=2))
        value = factor
        for v in chosen:
            value *= v
        if depth < 2 and draw(st.booleans()):
            inner = term(depth + 1) + draw(st.sampled_from(variables))
            wrap = draw(st.sampled_from([tanh, exp, lambda u: log(1 + u ** 2)]))
            value *= wrap(inner)
        return value

    g = sum((term(0) for _ in range(draw(st.integers(1, 3)))), Integer(0))
    assume(g.free_symbols)  # a kink argument varies
    return g


@settings(max_examples=80, deadline=None)
@given(smooth_kink_arguments(), st.lists(st.fractions(-8, 8, max_denominator=64), min_size=3, max_size=3))
@example(exp(Symbol("x", real=True) + exp(4 * Symbol("x", real=True))), [Fraction(13, 2), Fraction(0), Fraction(0)])
@example(exp(Symbol("x", real=True) + exp(Symbol("x", real=True) ** 2 + Symbol("x", real=True))),
         [Fraction(13, 2), Fraction(0), Fraction(0)])
def test_a_kink_compiled_for_the_region_search_has_the_sign_sympy_gives(g, values):
    """The region search evaluates kinks in mpmath (``exact._mpmath_closure``); SymPy's own
    ``evalf`` at 30 digits is the reference, at the same rational point."""
    from symgrad.verify.exact import _exact_at

    point = dict(zip(sorted(g.free_symbols, key=str), values))
    point.update({v: Fraction(0) for v in (Symbol(n, real=True) for n in ("x", "w", "b")) if v not in point})
    reference = g.xreplace({v: Rational(f.numerator, f.denominator) for v, f in point.items()}).evalf(30)
    try:
        fast = _exact_at(g, point)
    except ValueError:  # refused: too near 0 (both then agree it is no witness)
        assert abs(reference) < 1e-9
        return
    with mpmath.workdps(40):
        if isinstance(fast, Fraction):  # a polynomial kink: exact
            fast = mpmath.mpf(fast.numerator) / fast.denominator
        expected = mpmath.mpf(str(reference))
        # 30 working digits: e^{x + e^{4x}} at x = 6.5 takes e of 1.96·10¹¹, whose 30 digits leave
        # 19 after the point, so the value is good to about 10⁻¹⁹ (hypothesis found it), and
        # e^{x + e^{x² + x}} takes e of 1.5·10²¹, good to about 10⁻⁹: the relative tolerance
        # follows the size of the exponent. Only the sign is used, and values this near 0 are refused
        exponent_digits = mpmath.log10(max(1, abs(mpmath.log(abs(expected))))) if expected else 0
        tolerance = max(mpmath.mpf(10) ** -12, mpmath.mpf(10) ** (exponent_digits - 28))
        assert abs(fast - expected) <= tolerance * max(1, abs(expected))
    assert (fast > 0) == (reference > 0)


# -- the kink skeleton: witness points for every region of an entry, shared by its steps -------------------
def _witnessed(value, witnesses):
    """Every region of ``value`` that is not empty holds one of the witness points: a point that fixes every
    variable of the region's kinks and gives each kink the region's sign."""
    from sympy import Rational as R

    def inside(conditions, point):
        if any(x not in point for g, _ in conditions for x in g.free_symbols):
            return False
        return all(g.xreplace({x: R(p) for x, p in point.items()}) * s > 0 for g, s in conditions)

    def empty(conditions):
        decided, point = linear_witness(conditions)
        return decided and point is None

    return all(any(inside(conditions, point) for _, point in witnesses)
               for conditions, _ in regions(value) if not empty(conditions))


@given(st.lists(st.tuples(st.sampled_from(["max", "min", "abs", "piecewise"]), st.integers(-3, 3),
                          st.integers(-2, 2), st.integers(-1000, 1000)), min_size=1, max_size=4))
@example([("max", 1, 1, 1000), ("min", 2, -1, -1000), ("max", 1, 0, 0)])  # the reviewer's cancellation
@example([("piecewise", 1, 1, 1000), ("piecewise", 2, -1, 1000)])
@settings(max_examples=40, deadline=None)
def test_every_region_of_an_entry_gets_a_point_from_its_skeleton(terms):
    """The skeleton (its kinked nodes alone, in a tuple) is asked for the points, not the entry:
    whatever the coefficients cancel in the entry, each of the entry's own regions holds one."""
    from sympy import Abs, Min, Piecewise

    from symgrad.verify.cases import kink_skeleton
    from symgrad.verify.exact import _in_every_region

    x, y = Symbol("x", real=True), Symbol("y", real=True)
    value = Integer(0)
    for kind, coefficient, sign, shift in terms:
        inner = Abs(y + shift)
        node = {"max": Max(x + sign * inner, inner), "min": Min(-x - inner, sign * inner), "abs": Abs(x + sign * inner),
                "piecewise": Piecewise((sign * inner, x > 0), (1, True))}[kind]
        value += coefficient * node
    assume(value.has(*KINKED))
    assert _witnessed(value, _in_every_region(kink_skeleton(value)))
