"""n = 1024 (issue 17): the default derivation derived and checked with template matrices, its
certificate re-checked entry by entry from the file alone, and corrupted steps still caught.

One derivation at n = 1024 is shared by the module (a few seconds: derive, check, render)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sympy import (
    Derivative,
    Function,
    Indexed,
    IndexedBase,
    KroneckerDelta,
    Symbol,
    lambdify,
    sympify,
)

from symgrad import derive, render
from symgrad.model import TemplateMatrix
from symgrad.steps import Step
from symgrad.verify import StepChecker

N = 1024
# pytest-xdist: the module's tests run on one worker, so that the n = 1024 derivation of the
# module fixture below is made once (without the group, each worker made its own, and made it
# again whenever it ran a test of another module in between)
pytestmark = pytest.mark.xdist_group("large_n")


@pytest.fixture(scope="module")
def checked():
    return derive("softmax-cross-entropy", n=N)


@pytest.fixture(scope="module")
def certificate_text(checked):
    return render(checked, "json")


def test_every_step_is_proven_in_index_form_and_every_entry_screened(checked):
    assert checked.proven
    jacobian = next(s for s in checked.steps if s.title.startswith(rf"The ${N} \times {N}$ Jacobian"))
    assert isinstance(jacobian.rhs, TemplateMatrix) and jacobian.rhs.shape == (N, N)
    assert f"exact: all {N * N} entries, in index form" in jacobian.check.detail
    assert f"float screen: all {N * N} entries at 2 random points" in jacobian.check.detail
    for step in checked.steps:
        assert step.check.exact is True and step.check.numeric is True, step.title
        # every entry evaluated: by the float screen, or (a step of at most 12 entries) each at 50 digits
        every_entry = "float screen: all" in step.check.detail or re.search(r"numeric: (\d+) of \1 entr", step.check.detail)
        assert "in index form" in step.check.detail and every_entry, step.title


def test_the_terminal_and_latex_elide_at_1024(checked):
    text = render(checked, "text")
    latex = render(checked, "latex")
    assert len(text) < 20000 and "⋯" in text and "a₁₀₂₄" in text
    assert len(latex) < 20000 and r"\cdots" in latex


def test_the_certificate_is_small_deterministic_and_templated(checked, certificate_text):
    assert len(certificate_text.encode()) < 3 * 1024 * 1024
    assert render(checked, "json") == certificate_text
    assert "Dummy" not in certificate_text
    cert = json.loads(certificate_text)
    matrices = [s for s in cert["steps"] if "matrix" in s]
    assert any(s["matrix"]["shape"] == [N, N] for s in matrices)
    assert cert["definition_templates"] and "re-check" in cert["reading"]


# -- a re-check from the file alone: SymPy to read it, numpy to evaluate every entry --------------
STEP = 1e-30


def _delta(p, q):
    return np.equal(p, q).astype(float)


def _vectorised(expr, arguments):
    """numpy over index grids: KroneckerDelta as an elementwise comparison."""
    expr = expr.replace(lambda e: isinstance(e, KroneckerDelta), lambda e: Function("delta")(*e.args))
    return lambdify(arguments, expr, modules=[{"delta": _delta}, "numpy"])


def test_certificate_rechecks_every_entry_with_sympy_and_numpy_alone(certificate_text):
    """Every entry of every step, at one random point, from the JSON alone: abbreviations from
    ``definition_templates``, derivatives by complex step as ``derivatives`` states (by a base
    variable: through the definitions; by an abbreviation: its family held free), and the
    assumption Σ y = 1 by solving for the last label. Nothing of symgrad's checker is used."""
    cert = json.loads(certificate_text)
    n = cert["n"]
    z, y, a = IndexedBase(Symbol("z", real=True)), IndexedBase(Symbol("y", real=True)), IndexedBase(Symbol("a", positive=True))
    L = Symbol("L", real=True)
    templates = {sympify(t["lhs"]): sympify(t["rhs"]) for t in cert["definition_templates"]}
    (a_template,) = [k for k in templates if isinstance(k, Indexed)]
    a_index = a_template.indices[0]
    a_of = _vectorised(templates[a_template], [z, a_index])
    loss_of = _vectorised(templates[L], [a, y])
    rng = np.random.default_rng(17)
    zv = np.concatenate([[0.0], rng.uniform(-2, 2, n)])
    yv = np.concatenate([[0.0], rng.uniform(-2, 2, n)])
    yv[n] = 1 - yv[1:n].sum()  # the assumption Σ y = 1, solved for y_n
    grid = np.arange(1, n + 1)

    def softmax(zs):
        return np.concatenate([[0.0], a_of(zs, grid)])

    av = softmax(zv)
    # complex-step derivative tables, 1-based (row/column 0 unused)
    jac = np.zeros((n + 1, n + 1))
    for q in range(1, n + 1):
        zc = zv.astype(complex)
        zc[q] += 1j * STEP
        jac[1:, q] = np.imag(a_of(zc, grid)) / STEP
    dl_da = np.zeros(n + 1)
    for p in range(1, n + 1):
        ac = av.astype(complex)
        ac[p] += 1j * STEP
        dl_da[p] = np.imag(loss_of(ac, yv)) / STEP
    dl_dz = np.zeros(n + 1)
    dl_dz[1:] = dl_da[1:] @ jac[1:, 1:]  # the chain rule for the reference (checked below by complex step)
    zc = zv.astype(complex)
    zc[7] += 1j * STEP
    assert np.isclose(np.imag(loss_of(softmax(zc), yv)) / STEP, dl_dz[7], rtol=1e-9)

    tables = {("a", "z"): IndexedBase("Jaz"), ("L", "a"): IndexedBase("DLa"), ("L", "z"): IndexedBase("DLz")}

    def as_table(node):
        f, x = node.expr, node.variables[0]
        name = (f.base.label.name if isinstance(f, Indexed) else f.name, x.base.label.name)
        table = tables[name]
        return table[f.indices[0], x.indices[0]] if isinstance(f, Indexed) else table[x.indices[0]]

    values = {"z": zv, "y": yv, "a": av, "L": loss_of(av, yv), "Jaz": jac, "DLa": dl_da, "DLz": dl_dz}
    compared = 0
    for step in cert["steps"]:
        free = [Symbol(x, integer=True, positive=True) for x in step["free_indices"]]
        shape = [hi for lo, hi in step["index_ranges"].values()]
        axes = [np.arange(1, hi + 1).reshape([-1 if k == m else 1 for m in range(len(free))])
                for k, hi in enumerate(shape)]
        sides = []
        for text in (step["lhs"], step["rhs"]):
            expr = sympify(text).replace(lambda e: isinstance(e, Derivative), as_table)
            names = sorted({s.name for s in expr.atoms(IndexedBase)} | ({"L"} if expr.has(L) else set()))
            arguments = [IndexedBase(s) if s != "L" else L for s in names]
            expr = expr.xreplace({b: IndexedBase(b.label.name) for b in expr.atoms(IndexedBase)})
            function = _vectorised(expr, [*arguments, *free])
            sides.append(np.broadcast_to(function(*[values[s] for s in names], *axes), shape))
        left, right = sides
        assert np.allclose(left, right, rtol=1e-7, atol=1e-12), step["title"]
        compared += left.size
    assert compared > N * N  # the Jacobian's every entry, and every other step's


