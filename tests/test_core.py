"""Core derivation tests: independent cross-checks, a corrupted step, determinism, bad input."""

import os
import random

import mpmath
import pytest
from hypothesis import given, settings, strategies as st
from sympy import Rational

from symgrad import derive, render
from symgrad.build import a, y, z
from symgrad.derivation import DERIVATIONS
from symgrad.steps import Step
from symgrad.verify import check_derivation
from symgrad.verify.concrete import ConcreteModel
from support import compile_latex, needs_latex, run as _run


def _loss(zs, ys):
    s = mpmath.fsum(mpmath.exp(v) for v in zs)
    return -mpmath.fsum(yv * mpmath.log(mpmath.exp(zv) / s) for zv, yv in zip(zs, ys))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 10**6))
def test_gradient_matches_finite_differences_and_a_minus_y(n, seed):
    """The derived result, evaluated numerically, equals central finite differences of L."""
    from sympy import lambdify

    derivation = derive(n=n)
    assert derivation.proven
    concrete = ConcreteModel(derivation.model)
    result = concrete.explicit(derivation.result)
    symbols = [z[k + 1] for k in range(n)] + [y[k + 1] for k in range(n)] + [a[k + 1] for k in range(n)]
    evaluate = lambdify(symbols, list(result), modules="mpmath")
    rng = random.Random(seed)
    with mpmath.workdps(40):
        zs = [mpmath.mpf(rng.uniform(-3, 3)) for _ in range(n)]
        raw = [mpmath.mpf(rng.uniform(0.01, 1)) for _ in range(n)]
        ys = [v / mpmath.fsum(raw) for v in raw]
        s = mpmath.fsum(mpmath.exp(v) for v in zs)
        activations = [mpmath.exp(v) / s for v in zs]
        derived = evaluate(*zs, *ys, *activations)
        h = mpmath.mpf("1e-15")
        for j in range(n):
            plus = list(zs); plus[j] += h
            minus = list(zs); minus[j] -= h
            fd = (_loss(plus, ys) - _loss(minus, ys)) / (2 * h)
            assert abs(derived[j] - fd) < mpmath.mpf("1e-20")
            assert abs(derived[j] - (activations[j] - ys[j])) < mpmath.mpf("1e-35")


@pytest.mark.parametrize("n", [1, 2, 4])
def test_jacobian_is_diag_a_minus_a_at(n):
    derivation = derive(n=n)
    concrete = ConcreteModel(derivation.model)
    matrix_steps = [s for s in derivation.steps if s.rule.value == "matrix form"]
    explicit = concrete.explicit(matrix_steps[0].rhs)
    for r in range(n):
        for c in range(n):
            expected = a[r + 1] * ((1 if r == c else 0) - a[c + 1])
            assert (explicit[r, c] - expected).expand() == 0


@pytest.mark.parametrize("index", [2, 3, 10, 13, 14])
def test_corrupted_step_is_rejected(index):
    derivation = DERIVATIONS["softmax-cross-entropy"](3)
    steps = list(derivation.steps)
    bad = steps[index]
    steps[index] = Step(bad.title, bad.rule, bad.lhs, bad.rhs + Rational(1, 1000) * a[1], bad.free_indices,
                        bad.assumptions)
    checked = check_derivation(derivation.with_steps(steps))
    assert checked.steps[index].check.exact is not True
    assert checked.steps[index].check.numeric is False
    assert not checked.proven


def test_wrong_assumption_use_is_rejected():
    """Dropping Σy = 1 from the final step's assumptions must make it unprovable."""
    derivation = DERIVATIONS["softmax-cross-entropy"](3)
    steps = list(derivation.steps)
    last = steps[-2]
    steps[-2] = Step(last.title, last.rule, last.lhs, last.rhs, last.free_indices, ())
    checked = check_derivation(derivation.with_steps(steps))
    assert checked.steps[-2].check.exact is not True


# One derivation per process, printed in every format: what `symgrad derive -f FORMAT` prints
# (the text as the command line prints it to a pipe; the others are its render(); test_layer
# checks the command line's certificate equals render's), without deriving once per format.
EVERY_FORMAT = """
import io, json, sys
from contextlib import redirect_stdout
from symgrad import cli, derive, render
from symgrad.api import notation_of
from symgrad.output.text import rich_renderable
name, n = sys.argv[1], sys.argv[2]
derivation = derive(name, n)
shown = {fmt: render(derivation, fmt) for fmt in ("text", "latex", "markdown", "json")}
with redirect_stdout(io.StringIO()) as printed:
    cli._console().print(rich_renderable(derivation, notation=notation_of("plain")))
shown["text on a pipe"] = printed.getvalue()
print(json.dumps(shown))
"""


@pytest.mark.parametrize("name, n", [("softmax-cross-entropy", "3"), ("softmax-cross-entropy", "symbolic"),
                                     ("softmax-layer", "3")])
def test_output_is_byte_identical_across_hash_seeds(name, n):
    import json
    import subprocess
    import sys

    outputs = []
    for seed in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", EVERY_FORMAT, name, n], capture_output=True, text=True,
                                env=dict(os.environ, PYTHONHASHSEED=seed), timeout=300)
        assert result.returncode == 0, result.stderr
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == outputs[1]
    assert all(text.strip() for text in outputs[0].values()) and len(outputs[0]) == 5


