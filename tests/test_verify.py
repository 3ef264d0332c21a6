"""`symgrad verify`, identity files, the expression language and its safety, the pytest plugin."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import mpmath
import pytest
from hypothesis import given, settings, strategies as st

from symgrad.language import LanguageError, Variable, evaluate
from support import WRONG_SIGN, compile_latex, needs_latex, run

CATALOG = Path(__file__).resolve().parent.parent / "derivations"

FALSE = WRONG_SIGN


def _identity_file(tmp_path, lhs="softmax(z)", rhs="softmax(z)", extra="", name="x.toml"):
    path = tmp_path / name
    path.write_text(f'[[identity]]\nname = "t"\nvars = {{ z = "n", y = "n" }}\nn = [2]\n{extra}'
                    f"lhs = {json.dumps(lhs)}\nrhs = {json.dumps(rhs)}\n", encoding="utf-8")
    return path


# the catalog checked once (on every core, -j default) for the two tests below, which
# pytest-xdist keeps on one worker
on_the_catalog = pytest.mark.xdist_group("catalog")


@pytest.fixture(scope="module")
def catalog_run(tmp_path_factory):
    junit = tmp_path_factory.mktemp("catalog") / "report.xml"
    return run("verify", str(CATALOG), "--format", "json", "--junit", str(junit), "--check-exports"), junit


@on_the_catalog
def test_catalog_holds_with_json_junit_and_exports(catalog_run):
    result, junit = catalog_run
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["fail"] == 0 and report["summary"]["identities"] >= 11
    names = {r["name"] for r in report["results"]}
    for expected in ("softmax cross-entropy gradient", "softmax Jacobian", "label smoothing", "tanh derivative"):
        assert expected in names
    root = ET.parse(junit).getroot()
    assert len(root.findall(".//testcase")) == report["summary"]["identities"]  # one per identity, as counted
    assert root.get("failures") == "0" and root.get("skipped") == str(report["summary"]["undecided"])
    assert not root.findall(".//failure")


MIXED = """
[[identity]]
name = "holds"
vars = { z = "n" }
n = [2, 3]
lhs = "softmax(z + 1)"
rhs = "softmax(z)"

[[identity]]
name = "undecided at symbolic n"
vars = { z = "n" }
n = [2, "symbolic"]
lhs = "softmax(z + 1)"
rhs = "softmax(z)"

[[identity]]
name = "refuted"
vars = { z = "n" }
n = [2]
lhs = "softmax(z)"
rhs = "-softmax(z)"

