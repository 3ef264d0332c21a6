"""`symgrad derive --expr …` and `symgrad derive FILE.toml --identity NAME`: the engine from the
command line, its one-line usage errors, and its LaTeX through a real pdflatex."""

import json
import os
import shutil
from pathlib import Path

import pytest

from symgrad.steps import Rule
from support import compile_latex, run

CATALOG = Path(__file__).resolve().parent.parent / "derivations"
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
    (["--expr", "sum(z)", "--wrt", "z", "--vars", "z=banana"], "length"),
    (["--expr", "sofmax(z)", "--wrt", "z", "--vars", "z=n"], "did you mean softmax"),
    ([str(CATALOG / "classification.toml"), "--identity", "label smothing"], "did you mean 'label smoothing'"),
    ([str(CATALOG / "classification.toml")], "choose one with --identity"),
    ([str(CATALOG / "softmax_and_activations.toml"), "--identity", "softmax shift invariance"], "not a derivative"),
])
def test_cli_derive_usage_errors_are_one_line(args, message):
    result = run("derive", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


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
def test_options_that_do_not_apply_to_the_format_are_refused(args, option):
    result = run("derive", "--n", "2", *args)
    assert result.returncode == 2 and option in result.stderr and "Traceback" not in result.stderr


def test_course_notation_reaches_the_terminal():
    plain, course = run("derive", "--n", "2"), run("derive", "--n", "2", "--notation", "course")
    assert plain.returncode == course.returncode == 0
    assert "Z^[L]" in course.stdout and "Z^[L]" not in plain.stdout
