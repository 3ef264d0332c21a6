"""Matrices at symbolic sizes: the softmax output layer's gradients (W, b, X) proven for all n, p, m
in index notation, a wrong step refuted at an instance and never reported proven, a true step the
index normal form cannot reach labelled instances-only, and a mix of symbolic and fixed sizes."""

from dataclasses import replace
from functools import lru_cache

import pytest
from sympy import Indexed, Sum

from symgrad.derivation.engine import Problem, derive_problem
from symgrad.output.status import status_words
from symgrad.steps import Rule
from symgrad.verify import check_derivation
from symgrad.verify.index_form import IndexProver, _settle
from symgrad.verify.symbolic import instances

LAYER = "cross_entropy(softmax(W @ X + b), Y) / m"
VARIABLES = {"W": "n x p", "X": "p x m", "b": "n", "Y": "n x m"}
SYMBOLIC = {"n": "symbolic", "p": "symbolic", "m": "symbolic"}


def _problem(wrt: str, sizes: dict) -> Problem:
    return Problem(LAYER, VARIABLES, wrt=wrt, assume=("colsum(Y) == 1",), sizes=sizes)


# pytest-xdist: this module's tests run on one worker, which derives the symbolic derivations _derived and _checked once
pytestmark = pytest.mark.xdist_group("symbolic_matrices")

@lru_cache(maxsize=None)
def _derived(wrt: str):
    return derive_problem(_problem(wrt, SYMBOLIC))


@lru_cache(maxsize=None)
def _checked(wrt: str):
    return check_derivation(_derived(wrt))


def _base(derivation, name: str):
    return next(b for b in derivation.model.shapes if b.name == name)


# -- (1) the three gradients, every step proven for all n, p, m ---------------------------------
@pytest.mark.parametrize("wrt", ["W", "b", "X"])
def test_layer_gradient_is_proven_for_all_sizes(wrt):
    derivation = _checked(wrt)
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    for step in derivation.steps:
        assert step.check.exact is True and step.check.numeric is True, step.title
        assert step.check.scope == "all n, p, m", step.title
        assert "for all n, p, m" in status_words(step.check), step.title
        assert step.check.detail.startswith("exact: for all n, p, m in index notation"), step.title
    assert derivation.steps[-1].rule in (Rule.MATRIX_FORM, Rule.VECTOR_FORM)


def test_instances_vary_every_size_on_its_own():
    """Equal sizes alone cannot tell W Xᵀ from Wᵀ X: some instance gives every size a different
    value, and each size takes each of 1, 2, 3; the list is small and fixed."""
    chosen = instances(["n", "p", "m"])
    assert len(chosen) <= 8 and chosen == instances(["n", "p", "m"])
    assert any(len(set(values.values())) == 3 for values in chosen)
    for name in ("n", "p", "m"):
        assert {values[name] for values in chosen} == {1, 2, 3}
    assert instances(["n"]) == [{"n": k} for k in (1, 2, 3, 5, 8)]


def test_a_definition_is_unfolded_without_capturing_a_summation_index():
    """A_ik (k a step's index over m) with A_is := e^{Z_is} / Σ_k e^{Z_ks}: the definition's own
    bound k must be renamed before s becomes k, or the denominator reads Σ_k e^{Z_kk}."""
    model = _derived("W").model
    A = next(b for b in model.abbreviation_shapes if b.name == "A")
    Z = next(b for b in model.abbreviation_shapes if b.name == "Z")
    softmax = next(d for d in model.definitions if d.head == A)
    i, k = softmax.index[0], softmax.body.atoms(Sum).pop().limits[0][0]
    body = IndexProver(model)._definition(A[i, k])
    (total,) = body.atoms(Sum)
    bound = total.limits[0][0]
    assert bound != k and total.function.has(Z[bound, k]) and body.has(Z[i, k])


def test_the_loss_keeps_both_of_its_sums():
    """L := −Σ_s Σ_i Y_is log A_is / m is one Sum with two limits; unfolding it must keep both,
    each over a fresh index."""
    model = _derived("W").model
    loss = next(d for d in model.definitions if not d.index)
    unfolded = IndexProver(model)._definition(loss.head)
    (total,) = [t for t in unfolded.atoms(Sum) if len(t.limits) == 2]
    assert sorted(str(lim[2]) for lim in total.limits) == ["m", "n"]
    assert not (unfolded.free_symbols & {lim[0] for lim in total.limits})


# -- (2) a corrupted step is not proven, and an instance refutes it -----------------------------
def _check_alone(derivation, step):
    """The symbolic check of one step (the rest of the derivation is already covered above)."""
    (checked,) = check_derivation(derivation.with_steps([step])).steps
    return checked.check


def _transpose_x(derivation, step):
    X = _base(derivation, "X")
    return step.rhs.replace(lambda e: isinstance(e, Indexed) and e.base == X,
                            lambda e: X[e.indices[1], e.indices[0]])