[[identity]]
name = "undecided"
vars = { y = "n" }
n = [2, 3]
assume = ["sum(y**2) == 1"]
lhs = "y"
rhs = "y"
"""


def test_junit_counts_what_the_text_summary_counts(tmp_path):
    """One run, one count: held, failed, undecided and errors in the text summary line are the
    JUnit file's passed, <failure>, <skipped> and <error> test cases (an undecided identity is
    neither passed nor failed, never an error)."""
    import re

    (tmp_path / "mixed.toml").write_text(MIXED, encoding="utf-8")
    (tmp_path / "bad.toml").write_text("[[identity]]\nname = 'x'\n", encoding="utf-8")
    junit = tmp_path / "out" / "r.xml"
    junit.parent.mkdir()
    result = run("verify", str(tmp_path), "--junit", str(junit), "-j", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    found = re.search(r"^(\d+) held, (\d+) failed, (\d+) undecided, (\d+) errors? in", result.stdout, re.M)
    assert found, result.stdout
    held, failed, undecided, errors = map(int, found.groups())
    assert (held, failed, undecided, errors) == (1, 1, 2, 1)  # the file exercises every category
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    kinds = [next((child.tag for child in case if child.tag in ("failure", "skipped", "error")), "passed")
             for case in cases]
    assert kinds.count("passed") == held and kinds.count("failure") == failed
    assert kinds.count("skipped") == undecided and kinds.count("error") == errors
    for key, value in (("tests", held + failed + undecided + errors), ("failures", failed),
                       ("skipped", undecided), ("errors", errors)):
        assert root.get(key) == str(value), key
        assert sum(int(suite.get(key)) for suite in root.iter("testsuite")) == value, key
    skipped = root.find(".//testcase[@name='undecided']/skipped")
    assert skipped.get("message") == "undecided: undecided at n = 2, 3"
    # held at n = 2, undecided at symbolic n: the identity is undecided (the errors="1")
    assert root.find(".//testcase[@name='undecided at symbolic n']/skipped").get("message") == \
        "undecided: undecided at n = symbolic"


ONE_OF_EACH = (WRONG_SIGN.replace('"wrong sign"', '"wrong"')
               + WRONG_SIGN.replace('"wrong sign"', '"good"').replace('"y - softmax(z)"', '"softmax(z) - y"')
               + '[[identity]]\nname = "typo"\nvars = { z = "n" }\nn = [2]\nlhs = "sofmax(z)"\nrhs = "softmax(z)"\n'
               + '[[identity]]\nname = "bad size"\nvars = { z = "n" }\nn = [0]\nlhs = "z"\nrhs = "z"\n')
"""One file, four identities: one holds, one fails, two have mistakes (a newcomer's report: the
first typo used to keep the whole file from being checked)."""


def test_an_identity_with_a_mistake_does_not_hide_the_others_of_its_file(tmp_path, symgrad_main):
    path = tmp_path / "mixed.toml"
    path.write_text(ONE_OF_EACH, encoding="utf-8")
    result = symgrad_main("verify", "-j", "1", "-f", "json", str(path))
    assert result.returncode == 2
    data = json.loads(result.stdout)
    assert {r["name"]: r["holds"] for r in data["results"]} == {"wrong": False, "good": True}
    assert sorted(e["name"] for e in data["errors"]) == ["bad size", "typo"]
    assert data["summary"]["errors"] == 2
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 2 and all(str(path) in line and "identity '" in line for line in lines)


def test_standard_input_is_read_like_a_file_with_its_mistakes_one_by_one():
    result = run("verify", "-j", "1", "-f", "json", "-", input=ONE_OF_EACH)
    assert result.returncode == 2
    data = json.loads(result.stdout)
    assert {r["name"]: r["holds"] for r in data["results"]} == {"wrong": False, "good": True}
    assert sorted(e["name"] for e in data["errors"]) == ["bad size", "typo"]
    assert all(line.startswith("symgrad: error: <stdin>:") for line in result.stderr.strip().split("\n"))


def test_the_pytest_plugin_fails_each_bad_identity_on_its_own(tmp_path):
    (tmp_path / "mixed.toml").write_text(ONE_OF_EACH, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                             "--symgrad-no-cache", "mixed.toml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "3 failed, 1 passed" in result.stdout, result.stdout
    for name in ("typo", "bad size", "wrong"):
        assert f"mixed.toml::{name} " in result.stdout, result.stdout


def test_false_identity_fails_with_a_counterexample(tmp_path):
    path = tmp_path / "false.toml"
    path.write_text(FALSE, encoding="utf-8")
    junit = tmp_path / "r.xml"
    result = run("verify", str(path), "--junit", str(junit))
    assert result.returncode == 1
    assert "refuted numerically" in result.stdout and "z[1] = " in result.stdout and "y[1] = " in result.stdout
    # every name the counterexample is written in is a variable or defined in it (S_1 = Σ e^{z_K})
    for name in set(re.findall(r"\bS_\d+\b", result.stdout)):
        assert f"{name} = Sum(exp(z[K])" in result.stdout, result.stdout
    failures = ET.parse(junit).getroot().findall(".//failure")
    assert len(failures) == 1 and failures[0].get("message") == "refuted at n = 2, 3"  # one identity, two sizes
    data = json.loads(run("verify", str(path), "--format", "json").stdout)
    assert data["results"][0]["holds"] is False


@on_the_catalog
def test_output_is_deterministic(catalog_run):
    """A second run, in one process (-j 1) with another hash seed, says byte for byte what the
    first said on every core: each identity's result, for the catalog's two quicker files (the
    whole catalog again would double its cost; tests/test_parallel.py compares -j 1 and -j 2 on
    a catalog of its own, and tests/test_core.py whole derivations across hash seeds)."""
    files = [CATALOG / "classification.toml", CATALOG / "softmax_and_activations.toml"]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    second = json.loads(run("verify", *map(str, files), "--format", "json", "-j", "1", env=env).stdout)["results"]
    first = {r["name"]: r for r in json.loads(catalog_run[0].stdout)["results"]}
    assert len(second) >= 10
    for result in second:
        assert json.dumps(result) == json.dumps(first[result["name"]]), result["name"]


@pytest.mark.parametrize("lhs", [
    "__import__('os').system('touch MARKER')",
    "z.__class__.__bases__",
    "(lambda: 1)()",
    "[x for x in z]",
    "open('MARKER', 'w')",
    "9**9**9**9",
    "z ** 100000",
    "(" * 10000 + "z" + ")" * 10000,
    "z" + " + z" * 5_000_000,
    "grad(softmax(z), z)",
    "softmax(z) + 1 if z else 2",
], ids=["import", "attribute", "lambda", "comprehension", "open", "power-tower", "huge-exponent",
        "10000-parentheses", "10MB-line", "grad-of-vector", "if-else"])
def test_hostile_or_wrong_expressions_exit_2_quickly_and_run_nothing(tmp_path, lhs):
    path = _identity_file(tmp_path, lhs=lhs)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "symgrad", "verify", str(path)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert time.monotonic() - started < 30
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "MARKER").exists()


def test_shape_mismatch_and_bad_files_exit_2(tmp_path):
    cases = {
        "shapes.toml": _identity_file(tmp_path, lhs="softmax(z)", rhs="sum(z)", name="shapes.toml"),
        "unknown.toml": _identity_file(tmp_path, extra="colour = 1\n", name="unknown.toml"),
    }
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[[identity]]\nname = "café"\n'.encode("latin-1"))
    cases["latin1.toml"] = latin1
    missing = tmp_path / "missing.toml"
    missing.write_text('[[identity]]\nname = "m"\nvars = { z = "n" }\nn = [2]\nlhs = "z"\n', encoding="utf-8")
    cases["missing.toml"] = missing
    expected = {"shapes.toml": "different shapes", "unknown.toml": "unknown key 'colour'",
                "latin1.toml": "not UTF-8", "missing.toml": "missing key 'rhs'"}
    for name, path in cases.items():
        result = run("verify", str(path))
        assert result.returncode == 2, name
        assert expected[name] in result.stderr and name in result.stderr, result.stderr


def test_parse_error_names_file_line_and_column(tmp_path):
    path = _identity_file(tmp_path, lhs="softmax(z) +* y")
    result = run("verify", str(path))
    assert result.returncode == 2
    line = next(k for k, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("lhs"))
    assert f"{path}:{line}:" in result.stderr
    assert "syntax error" in result.stderr


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="zy()+-*/.,=_ 0123456789abcdefghijklmnopqrstuvwx'[]:", max_size=60))
def test_arbitrary_text_only_ever_raises_language_errors(text):
    variables = {"z": Variable("z", 3), "y": Variable("y", 3)}
    started = time.monotonic()
    try:
        evaluate(text, variables)
    except LanguageError:
        pass
    assert time.monotonic() - started < 5


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_grad_of_the_language_matches_finite_differences(n, seed):
    """An independent cross-check of what grad() builds: mpmath finite differences of the
    scalar, evaluated from the same text."""
    import random

    from sympy import Float

    variables = {"z": Variable("z", n)}
    text = "logsumexp(z) + dot(z, z) / 3 - sum(log(sigmoid(z)))"
    scalar, gradient = evaluate(text, variables), evaluate(f"grad({text}, z)", variables)
    rng = random.Random(seed)
    point = {e: rng.uniform(-2, 2) for e in evaluate("z", variables)}
    entries = list(point)
    with mpmath.workdps(40):
        for k, entry in enumerate(entries):
            def f(t):
                values = {e: Float(t if e == entry else v, 50) for e, v in point.items()}
                return mpmath.mpf(str(scalar.xreplace(values).evalf(50)))
            reference = mpmath.diff(f, point[entry], h=mpmath.mpf(10) ** -10)
            derived = gradient[k].xreplace({e: Float(v, 30) for e, v in point.items()}).evalf(30)
            assert abs(reference - mpmath.mpf(str(derived))) < mpmath.mpf(10) ** -12


def test_stale_export_is_reported(tmp_path, monkeypatch):
    """One catalog file (test_catalog_holds_with_json_junit_and_exports checks every export is
    fresh); the second run is served from the result cache, as a user's would be, and must
    still compare the export."""
    source = CATALOG / "softmax_and_activations.toml"
    shutil.copy(source, tmp_path / source.name)
    shutil.copy(source.with_suffix(".tex"), tmp_path / source.with_suffix(".tex").name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYMGRAD_NO_CACHE")
    assert run("verify", ".", "--check-exports").returncode == 0
    assert list((tmp_path / ".symgrad_cache").glob("*.json"))
    stale = next(tmp_path.glob("*.tex"))
    stale.write_text(stale.read_text() + "% edited by hand\n")
    result = run("verify", ".", "--check-exports")
    assert result.returncode == 1 and "out of date" in result.stdout


@needs_latex
def test_export_compiles(tmp_path):
    tex = tmp_path / "catalog.tex"
    result = run("export", str(CATALOG / "classification.toml"), "-o", str(tex))
    assert result.returncode == 0, result.stderr
    compile_latex(tex)


def _overfull_lines(tex: Path, workdir: Path) -> list[str]:
    """Compile ``tex`` (a copy, in ``workdir``) and return its log's Overfull \\hbox warnings."""
    copy = workdir / tex.name
    copy.write_text(tex.read_text(encoding="utf-8"), encoding="utf-8")
    compile_latex(copy)
    log = copy.with_suffix(".log").read_text(errors="replace").splitlines()
    return [" ".join(log[k:k + 2]) for k, line in enumerate(log) if line.startswith("Overfull \\hbox")]