# -- corrupted steps at n = 1024 are refuted ----------------------------------------------------
def _refuted(derivation, step) -> str:
    check = StepChecker(derivation.model).check(step, "corrupted")
    assert check.exact is False, check.detail
    return check.detail


def test_a_wrong_entry_in_the_middle_of_the_jacobian_is_refuted(checked):
    step = next(s for s in checked.steps if isinstance(s.rhs, TemplateMatrix))
    matrix = step.rhs
    i, j = matrix.indices
    wrong = TemplateMatrix(matrix.template + KroneckerDelta(i, 512) * KroneckerDelta(j, 513) / 1000,
                           (i, N), (j, N))
    detail = _refuted(checked, Step(step.title, step.rule, step.lhs, wrong))
    assert "= 512, " in detail and "= 513:" in detail and "refuted numerically" in detail


def test_a_wrong_sign_in_one_gradient_component_is_refuted(checked):
    step = checked.steps[-2]  # ∂L/∂z_j = a_j − y_j, under Σ y = 1
    (j,) = step.free_indices
    wrong = step.rhs * (1 - 2 * KroneckerDelta(j, 700))
    detail = _refuted(checked, Step(step.title, step.rule, step.lhs, wrong, step.free_indices, step.assumptions))
    assert "j = 700:" in detail


def test_a_wrong_sign_in_the_gradient_vector_is_refuted(checked):
    step = checked.steps[-1]  # (∂L/∂z)ᵀ = a − y
    i = Symbol("i", integer=True, positive=True)
    a, y = IndexedBase(Symbol("a", positive=True)), IndexedBase(Symbol("y", real=True))
    wrong = TemplateMatrix((a[i] - y[i]) * (1 - 2 * KroneckerDelta(i, 700)), (i, N), (1, 1))
    detail = _refuted(checked, Step(step.title, step.rule, step.lhs, wrong, (), step.assumptions))
    assert "= 700:" in detail
