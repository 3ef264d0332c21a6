"""A two-layer network at symbolic sizes (issue 15): every step of ∂J/∂W1 proven for all n, h, p, m
in index notation; a corrupted step never reported proven; each matrix read at indices whose range
is that dimension (H, of size h × m, is not read at i, which runs over 1..n); a normal form that
does not terminate ends as *undecided*, never as an internal error (it was a RecursionError)."""

from dataclasses import replace
from functools import lru_cache

import pytest
from sympy import Indexed, KroneckerDelta, Piecewise, Sum
from sympy.matrices.expressions import MatrixExpr

from symgrad.derivation.engine import Problem, derive_problem
from symgrad.output.status import status_words
from symgrad.steps import Rule
from symgrad.verify import check_derivation
from symgrad.verify import index_form
from symgrad.verify.index_form import IndexProver, NotGeneric

NETWORK = "cross_entropy(softmax(W2 @ tanh(W1 @ X + b1) + b2), Y) / m"
VARIABLES = {"W1": "h x p", "X": "p x m", "b1": "h", "W2": "n x h", "b2": "n", "Y": "n x m"}
SYMBOLIC = {"n": "symbolic", "h": "symbolic", "p": "symbolic", "m": "symbolic"}


@lru_cache(maxsize=None)
def _derived(wrt: str = "W1"):
    return derive_problem(Problem(NETWORK, VARIABLES, wrt=wrt, assume=("colsum(Y) == 1",), sizes=SYMBOLIC))


@lru_cache(maxsize=None)
def _checked(wrt: str = "W1"):
    return check_derivation(_derived(wrt))


def _base(derivation, name: str):
    return next(b for b in derivation.model.shapes if b.name == name)


def _equations(derivation, step):
    return [derivation.model.assumptions[name].equation for name in step.assumptions]


def _check_alone(derivation, step):
    (checked,) = check_derivation(derivation.with_steps([step])).steps
    return checked.check


# -- (1) the hidden layer's gradient, every step proven for all n, h, p, m ----------------------
def test_two_layer_gradient_by_w1_is_proven_for_all_sizes():
    derivation = _checked("W1")
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    for step in derivation.steps:
        assert step.check.exact is True and step.check.numeric is True, step.title
        assert step.check.scope.startswith("all "), step.title
        assert set(step.check.scope[len("all "):].split(", ")) == set(SYMBOLIC), step.check.scope
        assert "in index notation" in step.check.detail, step.title
    last = derivation.steps[-1]
    assert last.rule is Rule.MATRIX_FORM
    assert tuple(last.lhs.x.shape) == tuple(derivation.model.shapes[_base(derivation, "W1")])


@pytest.mark.parametrize("wrt", ["W2", "b1"])
def test_the_other_weights_are_proven_for_all_sizes(wrt):
    """b1 ends on Σ_s Σ_i W2_id Y_is on one side and Σ_i W2_id Σ_s Y_is on the other: the same
    sum, once flattened by SymPy, normalised alike."""
    derivation = _checked(wrt)
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    assert all(step.check.scope.startswith("all ") for step in derivation.steps)


def test_logistic_regression_by_its_weights_is_proven_for_all_sizes():
    """σ(u)(1 − σ(u)) reached two ways, in two sums over the same range: cancelled summand by
    summand once the sums are added."""
    derivation = check_derivation(derive_problem(Problem(
        "binary_cross_entropy(sigmoid(X @ w), y)", {"X": "n x p", "w": "p", "y": "n"}, wrt="w",
        sizes={"n": "symbolic", "p": "symbolic"})))
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    assert all(step.check.scope == "all n, p" for step in derivation.steps)
    prover = IndexProver(derivation.model)
    for step in derivation.steps[-2:]:  # the index form and the vector form, each doubled
        assert not prover.prove(replace(step, rhs=step.rhs * 2), []).proven, step.title


def test_every_matrix_is_read_at_indices_of_its_own_ranges():
    """With several sizes the model's ``index_bound`` is the first shape's row size (h, W1 being
    h × p); the entry of H (h × m) used to be read at i, declared over 1..n. The prover then could
    not resolve SymPy's ``Piecewise((…, i <= h), …)`` — and recursed — and the fixed-size checker
    would sample i over the wrong range."""
    derivation = _derived("W1")
    model = derivation.model
    prover = IndexProver(model)
    read = 0
    for step in derivation.steps:
        side = step.lhs if isinstance(step.lhs, MatrixExpr) else step.rhs
        if not isinstance(side, MatrixExpr):
            continue
        _, _, free = prover.index_form(step)
        dimensions = [d for d in side.shape if d != 1]
        assert [model.range_of(x) for x in free] == dimensions, (step.title, free, side.shape)
        read += 1
    assert read >= 4


# -- (2) a corrupted step is never proven -------------------------------------------------------
def _transpose_x(derivation, expr):
    X = _base(derivation, "X")
    return expr.replace(lambda e: isinstance(e, Indexed) and e.base == X, lambda e: X[e.indices[1], e.indices[0]])


def _flip_tanh_derivative(derivation, expr):
    """1 − H² as 1 + H²: a plausible slip in the elementwise factor."""
    H = next(b for b in derivation.model.abbreviation_shapes if b.name == "H")
    return expr.replace(lambda e: e.is_Pow and isinstance(e.base, Indexed) and e.base.base == H and e.exp == 2,
                        lambda e: -e)


