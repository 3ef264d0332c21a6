"""The output layer over a batch: gradients against finite differences of an independent
implementation of J, a corrupted step, the two 1/m conventions, notation and labels, bad input."""

import dataclasses
import json
import re
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sympy import Float, Indexed, Rational

from symgrad import derive, render
from symgrad.notation import GradientMatrix
from symgrad.steps import Rule
from symgrad.verify import check_derivation
from symgrad.verify.concrete import ConcreteModel
from support import compile_latex, needs_latex, run

SHAPES = [(2, 1, 1), (3, 2, 2), (2, 3, 3)]


# pytest-xdist: this module's tests run on one worker, which derives the layer derivations _layer and _symbolic_layer once
pytestmark = pytest.mark.xdist_group("layer")

@lru_cache(maxsize=None)
def _layer(n, n_prev, m):
    derivation = derive("softmax-layer", n, n_prev=n_prev, m=m)
    assert derivation.proven
    return derivation


def _cost(Wv, Pv, bv, Yv):
    """J written directly in numpy, independent of symgrad."""
    Zv = Wv @ Pv + bv[:, None]
    Zv = Zv - Zv.max(axis=0)
    Av = np.exp(Zv) / np.exp(Zv).sum(axis=0)
    return -(Yv * np.log(Av)).sum() / Pv.shape[1], Av


