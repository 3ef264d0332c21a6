"""What `verify` reports must be true (issue 9): each test asserts on the checker's verdict.

A verdict is ``holds``: True (proven), False (refuted) or None (undecided). Each class of wrong
verdict found by fuzzing has a test for the reported instance and one for a variant of it.
"""

import ast
import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sympy import Symbol, expand

from symgrad.identity_file import load_file
from symgrad.verify.identity import _abbreviate_sums_of_exponentials, build_at_size, check_at_size, check_identity
from support import run

VERIFY = Path(__file__).resolve().parent.parent / "symgrad" / "verify"


def identity(tmp_path, lhs, rhs, variables='{ z = "n" }', n="[2]", assume=(), name="t"):
    """One identity, loaded the way `symgrad verify` loads it."""
    path = tmp_path / f"{abs(hash((lhs, rhs, variables, n, tuple(assume))))}.toml"
    path.write_text(f"[[identity]]\nname = {json.dumps(name)}\nvars = {variables}\nn = {n}\n"
                    f"assume = {json.dumps(list(assume))}\n"
                    f"lhs = {json.dumps(lhs)}\nrhs = {json.dumps(rhs)}\n", encoding="utf-8")
    return load_file(path)[0]


def verdict(tmp_path, lhs, rhs, **kw):
    return check_identity(identity(tmp_path, lhs, rhs, **kw))


# -- 1. assumptions attached to fresh symbols must hold for every value --------------------------
def test_square_root_of_a_complex_sum_squared_is_refuted(tmp_path):
    result = verdict(tmp_path, "(sum(exp((9*z)**0.5))**2)**0.5", "sum(exp((9*z)**0.5))")
    assert result.holds is False


def test_sum_of_exponentials_is_positive_only_for_real_exponents(tmp_path):
    one = identity(tmp_path, "sum(exp((9*z)**0.5))", "sum(exp(z))")
    lhs, rhs, _ = build_at_size(one, 2)
    (complex_sum, real_sum), definitions = _abbreviate_sums_of_exponentials([lhs, rhs])
    assert complex_sum.is_positive is None and real_sum.is_positive is True
    # with real exponents the positive symbol is sound, and still proves √(S²) = S
    assert verdict(tmp_path, "(sum(exp(z))**2)**0.5", "sum(exp(z))").holds is True


@pytest.mark.parametrize("lhs, rhs", [("(z**2)**0.5", "z"), ("(T**2)**0.5", "T")])
def test_absolute_value_is_evaluated_and_refutes_abs_s_equals_s(tmp_path, lhs, rhs):
    result = verdict(tmp_path, lhs, rhs, variables='{ z = "n", T = "scalar" }')
    assert result.holds is False


# -- 2. a check that checked nothing has no verdict ----------------------------------------------
def test_no_sizes_is_not_holds(tmp_path):
    empty = dataclasses.replace(identity(tmp_path, "z", "z"), sizes=())
    assert check_identity(empty).holds is None
    assert dataclasses.replace(empty, sizes=("symbolic",)) and check_identity(
        dataclasses.replace(empty, sizes=("symbolic",))).holds is None


# -- 3. a numeric disagreement refutes only once confirmed ---------------------------------------
def test_cancellation_does_not_refute_a_true_identity(tmp_path):
    result = verdict(tmp_path, "(T + 1e60)**2 - 1e120 - 2e60*T", "T**2", variables='{ T = "scalar" }', n="[1]")
    assert result.holds is True


def test_cancellation_under_an_exponential_is_resolved_by_higher_precision(tmp_path):
    # exp(T) is irrational at the sample point: the exact confirmation cannot be used, the
    # precision is raised instead
    result = verdict(tmp_path, "exp(T) * ((T + 1e60)**2 - 1e120 - 2e60*T)", "exp(T) * T**2",
                     variables='{ T = "scalar" }', n="[1]")
    assert result.holds is not False


