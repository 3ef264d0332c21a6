"""The generic layer: an abstract activation g declared in the language (``--vars 'g=function'``)
and ``derive network --generic`` — the course's four equations proven once for every activation:

    dZ[l] = dA[l] ⊙ g[l]′(Z[l]),  dW[l] = dZ[l] A[l−1]ᵀ,  db[l] = dZ[l] 1,  dA[l−1] = W[l]ᵀ dZ[l]

(with the 1/m of J inside ∂J). The parser accepts g only where it is declared and applied to one
argument; every step is proven with g undefined (exact), and numerically with two concrete smooth
functions in its place; the final matrices, with g := tanh and g := sin + x/3 substituted, agree with
finite differences of a NumPy network; a corrupted step is not proven; the LaTeX compiles cleanly.
"""

from dataclasses import replace

import numpy as np
import pytest
from sympy import Indexed, Lambda, Symbol, sin, tanh
from sympy.matrices.expressions import HadamardProduct

from symgrad.api import derive_expression, derive_network, render
from symgrad.errors import UsageError
from symgrad.functions import AbstractFunction, abstract_sympy
from symgrad.language import LanguageError, parse_tree
from symgrad.notation import Entrywise
from symgrad.verify import check_derivation
from symgrad.verify.concrete import ConcreteModel
from tests.support import compile_latex, needs_latex, run
from tests.test_networks import final_forms, numeric_gradient, random_values, softmax_columns

RNG = np.random.default_rng(20261205)
TWO_LAYER = "g=function,W1=h x p,X=p x m,b1=h,W2=n x h,Y=n x m"
COST = "sum((W2 @ g(W1 @ X + b1) - Y) ** 2) / m / 2"


# -- the language -----------------------------------------------------------------------------------
def test_parse_tree_accepts_a_declared_function_and_only_a_declared_one():
    parse_tree("g(W1 @ X + b1)", matrices=True, functions=("g",))
    with pytest.raises(LanguageError, match="unknown function 'g'"):
        parse_tree("g(W1 @ X + b1)", matrices=True)


@pytest.mark.parametrize("expression, variables, message", [
    ("sum(W1 @ X + g)", TWO_LAYER, "declared function"),  # g used as a value
    ("sum(g * (W1 @ X))", TWO_LAYER, "declared function"),
    ("sum(g(W1 @ X, X))", TWO_LAYER, "takes 1 argument"),  # g of two arguments
    ("sum(tanh(W1 @ X))", "tanh=function,W1=h x p,X=p x m", "already a function of the language"),  # clash
    ("sum(h(W1 @ X))", "h=function,W1=h x p,X=p x m", "both a size and a declared function"),
])
def test_misuse_of_a_declared_function_is_a_clear_usage_error(expression, variables, message):
    with pytest.raises(UsageError, match=message):
        derive_expression(expression, variables=variables, wrt="W1", sizes="h=2,p=2,m=2", check=False)


def test_a_name_declared_twice_is_refused():
    with pytest.raises(UsageError, match="declared twice"):
        derive_expression("sum(g(W1 @ X))", variables="g=function,g=n,W1=h x p,X=p x m", wrt="W1",
                          sizes="h=2,p=2,m=2", check=False)


def test_cli_misuse_prints_one_line_and_exits_2():
    result = run("derive", "--expr", "sum(g(W1 @ X, X))", "--wrt", "W1", "--vars", "g=function,W1=h x p,X=p x m",
                 "--sizes", "h=2,p=2,m=2")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "takes 1 argument" in result.stderr


def test_declared_function_leaves_other_problems_alone():
    """Declaring g in one derivation does not make g a function of the language for the next."""
    derive_expression("sum(g(W1 @ X))", variables="g=function,W1=h x p,X=p x m", wrt="W1", sizes="h=2,p=2,m=1",
                      check=False)
    with pytest.raises(UsageError, match="unknown function 'g'"):
        derive_expression("sum(g(W1 @ X))", variables="W1=h x p,X=p x m", wrt="W1", sizes="h=2,p=2,m=1",
                          check=False)