@pytest.mark.parametrize("rule, how", [
    (Rule.MATRIX_FORM, "double"),     # ((W2ᵀ(A − Y)) ⊙ (1 − H^⊙2)) Xᵀ · 2 / m
    (Rule.SIMPLIFY, "double"),        # the index form, doubled
    (Rule.SIMPLIFY, "transpose"),     # X_qs read as X_sq
    (Rule.SIMPLIFY, "sign"),          # (1 + H_ds²) for (1 − H_ds²)
])
def test_a_corrupted_step_is_not_proven(rule, how):
    derivation = _derived("W1")
    step = [s for s in derivation.steps if s.rule is rule][-1]
    rhs = {"double": lambda: step.rhs * 2,
           "transpose": lambda: _transpose_x(derivation, step.rhs),
           "sign": lambda: _flip_tanh_derivative(derivation, step.rhs)}[how]()
    assert rhs != step.rhs
    bad = replace(step, rhs=rhs)
    assert not IndexProver(derivation.model).prove(bad, _equations(derivation, bad)).proven
    check = _check_alone(derivation, bad)
    assert not check.proven and check.exact is not True, check.detail
    assert not check.scope.startswith("all") and not status_words(check).startswith("checked")
    if how in ("double", "sign"):  # shapes intact: some instance refutes it
        assert check.exact is False and check.detail.startswith("refuted at "), check.detail


# -- (3) no internal error: what the normal form cannot settle is undecided ---------------------
def test_an_index_of_another_range_is_undecided_not_a_recursion_error():
    """The issue's crash, rebuilt by hand: the entry of ∂L/∂H read at i (declared over 1..n, H has
    h rows). The delta summation's Piecewise on i <= h stays unresolved, and used to be summed
    over the wrong limit of Σ_i Σ_s until Python's stack ran out. Now: not proven, no exception."""
    derivation = _derived("W1")
    model = derivation.model
    prover = IndexProver(model)
    H = next(b for b in model.abbreviation_shapes if b.name == "H")
    step = next(s for s in derivation.steps if s.rule is Rule.MATRIX_FORM and s.lhs.x.base == H)
    lhs, rhs, (row, col) = prover.index_form(step)
    i = next(x for x in model.index_ranges if x.name == "i")
    assert model.range_of(i) != model.range_of(row)
    for keep in prover._unfolding_levels():
        result = prover._prove_at(lhs.xreplace({row: i}), rhs.xreplace({row: i}), keep, (i, col),
                                  _equations(derivation, step))
        assert not result.proven


def test_a_delta_on_an_outer_limit_is_summed_and_one_out_of_range_is_kept():
    derivation = _derived("W1")
    model = derivation.model
    prover = IndexProver(model)
    Y, W2 = _base(derivation, "Y"), _base(derivation, "W2")
    i, s, t, c, d = (next(x for x in model.index_ranges if x.name == name) for name in "istcd")
    n, h, m = (model.size_symbols()[name] for name in "nhm")
    # Σ_i Σ_s δ_st Y_is = Σ_i Y_it: the delta is on s, the second limit
    assert prover.normal_form(Sum(KroneckerDelta(s, t) * Y[i, s], (i, 1, n), (s, 1, m)), (t,), []) \
        == prover.normal_form(Sum(Y[i, t], (i, 1, n)), (t,), [])
    # Σ_{d=1}^{h} δ_dc W2_id = W2_ic for c over 1..h; for i over 1..n it is W2_ii only when i <= h
    assert prover.normal_form(Sum(KroneckerDelta(d, c) * W2[i, d], (d, 1, h)), (i, c), []) == W2[i, c]
    kept = prover.normal_form(Sum(KroneckerDelta(d, i) * W2[i, d], (d, 1, h)), (i,), [])
    assert kept.has(Piecewise) and kept != W2[i, i]


def test_sums_from_zero_are_shifted_in_every_limit():
    derivation = _derived("W1")
    model = derivation.model
    prover = IndexProver(model)
    Y = _base(derivation, "Y")
    i, s = (next(x for x in model.index_ranges if x.name == name) for name in "is")
    n, m = (model.size_symbols()[name] for name in "nm")
    assert prover.normal_form(Sum(Y[i + 1, s + 1], (i, 0, n - 1), (s, 0, m - 1)), (), []) \
        == prover.normal_form(Sum(Y[i, s], (i, 1, n), (s, 1, m)), (), [])


def test_a_normal_form_that_does_not_end_is_undecided(monkeypatch):
    derivation = _derived("W1")
    step = next(s for s in derivation.steps if s.rule is Rule.SIMPLIFY)
    prover = IndexProver(derivation.model)
    assert prover.prove(step, _equations(derivation, step)).proven
    monkeypatch.setattr(index_form, "MAX_SUM_DEPTH", 1)
    result = IndexProver(derivation.model).prove(step, _equations(derivation, step))
    assert not result.proven and result.reason.startswith("the normal form of a sum did not terminate")

    def exhausted(*args):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(IndexProver, "_prove_at", exhausted)
    result = IndexProver(derivation.model).prove(step, [])
    assert not result.proven and "recursion limit" in result.reason


def test_a_step_without_an_index_form_is_checked_at_the_instances_only(monkeypatch):
    derivation = _derived("W1")
    step = derivation.steps[0]

    def refuse(self, step, equations):
        raise NotGeneric("a side written out entry by entry")

    monkeypatch.setattr(IndexProver, "prove", refuse)
    check = _check_alone(derivation, step)
    assert not check.proven and check.exact is None and "no index form" in check.detail
    assert check.scope.startswith("instantiation only") and status_words(check).startswith("NOT PROVEN")
