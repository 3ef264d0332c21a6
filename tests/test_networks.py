"""Networks (issue 15): hidden layers, several weights at once, every result read back as a
vector or matrix with ⊙ — each final matrix compared with finite differences of an independent
NumPy implementation at random points, for sizes that differ and sizes that are equal."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from sympy import Indexed, Symbol, Transpose
from sympy.matrices.expressions import HadamardProduct, MatrixExpr

from symgrad.api import derive_expression, derive_network
from symgrad.errors import UsageError
from symgrad.notation import GradientMatrix, MatVar, PartialD, Vec
from symgrad.steps import Rule
from symgrad.verify.concrete import ConcreteModel

RNG = np.random.default_rng(20261204)


def final_forms(derivation) -> dict[str, MatrixExpr]:
    """Variable name → the last matrix/vector form of its gradient in the derivation."""
    out = {}
    for step in derivation.steps:
        if step.rule in (Rule.MATRIX_FORM, Rule.VECTOR_FORM):
            lhs = step.lhs.arg if isinstance(step.lhs, Transpose) else step.lhs  # (∂L/∂z)ᵀ
            if isinstance(lhs, GradientMatrix) or (isinstance(lhs, PartialD) and not isinstance(lhs.f, Vec)):
                out[str(lhs.x.base.label)] = step.rhs
    return out


def evaluate(form: MatrixExpr, derivation, values: dict[str, np.ndarray]) -> np.ndarray:
    """The matrix expression at ``values`` (every base variable), through the checker's own
    explicit form and the model's definitions — independent of how the engine built it."""
    concrete = ConcreteModel(derivation.model)
    unfolded = concrete.base_form(concrete.explicit(form))
    substitutions = {}
    for atom in unfolded.atoms(Indexed):
        name = str(atom.base.label)
        index = tuple(int(k) - 1 for k in atom.indices)
        substitutions[atom] = float(values[name][index if len(index) > 1 else index[0]])
    for atom in unfolded.free_symbols:
        if isinstance(atom, Symbol) and atom.name in values and np.ndim(values[atom.name]) == 0:
            substitutions[atom] = float(values[atom.name])
    return np.array(unfolded.xreplace(substitutions).evalf(), dtype=float)


def numeric_gradient(cost, values: dict, name: str, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(values[name])
    for index in np.ndindex(values[name].shape):
        up, down = ({k: v.copy() for k, v in values.items()} for _ in range(2))
        up[name][index] += eps
        down[name][index] -= eps
        grad[index] = (cost(up) - cost(down)) / (2 * eps)
    return grad


def softmax_columns(z):
    e = np.exp(z - z.max(axis=0))
    return e / e.sum(axis=0)


ACTIVATIONS = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "exp": np.exp,
               "softplus": lambda z: np.log1p(np.exp(z))}


def network_cost(hidden, output):
    def cost(v):
        a = v["X"]
        for layer, g in enumerate(hidden, 1):
            a = ACTIVATIONS[g](v[f"W{layer}"] @ a + v[f"b{layer}"][:, None])
        last = len(hidden) + 1
        z = v[f"W{last}"] @ a + v[f"b{last}"][:, None]
        m = v["X"].shape[1]
        if output == "softmax":
            return -(v["Y"] * np.log(softmax_columns(z))).sum() / m
        if output == "sigmoid":
            s = 1 / (1 + np.exp(-z))
            return -(v["Y"] * np.log(s) + (1 - v["Y"]) * np.log(1 - s)).sum() / m
        return ((z - v["Y"]) ** 2).sum() / m / 2
    return cost


def random_values(shapes: dict, labels: str | None = None) -> dict:
    values = {name: RNG.normal(size=shape) for name, shape in shapes.items()}
    if labels == "columns":  # one-hot columns: Σ_i Y_is = 1, the assumption the derivation uses
        y = np.zeros(shapes["Y"])
        y[RNG.integers(0, shapes["Y"][0], size=shapes["Y"][1]), np.arange(shapes["Y"][1])] = 1
        values["Y"] = y
    elif labels == "binary":
        values["Y"] = RNG.integers(0, 2, size=shapes["Y"]).astype(float)
    return values


