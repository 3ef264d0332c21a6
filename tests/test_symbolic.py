"""Symbolic n: the proof for every n, its instances, and the labels it prints."""

import json
import random

import mpmath
import pytest
from sympy import Integer, KroneckerDelta, Sum, exp, lambdify, log

from symgrad import derive, render
from symgrad.build import N, a, i, j, k, y, z
from symgrad.derivation import DERIVATIONS
from symgrad.output.status import status_words
from symgrad.steps import Rule, Step
from symgrad.verify import check_derivation
from symgrad.verify.concrete import ConcreteModel
from symgrad.verify.index_form import IndexProver


@pytest.fixture(scope="module")
def symbolic():
    return derive(n="symbolic")


def test_every_step_is_proven_for_all_n(symbolic):
    assert symbolic.proven
    for step in symbolic.steps:
        assert step.check.scope == "all n", step.title
        assert "for all n" in status_words(step.check)


@pytest.mark.parametrize("n", range(1, 9))
def test_result_at_each_n_is_the_gradient_of_the_loss(symbolic, n):
    """Substitute n into the symbolic result and compare it, at a random point in 40 digits,
    with SymPy's own derivative of the loss written out at that n (an independent route)."""
    model = symbolic.model.at_size(n=n)
    concrete = ConcreteModel(model)
    result = concrete.explicit(symbolic.result.xreplace({N: Integer(n)}))
    zs, ys = [z[m] for m in range(1, n + 1)], [y[m] for m in range(1, n + 1)]
    softmax = [exp(v) / sum(exp(w) for w in zs) for v in zs]
    loss = -sum(t * log(s) for t, s in zip(ys, softmax))
    gradient = [loss.diff(v) for v in zs]
    ours = [entry.xreplace(dict(zip([a[m] for m in range(1, n + 1)], softmax))) for entry in result]
    rng = random.Random(n)
    with mpmath.workdps(40):
        raw = [mpmath.mpf(rng.uniform(0.1, 1)) for _ in range(n)]
        point = [mpmath.mpf(rng.uniform(-3, 3)) for _ in range(n)] + [v / mpmath.fsum(raw) for v in raw]
        expected = lambdify(zs + ys, gradient, modules="mpmath")(*point)
        got = lambdify(zs + ys, ours, modules="mpmath")(*point)
        for e, g in zip(expected, got):
            assert abs(e - g) < mpmath.mpf("1e-35")


def _corrupt(derivation, index, rhs):
    steps = list(derivation.steps)
    steps[index] = Step(steps[index].title, steps[index].rule, steps[index].lhs, rhs,
                        steps[index].free_indices, steps[index].assumptions)
    return derivation.with_steps(steps)


def test_delta_replaced_by_one_is_caught():
    derivation = DERIVATIONS["softmax-cross-entropy"]("symbolic")
    index = next(n for n, s in enumerate(derivation.steps) if s.rule is Rule.QUOTIENT_RULE)
    wrong = derivation.steps[index].rhs.xreplace({KroneckerDelta(i, j): 1})
    assert wrong != derivation.steps[index].rhs
    bad = _corrupt(derivation, index, wrong)
    general = IndexProver(bad.model).prove(bad.steps[index], [])
    assert not general.proven
    checked = check_derivation(bad)
    assert checked.steps[index].check.exact is False
    assert checked.steps[index].check.numeric is False
    assert not checked.proven


def test_collect_step_without_a_term_is_caught():
    """a_j Σ y_i (dropping − y_j) is false for every n ≥ 1."""
    derivation = DERIVATIONS["softmax-cross-entropy"]("symbolic")
    index = next(n for n, s in enumerate(derivation.steps) if s.rule is Rule.COLLECT)
    bad = _corrupt(derivation, index, a[j] * Sum(y[i], (i, 1, N)))
    assert not IndexProver(bad.model).prove(bad.steps[index], []).proven
    assert not check_derivation(bad).proven


def test_true_step_beyond_the_normal_form_is_labelled_instantiation_only():
    """Σ_{i=1}^{n} y_i = Σ_{i=1}^{n-1} y_i + y_n is true, but the index normal form does not
    relate sums over different ranges: the checker must prove the step at the instances and
    say that it did *only* there."""
    derivation = DERIVATIONS["softmax-cross-entropy"]("symbolic")
    index = next(n for n, s in enumerate(derivation.steps) if s.rule is Rule.COLLECT)
    peeled = a[j] * (Sum(y[i], (i, 1, N - 1)) + y[N]) - y[j]
    checked = check_derivation(_corrupt(derivation, index, peeled))
    check = checked.steps[index].check
    assert check.exact is None and check.numeric is True
    assert check.scope.startswith("instantiation only")
    assert "NOT PROVEN" in status_words(check)
    assert not checked.proven


def test_disguised_rational_identity_is_proven():
    """(a³ − y³)/(a² + a y + y²) = a − y needs cancelling, not only expanding."""
    derivation = DERIVATIONS["softmax-cross-entropy"]("symbolic")
    index = next(n for n, s in enumerate(derivation.steps) if s.rule is Rule.ASSUMPTION)
    disguised = (a[j] ** 3 - y[j] ** 3) / (a[j] ** 2 + a[j] * y[j] + y[j] ** 2)
    checked = check_derivation(_corrupt(derivation, index, disguised))
    assert checked.steps[index].check.scope == "all n"
    assert checked.proven


