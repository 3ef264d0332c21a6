"""`symgrad derive --one-hot K`: softmax + cross-entropy with y = e_K, L = −log a_K and
∂L/∂z_j = a_j − δ_jK, every step checked at a fixed n (every K) and for a symbolic n and K; the
result against finite differences; corrupted steps refuted; bad classes refused with exit 2."""

from dataclasses import replace

import numpy as np
import pytest
from sympy import Derivative, Eq, Integer, KroneckerDelta, Piecewise, Symbol, log

from symgrad.api import derive_one_hot, render
from symgrad.derivation.one_hot import ONE_HOT, derive_one_hot as build
from symgrad.errors import UsageError
from symgrad.notation import index_symbol
from symgrad.steps import Rule
from symgrad.verify import check_derivation
from support import needs_latex, run
from test_output import _compile, _math_blocks, _overfull, _render_errors, _terminal, needs_js

j, K = index_symbol("j"), index_symbol("K")


def _names(derivation):
    model = derivation.model
    a = next(d.head for d in model.definitions if d.index)
    z = next(b for b in model.shapes if str(b) == "z")
    y = next(b for b in model.shapes if str(b) == "y")
    return a, z, y


def _one_hot_steps(derivation):
    """The steps after the general-label derivation: from the one-hot assumption on."""
    first = next(k for k, s in enumerate(derivation.steps) if ONE_HOT in s.assumptions)
    return derivation.steps[first:]


@pytest.mark.parametrize("n, k", [(n, k) for n in range(1, 6) for k in range(1, n + 1)])
def test_every_step_proven_at_every_fixed_n_and_class(n, k):
    d = derive_one_hot(k, n=n)
    assert d.proven, [(s.title, s.check.detail) for s in d.steps if not s.check.proven]
    a, z, y = _names(d)
    steps = _one_hot_steps(d)
    L = next(s for s in steps if s.lhs == Symbol("L", real=True))
    assert L.rhs == -log(a[k])
    assert d.result == a[j] - KroneckerDelta(j, k)
    cases = next(s for s in steps if s.rule is Rule.CASE_SPLIT)
    assert [piece for piece, _ in cases.rhs.args] == [a[k] - 1, a[j]]
    assert all(ONE_HOT in s.assumptions for s in steps)


def test_every_step_proven_for_every_n_and_class():
    d = derive_one_hot("K", n="symbolic")
    assert d.proven, [(s.title, s.check.detail) for s in d.steps if not s.check.proven]
    a, z, y = _names(d)
    assert d.result == a[j] - KroneckerDelta(j, K)
    for step in _one_hot_steps(d):
        assert step.check.scope == "all n, K", (step.title, step.check.detail)
        assert "for all n, K in index notation" in step.check.detail
        assert "K runs over 1..n" in step.check.detail  # Σ_i δ_iK = 1 needs K's range, and says so
        # evaluated at several classes for each n up to 3 (proven steps: symbolic.PROVEN_INSTANCE_SIZE), K = n included
        assert "(n = 3, K = 3)" in step.check.detail and "(n = 3, K = 2)" in step.check.detail
        assert "(n = 5" not in step.check.detail


def test_the_one_hot_steps_are_computed_from_earlier_steps():
    """The gradient of the one-hot steps is step "a_j Σ y − y_j" with Σ y = 1 and y_j = δ_jK, and
    the chain rule's row K gives the same vector: no step's value is asserted."""
    d = build(3, 2)
    a, z, y = _names(d)
    steps = _one_hot_steps(d)
    assert [s.rule for s in steps] == [Rule.ASSUMPTION, Rule.ASSUMPTION, Rule.ASSUMPTION, Rule.CASE_SPLIT,
                                       Rule.CHAIN_RULE, Rule.SUBSTITUTE, Rule.CANCEL]
    general = d.steps[d.steps.index(steps[0]) - 1]
    assert general.rhs.has(y[j]) and not general.rhs.has(KroneckerDelta)
    assert steps[2].rhs == steps[-1].rhs == a[j] - KroneckerDelta(j, 2)
    assert steps[4].rhs.has(Derivative(a[2], z[j]))  # row K = 2 of the Jacobian is what is left
    assert "Step 14" in steps[2].title and "step 10" in steps[4].title and "step 4" in steps[5].title


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize("n", [2, 4, 5])
def test_result_matches_finite_differences(n):
    rng = np.random.default_rng(n)
    for k in range(1, n + 1):
        d = derive_one_hot(k, n=n)
        a, z, y = _names(d)
        point = rng.normal(size=n) * 2
        activations = _softmax(point)

        def loss(v):
            return -np.log(_softmax(v)[k - 1])
        h = 1e-6
        numeric = np.array([(loss(point + h * e) - loss(point - h * e)) / (2 * h) for e in np.eye(n)])
        values = {a[i + 1]: activations[i] for i in range(n)}
        cases = next(s for s in _one_hot_steps(d) if s.rule is Rule.CASE_SPLIT).rhs
        for index in range(1, n + 1):
            derived = float(d.result.xreplace({j: Integer(index)}).xreplace(values))
            assert derived == pytest.approx(numeric[index - 1], abs=1e-7)
            assert float(cases.xreplace({j: Integer(index)}).xreplace(values)) == pytest.approx(derived)
        # every logit gets a gradient: the wrong classes' entries are a_j > 0, not 0
        assert all(abs(numeric[i]) > 1e-12 for i in range(n))