@pytest.mark.parametrize("args", [["--n", "0"], ["--n", "-2"], ["--n", "2.5"], ["--n", "abc"],
                                  ["no-such-derivation"], ["--format", "pdf"],
                                  ["-o", "/nonexistent-dir/x.tex"]])
def test_bad_input_is_one_line_and_exit_2(args):
    result = _run("derive", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "Value error" not in result.stderr  # typer's wording, dropped
    assert len(result.stderr.strip().splitlines()) == 1


def test_failed_write_keeps_existing_file(tmp_path):
    target = tmp_path / "out.tex"
    target.write_text("precious")
    result = _run("derive", "--n", "0", "-o", str(target))
    assert result.returncode == 2
    assert target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tex"]


def test_no_normalized_labels_stops_before_a_minus_y():
    derivation = derive(n=3, normalized_labels=False)
    assert derivation.proven
    assert all("normalized labels" not in s.assumptions for s in derivation.steps)
    concrete = ConcreteModel(derivation.model)
    result = concrete.explicit(derivation.result)
    # Without Σy = 1 the result must differ from a − y somewhere.
    assert any((result[j] - (a[j + 1] - y[j + 1])).expand() != 0 for j in range(3))


@pytest.mark.parametrize("name, sizes", [("softmax-cross-entropy", {"n": 2}),
                                         ("softmax-layer", {"n": 2, "n_prev": 2, "m": 2})])
def test_certificate_rechecks_with_sympy_alone(name, sizes):
    """Re-check every step from the JSON alone (our own output, so sympify is fine here),
    following only the conventions the certificate states."""
    import itertools
    import json
    from functools import reduce
    from operator import mul

    from sympy import Add, Derivative, Indexed, MatMul, Matrix, Sum, Symbol, cancel, expand, simplify, solve, sympify

    def unroll(e):
        """Sums over concrete ranges, term by term (never ``doit``: it would evaluate ∂L/∂a_1
        with L a bare symbol to 0)."""
        def terms(s):
            out = s.function
            for index, lower, upper in s.limits:
                out = Add(*[out.xreplace({index: k}) for k in range(int(lower), int(upper) + 1)])
            return out
        return e.replace(lambda t: isinstance(t, Sum), terms)

    def instances(expr, ranges):
        free = [Symbol(x, integer=True, positive=True) for x in ranges]
        values = itertools.product(*[range(lo, hi + 1) for lo, hi in ranges.values()])
        return [expr.xreplace(dict(zip(free, v))) for v in values]

    n, extra = sizes["n"], {k: v for k, v in sizes.items() if k != "n"}
    cert = json.loads(render(derive(name, n, **extra), "json"))
    definitions = {sympify(k): unroll(sympify(v)) for k, v in cert["definitions"].items()}
    direct = {sympify(k): unroll(sympify(v)) for k, v in cert["direct_definitions"].items()}
    base = [sympify(v) for v in cert["base_variables"]]
    elimination = {}
    for key, text in cert["assumptions"].items():
        for equation in instances(sympify(text), cert["assumption_index_ranges"][key]):
            equation = unroll(equation)
            variable = [v for v in base if equation.has(v)][-1]
            elimination[variable] = solve(equation, variable)[0]

    def family(x):
        return x.base if isinstance(x, Indexed) else x

    def derivative(node):
        f, (x,) = node.expr, node.variables
        if x not in direct:
            return definitions.get(f, f).diff(x)
        value = direct.get(f, f)
        while True:  # unfold other families until only x's family and base variables remain
            others = {a: direct[a] for a in value.atoms(Indexed, Symbol) if a in direct and family(a) != family(x)}
            if not others:
                return value.diff(x)
            value = value.xreplace(others)

    checked = 0
    for step in cert["steps"]:
        lhs, rhs = sympify(step["lhs"]), sympify(step["rhs"])
        if step["free_indices"]:  # a template: every instance over the stated index ranges
            lhs_m = Matrix([unroll(x) for x in instances(lhs, step["index_ranges"])])
            rhs_m = Matrix([unroll(x) for x in instances(rhs, step["index_ranges"])])
        else:
            # a product of explicit matrices is multiplied out (never ``doit``, see ``unroll``)
            lhs, rhs = (unroll(reduce(mul, x.args) if isinstance(x, MatMul) else x) for x in (lhs, rhs))
            lhs_m = lhs if hasattr(lhs, "shape") else Matrix([[lhs]])
            rhs_m = rhs if hasattr(rhs, "shape") else Matrix([[rhs]])
        assert lhs_m.shape == rhs_m.shape, step["title"]
        for left, right in zip(lhs_m, rhs_m):
            difference = (left - right).replace(lambda t: isinstance(t, Derivative), derivative)
            difference = difference.xreplace(definitions)
            if step["assumptions"]:
                difference = difference.xreplace(elimination)
            # exact zero tests, cheapest first (simplify only where expand and cancel do not settle it)
            difference = expand(difference)
            assert difference == 0 or cancel(difference) == 0 or simplify(difference) == 0, step["title"]
            checked += 1
    assert checked >= len(cert["steps"])


@needs_latex
@pytest.mark.parametrize("n", ["1", "3", "8", "symbolic"])
def test_standalone_latex_compiles_with_pdflatex(tmp_path, n):
    tex = tmp_path / "d.tex"
    result = _run("derive", "--n", n, "--format", "latex", "--standalone", "-o", str(tex))
    assert result.returncode == 0, result.stderr
    compile_latex(tex)