def test_symbolic_certificate_is_plain_sympy_and_says_symbolic(symbolic):
    from sympy import sympify

    cert = json.loads(render(symbolic, "json"))
    assert cert["n"] == "symbolic" and cert["proven"] is True
    for step in cert["steps"]:
        for side in (step["lhs"], step["rhs"]):
            assert "Dummy" not in side and "SumExcluding" not in side and "PartialD" not in side
            sympify(side)  # readable by SymPy alone
    definitions = {sympify(key): sympify(value) for key, value in cert["definitions"].items()}
    assert definitions[a[i]] == exp(z[i]) / Sum(exp(z[k]), (k, 1, N))


VECTOR_IDENTITY = """
[[identity]]
name = "bce"
vars = {{ z = "n", y = "n" }}
n = {sizes}
lhs = "grad(binary_cross_entropy(sigmoid(z), y), z)"
rhs = "{rhs}"
"""


def _vector_identity(tmp_path, sizes: str, rhs: str):
    from symgrad.identity_file import load_file

    path = tmp_path / "bce.toml"
    path.write_text(VECTOR_IDENTITY.format(sizes=sizes, rhs=rhs), encoding="utf-8")
    (identity,) = load_file(path)
    return identity


def test_a_small_n_beside_symbolic_is_an_instance_of_the_proof_and_a_larger_one_is_checked_alone(tmp_path):
    """n = 1, 2, 3 were evaluated step by step by the proof for every n: they report that proof
    (nothing is proven twice); n = 5 is beyond those instances and gets its own full check."""
    from symgrad.verify.identity import check_identity

    identity = _vector_identity(tmp_path, '[1, 3, 5, "symbolic"]', "sigmoid(z) - y")
    one, three, five, general = check_identity(identity).results
    assert all(r.holds is True for r in (one, three, five, general))
    assert "an instance" in one.method and "an instance" in three.method, (one, three)
    assert "at n = 3" in three.detail and "proven for every n" in three.detail
    assert "an instance" not in five.method and "exact" in five.method, five


def test_a_false_vector_identity_is_refuted_at_a_small_n_beside_symbolic(tmp_path):
    """No proof for every n to lean on (the rhs is wrong): n = 2 takes its own full check and
    fails there with a counterexample."""
    from symgrad.verify.identity import check_identity

    identity = _vector_identity(tmp_path, '[2, "symbolic"]', "sigmoid(z) - 2 * y")
    two, general = check_identity(identity).results
    assert general.holds is not True
    assert two.holds is False and "an instance" not in two.method, two


def test_a_vector_instance_refutes_a_wrong_step_the_proof_let_through(tmp_path, monkeypatch):
    """The kept numbers are evaluations of the proof's own steps: a step doubled after the proof
    (marked proven, as a bug in the index prover would leave it) is evaluated afresh at n = 3,
    refuted there, and n = 3 is then decided by its own full check."""
    from dataclasses import replace

    from symgrad.identity_file import SYMBOLIC
    from symgrad.verify import identity as identity_stage
    from symgrad.verify.identity import check_at_size

    identity = _vector_identity(tmp_path, '[3, "symbolic"]', "sigmoid(z) - y")
    assert check_at_size(identity, SYMBOLIC).holds is True
    assert "an instance" in check_at_size(identity, 3).method
    key = identity_stage._derivation_key(identity, SYMBOLIC)
    derivation = identity_stage._DERIVATIONS[key]
    last = derivation.steps[-2]
    wrong = derivation.with_steps([*derivation.steps[:-2], replace(last, rhs=last.rhs * 2), derivation.steps[-1]])
    assert wrong.proven
    monkeypatch.setitem(identity_stage._DERIVATIONS, key, wrong)
    result = check_at_size(identity, 3)
    assert "an instance" not in result.method and result.holds is True, result


def test_an_identity_proven_by_cases_says_almost_everywhere_at_every_size(tmp_path):
    """relu′(x) = (1 + sign(x))/2 holds except at the kink x = 0 (relu′(0) = 0 by convention,
    the rhs is 1/2 there): the proof for every n is by cases, and every size that reports it —
    n = 1 and 3 as its instances, "symbolic" itself — says almost everywhere, as the size
    checked on its own (n = 5) does; an identity true everywhere says nothing of the kind."""
    from symgrad.identity_file import load_file
    from symgrad.verify.identity import check_identity

    path = tmp_path / "kink.toml"
    path.write_text('[[identity]]\nname = "relu"\nvars = { x = "n" }\nn = [1, 3, 5, "symbolic"]\n'
                    'lhs = "grad(sum(relu(x)), x)"\nrhs = "(1 + sign(x)) / 2"\n', encoding="utf-8")
    (identity,) = load_file(path)
    results = check_identity(identity).results
    assert all(r.holds is True for r in results), results
    assert all("almost everywhere" in r.method for r in results), [r.method for r in results]
    assert all("not at a kink" in r.detail for r in results if r.size != 5)
    smooth = _vector_identity(tmp_path, '[1, "symbolic"]', "sigmoid(z) - y")
    assert not any("almost everywhere" in r.method for r in check_identity(smooth).results)