def test_g_prime_prints_as_the_course_writes_it():
    from symgrad.output.latex import PaperLatexPrinter
    from symgrad.output.pretty import TerminalPrinter

    x = Symbol("x", real=True)
    g = abstract_sympy("g")
    assert g(x).diff(x) == abstract_sympy("g", 1)(x)
    assert PaperLatexPrinter().doprint(g(x).diff(x)) == r"g'\left(x\right)"
    assert "g′(x)" in TerminalPrinter().doprint(g(x).diff(x))
    assert PaperLatexPrinter().doprint(abstract_sympy("g1", 1)(x)) == r"{g_{1}}'\left(x\right)"


# -- the expression language with g, checked ---------------------------------------------------------
def test_an_expression_with_g_is_proven_and_reads_back_with_g_prime():
    derivation = derive_expression(COST, variables=TWO_LAYER, wrt="W1,b1", sizes="n=2,h=3,p=2,m=2")
    assert derivation.proven
    assert all(step.check.numeric for step in derivation.steps), "every step also checked numerically"
    forms = final_forms(derivation)
    assert any(isinstance(e, Entrywise) and isinstance(e.function.expr, AbstractFunction)
               and e.function.expr.order == 1 for e in forms["W1"].atoms(Entrywise))


# -- the network recipe --------------------------------------------------------------------------------
def _values(sizes):
    shapes = {"X": (sizes["n0"], sizes["m"]), "W1": (sizes["n1"], sizes["n0"]), "b1": (sizes["n1"],),
              "W2": (sizes["n2"], sizes["n1"]), "b2": (sizes["n2"],), "Y": (sizes["n2"], sizes["m"])}
    return random_values(shapes, "columns")


def _numpy_cost(activation):
    def cost(v):
        a = activation(v["W1"] @ v["X"] + v["b1"][:, None])
        z = v["W2"] @ a + v["b2"][:, None]
        return -(v["Y"] * np.log(softmax_columns(z))).sum() / v["X"].shape[1]
    return cost


X = Symbol("x", real=True)
# g := the function, g′ := its true derivative (SymPy and NumPy)
SUBSTITUTIONS = {
    "tanh": (tanh(X), np.tanh),
    "sin": (sin(X) + X / 3, lambda z: np.sin(z) + z / 3),
}


def _evaluate_with(form, derivation, values, g_value):
    """The final matrix at ``values`` with g1 := g_value and g1′ := its derivative, through the
    checker's explicit form (independent of how the engine built it)."""
    concrete = ConcreteModel(derivation.model)
    unfolded = concrete.base_form(concrete.explicit(form))
    g, g_prime = abstract_sympy("g1"), abstract_sympy("g1", 1)
    unfolded = unfolded.replace(g, Lambda(X, g_value)).replace(g_prime, Lambda(X, g_value.diff(X)))
    assert not unfolded.atoms(AbstractFunction)
    substitutions = {}
    for atom in unfolded.atoms(Indexed):
        index = tuple(int(k) - 1 for k in atom.indices)
        substitutions[atom] = float(values[str(atom.base.label)][index if len(index) > 1 else index[0]])
    return np.array(unfolded.xreplace(substitutions).evalf(), dtype=float)


# the tests sharing a module fixture below run on one pytest-xdist worker, so it is built once
on_one_worker = pytest.mark.xdist_group("generic")


@pytest.fixture(scope="module")
def generic_fixed():
    return derive_network("g", "softmax", sizes={"n0": 2, "n1": 3, "n2": 2, "m": 2})


@on_one_worker
def test_generic_network_is_proven_at_fixed_sizes(generic_fixed):
    assert generic_fixed.proven
    assert all(step.check.exact and step.check.numeric for step in generic_fixed.steps)


def _course_equations(derivation):
    """The matrix steps that state the course's four equations, by the form of their rhs."""
    from symgrad.notation import GradientMatrix
    found = {}
    for step in derivation.steps:
        lhs, rhs = step.lhs, step.rhs
        if not isinstance(lhs, GradientMatrix):
            continue
        name = str(lhs.x.base.label)
        gradients = rhs.atoms(GradientMatrix)
        if name == "Z1" and isinstance(rhs, HadamardProduct) and gradients:
            found["dZ1"] = step
        elif name in ("W1", "b1", "A1") and len(gradients) == 1:
            found[f"d{name}"] = step
    return found