def check_against_finite_differences(derivation, cost, values, names):
    forms = final_forms(derivation)
    for name in names:
        assert name in forms, f"no matrix form for d{name}"
        derived = evaluate(forms[name], derivation, values).reshape(values[name].shape)
        assert np.allclose(derived, numeric_gradient(cost, values, name), atol=1e-5), name


@functools.lru_cache(maxsize=None)
def _network(hidden: tuple, output: str, sizes: tuple):
    """One network derived and checked once per test process (derivations are immutable)."""
    return derive_network(list(hidden), output, sizes=dict(sizes))


@pytest.mark.xdist_group("networks")  # one worker, so _network's memo serves the test after it
@pytest.mark.parametrize("hidden, output, sizes", [
    (["tanh"], "softmax", {"n0": 2, "n1": 3, "n2": 2, "m": 2}),  # sizes that differ
    (["tanh"], "softmax", {"n0": 2, "n1": 2, "n2": 2, "m": 2}),  # sizes that are equal
    (["sigmoid"], "identity", {"n0": 3, "n1": 2, "n2": 1, "m": 2}),
])
def test_network_gradients_match_finite_differences(hidden, output, sizes):
    derivation = _network(tuple(hidden), output, tuple(sizes.items()))
    assert derivation.proven
    shapes = {"X": (sizes["n0"], sizes["m"])}
    for layer in range(1, len(hidden) + 2):
        shapes[f"W{layer}"] = (sizes[f"n{layer}"], sizes[f"n{layer - 1}"])
        shapes[f"b{layer}"] = (sizes[f"n{layer}"],)
    shapes["Y"] = (sizes[f"n{len(hidden) + 1}"], sizes["m"])
    values = random_values(shapes, "columns" if output == "softmax" else "binary")
    names = [n for n in shapes if n[0] in "Wb"]
    check_against_finite_differences(derivation, network_cost(hidden, output), values, names)


def test_the_float_screen_keeps_numpy_quiet_outside_a_domain():
    """log of a negative pre-activation is a NaN on the float screen's grid, which it skips, never
    a numpy RuntimeWarning printed to the user (a newcomer's `derive network --hidden log`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        derivation = derive_network(["log"], "softmax")
    assert derivation.proven


@pytest.mark.parametrize("activation", ["maximum", "minimum", "leaky_relu", "clip", "huber"])
def test_activations_with_parameters_are_refused_with_a_way_out(activation):
    """Functions of several arguments are not offered for --hidden, and asking for one says
    why and what to do instead (no error inside an expression the user never wrote)."""
    with pytest.raises(UsageError) as refused:
        derive_network([activation], "softmax")
    assert "takes" in str(refused.value) and "--expr" in str(refused.value) and "column" not in str(refused.value)
    with pytest.raises(UsageError) as unknown:
        derive_network(["swish"], "softmax")
    assert "tanh" in str(unknown.value) and activation not in str(unknown.value).split("known:")[1]


def test_a_deep_network_ends_on_a_matrix_step():
    """Two hidden layers: the first layer's gradient ends on a step shaped like it, through the
    level above (dW1 = dZ Xᵀ, as a course writes it), and that step, each upstream gradient
    replaced by its own matrix form in the derivation, matches finite differences."""
    derivation = derive_expression("sum((W3 @ sigmoid(W2 @ tanh(W1 @ X)) - Y) ** 2) / 2", wrt="W1",
                                   variables="X=p x m,W1=h x p,W2=k x h,W3=n x k,Y=n x m",
                                   sizes="p=2,h=2,k=1,n=1,m=1")
    assert derivation.proven
    last = {}
    for step in derivation.steps:
        variable = step.lhs.x if isinstance(step.lhs, (GradientMatrix, PartialD)) else None
        if isinstance(variable, (MatVar, Vec)):
            last[str(variable.base.label)] = step
    assert derivation.steps[-1] is last["W1"]
    forms = {name: step.rhs for name, step in last.items()}
    assert isinstance(forms["W1"], MatrixExpr) and forms["W1"].shape == (2, 2)

    def resolved(form, depth=0):
        inner = {g: forms[str(g.x.base.label)] for g in form.atoms(GradientMatrix)}
        assert depth < 10
        return form if not inner else resolved(form.xreplace(inner), depth + 1)

    def cost(v):
        out = v["W3"] @ (1 / (1 + np.exp(-(v["W2"] @ np.tanh(v["W1"] @ v["X"])))))
        return float(((out - v["Y"]) ** 2).sum() / 2)

    values = random_values({"X": (2, 1), "W1": (2, 2), "W2": (1, 2), "W3": (1, 1), "Y": (1, 1)})
    derived = evaluate(resolved(forms["W1"]), derivation, values).reshape(2, 2)
    assert np.allclose(derived, numeric_gradient(cost, values, "W1"), atol=1e-5)


@pytest.mark.xdist_group("networks")
def test_hidden_layer_gradient_is_a_hadamard_product():
    """dZ[1] = W[2]ᵀ dZ[2] ⊙ g′(Z[1]): the hidden layer's gradient is read back with ⊙."""
    derivation = _network(("tanh",), "softmax", (("n0", 2), ("n1", 2), ("n2", 2), ("m", 2)))
    forms = final_forms(derivation)
    assert forms["Z1"].atoms(HadamardProduct) or isinstance(forms["Z1"], HadamardProduct)