@pytest.mark.parametrize("wrt, rule, how", [
    ("W", Rule.MATRIX_FORM, "double"),   # (A − Y) Xᵀ · 2 / m
    ("W", Rule.SIMPLIFY, "double"),      # the index form Σ_s (A_js − Y_js) X_qs / m, doubled
    ("W", Rule.SIMPLIFY, "transpose"),   # X_qs read as X_sq: summed over the wrong index of X
    ("X", Rule.MATRIX_FORM, "double"),   # Wᵀ (A − Y) · 2 / m
    ("b", Rule.DELTA_SUM, "double"),
])
def test_a_corrupted_step_is_refuted_not_proven(wrt, rule, how):
    derivation = _derived(wrt)
    step = [s for s in derivation.steps if s.rule is rule][-1]
    rhs = step.rhs * 2 if how == "double" else _transpose_x(derivation, step)
    assert rhs != step.rhs
    bad = replace(step, rhs=rhs)
    assert not IndexProver(derivation.model).prove(bad, []).proven
    check = _check_alone(derivation, bad)
    assert not check.proven and check.exact is False and check.numeric is False
    assert check.detail.startswith("refuted at n = "), check.detail
    assert check.scope == "" and "for all" not in status_words(check)


def test_a_derivation_with_a_wrong_last_step_is_not_proven():
    """The whole derivation, the matrix form transposed in index terms (X_qs → X_sq): that step
    is refuted, every other step still proven for all sizes, the derivation not proven."""
    derivation = _derived("W")
    last = derivation.steps[-2]
    steps = [*derivation.steps[:-2], replace(last, rhs=_transpose_x(derivation, last)), derivation.steps[-1]]
    checked = check_derivation(derivation.with_steps(steps))
    assert not checked.proven
    assert checked.steps[-2].check.exact is False and checked.steps[-2].check.numeric is False
    assert all(s.check.scope == "all n, p, m" for k, s in enumerate(checked.steps) if k != len(steps) - 2)


def test_a_true_step_beyond_the_normal_form_is_instances_only():
    """Σ_{s=1}^{m} f_s = Σ_{s=1}^{m-1} f_s + f_m is true, but the normal form does not relate sums
    over different ranges: proven at the instances, reported NOT proven for all sizes."""
    derivation = _derived("W")
    step = next(s for s in derivation.steps if s.rule is Rule.SIMPLIFY)
    (total,) = step.rhs.atoms(Sum)
    s, lower, upper = total.limits[0]
    peeled = step.rhs.xreplace({total: Sum(total.function, (s, lower, upper - 1)) + total.function.xreplace({s: upper})})
    check = _check_alone(derivation, replace(step, rhs=peeled))
    assert check.exact is None and check.numeric is True and not check.proven
    assert check.scope.startswith("instantiation only: (n = 1, p = 1, m = 1)")
    assert "NOT PROVEN" in status_words(check)


# -- (3) some sizes symbolic, some fixed --------------------------------------------------------
def test_mixed_sizes_n_symbolic_p_and_m_fixed():
    derivation = check_derivation(derive_problem(_problem("W", {"n": "symbolic", "p": 2, "m": 3})))
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    for step in derivation.steps:
        assert step.check.scope == "all n", step.title
        assert step.check.detail.endswith("numeric at n = 1, 2, 3"), step.title
    shape = derivation.steps[-1].lhs.x.shape
    assert str(shape[0]) == "n" and shape[1] == 2


def test_mixed_sizes_two_symbolic_one_fixed():
    derivation = check_derivation(derive_problem(_problem("b", {"n": 2, "p": "symbolic", "m": "symbolic"})))
    assert derivation.proven
    assert all(step.check.scope == "all p, m" for step in derivation.steps)


def test_a_matrix_product_at_symbolic_sizes_is_derived_and_proven():
    """What used to be refused ("matrices are derived at concrete sizes for now")."""
    derivation = check_derivation(derive_problem(Problem("grad(sum(W @ X), W)", {"W": "n x p", "X": "p x m"},
                                                         size="symbolic")))
    assert derivation.proven
    assert all(step.check.scope == "all n, p, m" for step in derivation.steps)


def test_the_assumption_reaches_only_columns_it_covers():
    """colsum(Y) == 1 says Σ_i Y_is = 1 for every s in 1..m: inside a sum over the columns 1..m it
    applies, inside the same sum over 1..p (p another size) it does not — rewriting there would
    'prove' a claim about columns Y does not have."""
    derivation = _derived("W")
    model = derivation.model
    prover = IndexProver(model)
    (assumption,) = model.assumptions.values()
    W, X, Y = (_base(derivation, name) for name in "WXY")
    n, p, m = (model.size_symbols()[name] for name in "npm")
    i, j, s, q, r, t = (next(x for x in model.index_ranges if x.name == name) for name in "ijsqrt")

    def applied(expr, free=()):
        return _settle(prover._apply_equation(prover.normal_form(expr, free, []), assumption.equation, free))

    assert applied(Sum(X[q, s] * Y[i, s], (i, 1, n), (s, 1, m)), (q,)) == prover.normal_form(Sum(X[q, s], (s, 1, m)), (q,), [])
    beyond = Sum(W[j, r] * Y[i, r], (i, 1, n), (r, 1, p))
    assert applied(beyond, (j,)) == prover.normal_form(beyond, (j,), [])
    assert applied(beyond, (j,)).has(Y)
    # a free index counts only if it is declared over 1..m (t is, q is not)
    assert applied(Sum(Y[i, t], (i, 1, n)), (t,)) == 1
    assert applied(Sum(Y[i, q], (i, 1, n)), (q,)).has(Y)
