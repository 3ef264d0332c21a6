"""symgrad.codegen: the generated modules, run, against independent references.

Every reference is an independent ``jax.numpy`` loss differentiated by ``jax.grad`` in float64
(never the generated code nor the derivation); points are random, logits up to |z| ~ 1000 where
a naive softmax overflows. The generated module is our own output, imported from a temporary file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the cross-checks need jax (pip install 'symgrad[test]')")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

from symgrad import api  # noqa: E402
from symgrad.codegen import generate  # noqa: E402
from symgrad.errors import UsageError  # noqa: E402
from symgrad.steps import Check  # noqa: E402
from symgrad.verify import check_derivation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ROOT / "derivations" / "losses.toml"
HEAVY = pytest.mark.xdist_group("codegen-layer-network")  # one worker derives the layer and network once
RTOL, ATOL = 1e-10, 1e-10  # float64; 1 − tanh² of a saturated unit loses digits either way


def load(source: str, tmp_path: Path, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"symgrad_generated_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def close(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.all(np.isfinite(actual)), actual
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def reference_grads(loss, args: dict, wrt: list[str]):
    """jax.grad of ``loss(**args)`` by each name of ``wrt``, in float64."""
    names = list(args)

    def positional(*values):
        return loss(**dict(zip(names, values)))

    argnums = tuple(names.index(w) for w in wrt)
    grads = jax.grad(positional, argnums=argnums)(*[jnp.asarray(args[n]) for n in names])
    return [np.asarray(g) for g in grads]


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def labels(rng, n, m=None):
    """Probability labels (columns sum to 1) and one-hot ones."""
    shape = (n,) if m is None else (n, m)
    y = rng.random(shape)
    return y / y.sum(axis=0)


def one_hot(rng, n, m=None):
    k = rng.integers(0, n, size=() if m is None else (m,))
    return np.eye(n)[:, k] if m is not None else np.eye(n)[k]


# -- derivations, each made once --------------------------------------------------------------------

@pytest.fixture(scope="module")
def sce3():
    return api.derive("softmax-cross-entropy", 3)


@pytest.fixture(scope="module")
def sce_symbolic():
    return api.derive("softmax-cross-entropy", "symbolic")


@pytest.fixture(scope="module")
def layer():
    return api.derive("softmax-layer", "symbolic", n_prev="symbolic", m="symbolic")


@pytest.fixture(scope="module")
def network():
    return api.derive_network("tanh", "softmax", sizes="n0=symbolic,n1=symbolic,n2=symbolic,m=symbolic")


def _log_softmax(z, axis=0):
    return jax.nn.log_softmax(z, axis=axis)


# -- softmax cross-entropy ----------------------------------------------------------------------

def ce_loss(z, y):
    return -jnp.sum(y * _log_softmax(z))


def _check_softmax_ce(module, n, scale):
    """The generated forward and backward against JAX at n, for probability and one-hot labels."""
    rng = np.random.default_rng(n)
    for y in (labels(rng, n), one_hot(rng, n)):
        z = rng.normal(size=n) * scale
        close(module.forward(z=z, y=y), ce_loss(jnp.asarray(z), jnp.asarray(y)))
        (expected,) = reference_grads(ce_loss, {"z": z, "y": y}, ["z"])
        close(module.backward(z=z, y=y), expected)


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_softmax_ce_n3(sce3, tmp_path, scale):
    _check_softmax_ce(load(generate(sce3), tmp_path, "sce3"), 3, scale)


def test_fixed_size_code_refuses_other_sizes(sce3, tmp_path):
    module = load(generate(sce3), tmp_path, "sce3_sizes")
    with pytest.raises(ValueError, match="derived for"):
        module.backward(z=np.zeros(4), y=np.ones(4) / 4)


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_softmax_ce_symbolic_at_n1000(sce_symbolic, tmp_path, scale):
    _check_softmax_ce(load(generate(sce_symbolic), tmp_path, "sce_n"), 1000, scale)


def test_softmax_ce_extreme_logits_stay_finite(sce_symbolic, tmp_path):
    """|z| ~ 1000: a naive exp overflows; a one-hot y on a class of probability e^-2000 gives log 0."""
    module = load(generate(sce_symbolic), tmp_path, "sce_extreme")
    z = np.array([1000.0, -1000.0, 0.0, 999.0])
    y = np.array([0.0, 1.0, 0.0, 0.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is harmless
        loss, grad = module.forward(z=z, y=y), module.backward(z=z, y=y)
    close(loss, 2000.0 + np.log1p(np.exp(-1.0)))
    close(grad, np.asarray(jax.grad(ce_loss)(jnp.asarray(z), jnp.asarray(y))))


# -- the softmax layer and a two-layer network --------------------------------------------------

def layer_loss(W, A_prev, b, Y):
    Z = W @ A_prev + b[:, None]
    return -jnp.sum(Y * _log_softmax(Z, axis=0)) / A_prev.shape[1]


@HEAVY
@pytest.mark.parametrize("sizes", [(3, 2, 5), (7, 4, 1), (10, 6, 64)])
def test_softmax_layer(layer, tmp_path, sizes):
    n, p, m = sizes
    module = load(generate(layer), tmp_path, "layer")
    rng = np.random.default_rng(sum(sizes))
    args = {"W": rng.normal(size=(n, p)) * 30, "A_prev": rng.normal(size=(p, m)) * 30,
            "b": rng.normal(size=n), "Y": one_hot(rng, n, m)}
    close(module.forward(**args), layer_loss(**{k: jnp.asarray(v) for k, v in args.items()}))
    got = as_tuple(module.backward(**args))
    wrt = ["W", "b", "A_prev"]
    assert len(got) == len(wrt)
    for actual, expected in zip(got, reference_grads(layer_loss, args, wrt)):
        close(actual, expected)


def network_loss(X, W1, b1, W2, b2, Y):
    A1 = jnp.tanh(W1 @ X + b1[:, None])
    Z2 = W2 @ A1 + b2[:, None]
    return -jnp.sum(Y * _log_softmax(Z2, axis=0)) / X.shape[1]


def network_args(rng, n0, n1, n2, m, scale=1.0):
    return {"X": rng.normal(size=(n0, m)) * scale, "W1": rng.normal(size=(n1, n0)),
            "b1": rng.normal(size=n1), "W2": rng.normal(size=(n2, n1)) * scale,
            "b2": rng.normal(size=n2), "Y": labels(rng, n2, m)}


@HEAVY
@pytest.mark.parametrize("sizes", [(2, 3, 4, 5), (5, 8, 10, 100)])
def test_two_layer_network(network, tmp_path, sizes):
    module = load(generate(network), tmp_path, "network")
    rng = np.random.default_rng(7)
    for scale in (1.0, 300.0):
        args = network_args(rng, *sizes, scale=scale)
        close(module.forward(**args), network_loss(**{k: jnp.asarray(v) for k, v in args.items()}))
        wrt = ["W2", "b2", "W1", "b1"]  # the network's order: from the output layer back
        got = as_tuple(module.backward(**args))
        for actual, expected in zip(got, reference_grads(network_loss, args, wrt), strict=True):
            close(actual, expected)


# -- losses of the catalog (derivations/losses.toml) and --expr -----------------------------------

def _mse(x, y):
    return jnp.sum((x - y) ** 2) / x.shape[0]


def _bce_logits(z, y):
    return -jnp.sum(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z))


def _huber(x, y):
    r = x - y
    return jnp.sum(jnp.where(jnp.abs(r) <= 1, r ** 2 / 2, jnp.abs(r) - 0.5)) / x.shape[0]


def _hinge(x, y):
    return jnp.sum(jax.nn.relu(1 - y * x))


def _l1(x, y):
    return jnp.sum(jnp.abs(x - y)) / x.shape[0]


LOSS_CASES = {
    "mse": (lambda: api.derive_expression("sum((x - y)**2) / n", variables="x=n,y=n", wrt="x", n="symbolic"),
            _mse, "x"),
    "bce-logits": (lambda: api.derive_expression("binary_cross_entropy(sigmoid(z), y)", variables="z=n,y=n",
                                                 wrt="z", n="symbolic"), _bce_logits, "z"),
    "huber": (lambda: api.derive_identity(LOSSES, "HuberLoss", n="symbolic"), _huber, "x"),
    "hinge": (lambda: api.derive_expression("sum(maximum(0, 1 - y*x))", variables="x=n,y=n", wrt="x",
                                            n="symbolic"), _hinge, "x"),
    "l1": (lambda: api.derive_identity(LOSSES, "L1Loss", n="symbolic"), _l1, "x"),
}


@pytest.fixture(scope="module")
def loss_derivations():
    return {}


def _loss_derivation(cache, name):
    if name not in cache:
        cache[name] = LOSS_CASES[name][0]()
    return cache[name]


def _loss_point(rng, name, variable, n):
    if name == "bce-logits":
        return {"z": rng.normal(size=n) * 1000, "y": rng.random(n)}  # |z| ~ 1000: logaddexp, not log σ
    if name == "hinge":
        return {"x": rng.normal(size=n) * 3, "y": rng.choice([-1.0, 1.0], size=n)}
    return {variable: rng.normal(size=n) * 3, "y": rng.normal(size=n) * 3}


@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_losses(loss_derivations, tmp_path, name):
    derivation = _loss_derivation(loss_derivations, name)
    _, reference, variable = LOSS_CASES[name]
    module = load(generate(derivation), tmp_path, name.replace("-", "_"))
    rng = np.random.default_rng(len(name))
    for n in (1, 5, 200):
        args = _loss_point(rng, name, variable, n)
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            loss, grad = module.forward(**args), module.backward(**args)
        close(loss, reference(**{k: jnp.asarray(v) for k, v in args.items()}))
        (expected,) = reference_grads(reference, args, [variable])
        close(grad, expected)


def test_kink_conventions(loss_derivations, tmp_path):
    """At a kink: |x|′(0) = sign(0) = 0; a tie of max(0, u) splits the gradient evenly."""
    l1 = load(generate(_loss_derivation(loss_derivations, "l1")), tmp_path, "l1_kink")
    close(l1.backward(x=np.array([1.0, 2.0]), y=np.array([1.0, 0.0])), np.array([0.0, 0.5]))
    hinge = load(generate(_loss_derivation(loss_derivations, "hinge")), tmp_path, "hinge_kink")
    close(hinge.backward(x=np.array([1.0, 3.0]), y=np.array([1.0, 1.0])), np.array([-0.5, 0.0]))


def _least_squares(W, X, b, Y):
    return jnp.sum((W @ X + b[:, None] - Y) ** 2) / X.shape[1]


def test_matrix_expression_with_broadcast_bias(tmp_path):
    """--expr over matrices, two variables at once: the derivation writes b 1ᵀ (b in every column)."""
    derivation = api.derive_expression("sum((W @ X + b - Y)**2) / m", variables="W=n x p,X=p x m,b=n,Y=n x m",
                                       wrt="W,b", sizes="n=symbolic,p=symbolic,m=symbolic")
    module = load(generate(derivation), tmp_path, "least_squares")
    rng = np.random.default_rng(21)
    for n, p, m in ((1, 1, 1), (3, 4, 5), (6, 2, 50)):
        args = {"W": rng.normal(size=(n, p)), "X": rng.normal(size=(p, m)), "b": rng.normal(size=n),
                "Y": rng.normal(size=(n, m))}
        close(module.forward(**args), _least_squares(**{k: jnp.asarray(v) for k, v in args.items()}))
        for actual, expected in zip(module.backward(**args), reference_grads(_least_squares, args, ["W", "b"]),
                                    strict=True):
            close(actual, expected)


# -- JAX target, under jax.jit ------------------------------------------------------------------

@HEAVY
def test_jax_target_under_jit(network, sce_symbolic, loss_derivations, tmp_path):
    rng = np.random.default_rng(11)
    cases = [(network, network_args(rng, 3, 4, 5, 6, scale=100.0), "network"),
             (sce_symbolic, {"z": rng.normal(size=50) * 1000, "y": labels(rng, 50)}, "sce"),
             (_loss_derivation(loss_derivations, "bce-logits"), _loss_point(rng, "bce-logits", "z", 20), "bce"),
             (_loss_derivation(loss_derivations, "huber"), _loss_point(rng, "huber", "x", 20), "huber")]
    for derivation, args, name in cases:
        source = generate(derivation, "jax")
        assert "import jax.numpy as jnp" in source and "np." not in source.replace("jnp.", "")
        jitted = load(source, tmp_path, f"{name}_jax")
        numpy_module = load(generate(derivation), tmp_path, f"{name}_np")
        jax_args = {k: jnp.asarray(v) for k, v in args.items()}
        close(jax.jit(lambda a, m=jitted: m.forward(**a))(jax_args), numpy_module.forward(**args))
        got = as_tuple(jax.jit(lambda a, m=jitted: m.backward(**a))(jax_args))
        for actual, expected in zip(got, as_tuple(numpy_module.backward(**args)), strict=True):
            close(actual, expected)


def test_torch_target(sce_symbolic, tmp_path):
    torch = pytest.importorskip("torch", reason="torch is optional (pip install 'symgrad[torch]'); "
                                "its wheels are large, so CI does not install it")
    module = load(generate(sce_symbolic, "torch"), tmp_path, "sce_torch")
    z = torch.randn(10, dtype=torch.float64, requires_grad=True) * 100
    z = z.detach().requires_grad_(True)
    y = torch.softmax(torch.randn(10, dtype=torch.float64), 0)
    loss = -(y * torch.log_softmax(z, 0)).sum()
    (expected,) = torch.autograd.grad(loss, z)
    close(module.backward(z=z.detach(), y=y).numpy(), expected.numpy())


# -- the module itself: deterministic, lint-clean, refused when unproven -------------------------

@HEAVY
def test_byte_identical_runs(sce_symbolic, network):
    assert generate(sce_symbolic) == generate(sce_symbolic)
    assert generate(network, "jax") == generate(network, "jax")
    again = api.derive("softmax-cross-entropy", "symbolic")
    assert generate(again) == generate(sce_symbolic)


def test_byte_identical_across_processes(sce_symbolic):
    """A fresh interpreter with another hash seed writes the same bytes."""
    script = ("import sys; from symgrad import api; from symgrad.codegen import generate; "
              "sys.stdout.write(generate(api.derive('softmax-cross-entropy', 'symbolic')))")
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                              cwd=ROOT, check=True)
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == generate(sce_symbolic)


def _ruff() -> list[str]:
    if shutil.which("ruff"):
        return ["ruff"]
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.skip("ruff is not installed: pip install ruff (it is in symgrad's test extra)")
    return [sys.executable, "-m", "ruff"]


@HEAVY
def test_generated_modules_pass_ruff(sce3, sce_symbolic, layer, network, loss_derivations, tmp_path):
    """ruff's default rules (and pycodestyle's warnings), as a project would lint the file it commits."""
    command = _ruff()
    derivations = [sce3, sce_symbolic, layer, network] + [_loss_derivation(loss_derivations, n) for n in LOSS_CASES]
    files = []
    for number, derivation in enumerate(derivations):
        for target in ("numpy", "jax", "torch"):
            path = tmp_path / f"generated_{number}_{target}.py"
            path.write_text(generate(derivation, target), encoding="utf-8")
            files.append(str(path))
    done = subprocess.run([*command, "check", "--isolated", "--no-cache", "--extend-select", "W,E", "--line-length",
                           "120", *files], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@HEAVY
def test_docstrings_name_the_derivation_and_steps(layer):
    source = generate(layer)
    assert "Softmax output layer over a batch" in source
    assert "dW: step 17" in source and "dZ: step 14" in source
    assert "Every step of the derivation is proven" in source
    assert "symgrad derive softmax-layer --n symbolic --n-prev symbolic --m symbolic --format json" in source


def _corrupt(derivation, number, **changes):
    steps = list(derivation.steps)
    steps[number - 1] = dataclasses.replace(steps[number - 1], **changes)
    return derivation.with_steps(steps)


def test_refuses_an_unproven_or_corrupted_derivation(sce_symbolic):
    last = len(sce_symbolic.steps)
    wrong = sce_symbolic.steps[-1].rhs * 2  # 2(a − y): not the gradient
    unchecked = _corrupt(sce_symbolic, last, rhs=wrong, check=None)
    with pytest.raises(UsageError, match="not checked"):
        generate(unchecked)
    failed = _corrupt(sce_symbolic, last, rhs=wrong, check=Check(exact=False, numeric=False, detail="refuted"))
    with pytest.raises(UsageError, match="not proven"):
        generate(failed)
    undecided = _corrupt(sce_symbolic, 3, check=Check(exact=None, numeric=True))
    with pytest.raises(UsageError, match=r"not proven: steps 3 "):
        generate(undecided)
    stale = _corrupt(sce_symbolic, last, rhs=wrong)  # edited after checking: the old check stays
    with pytest.raises(UsageError, match=f"steps {last} are not proven"):
        generate(stale, recheck=True)
    assert "dz = a - y" in generate(sce_symbolic, recheck=True)
    rechecked = check_derivation(_corrupt(sce_symbolic, last, rhs=wrong, check=None))
    assert not rechecked.proven  # checked again, the wrong step fails, and codegen refuses it
    with pytest.raises(UsageError, match=f"steps {last} are not proven"):
        generate(rechecked)


def test_refuses_unknown_target_and_non_derivation(sce3):
    with pytest.raises(UsageError, match="unknown codegen target"):
        generate(sce3, "fortran")
    with pytest.raises(UsageError, match="Derivation"):
        generate("softmax-cross-entropy")
    assert generate(sce3, "NumPy") == generate(sce3, "numpy")


# -- the command line ---------------------------------------------------------------------------

def _symgrad(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "symgrad", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, check=False)


def test_cli_codegen_writes_a_working_module(tmp_path):
    out = tmp_path / "mse_grad.py"
    done = _symgrad("codegen", "--expr", "sum((x - y)**2) / n", "--wrt", "x", "--vars", "x=n,y=n",
                    "--n", "symbolic", "--target", "NUMPY", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    module = load(out.read_text(encoding="utf-8"), tmp_path, "cli_mse")
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=9), rng.normal(size=9)
    close(module.backward(x=x, y=y), 2 * (x - y) / 9)
    assert "--format json" in out.read_text(encoding="utf-8")
    assert not list(tmp_path.glob("*.tmp*"))


def test_cli_codegen_identity_file_to_stdout():
    done = _symgrad("codegen", str(LOSSES), "--identity", "MSELoss", "--n", "symbolic", "--target", "jax")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('"""') and "def backward(*, x, y):" in done.stdout


def test_cli_codegen_usage_errors():
    done = _symgrad("codegen", "--target", "fortran")
    assert done.returncode == 2 and "fortran" in done.stderr
    done = _symgrad("codegen", "--expr", "sum(x)", "--vars", "x=n", "--wrt", "x", "--n-prev", "2")
    assert done.returncode == 2


def test_cli_codegen_refuses_an_unproven_derivation(sce3, monkeypatch, capsys, tmp_path):
    """The command never writes code for a derivation with a step not proven: exit 1, no file."""
    from symgrad import cli

    unproven = _corrupt(sce3, len(sce3.steps), check=Check(exact=None, numeric=True, detail="undecided"))
    monkeypatch.setattr(api, "derive", lambda *args, **kwargs: unproven)
    out = tmp_path / "never.py"
    with pytest.raises(SystemExit) as exited:
        cli.main(["codegen", "softmax-cross-entropy", "-o", str(out)])
    assert exited.value.code == cli.EXIT_FAILED
    assert f"steps {len(sce3.steps)}" in capsys.readouterr().err
    assert not out.exists()