def _finite_differences(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (f(up) - f(down)) / (2 * h)
    return grad


def _matrix_form(derivation, variable: str):
    """The *first* step that states ∂J/∂variable as a whole matrix in the variables (the 1/m
    inside convention); not the one through the gradient one level up (∂J/∂W = ∂J/∂Z A_prevᵀ)."""
    for step in derivation.steps:
        if isinstance(step.lhs, GradientMatrix) and str(step.lhs.x.base) == variable \
                and not step.rhs.has(GradientMatrix):
            return step
    raise AssertionError(f"no matrix-form step for {variable}")


def _matrix_gradient(derivation, variable: str, sizes: dict | None = None):
    """That step's right side, made explicit in A, Y, W, A_prev (a derivation at symbolic sizes:
    instantiated at ``sizes`` first)."""
    rhs, model = _matrix_form(derivation, variable).rhs, derivation.model
    if sizes is not None:
        symbols = model.size_symbols()
        rhs = rhs.xreplace({symbols[name]: value for name, value in sizes.items() if name in symbols})
        model = model.at_size(**sizes)
    return ConcreteModel(model).explicit(rhs)


@lru_cache(maxsize=None)
def _symbolic_layer():
    derivation = derive("softmax-layer", "symbolic", n_prev="symbolic", m="symbolic")
    assert derivation.proven
    return derivation


@settings(max_examples=16, deadline=None)
@given(shape=st.sampled_from(SHAPES), seed=st.integers(0, 10**6), symbolic=st.booleans())
def test_layer_gradients_match_finite_differences(shape, seed, symbolic):
    """The derivation at these sizes, or the one for every size instantiated at them."""
    n, n_prev, m = shape
    derivation = _symbolic_layer() if symbolic else _layer(n, n_prev, m)
    sizes = {"n": n, "n_prev": n_prev, "m": m} if symbolic else None
    rng = np.random.default_rng(seed)
    Wv, Pv, bv = rng.normal(size=(n, n_prev)), rng.normal(size=(n_prev, m)), rng.normal(size=n)
    Yv = rng.random(size=(n, m)) + 0.05
    Yv /= Yv.sum(axis=0)  # the assumption: every column sums to 1
    _, Av = _cost(Wv, Pv, bv, Yv)

    values = {}  # (name, 1-based indices) → value
    for name, array in (("W", Wv), ("A_prev", Pv), ("Y", Yv), ("A", Av)):
        for idx in np.ndindex(array.shape):
            values[(name, tuple(k + 1 for k in idx))] = array[idx]
    expected = {
        "W": _finite_differences(lambda x: _cost(x, Pv, bv, Yv)[0], Wv),
        "A_prev": _finite_differences(lambda x: _cost(Wv, x, bv, Yv)[0], Pv),
        "b": _finite_differences(lambda x: _cost(Wv, Pv, x, Yv)[0], bv).reshape(n, 1),
    }
    for variable, reference in expected.items():
        derived = _matrix_gradient(derivation, variable, sizes)
        entries = {e: (str(e.base), tuple(int(x) for x in e.indices)) for e in derived.atoms(Indexed)}
        assert set(entries.values()) <= set(values), set(entries.values()) - set(values)
        numeric = np.array(derived.xreplace({e: Float(float(values[key]), 30) for e, key in entries.items()}).evalf(),
                           dtype=float)
        np.testing.assert_allclose(numeric, reference, atol=1e-6, err_msg=variable)


def test_dZ_is_A_minus_Y_over_m_and_the_course_dZ_is_m_times_it():
    derivation = _layer(3, 2, 2)
    concrete = ConcreteModel(derivation.model)
    inside = _matrix_form(derivation, "Z")
    course = next(s for s in derivation.steps if s.title.startswith("Course convention") and ":=" in s.title
                  and "dZ" in s.title.split(":=")[0])
    one_over_m = concrete.explicit(inside.rhs)
    per_example = concrete.explicit(course.rhs)
    assert (one_over_m * 2 - per_example).expand() == 0 * per_example
    assert concrete.explicit(course.lhs).shape == per_example.shape


@pytest.mark.parametrize("which, wrong", [
    (lambda s: s.rule is Rule.MATRIX_FORM and isinstance(s.lhs, GradientMatrix) and str(s.lhs.x.base) == "W",
     lambda rhs: rhs * 2),  # 1/m forgotten
    (lambda s: s.rule is Rule.SUBSTITUTE and r"\entry{A}" in s.title,  # ∂J/∂A_is substituted: the level of dZ
     lambda rhs: rhs.xreplace({Rational(-1, 2): Rational(-1, 3)})),  # 1/3 for 1/m
])
def test_corrupted_layer_step_is_rejected(which, wrong):
    derivation = _layer(3, 2, 2)
    steps = list(derivation.steps)
    (k,) = [k for k, s in enumerate(steps) if which(s)]
    corrupted = wrong(steps[k].rhs)
    assert corrupted != steps[k].rhs
    steps[k] = dataclasses.replace(steps[k], rhs=corrupted, check=None)
    checked = check_derivation(derivation.with_steps([dataclasses.replace(s, check=None) for s in steps]))
    assert not checked.proven
    assert checked.steps[k].check.exact is not True
    assert checked.steps[k].check.numeric is False


def test_course_notation_renders_the_layer_symbols():
    latex = render(_layer(3, 2, 2), "latex", notation="course")
    for symbol in ("W^{[L]}", "A^{[L-1]}", "Z^{[L]}", "A^{[L]}", "b^{[L]}"):
        assert symbol in latex, symbol


@needs_latex
@pytest.mark.parametrize("name", ["softmax-layer", "softmax-cross-entropy"])
@pytest.mark.parametrize("notation, bold", [("course", "bm"), ("course", "mathbf"), ("plain", "mathbf")])
def test_latex_compiles_in_every_notation(tmp_path, name, notation, bold):
    tex = tmp_path / "d.tex"
    result = run("derive", name, "--format", "latex", "--standalone", "--notation", notation,
                 "--bold", bold, "--label", "eq", "-o", str(tex))
    assert result.returncode == 0, result.stderr
    compile_latex(tex)


def test_course_notation_reaches_titles_too():
    latex = render(derive("softmax-cross-entropy", 3), "latex", notation="course", bold="bm")
    intertexts = [line for line in latex.splitlines() if line.startswith(r"\intertext")]
    assert intertexts and not any(r"\mathbf{a}" in t or r"\mathbf{y}" in t or "$a_" in t for t in intertexts)
    assert any("A^{[L]}" in t for t in intertexts)


def test_labels_in_latex_and_tags_in_markdown():
    derivation = _layer(3, 2, 2)
    latex = render(derivation, "latex", label="grad")
    labels = re.findall(r"\\label\{grad:step-(\d+)\}", latex)
    assert [int(x) for x in labels] == list(range(1, len(derivation.steps) + 1))
    assert r"\begin{align}" in latex
    markdown = render(derivation, "markdown", label="grad")
    assert r"\label" not in markdown
    assert len(re.findall(r"\\tag\{\d+\}", markdown)) == len(derivation.steps)


def test_the_layer_is_proven_for_every_size_in_every_format(tmp_path):
    """--n symbolic --n-prev symbolic --m symbolic: every step proven in index notation for all
    n, n_prev, m (and checked at instances), the same steps as at fixed sizes, in every format."""
    derivation = _symbolic_layer()
    assert all(step.check.scope == "all n, n_prev, m" for step in derivation.steps)
    assert [s.rule for s in derivation.steps] == [s.rule for s in _layer(3, 2, 2).steps]
    # the command line derives it once (json); every format is rendered from the derivation
    # shared with the other tests, which the certificate shows is the command line's own
    out = tmp_path / "layer.json"
    result = run("derive", "softmax-layer", "--n", "symbolic", "--n-prev", "symbolic", "--m", "symbolic",
                 "-f", "json", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text() == render(derivation, "json")
    for fmt in ("latex", "markdown"):
        assert "n_prev" not in render(derivation, fmt).replace("n_{\\mathrm{prev}}", "")
    assert render(derivation, "text")
    certificate = json.loads(out.read_text())
    assert certificate["proven"] and all(s["check"]["scope"] == "all n, n_prev, m" for s in certificate["steps"])


@pytest.mark.parametrize("args", [["softmax-layer", "--n", "64", "--n-prev", "2", "--m", "4"], ["softmax-layer", "--m", "0"],
                                  ["softmax-layer", "--n-prev", "x"], ["--n-prev", "2"]])
def test_layer_bad_sizes_exit_2(symgrad_main, args):
    result = symgrad_main("derive", *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
