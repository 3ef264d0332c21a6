"""`symgrad derive --expr …` and `symgrad derive FILE.toml --identity NAME`: the engine from the
command line, its one-line usage errors, and its LaTeX through a real pdflatex."""

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from sympy import Derivative, Indexed, sympify

from symgrad.limits import MAX_MATRIX_WORK, matrix_work
from symgrad.steps import Rule
from support import compile_latex, run
from test_layer import _cost, _finite_differences

CATALOG = Path(__file__).resolve().parent.parent / "derivations"
LAYER = ["--expr", "cross_entropy(softmax(W @ X + b), Y) / m", "--wrt", "W",
         "--vars", "W=n x p,X=p x m,b=n,Y=n x m", "--assume", "colsum(Y) == 1"]


def test_cli_derives_an_expression_and_a_catalog_identity(tmp_path):
    result = run("derive", "--expr", "binary_cross_entropy(sigmoid(z), y)", "--wrt", "z", "--vars", "z=n,y=n",
                 "--n", "3", "--format", "json")
    assert result.returncode == 0, result.stderr
    certificate = json.loads(result.stdout)
    assert len(certificate["steps"]) > 5
    result = run("derive", str(CATALOG / "classification.toml"), "--identity", "label smoothing", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"][-1]["rule"] == Rule.IDENTITY.value


@pytest.mark.parametrize("args, message", [
    (["--expr", "sum(z)", "--wrt", "z"], "--vars"),
    (["softmax-layer", "--expr", "sum(z)", "--vars", "z=n"], "not both"),
    (["--wrt", "z"], "goes with --expr"),
    (["--expr", "sum(z)", "--wrt", "z", "--vars", "z=banana"], "size banana has no value: give it with --sizes"),
    (["--expr", "sum(z)", "--wrt", "z", "--vars", "z=n x n x n"], "a matrix has two sizes"),
    (["--expr", "sum(z)", "--wrt", "z", "--vars", "z=n x"], "a matrix is written ROWS x COLS"),
    (["--expr", "sum(z)", "--wrt", "z", "--vars", "z=0"], "at least 1"),
    ([*LAYER[:5], "W=3 x 2,X=p x m,b=n,Y=n x m"], "name the sizes (W=n x p) and give their values with --sizes"),
    (["--expr", "sum(w)", "--wrt", "w", "--vars", "w=1 x p"], "a row vector; declare the column vector (w=p)"),
    ([*LAYER[:5], "W=nxp,X=p x m,b=n,Y=n x m", "--sizes", "p=2,m=2"], "size nxp has no value"),
    ([*LAYER, "--sizes", "n=3,p=2"], "size m has no value"),
    ([*LAYER, "--sizes", "n=3,p=2,m=2,q=2"], "q is not a size of any variable"),
    ([*LAYER, "--sizes", "n=3,p=two,m=2"], "p must be a positive integer or 'symbolic', not 'two'"),
    ([*LAYER, "--sizes", "n=3,p=0,m=2"], "p must be a positive integer"),
    ([*LAYER, "--sizes", "n=3,p=2,m"], "'m' is not NAME=VALUE"),
    ([*LAYER, "--sizes", "n=3,p=2,p=2"], "'p' is given twice"),
    ([*LAYER, "--sizes", "n=3,p=2,m=2", "--n", "4"], "n is given twice"),
    ([*LAYER, "--sizes", "n=symbolic,p=2,m=250"], "too large to derive"),
    (["--sizes", "n=3"], "--sizes applies to --expr, not to softmax-cross-entropy"),
    (["softmax-layer", "--sizes", "n=3,m=2"], "--sizes applies to --expr, not to softmax-layer"),
    ([str(CATALOG / "classification.toml"), "--identity", "label smoothing", "--sizes", "n=3"],
     "--sizes applies to --expr, not to an identity file"),
    (["--expr", "sofmax(z)", "--wrt", "z", "--vars", "z=n"], "did you mean softmax"),
    ([str(CATALOG / "classification.toml"), "--identity", "label smothing"], "did you mean 'label smoothing'"),
    ([str(CATALOG / "classification.toml")], "choose one with --identity"),
    ([str(CATALOG / "softmax_and_activations.toml"), "--identity", "softmax shift invariance"], "not a derivative"),
])
def test_cli_derive_usage_errors_are_one_line(symgrad_main, args, message):
    result = symgrad_main("derive", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_column_vector_may_be_written_as_papers_write_its_shape(symgrad_main):
    """w = p x 1 is the vector w = p: the same derivation, step for step."""
    args = ["derive", "--expr", "binary_cross_entropy(sigmoid(X @ w), y)", "--wrt", "w", "--sizes", "m=3,p=2",
            "--format", "json", "--no-cache"]
    as_vector = symgrad_main(*args, "--vars", "X=m x p,w=p,y=m")
    as_column = symgrad_main(*args, "--vars", "X=m x p,w=p x 1,y=m")
    assert as_vector.returncode == as_column.returncode == 0, as_column.stderr
    assert as_column.stdout == as_vector.stdout


def test_engine_latex_compiles(tmp_path):
    if shutil.which("pdflatex") is None and not os.environ.get("SYMGRAD_REQUIRE_LATEX"):
        pytest.skip("pdflatex not found: install texlive-latex-base (or set SYMGRAD_REQUIRE_LATEX=1)")
    from symgrad.api import derive_expression, render

    derivation = derive_expression("cross_entropy(softmax(z / T), y)", wrt="z", variables="z=n,y=n,T=scalar",
                                   assume=["sum(y) == 1"], n="symbolic")
    assert derivation.proven
    tex = tmp_path / "temperature.tex"
    tex.write_text(render(derivation, "latex", standalone=True), encoding="utf-8")
    compile_latex(tex)


@pytest.mark.parametrize("args, option", [(["--label", "x"], "--label"), (["--standalone"], "--standalone"),
                                          (["-f", "json", "--notation", "course"], "--notation"),
                                          (["--bold", "bm"], "--bold"), (["-f", "markdown", "--standalone"], "--standalone")])
def test_options_that_do_not_apply_to_the_format_are_refused(symgrad_main, args, option):
    result = symgrad_main("derive", "--n", "2", *args)
    assert result.returncode == 2 and option in result.stderr and "Traceback" not in result.stderr


def test_course_notation_reaches_the_terminal():
    plain, course = run("derive", "--n", "2"), run("derive", "--n", "2", "--notation", "course")
    assert plain.returncode == course.returncode == 0
    assert "Z^[L]" in course.stdout and "Z^[L]" not in plain.stdout


def test_a_matrix_loss_from_the_command_line_matches_finite_differences():
    """The batch softmax layer's dJ/dW, asked for with --vars matrices and --sizes: the JSON
    certificate's last step (a matrix in A, Y, X, unfolded by its own definitions into W, X, b, Y)
    against central differences of J written in numpy (test_layer's independent cost)."""
    result = run("derive", *LAYER, "--sizes", "n=3,p=2,m=2", "--format", "json")
    assert result.returncode == 0, result.stderr
    cert = json.loads(result.stdout)
    assert cert["proven"] and cert["sizes"] == {"n": 3, "p": 2, "m": 2}
    final = cert["steps"][-1]
    assert final["matrix"]["shape"] == [3, 2]  # the whole matrix, written by one rule (its entry templates)
    lhs_template, rhs_template = sympify(final["lhs"]), sympify(final["rhs"])
    by_name = {str(x): x for x in (lhs_template.free_symbols | rhs_template.free_symbols)}
    row, col = by_name[final["matrix"]["row_index"]], by_name[final["matrix"]["col_index"]]
    definitions = {sympify(k): sympify(v) for k, v in cert["definitions"].items()}
    rng = np.random.default_rng(12)
    arrays = {"W": rng.normal(size=(3, 2)), "X": rng.normal(size=(2, 2)), "b": rng.normal(size=3),
              "Y": rng.random(size=(3, 2)) + 0.05}
    arrays["Y"] /= arrays["Y"].sum(axis=0)  # the assumption colsum(Y) == 1
    numbers = {}
    for text in cert["base_variables"]:
        entry = sympify(text)
        numbers[entry] = float(arrays[str(entry.base)][tuple(int(k) - 1 for k in entry.indices)])
    derived = np.zeros((3, 2))
    for r, c in np.ndindex(3, 2):  # entry (r, c): ∂L/∂W_rc = the rhs template there
        at = {row: r + 1, col: c + 1}
        entry = lhs_template.xreplace(at)
        assert isinstance(entry, Derivative) and str(entry.variables[0]) == f"W[{r + 1}, {c + 1}]"
        in_base = rhs_template.xreplace(at).doit().xreplace(definitions).doit()
        assert in_base.atoms(Indexed) <= set(numbers), in_base.atoms(Indexed) - set(numbers)
        derived[r, c] = float(in_base.xreplace(numbers).evalf())
    expected = _finite_differences(lambda W: _cost(W, arrays["X"], arrays["b"], arrays["Y"])[0], arrays["W"])
    np.testing.assert_allclose(derived, expected, atol=1e-6)


def test_n_comes_from_the_n_option_when_sizes_leaves_it_out():
    result = run("derive", "--expr", "sum(sigmoid(W @ x) * y)", "--wrt", "W", "--vars", "W=n x p,x=p,y=n",
                 "--sizes", "p=3", "--n", "2", "--format", "json")
    assert result.returncode == 0, result.stderr
    cert = json.loads(result.stdout)
    assert cert["sizes"] == {"n": 2, "p": 3} and cert["proven"]
    entries = [step for step in cert["steps"] if step.get("index_ranges") and "matrix" not in step]
    assert entries[-1]["index_ranges"] == {"j": [1, 2], "q": [1, 3]}  # ∂L/∂W_jq: W is n × p = 2 × 3
    assert cert["steps"][-1]["matrix"]["shape"] == [2, 3]  # and it ends on the whole matrix (as a template)


def test_a_vector_over_another_size_name():
    result = run("derive", "--expr", "cross_entropy(softmax(z), y)", "--wrt", "z", "--vars", "z=m,y=m",
                 "--sizes", "m=4", "--assume", "sum(y) == 1", "--format", "json")
    assert result.returncode == 0, result.stderr
    cert = json.loads(result.stdout)
    assert cert["sizes"]["m"] == 4 and cert["proven"]


def test_a_matrix_loss_too_large_to_finish_is_refused_up_front():
    """The score follows the measured time (limits.py): n = 64 with m = 2 (about 50 s) is in, the
    same with m = 4 (114 s) and n = 128 (204 s) are refused at once, and a long batch of a small
    layer (2, 2, 128: 16 s) is in."""
    assert matrix_work({"n": 64, "p": 1, "m": 2}) <= MAX_MATRIX_WORK < matrix_work({"n": 64, "p": 1, "m": 4})
    assert matrix_work({"n": 2, "p": 2, "m": 128}) <= MAX_MATRIX_WORK < matrix_work({"n": 128, "p": 1, "m": 2})
    for sizes in ("n=64,p=1,m=4", "n=128,p=1,m=2"):
        started = time.monotonic()
        result = run("derive", *LAYER, "--sizes", sizes)
        assert time.monotonic() - started < 10
        assert result.returncode == 2, result.stderr
        line = result.stderr.strip()
        assert "too large to derive" in line and len(line.splitlines()) == 1


def test_help_shows_matrices_and_sizes():
    result = run("derive", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "W=n x p" in text and "--sizes" in text and "n=3,p=2,m=2" in text


def test_a_size_used_only_as_a_number_is_known():
    """--sizes m=2 with only vectors over n: m is the number 2 in the expression (∂/∂z of
    Σ exp(z) / m is exp(z) / 2, checked), not an unknown name."""
    result = run("derive", "--expr", "sum(exp(z)) / m", "--wrt", "z", "--vars", "z=n", "--sizes", "m=2",
                 "-f", "json")
    assert result.returncode == 0, result.stderr
    certificate = json.loads(result.stdout)
    assert certificate["proven"]
    from sympy import Rational, sympify
    last = sympify(certificate["steps"][-1]["rhs"])
    assert last.has(Rational(1, 2)), last  # m read as 2, nothing else


def test_matrices_at_symbolic_sizes_are_proven_for_every_size():
    result = run("derive", *LAYER, "--sizes", "n=symbolic,p=symbolic,m=symbolic", "-f", "json")
    assert result.returncode == 0, result.stderr
    certificate = json.loads(result.stdout)
    assert certificate["proven"] and {s["check"]["scope"] for s in certificate["steps"]} == {"all n, p, m"}