def _corrupt(derivation, position, rhs, assumptions=None):
    steps = list(derivation.steps)
    step = steps[position]
    steps[position] = replace(step, rhs=rhs, assumptions=step.assumptions if assumptions is None else assumptions)
    return derivation.with_steps(steps)


def _gradient_position(derivation):
    return next(k for k, s in enumerate(derivation.steps)
                if ONE_HOT in s.assumptions and s.rule is Rule.ASSUMPTION and s.free_indices)


@pytest.mark.parametrize("size, k", [(3, 2), ("symbolic", "K")])
@pytest.mark.parametrize("wrong", ["sign", "twice", "squared", "cases swapped", "other class", "no assumption",
                                   "labels sum", "loss"])
def test_corrupted_steps_are_refuted_never_proven(size, k, wrong):
    d = build(size, k)
    a, z, y = _names(d)
    kk = Integer(k) if k != "K" else K
    position = _gradient_position(d)
    delta = KroneckerDelta(j, kk)
    if wrong == "sign":
        bad = _corrupt(d, position, a[j] + delta)
    elif wrong == "twice":  # y_j subtracted on top of δ_jK
        bad = _corrupt(d, position, a[j] - delta - y[j])
    elif wrong == "squared":
        bad = _corrupt(d, position, (a[j] - delta) ** 2)
    elif wrong == "cases swapped":
        position += 1
        bad = _corrupt(d, position, Piecewise((a[j], Eq(j, kk)), (a[kk] - 1, True)))
    elif wrong == "other class":  # the true class's a_K in place of a_j
        bad = _corrupt(d, position, a[kk] - delta)
    elif wrong == "no assumption":  # right under y = e_K, wrong for other labels: the assumption must be named
        bad = _corrupt(d, position, d.steps[position].rhs, assumptions=())
    elif wrong == "labels sum":
        position -= 1
        bad = _corrupt(d, position, d.steps[position].rhs, assumptions=())
    else:
        position -= 2
        bad = _corrupt(d, position, -log(a[1] if kk != 1 else a[2]))
    checked = check_derivation(bad)
    step = checked.steps[position]
    assert not step.check.proven and not checked.proven, step.check.detail
    assert step.check.exact is False, step.check.detail  # refuted, not merely undecided


@pytest.mark.parametrize("size, k", [(3, 2), ("symbolic", "K")])
def test_a_form_equal_under_the_assumption_is_proven(size, k):
    """a_j − y_j δ_jK equals a_j − δ_jK when y = e_K (y_j δ_jK = δ_jK²= δ_jK): proven with the
    assumption, refuted without it."""
    d = build(size, k)
    a, z, y = _names(d)
    kk = Integer(k) if k != "K" else K
    position = _gradient_position(d)
    same = check_derivation(_corrupt(d, position, a[j] - y[j] * KroneckerDelta(j, kk)))
    assert same.steps[position].check.proven, same.steps[position].check.detail
    without = check_derivation(_corrupt(d, position, a[j] - y[j] * KroneckerDelta(j, kk), assumptions=()))
    assert without.steps[position].check.exact is False


