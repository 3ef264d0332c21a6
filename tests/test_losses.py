"""The loss zoo (derivations/losses.toml): each PyTorch loss module's gradient, as the engine
derives it, compared with finite differences of the loss as the expression language builds it
(exact rationals) and with ``jax.grad`` of an independent ``jax.numpy`` implementation of the
module's documented formula (float64), at random points in every region: each kink argument on
both sides, never within 1/20 of a kink."""

import functools
import random
from pathlib import Path

import pytest
from sympy import Integer, IndexedBase, Rational, Symbol

from symgrad.derivation.engine import derive_problem, problem_from_identity
from symgrad.identity_file import load_file
from symgrad.language import Variable, evaluate
from symgrad.steps import Rule
from symgrad.verify import check_derivation
from symgrad.verify.cases import KINKED, _kinks_of
from symgrad.verify.concrete import ConcreteModel

ZOO = load_file(Path(__file__).resolve().parent.parent / "derivations" / "losses.toml")
N = 3


def _wrt(identity):
    return identity.lhs.rsplit(",", 1)[1].strip().rstrip(")")


def _loss_text(identity):
    return identity.lhs[len("grad("):identity.lhs.rindex(",")]


def _sample(name, variable, rng):
    """A value for one vector entry in the module's domain."""
    if variable == "y" and name in ("MarginRankingLoss", "HingeEmbeddingLoss", "SoftMarginLoss"):
        return Rational(rng.choice((-1, 1)))
    if variable == "x" and name == "BCELoss" or variable == "y" and name in ("BCELoss", "BCEWithLogitsLoss",
                                                                            "MultiLabelSoftMarginLoss"):
        return Rational(rng.randint(1, 63), 64)
    if variable == "y" and name == "KLDivLoss" or variable == "var":
        return Rational(rng.randint(1, 128), 64)
    if variable == "g":  # the focal loss's γ: 0 (cross-entropy) to 4, 2 the usual
        return Rational(rng.randint(0, 256), 64)
    return Rational(rng.randint(-192, 192), 64)


def _points(identity, loss, count=8):
    rng = random.Random(identity.name)
    names = list(identity.variables)
    every = [g for node in loss.atoms(*KINKED) for g in _kinks_of(node)]
    points = []
    for _ in range(2000):
        if len(points) == count:
            break
        point = {}
        for name in names:
            base = IndexedBase(name, real=True)
            if identity.variables[name] == "scalar":
                point[Symbol(name, real=True)] = _sample(identity.name, name, rng)
            elif name == "y" and identity.name in ("NLLLoss", "MultiMarginLoss"):  # one-hot
                hot = rng.randrange(N)
                point.update({base[k + 1]: Rational(int(k == hot)) for k in range(N)})
            elif name == "y" and identity.name == "CrossEntropyLoss":  # probabilities
                weights = [rng.randint(1, 16) for _ in range(N)]
                point.update({base[k + 1]: Rational(w, sum(weights)) for k, w in enumerate(weights)})
            else:
                point.update({base[k + 1]: _sample(identity.name, name, rng) for k in range(N)})
        if all(abs(g.xreplace(point).evalf(30)) > Rational(1, 20) for g in every):
            points.append(point)
    assert len(points) == count
    return points


@functools.lru_cache(maxsize=None)
def _derived_by_name(name):
    return _derive(next(i for i in ZOO if i.name == name))


def _derived(identity):
    return _derived_by_name(identity.name)


def _derive(identity):
    derivation = check_derivation(derive_problem(problem_from_identity(identity, N)))
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    concrete = ConcreteModel(derivation.model)
    derived = [s for s in derivation.steps if s.rule is not Rule.IDENTITY][-1]  # not the rhs itself
    if derived.free_indices:
        (j,) = derived.free_indices
        entries = [derived.rhs.xreplace({j: Integer(k + 1)}) for k in range(N)]
    else:
        entries = list(concrete.explicit(derived.rhs))
    return [concrete.base_form(concrete.explicit(e)) for e in entries]


def _language_loss(identity):
    variables = {name: Variable(name, None if kind == "scalar" else N) for name, kind in identity.variables.items()}
    return evaluate(_loss_text(identity), variables, constants={"n": N})


@pytest.mark.parametrize("identity", ZOO, ids=[i.name for i in ZOO])
def test_each_zoo_gradient_matches_finite_differences_in_every_region(identity):
    loss = _language_loss(identity)
    final = _derived(identity)
    x = IndexedBase(_wrt(identity), real=True)
    h = Rational(1, 10 ** 15)
    for point in _points(identity, loss):
        for k in range(N):
            up, down = dict(point), dict(point)
            up[x[k + 1]] += h
            down[x[k + 1]] -= h
            expected = ((loss.xreplace(up) - loss.xreplace(down)) / (2 * h)).evalf(40)
            derived = final[k].xreplace(point).evalf(40)
            assert abs(derived - expected) < 1e-10 * max(1, abs(expected)), (identity.name, point, k)