@pytest.mark.parametrize("expression, wrt, variables, sizes, labels", [
    # W2 of size n × h with h ≠ n: the index of size h must not be confused with one of size n
    ("mse(W2 @ sigmoid(W1 @ x + b1), y)", "W1", "W1=h x p,x=p,b1=h,W2=n x h,y=n", "n=2,h=3,p=2", None),
    # logistic regression by its weights: W @ x by a vector
    ("binary_cross_entropy(sigmoid(X @ w), y)", "w", "X=n x p,w=p,y=n", "n=3,p=2", "binary"),
    # an attention score by the query q, with q a variable name and a size d
    ("dot(w, transpose(V) @ softmax(K @ q / s))", "q", "K=n x d,V=n x d,q=d,w=d,s=scalar", "n=3,d=2", None),
    ("cross_entropy(softmax(W @ x + b), y) + lam / 2 * sum(W * W)", "W", "W=n x p,x=p,b=n,y=n,lam=scalar",
     "n=3,p=2", None),
])
def test_issue_examples_prove_and_match_finite_differences(expression, wrt, variables, sizes, labels):
    from symgrad.limits import parse_sizes, parse_variables

    derivation = derive_expression(expression, wrt=wrt, variables=variables, sizes=sizes)
    assert derivation.proven
    declared, size_values = parse_variables(variables), parse_sizes(sizes)
    shapes = {name: () if shape == "scalar" else tuple(size_values[d.strip()] for d in str(shape).split(" x "))
              for name, shape in declared.items()}
    values = {name: RNG.normal(size=shape) if shape else np.array(RNG.uniform(0.5, 1.5))
              for name, shape in shapes.items()}
    if labels == "binary":
        values["y"] = RNG.integers(0, 2, size=shapes["y"]).astype(float)
    check_against_finite_differences(derivation, NUMPY_COSTS[expression], values, [wrt])


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


