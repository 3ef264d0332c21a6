"""The smooth vocabulary: sqrt and erf (entries of functions.py), mean (over a vector and over every
entry of a matrix) and norm; centring and normalising (x − mean(x), layer norm) by x; plain
Python numbers as the language's constants; the softplus identity decided through e^D = 1.

Each derivation is checked by the engine's own checker and, independently, against finite
differences of the loss as the expression language builds it (exact rationals, or 40 digits)."""

import random

import pytest
from sympy import Integer, IndexedBase, Rational, Symbol, erf, sqrt

from support import final_gradient_entries
from symgrad.derivation.engine import Problem, derive_problem
from symgrad.identity_file import load_file
from symgrad.language import LanguageError, Variable, evaluate
from symgrad.verify import check_derivation
from symgrad.verify.concrete import ConcreteModel
from symgrad.verify.identity import check_at_size

N = 3
SMOOTH = [
    ("dot(v, sqrt(exp(z)))", {"z": "n", "v": "n"}),
    ("dot(v, sqrt(z * z + 1))", {"z": "n", "v": "n"}),
    ("dot(v, erf(z))", {"z": "n", "v": "n"}),
    ("dot(v, z * (1 + erf(z / sqrt(2))) / 2)", {"z": "n", "v": "n"}),  # exact GELU (sqrt(2) a number)
    ("mean(z * z)", {"z": "n"}),
    ("mean(exp(z)) + mean(v * z)", {"z": "n", "v": "n"}),
    ("norm(z)", {"z": "n"}),
    ("1 - dot(z, v) / (norm(z) * norm(v))", {"z": "n", "v": "n"}),  # cosine embedding
    ("dot(v, z - sum(z))", {"z": "n", "v": "n"}),  # z entry by entry and inside sum(z)
    ("dot(v, z - mean(z))", {"z": "n", "v": "n"}),
    ("dot(v, (z - mean(z)) / sqrt(mean((z - mean(z))**2) + eps))", {"z": "n", "v": "n", "eps": "scalar"}),
]


def _atoms(variables, n=N):
    out = []
    for name, kind in variables.items():
        out += [Symbol(name, real=True)] if kind == "scalar" else [IndexedBase(name, real=True)[k + 1] for k in range(n)]
    return out


def _final(derivation):
    return final_gradient_entries(derivation, N)


def _matches_finite_differences(text, variables, derivation, seed):
    loss = evaluate(text.replace("sqrt(2)", "1.4142135623730950488"),
                    {name: Variable(name, None if kind == "scalar" else N) for name, kind in variables.items()},
                    constants={"n": N}) if "sqrt(2)" in text else \
        evaluate(text, {name: Variable(name, None if kind == "scalar" else N) for name, kind in variables.items()},
                 constants={"n": N})
    final = _final(derivation)
    rng = random.Random(seed)
    z = IndexedBase("z", real=True)
    h = Rational(1, 10 ** 15)
    for _ in range(3):
        point = {a: (Rational(rng.randint(1, 64), 64) if a.name == "eps" else Rational(rng.randint(-128, 128), 64))
                 for a in _atoms(variables)}
        for k in range(N):
            up, down = dict(point), dict(point)
            up[z[k + 1]] += h
            down[z[k + 1]] -= h
            expected = ((loss.xreplace(up) - loss.xreplace(down)) / (2 * h)).evalf(45)
            derived = final[k].xreplace(point).evalf(45)
            assert abs(derived - expected) < 1e-12 * max(1, abs(expected)), (text, k, derived, expected)


def _derive(text, variables, size):
    problem = Problem(text.replace("sqrt(2)", "1.4142135623730950488"), variables, wrt="z", size=size)
    return check_derivation(derive_problem(problem))


@pytest.mark.parametrize("text, variables", SMOOTH, ids=[t for t, _ in SMOOTH])
def test_the_smooth_vocabulary_derives_proven_and_matches_finite_differences(text, variables):
    derivation = _derive(text, variables, N)
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    _matches_finite_differences(text, variables, derivation, seed=text)


@pytest.mark.parametrize("text, variables", SMOOTH[:-1], ids=[t for t, _ in SMOOTH[:-1]])
def test_the_smooth_vocabulary_derives_for_every_n(text, variables):
    """(Layer norm for every n is left out of the suite: it is proven, all 17 steps, but took 957 s of
    wall time on the shared 2-core machine, step 16 alone 687 s.)"""
    derivation = _derive(text, variables, "symbolic")
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]