# -- 4. a point where a side is not finite is not a counterexample ------------------------------
def test_log_of_zero_on_both_sides_is_not_refuted(tmp_path):
    result = verdict(tmp_path, "log(1 - y)", "log(1 - y)", variables='{ y = "n" }', n="[1]",
                     assume=["sum(y) == 1"])
    assert result.holds is None
    assert "defined nowhere" in result.results[0].detail


def test_division_by_zero_everywhere_is_not_refuted(tmp_path):
    result = verdict(tmp_path, "1 / (1 - y)", "2 / (2 - 2*y)", variables='{ y = "n" }', n="[1]",
                     assume=["sum(y) == 1"])
    assert result.holds is None


# -- 5. refute exactly what 50 digits cannot see -------------------------------------------------
def test_huge_power_off_by_one_is_refuted_exactly(tmp_path):
    result = verdict(tmp_path, "((z + 1)**64)**64", "((1 + z)**64)**64 + 1")
    assert result.holds is False
    assert result.results[0].detail.startswith("refuted exactly")


def test_sum_off_by_1e_30_is_refuted_exactly(tmp_path):
    result = verdict(tmp_path, "sum((z + y)**64) * sum((z - y)**64)",
                     "sum((z + y)**64) * sum((z - y)**64) + 1e-30", variables='{ z = "n", y = "n" }', n="[64]")
    assert result.holds is False


def test_softmax_off_by_1e_40_is_refuted_at_exponential_points(tmp_path):
    # z = log r makes softmax rational: the exact difference is the 1e-40 the numeric check misses
    result = verdict(tmp_path, "softmax(z)", "softmax(z) + 1e-40", n="[3]")
    assert result.holds is False
    assert "log(" in result.results[0].detail


@given(st.integers(-2**20, 2**20), st.integers(0, 40))
def test_sample_points_convert_exactly(numerator, shift):
    import mpmath

    from symgrad.verify.rational import to_fraction

    assert to_fraction(mpmath.mpf(numerator) / 2**shift) == Fraction(numerator, 2**shift)


def test_log_form_zero_test():
    from symgrad.verify.rational import LogForm, is_zero

    assert is_zero(LogForm(Fraction(0), ((Fraction(2), Fraction(2)), (Fraction(4), Fraction(-1)))))
    assert not is_zero(LogForm(Fraction(0), ((Fraction(2), Fraction(1)), (Fraction(3), Fraction(-1)))))
    assert not is_zero(LogForm(Fraction(1), ((Fraction(2), Fraction(1)),)))


# -- 6. exact proofs in the exp–log family; random exact evaluation is never a proof -------------
@pytest.mark.parametrize("lhs, rhs", [
    ("tanh(z)", "(exp(2*z) - 1)/(exp(2*z) + 1)"),
    ("grad(sum(sigmoid(z)), z)", "exp(-z)/(1 + exp(-z))**2"),
    ("tanh(z)", "2*sigmoid(2*z) - 1"),
    ("logsumexp(z) - z", "-log(softmax(z))"),
])
def test_exp_log_identities_are_proven_exactly(tmp_path, lhs, rhs):
    result = verdict(tmp_path, lhs, rhs)
    assert result.holds is True and result.results[0].method.startswith("exact")


def test_false_exp_log_identity_is_refuted(tmp_path):
    assert verdict(tmp_path, "tanh(z)", "2*sigmoid(z) - 1").holds is False


def test_random_exact_evaluation_is_not_a_proof(tmp_path):
    # √(z² + 2z + 1) = |z + 1| is true, but no rewrite here proves it: equal at random rational
    # points is reported as evidence and the verdict stays undecided. (sign(z)·z = |z|, the
    # example before, is now proven by cases: on z > 0 and on z < 0.)
    result = verdict(tmp_path, "(z**2 + 2*z + 1)**0.5", "abs(z + 1)")
    assert result.holds is None
    assert "not a proof" in result.results[0].detail