@pytest.mark.parametrize("args, message", [
    (["--one-hot", "4", "--n", "3"], "--one-hot 4: the class K must be one of 1 … n = 3"),
    (["--one-hot", "0"], "--one-hot 0: the class K must be one of 1 … n = 3"),
    (["--one-hot", "-1", "--n", "3"], "the class K must be one of 1 … n = 3"),
    (["--one-hot", "two"], "--one-hot must be a class number"),
    (["--one-hot", "K", "--n", "3"], "needs --n symbolic"),
    (["--one-hot", "2", "--n", "symbolic"], "give --one-hot K"),
    (["softmax-layer", "--one-hot", "1"], "--one-hot applies to softmax-cross-entropy"),
    (["--expr", "sum(z)", "--wrt", "z", "--vars", "z=n", "--one-hot", "1"], "not to --expr"),
    (["--one-hot", "1", "--no-normalized-labels"], "contradict"),
])
def test_bad_class_or_option_is_a_one_line_usage_error(args, message):
    result = run("derive", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("symgrad: error: ") and message in lines[0], result.stderr
    assert result.stdout == ""


def test_api_refuses_a_class_outside_the_range():
    with pytest.raises(UsageError, match="one of 1 … n = 3"):
        derive_one_hot(4, n=3)
    with pytest.raises(UsageError, match="needs --n symbolic"):
        derive_one_hot("K", n=3)


@pytest.mark.parametrize("args, last", [(["--n", "3", "--one-hot", "2"], "a₂ - 1"),
                                        (["--n", "symbolic", "--one-hot", "K"], "a_K - 1")])
def test_cli_derives_and_every_format_renders(args, last):
    result = run("derive", *args)
    assert result.returncode == 0, result.stderr
    assert last in result.stdout and "steps checked (exact and numeric)" in result.stdout
    for fmt in ("latex", "markdown", "json"):
        result = run("derive", *args, "--format", fmt)
        assert result.returncode == 0, result.stderr
    assert '"one-hot label"' in result.stdout  # the certificate names the assumption


@needs_latex
@pytest.mark.parametrize("size, k", [(3, 2), (5, 5), ("symbolic", "K")])
def test_latex_compiles_without_overfull_lines(tmp_path, size, k):
    d = derive_one_hot(k, n=size)
    pages = []
    for notation, bold in (("plain", "mathbf"), ("course", "bm")):
        document = render(d, "latex", standalone=True, notation=notation, bold=bold, label="oh")
        preamble, body = document.split(r"\begin{document}", 1)
        pages.append(body.rsplit(r"\end{document}", 1)[0].replace(r"\label{oh:", rf"\label{{{notation}:"))
    log = _compile(tmp_path, "one_hot", preamble, pages)
    assert not _overfull(log), _overfull(log)


def test_certificate_rechecks_with_sympy_alone(monkeypatch):
    """The JSON certificate of a one-hot derivation re-checked from the JSON alone by the same
    independent SymPy route as the built-in derivations' (tests/test_core.py)."""
    import test_core

    monkeypatch.setattr(test_core, "derive", lambda name, n: derive_one_hot(2, n=n))
    test_core.test_certificate_rechecks_with_sympy_alone("softmax-cross-entropy", {"n": 3})


def test_certificate_states_the_class_as_a_parameter():
    import json

    certificate = json.loads(render(derive_one_hot("K", n="symbolic"), "json"))
    assert certificate["parameters"] == {"K": [1, "n"]}
    assert certificate["assumption_index_ranges"]["one-hot label"] == {"i": [1, "n"]}  # for every i, one K


@pytest.mark.parametrize("size, k", [(3, 2), (6, 1), ("symbolic", "K")])
def test_terminal_never_crops_silently(size, k):
    d = derive_one_hot(k, n=size, check=False)
    for width in (60, 80, 120):
        text = _terminal(d, width)
        assert max(len(line) for line in text.splitlines()) <= width
        assert all(line.rstrip().endswith("│") for line in text.splitlines() if line.startswith("│"))


@needs_js
def test_markdown_and_notebook_render_in_katex_and_mathjax():
    blocks = []
    for size, k in [(1, 1), (3, 2), (7, 7), ("symbolic", "K")]:
        d = derive_one_hot(k, n=size, check=False)
        for notation in ("plain", "course"):
            for bold in ("mathbf", "bm"):
                blocks += _math_blocks(render(d, "markdown", notation=notation, bold=bold))
        blocks += _math_blocks(d._repr_markdown_()) + _math_blocks(d._repr_latex_())
    errors = _render_errors(list(dict.fromkeys(blocks)))
    assert not errors, errors[:5]


@pytest.mark.parametrize("wrong", ["sign", "other class", "loss", "no assumption", "cases swapped"])
def test_index_prover_alone_never_proves_a_wrong_step_about_k(wrong):
    """The proof for every n and K (the parameter's range, its case split j = K / j ≠ K and the
    substitution y_i = δ_iK) on its own, without the instances: wrong steps stay unproven."""
    from symgrad.verify.index_form import IndexProver

    d = build("symbolic", "K")
    a, z, y = _names(d)
    prover = IndexProver(d.model)
    position = _gradient_position(d)
    step = d.steps[position]
    equations = [d.model.assumptions[ONE_HOT].equation]
    assert prover.prove(step, equations).proven
    bad, used = step, equations
    if wrong == "sign":
        bad = replace(step, rhs=a[j] + KroneckerDelta(j, K))
    elif wrong == "other class":
        bad = replace(step, rhs=a[K] - KroneckerDelta(j, K))
    elif wrong == "loss":
        bad = replace(d.steps[position - 2], rhs=-log(a[1]))
    elif wrong == "no assumption":
        used = []
    else:
        bad = replace(d.steps[position + 1], rhs=Piecewise((a[j], Eq(j, K)), (a[K] - 1, True)))
    assert not prover.prove(bad, used).proven