def test_mean_over_a_matrix_is_over_every_entry():
    """mean(W * W) over an n × p matrix is Σ W² / (n p): its gradient is 2W / (n p) = W / 3."""
    problem = Problem("mean(W * W)", {"W": "n x p"}, wrt="W", sizes={"n": 2, "p": 3})
    derivation = check_derivation(derive_problem(problem))
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    concrete = ConcreteModel(derivation.model)
    W = IndexedBase("W", real=True)
    final = [s for s in derivation.steps if s.free_indices][-1]
    for row in (1, 2):
        for col in (1, 2, 3):
            entry = final.rhs.xreplace(dict(zip(final.free_indices, (Integer(row), Integer(col)))))
            assert (concrete.base_form(concrete.explicit(entry)) - W[row, col] / 3).expand() == 0


def test_sqrt_and_erf_are_the_sympy_functions_and_their_derivatives_are_stated():
    from symgrad.functions import ELEMENTWISE

    x = Symbol("x", positive=True)
    for name, function in (("sqrt", sqrt), ("erf", erf)):
        entry = ELEMENTWISE[name]
        assert entry.value(x) == function(x)
        assert (entry.derivative(entry.value(x), x) - function(x).diff(x)).simplify() == 0


def test_constants_may_be_plain_python_numbers():
    variables = {"z": Variable("z", 3), "x": Variable("x", 3)}
    assert evaluate("n", variables, constants={"n": 3}) == 3
    assert evaluate("sum(z) / n", variables, constants={"n": 3}) == \
        sum(IndexedBase("z", real=True)[k] for k in (1, 2, 3)) / 3
    assert evaluate("jacobian(grad(n, z), x)", variables, constants={"n": 3}).is_zero_matrix
    assert evaluate("n * 0.5", variables, constants={"n": Integer(3)}) == Rational(3, 2)


def test_huber_needs_a_positive_number_for_delta():
    variables = {"z": Variable("z", 2), "d": Variable("d", None)}
    with pytest.raises(LanguageError, match="positive number"):
        evaluate("huber(z, d)", variables)
    with pytest.raises(LanguageError, match="positive number"):
        evaluate("huber(z, -1)", variables)


@pytest.mark.parametrize("lhs, rhs, holds", [
    ("log(1 + exp(z)) - log(1 + exp(-z))", "z", True),
    ("log(1 + exp(z)) - log(1 + exp(-z))", "z + 1 / 1000000", False),
    ("log(exp(z) + exp(2 * z)) - log(1 + exp(z))", "z", True),
])
def test_identities_of_logs_decided_through_the_exponential(tmp_path, lhs, rhs, holds):
    path = tmp_path / "ids.toml"
    path.write_text(f'[[identity]]\nname = "t"\nvars = {{ z = "scalar" }}\nn = [1]\nlhs = "{lhs}"\nrhs = "{rhs}"\n',
                    encoding="utf-8")
    (identity,) = load_file(path)
    result = check_at_size(identity, 1)
    assert result.holds is holds, result.detail


@pytest.mark.parametrize("size", [N, "symbolic"])
def test_a_power_with_a_declared_scalar_exponent_of_a_positive_base(size):
    """x ** g, g a scalar variable: for exp(z) and softmax(z), whose values are positive. (At a
    symbolic n the two short ones only: the focal loss's symbolic proof, minutes long, is the
    catalog's FocalLoss, checked by test_verify's run of derivations/.)"""
    texts = ("sum(exp(z) ** g)", "dot(v, softmax(z) ** g)",
             "-dot(v, (1 - softmax(z))**g * log(softmax(z)))",  # the focal loss: 0 < softmax < 1
             "dot(v, (1 - sigmoid(z))**g)", "dot(v, (2 - softmax(z))**g)")
    for text in texts if size == N else texts[:2]:
        variables = {"z": "n", "v": "n", "g": "scalar"}
        derivation = check_derivation(derive_problem(Problem(text, variables, wrt="z", size=size)))
        assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
        if size == N:
            _matches_finite_differences(text, variables, derivation, seed=text)


def test_a_power_with_a_variable_exponent_of_a_base_of_any_sign_is_refused():
    from symgrad.errors import UsageError

    with pytest.raises(UsageError, match="positive"):
        derive_problem(Problem("sum(z ** g)", {"z": "n", "g": "scalar"}, wrt="z", size=N))
    for text in ("dot(v, (0.5 - softmax(z))**g)", "dot(v, (1 - z)**g)", "dot(v, (1 - softmax(z) * 2)**g)"):
        with pytest.raises(UsageError, match="positive"):
            derive_problem(Problem(text, {"z": "n", "v": "n", "g": "scalar"}, wrt="z", size=N))
    # over one entry softmax is 1 and 1 − softmax is 0: refused at n = 1, with the reason
    with pytest.raises(UsageError, match="over 1 entry is 0"):
        derive_problem(Problem("-dot(v, (1 - softmax(z))**g * log(softmax(z)))",
                               {"z": "n", "v": "n", "g": "scalar"}, wrt="z", size=1))
    with pytest.raises(LanguageError, match="scalar variable"):
        evaluate("z ** z", {"z": Variable("z", 2)})