NUMPY_COSTS = {  # independent NumPy implementations of the issue's examples
    "mse(W2 @ sigmoid(W1 @ x + b1), y)":
        lambda v: ((v["W2"] @ _sigmoid(v["W1"] @ v["x"] + v["b1"]) - v["y"]) ** 2).mean(),
    "binary_cross_entropy(sigmoid(X @ w), y)":
        lambda v: -(v["y"] * np.log(_sigmoid(v["X"] @ v["w"]))
                    + (1 - v["y"]) * np.log(1 - _sigmoid(v["X"] @ v["w"]))).sum(),
    "dot(w, transpose(V) @ softmax(K @ q / s))":
        lambda v: v["w"] @ (v["V"].T @ _softmax(v["K"] @ v["q"] / v["s"])),
    "cross_entropy(softmax(W @ x + b), y) + lam / 2 * sum(W * W)":
        lambda v: -(v["y"] * np.log(_softmax(v["W"] @ v["x"] + v["b"]))).sum() + v["lam"] / 2 * (v["W"] ** 2).sum(),
}


def test_user_names_are_never_refused_for_indices():
    """q, s, d as variables or sizes: the engine picks its indices around them."""
    derivation = derive_expression("dot(q, W @ s)", wrt="s", variables="q=n,W=n x p,s=p", sizes="n=2,p=3")
    assert derivation.proven
    names = {str(x) for step in derivation.steps for x in step.free_indices}
    assert not names & {"q", "s", "W", "n", "p"}


def test_index_names_never_clash_with_sizes():
    derivation = derive_expression("mse(W2 @ tanh(W1 @ x), y)", wrt="W1", variables="W1=h x d,x=d,W2=n x h,y=n",
                                   sizes="n=2,h=3,d=2")
    assert derivation.proven
    indices = {str(x) for step in derivation.steps for x in step.free_indices}
    assert not any(name.startswith(("h_", "d_")) or name in ("h", "d", "n") for name in indices)


def test_several_variables_from_the_command_line_share_levels():
    derivation = derive_expression("cross_entropy(softmax(W2 @ tanh(W1 @ X + b1) + b2), Y) / m",
                                   wrt="W2,b2,W1,b1", variables="W1=h x p,X=p x m,b1=h,W2=n x h,b2=n,Y=n x m",
                                   sizes="n=2,h=2,p=2,m=1", assume=["colsum(Y) == 1"])
    assert derivation.proven
    assert set(final_forms(derivation)) >= {"W1", "b1", "W2", "b2"}
    # dZ[2] is derived once: one chain-rule step whose lhs is a derivative by an entry of the output's input
    chain_lhs = [str(s.lhs) for s in derivation.steps if s.rule is Rule.CHAIN_RULE]
    assert len(chain_lhs) == len(set(chain_lhs))


@pytest.mark.parametrize("wrt", ["W1,W1", "W1,,b1"])
def test_bad_wrt_lists_are_usage_errors(wrt):
    with pytest.raises(UsageError):
        derive_expression("sum(W1 @ X + b1)", wrt=wrt, variables="W1=n x p,X=p x m,b1=n", sizes="n=2,p=2,m=2")


def test_simplify_never_lengthens():
    """s(1 − s)(2s/3 − 2y/3) must not be expanded into 2s(ys + s − s² − y)/3."""
    from sympy import count_ops

    derivation = derive_expression("mse(sigmoid(z), y)", wrt="z", variables="z=n,y=n", n=3)
    steps = list(derivation.steps)
    for before, after in zip(steps, steps[1:]):
        if after.rule is Rule.SIMPLIFY:
            assert count_ops(after.rhs) <= count_ops(before.rhs)


@pytest.mark.parametrize("expression", ["mse(sigmoid(z), y)", "dot(y, tanh(z))", "sum(log(1 + exp(z)))"])
def test_every_vector_derivation_ends_on_a_vector_in_known_names(expression):
    derivation = derive_expression(expression, wrt="z", variables="z=n,y=n", n=3)
    assert derivation.proven
    last = derivation.steps[-1]
    assert last.rule is Rule.VECTOR_FORM
    named = {str(v.base.label) for v in last.rhs.atoms(Vec, MatVar)}
    assert not named & {"u", "v"}, f"a shorthand is left in the result: {last.rhs}"