@needs_latex
@pytest.mark.parametrize("tex", sorted(CATALOG.glob("*.tex")), ids=lambda p: p.name)
def test_committed_exports_compile_with_no_overfull_line(tmp_path, tex):
    assert _overfull_lines(tex, tmp_path) == []


@needs_latex
def test_a_long_identity_is_broken_into_lines_that_fit(tmp_path):
    """An rhs far wider than the page (a sum of long products, a function of a long sum, a long
    factor in brackets) is broken between its pieces into a multline* with no Overfull \\hbox;
    a short one stays one display line."""
    from symgrad.identity_file import load_file
    from symgrad.output.identity_latex import render_identities

    long = " + ".join(f"sum(y * (log(softmax(z)) - sigmoid(z) * tanh(z) / (1 + exp(z))) * {k})" for k in range(1, 5))
    path = tmp_path / "long.toml"
    path.write_text(f'[[identity]]\nname = "long"\nvars = {{ z = "n", y = "n" }}\nn = [2]\nlhs = "softmax(z) * ({long})"\n'
                    f'rhs = "({long}) * softmax(z) - softmax(z) * exp(-({long}))"\n'
                    '[[identity]]\nname = "short"\nvars = { z = "n" }\nn = [2]\nlhs = "norm(z)"\nrhs = "sqrt(dot(z, z))"\n',
                    encoding="utf-8")
    document = render_identities(load_file(path), title="long")
    assert document.count(r"\begin{multline*}") == 1 and document.count(r"\Bigl(") >= 3
    assert r"\[ \left\lVert \mathbf{z}\right\rVert = \sqrt{\mathbf{z}^\top \mathbf{z}} \]" in document
    (tmp_path / "doc").mkdir()
    tex = tmp_path / "doc" / "long.tex"
    tex.write_text(document, encoding="utf-8")
    assert _overfull_lines(tex, tmp_path) == []