# -- 7. constant and unusable assumptions end in a clean verdict ---------------------------------
@pytest.mark.parametrize("assumption", ["0 == 1", "1 == 1", "sum(y) == sum(y)", "sum(y) == sum(y) + 1"])
def test_constant_assumptions_are_input_errors(tmp_path, assumption):
    """An assumption that is always true or always false constrains nothing: the file is
    refused when read, with one line that says so (never a traceback, never "holds")."""
    from symgrad.errors import UsageError

    with pytest.raises(UsageError, match="always (true|false)|constrains nothing"):
        verdict(tmp_path, "y", "y", variables='{ y = "n" }', assume=[assumption])


def test_an_assumption_the_checker_cannot_solve_is_undecided(tmp_path):
    assert verdict(tmp_path, "y", "y", variables='{ y = "n" }', assume=["sum(y**2) == 1"]).holds is None


def test_assumptions_are_used_together(tmp_path):
    # both solve for y[2]: solved one at a time, the first was dropped and x = 1 "failed"
    result = verdict(tmp_path, "x", "1", variables='{ y = "n", x = "scalar" }',
                     assume=["sum(y) == 1", "sum(y) + x == 2"])
    assert result.holds is True
    contradictory = verdict(tmp_path, "x", "x", variables='{ y = "n", x = "scalar" }',
                            assume=["sum(y) == 1", "sum(y) == 2"])
    assert contradictory.holds is None and "contradictory" in contradictory.results[0].detail


def test_an_exception_inside_the_checker_is_an_undecided_verdict_naming_it(tmp_path, monkeypatch):
    import symgrad.verify

    def broken(self, step, seed):
        raise KeyError("extended_real")
    monkeypatch.setattr(symgrad.verify.StepChecker, "check", broken)
    result = check_at_size(identity(tmp_path, "z", "z"), 2)
    assert result.holds is None and "KeyError" in result.detail


# -- 8. layering: a verifier does not reach up to the API ----------------------------------------
def test_verify_imports_no_api_cli_or_output():
    for module in VERIFY.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("symgrad.api", "symgrad.cli", "symgrad.output")), (module.name, name)


# -- properties ---------------------------------------------------------------------------------
z = Symbol("z")
polynomials = st.builds(lambda a, b, k: (a * z + b) ** k,  # coefficients below the language's 10^12
                        st.fractions(-3, 3, max_denominator=3).filter(bool),
                        st.fractions(-3, 3, max_denominator=3), st.integers(1, 8))
FORMS = {"z": z, "exp(z)": Symbol("E_z")}


def _text(expr, form):
    return str(expr.subs(z, Symbol("E_z"))).replace("E_z", "exp(z)") if form == "exp(z)" else str(expr)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(polynomials, st.sampled_from(sorted(FORMS)), st.integers(1, 60))
def test_true_is_never_refuted_and_perturbed_is_refuted(tmp_path, polynomial, form, digits):
    """(a·u + b)^k against its expansion (u = z or e^z) is never refuted; adding 10^-d refutes it."""
    written = _text(polynomial, form)
    expanded = _text(expand(polynomial), form)
    assert verdict(tmp_path, written, expanded, n="[1]").holds is not False
    assert verdict(tmp_path, written, f"{expanded} + 1e-{digits}", n="[1]").holds is False


def test_cli_exit_codes(tmp_path):
    false = identity(tmp_path, "(sum(exp((9*z)**0.5))**2)**0.5", "sum(exp((9*z)**0.5))").path
    true = identity(tmp_path, "(T + 1e60)**2 - 1e120 - 2e60*T", "T**2", variables='{ T = "scalar" }').path
    assert run("verify", str(false)).returncode == 1
    assert run("verify", str(true)).returncode == 0


class _NoAbbreviations:
    def is_abbreviation(self, atom):
        return False


Z = Symbol("z", real=True)


