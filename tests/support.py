"""Helpers shared by the test modules: running the CLI as a user would, and compiling LaTeX."""

import os
import shutil
import subprocess
import sys

import pytest

needs_latex = pytest.mark.skipif(
    shutil.which("pdflatex") is None and not os.environ.get("SYMGRAD_REQUIRE_LATEX"),
    reason="pdflatex not found: install texlive-latex-base (or set SYMGRAD_REQUIRE_LATEX=1 to fail instead)")


WRONG_SIGN = """
[[identity]]
name = "wrong sign"
vars = { z = "n", y = "n" }
n = [2, 3]
assume = ["sum(y) == 1"]
lhs = "grad(cross_entropy(softmax(z), y), z)"
rhs = "y - softmax(z)"
"""
"""A false identity (the softmax cross-entropy gradient with its sign flipped) that every verify
route must refute, at both sizes."""


def run(*args, env=None, input=None):
    """``python -m symgrad ARGS`` in a subprocess: the exit code and streams a user sees."""
    return subprocess.run([sys.executable, "-m", "symgrad", *args], capture_output=True, text=True,
                          env=env, timeout=300, input=input)


def compile_latex(tex):
    """Compile a standalone .tex file with a real pdflatex; fail with the log's tail if it errs."""
    assert shutil.which("pdflatex"), "SYMGRAD_REQUIRE_LATEX is set but pdflatex is missing"
    compiled = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name],
                              cwd=tex.parent, capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stdout[-2000:]
    pdf = tex.with_suffix(".pdf")
    assert pdf.stat().st_size > 1000
    return pdf


def final_gradient_entries(derivation, n: int) -> list:
    """The last step's right-hand side, entry by entry, in the base variables: the gradient as a
    vector, or its formula for entry j at j = 1 … n."""
    from sympy import Integer

    from symgrad.verify.concrete import ConcreteModel

    concrete = ConcreteModel(derivation.model)
    final = derivation.steps[-1]
    if not final.free_indices:  # the gradient as a vector
        return [concrete.base_form(e) for e in concrete.explicit(final.rhs)]
    (j,) = final.free_indices
    return [concrete.base_form(concrete.explicit(final.rhs.xreplace({j: Integer(k + 1)}))) for k in range(n)]