def test_mean_norm_sqrt_abs_and_dot_print_as_the_math():
    from symgrad.language import parse_tree
    from symgrad.output.identity_latex import _SourcePrinter

    printer = _SourcePrinter({"a": "n", "p": "n", "X": ("n", "m"), "eps": "scalar"})
    expected = {
        "mean(a)": r"\operatorname{mean}\left(\mathbf{a}\right)",
        "mean(X)": r"\operatorname{mean}\left(\mathbf{X}\right)",
        "norm(a - p)": r"\left\lVert \mathbf{a} - \mathbf{p}\right\rVert",
        "sqrt(mean(a * a) + eps)": r"\sqrt{\operatorname{mean}\left(\mathbf{a} \odot \mathbf{a}\right) + \varepsilon}",
        "abs(a - p)": r"\left\lvert \mathbf{a} - \mathbf{p}\right\rvert",
        # a sum as a factor of a dot product is bracketed (it printed a - p + 1e-06^T a - p + 1e-06)
        "dot(a - p + 0.000001, a - p + 0.000001)":
            r"\left(\mathbf{a} - \mathbf{p} + 0.000001\right)^\top \left(\mathbf{a} - \mathbf{p} + 0.000001\right)",
        "norm(a) / mean(a)": r"\frac{\left\lVert \mathbf{a}\right\rVert}{\operatorname{mean}\left(\mathbf{a}\right)}",
    }
    for text, latex in expected.items():
        assert printer.print(parse_tree(text, matrices=True)) == latex, text


def test_pytest_plugin_collects_identity_files(tmp_path):
    (tmp_path / "false.toml").write_text(FALSE, encoding="utf-8")
    shutil.copy(CATALOG / "classification.toml", tmp_path / "classification.toml")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    # its items run under pytest-xdist too (issue 17)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 6 passed" in result.stdout
    assert "refuted numerically" in result.stdout