def _jax_losses(jnp, jax):
    """The modules' documented formulas (torch.nn docs), default reductions, written with jax."""
    eps = 1e-6

    def pairwise_distance(a, b):
        return jnp.sqrt(jnp.sum((a - b + eps) ** 2))

    def cosine(a, b):
        return jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))

    def huber(r, delta):
        return jnp.where(jnp.abs(r) <= delta, r ** 2 / 2, delta * (jnp.abs(r) - delta / 2))

    return {
        "L1Loss": lambda v: jnp.mean(jnp.abs(v["x"] - v["y"])),
        "MSELoss": lambda v: jnp.mean((v["x"] - v["y"]) ** 2),
        "CrossEntropyLoss": lambda v: -jnp.sum(v["y"] * jax.nn.log_softmax(v["x"])),
        "NLLLoss": lambda v: -v["x"][jnp.argmax(v["y"])],
        "PoissonNLLLoss": lambda v: jnp.mean(jnp.exp(v["x"]) - v["y"] * v["x"]),
        "GaussianNLLLoss": lambda v: 0.5 * jnp.mean(jnp.log(jnp.maximum(v["var"], eps))
                                                    + (v["x"] - v["y"]) ** 2 / jnp.maximum(v["var"], eps)),
        "KLDivLoss": lambda v: jnp.mean(v["y"] * (jnp.log(v["y"]) - v["x"])),
        "BCELoss": lambda v: -jnp.mean(v["y"] * jnp.log(v["x"]) + (1 - v["y"]) * jnp.log(1 - v["x"])),
        "BCEWithLogitsLoss": lambda v: -jnp.mean(v["y"] * jax.nn.log_sigmoid(v["x"])
                                                 + (1 - v["y"]) * jax.nn.log_sigmoid(-v["x"])),
        "MarginRankingLoss": lambda v: jnp.mean(jnp.maximum(0.0, -v["y"] * (v["x"] - v["x2"]))),
        "HingeEmbeddingLoss": lambda v: jnp.mean(jnp.where(v["y"] == 1, v["x"], jnp.maximum(0.0, 1 - v["x"]))),
        "HuberLoss": lambda v: jnp.mean(huber(v["x"] - v["y"], 1.0)),
        "SmoothL1Loss": lambda v: jnp.mean(huber(v["x"] - v["y"], 0.5) / 0.5),
        "SoftMarginLoss": lambda v: jnp.mean(jnp.log1p(jnp.exp(-v["y"] * v["x"]))),
        "MultiLabelSoftMarginLoss": lambda v: -jnp.mean(v["y"] * jax.nn.log_sigmoid(v["x"])
                                                        + (1 - v["y"]) * jax.nn.log_sigmoid(-v["x"])),
        "CosineEmbeddingLoss (y = 1)": lambda v: 1 - cosine(v["x"], v["x2"]),
        "CosineEmbeddingLoss (y = -1)": lambda v: jnp.maximum(0.0, cosine(v["x"], v["x2"])),
        "MultiMarginLoss": lambda v: jnp.sum(jnp.where(jnp.arange(N) == jnp.argmax(v["y"]), 0.0,
                                                       jnp.maximum(0.0, 1 - v["x"][jnp.argmax(v["y"])] + v["x"]))) / N,
        "FocalLoss": lambda v: -jnp.sum(v["y"] * (1 - jax.nn.softmax(v["x"])) ** v["g"]
                                        * jax.nn.log_softmax(v["x"])),
        "TripletMarginLoss": lambda v: jnp.maximum(0.0, pairwise_distance(v["a"], v["p"])
                                                   - pairwise_distance(v["a"], v["q"]) + 1),
    }


@pytest.mark.parametrize("identity", ZOO, ids=[i.name for i in ZOO])
def test_each_zoo_gradient_matches_jax_grad_in_every_region(identity):
    jax = pytest.importorskip("jax", reason="JAX is not installed (pip install 'jax[cpu]'): the zoo is "
                                            "compared with finite differences only")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    formula = _jax_losses(jnp, jax)[identity.name]
    loss = _language_loss(identity)
    final = _derived(identity)
    wrt = _wrt(identity)
    for point in _points(identity, loss):
        values = {name: float(point[Symbol(name, real=True)]) if kind == "scalar" else
                  jnp.array([float(point[IndexedBase(name, real=True)[k + 1]]) for k in range(N)])
                  for name, kind in identity.variables.items()}
        expected = jax.grad(lambda t: formula({**values, wrt: t}))(values[wrt])
        for k in range(N):
            derived = float(final[k].xreplace(point).evalf(30))
            assert abs(derived - float(expected[k])) < 1e-9 * max(1, abs(derived)), (identity.name, point, k)


def test_the_zoo_covers_the_modules_it_says():
    names = {i.name.split(" (")[0] for i in ZOO}
    modules = {"L1Loss", "MSELoss", "CrossEntropyLoss", "NLLLoss", "PoissonNLLLoss", "GaussianNLLLoss",
               "KLDivLoss", "BCELoss", "BCEWithLogitsLoss", "MarginRankingLoss", "HingeEmbeddingLoss",
               "HuberLoss", "SmoothL1Loss", "SoftMarginLoss", "MultiLabelSoftMarginLoss", "CosineEmbeddingLoss",
               "MultiMarginLoss", "TripletMarginLoss"}
    assert modules <= names