@on_one_worker
def test_generic_network_states_the_four_course_equations(generic_fixed):
    found = _course_equations(generic_fixed)
    assert set(found) == {"dZ1", "dW1", "db1", "dA1"}
    for step in found.values():
        assert step.check.exact and step.check.numeric
    entrywise = found["dZ1"].rhs.atoms(Entrywise)
    assert any(isinstance(e.function.expr, AbstractFunction) and e.function.expr.order == 1 for e in entrywise)


@pytest.mark.parametrize("name", sorted(SUBSTITUTIONS))
@on_one_worker
def test_final_matrices_with_g_substituted_match_finite_differences(generic_fixed, name):
    g_value, numpy_g = SUBSTITUTIONS[name]
    forms = final_forms(generic_fixed)
    for _ in range(2):  # two random points
        values = _values({"n0": 2, "n1": 3, "n2": 2, "m": 2})
        cost = _numpy_cost(numpy_g)
        for variable in ("W1", "b1", "W2", "b2"):
            derived = _evaluate_with(forms[variable], generic_fixed, values, g_value).reshape(values[variable].shape)
            assert np.allclose(derived, numeric_gradient(cost, values, variable), atol=1e-5), (name, variable)


def test_generic_network_is_proven_at_symbolic_sizes():
    derivation = derive_network("g", "softmax", sizes=dict.fromkeys(("n0", "n1", "n2", "m"), "symbolic"))
    assert derivation.proven
    assert set(_course_equations(derivation)) == {"dZ1", "dW1", "db1", "dA1"}


@pytest.fixture(scope="module")
def generic_small():
    """The generic network at the smallest sizes, checked: corrupted and rendered below."""
    return derive_network("g", "softmax", sizes={"n0": 2, "n1": 2, "n2": 2, "m": 1})


@pytest.mark.parametrize("corruption", ["g for g′ in dZ1", "g′ for g in the local derivative"])
@on_one_worker
def test_a_corrupted_step_with_g_is_not_proven(generic_small, corruption):
    derivation = generic_small
    g, g_prime = abstract_sympy("g1"), abstract_sympy("g1", 1)
    steps = list(derivation.steps)
    if corruption == "g for g′ in dZ1":
        k = next(k for k, s in enumerate(steps) if isinstance(s.rhs, HadamardProduct) and s.rhs.atoms(Entrywise))
        target = steps[k].rhs
        bad = target.replace(lambda e: isinstance(e, Lambda) and e.expr.func is g_prime,
                             lambda e: Lambda(e.variables, g(*e.variables)))
    else:
        k = next(k for k, s in enumerate(steps) if s.rhs.has(g_prime) and not s.rhs.atoms(Entrywise))
        target = steps[k].rhs
        bad = target.replace(g_prime, g)
    assert bad != target
    steps[k] = replace(steps[k], rhs=bad, check=None)
    # the steps up to the corrupted one, checked afresh in order (a step may lean on earlier ones)
    checked = check_derivation(replace(derivation, steps=tuple(steps[:k + 1])))
    assert not checked.proven
    assert not checked.steps[k].check.exact
    # the numeric check, with concrete functions for g, refutes it too (not just "not evaluated")
    assert checked.steps[k].check.numeric is False, checked.steps[k].check.detail


# -- LaTeX --------------------------------------------------------------------------------------------
def _compile_without_overfull(tmp_path, latex: str):
    tex = tmp_path / "network.tex"
    tex.write_text(latex)
    compile_latex(tex)
    log = tex.with_suffix(".log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log, [line for line in log.splitlines() if "Overfull" in line]


@needs_latex
@on_one_worker
def test_generic_network_latex_compiles_without_overfull_boxes(generic_small, tmp_path):
    _compile_without_overfull(tmp_path, render(generic_small, "latex", standalone=True))


@needs_latex
def test_tanh_network_latex_compiles_without_overfull_boxes(tmp_path):
    """The issue's "Done when": derive network --hidden tanh --output-layer softmax, standalone."""
    result = run("derive", "network", "--hidden", "tanh", "--output-layer", "softmax", "--format", "latex", "--standalone")
    assert result.returncode == 0, result.stderr
    _compile_without_overfull(tmp_path, result.stdout)