def test_symbolic_size_uses_the_proof_for_every_n_or_says_there_is_none(tmp_path):
    renamed = tmp_path / "renamed.toml"
    renamed.write_text('[[identity]]\nname = "ce"\nvars = { logits = "n", t = "n" }\nn = [2, "symbolic"]\n'
                       'assume = ["sum(t) == 1"]\nlhs = "grad(cross_entropy(softmax(logits), t), logits)"\n'
                       'rhs = "softmax(logits) - t"\n', encoding="utf-8")
    data = json.loads(run("verify", str(renamed), "--format", "json").stdout)
    symbolic = data["results"][0]["sizes"][-1]
    assert symbolic["n"] == "symbolic" and symbolic["holds"] is True and "every n" in symbolic["detail"]

    other = _identity_file(tmp_path, lhs="softmax(z + 1)", rhs="softmax(z)", name="other.toml")
    other.write_text(other.read_text().replace("n = [2]", 'n = [2, "symbolic"]'))
    result = run("verify", str(other), "--format", "json")
    assert result.returncode == 1
    sizes = json.loads(result.stdout)["results"][0]["sizes"]
    assert sizes[0]["holds"] is True and sizes[1]["holds"] is None and "not a derivative" in sizes[1]["detail"]


def test_larger_sizes_are_proven_exactly_not_left_undecided(tmp_path):
    """Σ_k e^{z_k} is kept as one opaque symbol (as in derivations), so n = 24 stays exact."""
    path = tmp_path / "big.toml"
    path.write_text('[[identity]]\nname = "ce"\nvars = { z = "n", y = "n" }\nn = [24]\n'
                    'assume = ["sum(y) == 1"]\nlhs = "grad(cross_entropy(softmax(z / 2), y), z)"\n'
                    'rhs = "(softmax(z / 2) - y) / 2"\n', encoding="utf-8")
    result = run("verify", str(path), "--format", "json")
    assert result.returncode == 0, result.stdout
    (size,) = json.loads(result.stdout)["results"][0]["sizes"]
    assert size["holds"] is True and size["detail"].startswith("exact: all 24 entries")
    path.write_text(path.read_text().replace("/ 2\"\n", "/ 3\"\n"), encoding="utf-8")
    assert run("verify", str(path)).returncode == 1


def test_a_derivative_identity_too_large_to_expand_is_checked_through_its_derivation(tmp_path):
    """At n = 40 the flagship identity is refused by the expansion's cost limit; it is checked
    through the engine's derivation instead (every step, the last one lhs = rhs), and a wrong
    rhs is refuted there. A non-derivative identity that large stays a clear error."""
    path = tmp_path / "large.toml"
    body = ('[[identity]]\nname = "ce"\nvars = { z = "n", y = "n" }\nn = [40]\nassume = ["sum(y) == 1"]\n'
            'lhs = "grad(cross_entropy(softmax(z), y), z)"\nrhs = "RHS"\n')
    path.write_text(body.replace("RHS", "softmax(z) - y"), encoding="utf-8")
    result = run("verify", str(path), "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    (size,) = json.loads(result.stdout)["results"][0]["sizes"]
    assert size["holds"] is True and size["method"].startswith("derivation")
    path.write_text(body.replace("RHS", "softmax(z) - y * 39 / 40"), encoding="utf-8")
    result = run("verify", str(path), "--format", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    (size,) = json.loads(result.stdout)["results"][0]["sizes"]
    assert size["holds"] is False
    path.write_text('[[identity]]\nname = "big"\nvars = { z = "n" }\nn = [40]\n'
                    'lhs = "softmax(softmax(softmax(z)))"\nrhs = "softmax(softmax(softmax(z)))"\n', encoding="utf-8")
    result = run("verify", str(path))
    assert result.returncode == 2 and "too" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", sorted(__import__("symgrad.functions", fromlist=["ELEMENTWISE"]).ELEMENTWISE))
def test_every_elementwise_function_exports_as_a_vector(name):
    """Exported identities treat every function of functions.py as elementwise: f(z) ⊙ y is a
    Hadamard product of two vectors (softplus was printed as a scalar times y)."""
    from symgrad.language import parse_tree
    from symgrad.output.identity_latex import _SourcePrinter

    from symgrad.functions import ELEMENTWISE

    arguments = ", ".join(["z"] + ["1"] * (ELEMENTWISE[name].arity - 1))  # clip(z, 1, 1), huber(z, 1)
    printed = _SourcePrinter({"z": "n", "y": "n"}).print(parse_tree(f"{name}({arguments}) * y"))
    assert r"\odot" in printed, printed