def _leaves():
    from sympy import Rational, exp, log, tanh

    return st.sampled_from([Z, exp(Z), exp(-2 * Z), tanh(Z), log(1 + exp(Z)), Rational(3, 2), -1])


expressions = st.recursive(_leaves(), lambda inner: st.one_of(
    st.tuples(inner, inner).map(lambda t: t[0] + t[1]),
    st.tuples(inner, inner).map(lambda t: t[0] - t[1]),
    st.tuples(inner, inner).map(lambda t: t[0] * t[1]),
    st.tuples(inner, inner).map(lambda t: t[0] / t[1] if t[1] != 0 else t[0]),
    st.tuples(inner, st.integers(-3, 3)).map(lambda t: t[0] ** t[1] if t[0] != 0 else t[0])), max_leaves=6)


@settings(max_examples=60, deadline=None)
@given(expressions, st.integers(1, 12), st.integers(1, 6))
def test_exact_evaluation_agrees_with_mpmath(expr, p, q):
    """Where the exact evaluator gives a value at z = log(p/q), it is the value (to 30 digits)."""
    import mpmath
    from sympy import log

    from symgrad.verify.rational import ExactEvaluator, LogForm, NotExact, Undefined

    r = Fraction(p, q)
    point = {Z: LogForm(Fraction(0), ((r, Fraction(1)),)) if r != 1 else Fraction(0)}
    try:
        value = ExactEvaluator(_NoAbbreviations()).value(expr, point, {})
    except (NotExact, Undefined):
        return
    with mpmath.workdps(50):
        reference = complex(expr.subs(Z, log(r)).evalf(60))
        if isinstance(value, Fraction):
            mine = mpmath.mpf(value.numerator) / value.denominator
        else:
            mine = value.q + sum(c.numerator * mpmath.log(mpmath.mpf(rr.numerator) / rr.denominator) / c.denominator
                                 for rr, c in value.logs)
        assert abs(complex(mine) - reference) <= 1e-9 * max(1, abs(reference))


def test_an_index_free_and_bound_in_one_step_gets_no_range_from_its_sum():
    """q runs over 1..p; a step that uses q outside a sum while another sum binds q over 1..n
    must not read Σ_i δ_iq X_qt = [q ≤ n] X_qt as X_qt "since q runs over 1..n" (false for
    q > n). Proven before the fix (one side; and, once each side was normalised alone, two)."""
    from sympy import KroneckerDelta, Sum

    from symgrad.derivation.engine import Problem, derive_problem
    from symgrad.steps import Rule, Step
    from symgrad.verify.index_form import IndexProver

    derivation = derive_problem(Problem("cross_entropy(softmax(W @ X + b), Y) / m",
                                        {"W": "n x p", "X": "p x m", "b": "n", "Y": "n x m"}, wrt="W",
                                        assume=("colsum(Y) == 1",),
                                        sizes={"n": "symbolic", "p": "symbolic", "m": "symbolic"}))
    model = derivation.model
    shapes = {b.name: b for b in model.shapes}
    X, Y = shapes["X"], shapes["Y"]
    i, t, q, r = ({x.name: x for x in model.index_ranges}[name] for name in "itqr")
    n, p = model.size_symbols()["n"], model.size_symbols()["p"]
    assert model.range_of(q) == p != n
    delta_term = Sum(KroneckerDelta(i, q) * X[q, t], (i, 1, n))
    for lhs, rhs in [(delta_term + Sum(Y[q, t], (q, 1, n)), X[q, t] + Sum(Y[i, t], (i, 1, n))),
                     (delta_term + Sum(Y[q, t], (q, 1, n)) + Sum(X[r, t], (r, 1, p)),
                      X[q, t] + Sum(Y[i, t], (i, 1, n)) + Sum(X[q, t], (q, 1, p)))]:
        for free in [(t,), (q, t)]:
            assert not IndexProver(model).prove(Step("t", Rule.SIMPLIFY, lhs, rhs, free, ()), []).proven