def test_a_corrupted_hadamard_readback_is_refuted():
    """A readback step is checked like any other: swapping 1 − s for s in it is caught."""
    from dataclasses import replace

    from sympy.matrices.expressions import MatAdd

    from symgrad.verify import check_derivation

    derivation = derive_expression("mse(sigmoid(z), y)", wrt="z", variables="z=n,y=n", n=3, check=False)
    last = derivation.steps[-1]
    s = next(v for v in last.rhs.atoms(Vec) if str(v.base.label) == "s")
    corrupted = last.rhs.xreplace({MatAdd(*[a for a in last.rhs.atoms(MatAdd)][0].args): s}) \
        if last.rhs.atoms(MatAdd) else None
    assert corrupted is not None and corrupted != last.rhs
    bad = replace(derivation, steps=derivation.steps[:-1] + (replace(last, rhs=corrupted),))
    assert not check_derivation(bad).proven


# --- property: random compositions with random size names ----------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SIZE_NAMES = ["h", "d", "q", "k2", "n1", "width", "r", "s"]
NUMPY_ACTIVATIONS = {"tanh": np.tanh, "sigmoid": _sigmoid, "softplus": lambda z: np.log1p(np.exp(z)),
                     "identity": lambda z: z}


@st.composite
def compositions(draw):
    """A random one- or two-layer composition over a vector or a batch, with random size names
    (each layer a different size or the same), its expression, shapes and NumPy cost."""
    names = draw(st.lists(st.sampled_from(SIZE_NAMES), min_size=3, max_size=3, unique=True))
    inner, hidden, batch = names
    two_layers = draw(st.booleans())
    over_batch = draw(st.booleans())
    g1, g2 = draw(st.sampled_from(list(NUMPY_ACTIVATIONS))), draw(st.sampled_from(list(NUMPY_ACTIVATIONS)))
    bias = draw(st.booleans())
    values = {inner: draw(st.integers(1, 3)), hidden: draw(st.integers(1, 3)), batch: draw(st.integers(1, 2))}
    x = "X" if over_batch else "x"
    variables = {x: f"{inner} x {batch}" if over_batch else inner, "W1": f"{hidden} x {inner}"}
    text = f"W1 @ {x}" + (" + b1" if bias else "")
    if bias:
        variables["b1"] = hidden
    text = text if g1 == "identity" else f"{g1}({text})"
    out = hidden
    if two_layers:
        variables["W2"] = f"{inner} x {hidden}"
        text = f"W2 @ ({text})"
        out = inner
        text = text if g2 == "identity" else f"{g2}({text})"
    loss = draw(st.sampled_from(["sum", "dot"]))
    if loss == "dot":
        variables["w"] = f"{out} x {batch}" if over_batch else out
        text = f"sum(w * ({text}))" if over_batch else f"dot(w, {text})"  # * and @ bind alike
    else:
        text = f"sum({text})"

    def cost(v):
        a = v[x]
        z = v["W1"] @ a + ((v["b1"][:, None] if over_batch else v["b1"]) if bias else 0)
        a = NUMPY_ACTIVATIONS[g1](z)
        if two_layers:
            a = NUMPY_ACTIVATIONS[g2](v["W2"] @ a)
        return float((v["w"] * a).sum()) if loss == "dot" else float(a.sum())

    wrt = draw(st.sampled_from([n for n in variables if n[0] in "Wb"]))
    return text, variables, values, cost, wrt


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compositions())
def test_random_compositions_match_finite_differences(composition):
    text, variables, values, cost, wrt = composition
    used = {d.strip() for shape in variables.values() for d in str(shape).split(" x ")}
    sizes = ",".join(f"{k}={v}" for k, v in values.items() if k in used)
    declared = ",".join(f"{k}={v}" for k, v in variables.items())
    derivation = derive_expression(text, wrt=wrt, variables=declared, sizes=sizes)
    assert derivation.proven, text
    shapes = {name: tuple(values[d.strip()] for d in str(shape).split(" x ")) for name, shape in variables.items()}
    point = {name: RNG.normal(size=shape) for name, shape in shapes.items()}
    check_against_finite_differences(derivation, cost, point, [wrt])
