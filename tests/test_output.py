"""Output that must be ready to paste (issue 11): LaTeX compiled by a real pdflatex at every size,
notation, bold command and label choice, failing on any Overfull \\hbox or a missing index
range; Markdown and notebook math rendered by the real KaTeX and MathJax 3 (node); the terminal
view at 80 columns."""

import functools
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from symgrad import derive, render
from symgrad.output.latex import PaperLatexPrinter, range_text
from symgrad.output.notation import NOTATIONS, Notation
from symgrad.steps import Check

JS = Path(__file__).parent / "js"
CE_SIZES = [*range(1, 13), 16, 32, 64, "symbolic"]
LAYER_SIZES = [(1, 1, 1), (3, 2, 2), (5, 4, 3), (8, 6, 5), (12, 10, 8), ("symbolic", "symbolic", "symbolic"),
               ("symbolic", 3, 2)]
VARIANTS = [(notation, bold, label) for notation in ("plain", "course") for bold in ("mathbf", "bm")
            for label in (None, "grad")]

needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None and not os.environ.get("SYMGRAD_REQUIRE_LATEX"),
    reason="pdflatex not found: install texlive-latex-base (or set SYMGRAD_REQUIRE_LATEX=1 to fail instead)")
needs_js = pytest.mark.skipif(
    (shutil.which("node") is None or not (JS / "node_modules").is_dir())
    and not os.environ.get("SYMGRAD_REQUIRE_JS"),
    reason="node or tests/js/node_modules missing: run `npm ci --prefix tests/js` "
           "(or set SYMGRAD_REQUIRE_JS=1 to fail instead)")


@functools.cache
def _derivation(key):
    """Derived without the (slow) check, every step then given the longest status wording, so
    the layout is tested with the widest titles it can have."""
    if isinstance(key, tuple) and key[0] == "network":  # ("network", hidden, output)
        from symgrad.api import derive_network

        derivation = derive_network(key[1], key[2], check=False)
        status = Check(exact=True, numeric=True, scope="all n0, n1, n2, m, instances n = 1, 2, 3")
        return derivation.with_steps(s.with_check(status) for s in derivation.steps)
    if isinstance(key, tuple):
        n, n_prev, m = key
        derivation = derive("softmax-layer", n, n_prev=n_prev, m=m, check=False)
    else:
        derivation = derive("softmax-cross-entropy", key, check=False)
    scope = "all n, n_prev, m" if isinstance(key, tuple) else "all n"  # as the symbolic checker words it
    status = Check(exact=True, numeric=True, scope=f"{scope}, instances n = 1, 2, 3")
    return derivation.with_steps(s.with_check(status) for s in derivation.steps)


def _body(document: str) -> str:
    return document.split(r"\begin{document}", 1)[1].rsplit(r"\end{document}", 1)[0]


def _compile(tmp_path: Path, name: str, preamble: str, pages: list[str]) -> str:
    """One pdflatex run over many pages; returns the log."""
    assert shutil.which("pdflatex"), "SYMGRAD_REQUIRE_LATEX is set but pdflatex is missing"
    tex = tmp_path / f"{name}.tex"
    tex.write_text(preamble + "\n\\begin{document}\n" + "\n\\clearpage\n".join(pages) + "\n\\end{document}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    log = (tmp_path / f"{name}.log").read_text(errors="replace")
    assert result.returncode == 0, result.stdout[-3000:]
    return log


def _overfull(log: str) -> list[str]:
    lines = log.splitlines()
    return [" ".join(lines[k:k + 3]) for k, line in enumerate(lines) if line.startswith("Overfull \\hbox")]


def _assert_ranges_shown(derivation, latex: str, notation: Notation):
    """Every step with free indices shows their range in its own rows."""
    printer = PaperLatexPrinter(notation)
    chunks = latex.split(r"\intertext{")[1:]
    assert len(chunks) == len(derivation.steps)
    for step, chunk in zip(derivation.steps, chunks):
        expected = range_text(step, printer, derivation.model)
        assert expected in chunk, (step.title, expected)


NETWORKS = [("network", "tanh", "softmax"), ("network", "sigmoid", "identity"), ("network", "tanh,softplus", "sigmoid")]


@needs_pdflatex
@pytest.mark.parametrize("size", CE_SIZES + LAYER_SIZES + NETWORKS, ids=str)
def test_latex_never_runs_off_the_page(tmp_path, size):
    """The fragment in a plain article and the standalone document, in both notations, with
    \\mathbf and \\bm, with and without labels: no Overfull \\hbox, every index range shown."""
    derivation = _derivation(size)
    fragments, standalones = [], []
    for notation, bold, label in VARIANTS:
        names = Notation(dict(NOTATIONS[notation]), bold)
        fragment = render(derivation, "latex", notation=notation, bold=bold, label=label)
        _assert_ranges_shown(derivation, fragment, names)
        fragments.append(fragment.replace(r"\label{grad:", rf"\label{{{notation}-{bold}:"))
        standalone = render(derivation, "latex", standalone=True, notation=notation, bold=bold, label=label)
        standalones.append(_body(standalone).replace(r"\label{grad:", rf"\label{{{notation}-{bold}:"))
    plain_article = r"\documentclass{article}" + "\n" + r"\usepackage{amsmath,amssymb,bm}"
    log = _compile(tmp_path, "fragments", plain_article, fragments)
    assert not _overfull(log), _overfull(log)
    preamble = _body_preamble(render(derivation, "latex", standalone=True))
    log = _compile(tmp_path, "standalone", preamble, standalones)
    assert not _overfull(log), _overfull(log)


def _body_preamble(document: str) -> str:
    return document.split(r"\begin{document}", 1)[0]


@needs_pdflatex
def test_overfull_check_can_fail(tmp_path):
    """The check above sees an overfull line when there is one (a 9-column matrix unelided)."""
    wide = r"\begin{align*} x &= \begin{pmatrix}" + " & ".join([r"a_{1} \left(1 - a_{1}\right)"] * 9) + \
        r"\end{pmatrix}\end{align*}"
    log = _compile(tmp_path, "wide", r"\documentclass{article}\usepackage{amsmath}", [wide])
    assert _overfull(log)


# --- one reading -------------------------------------------------------------------------------

def test_sums_are_closed_and_negative_factors_bracketed():
    latex = render(_derivation(5), "latex")
    assert r"\sum_{i=1}^{5} \left(- \frac{y_{i}}{a_{i}}\right) a_{i} \left(\delta_{i j} - a_{j}\right)" in latex
    # a sum that other terms follow is closed by brackets; a summand never starts with a sign
    for match in re.finditer(r"\\sum_\{[^{}]*\}(\^\{[^{}]*\})? (.)", latex):
        assert match.group(2) != "-", latex[match.start():match.start() + 80]
    assert r"\left(\sum_{i \neq j} y_{i} a_{j}\right) - y_{j} \left(1 - a_{j}\right)" in latex
    assert r"a_{j} - y_{j}" in latex and r"- y_{j} + a_{j}" not in latex


def _top_level_terms(latex: str) -> list[str]:
    """The terms of a printed sum, each with its sign ("+ a_{j}", "- y_{j}"), split at the + and
    − outside every brace and \\left…\\right pair."""
    terms, depth, start = [], 0, 0
    for k, char in enumerate(latex):
        if char == "{" or latex.startswith(r"\left", k):
            depth += 1
        elif char == "}" or latex.startswith(r"\right", k):
            depth -= 1
        elif depth == 0 and char in "+-" and k > 0 and latex[k - 1] == " " and latex[k + 1:k + 2] == " ":
            terms.append(latex[start:k].strip())
            start = k
    terms.append(latex[start:].strip())
    return [t if t[:1] in "+-" else "+ " + t for t in terms if t]


def test_term_splitter_sees_a_flip():
    """The check below can fail: it sees a − b and −b + a as the same terms in another order."""
    assert _top_level_terms("a_{j} - y_{j}") == ["+ a_{j}", "- y_{j}"]
    assert _top_level_terms(r"- y_{j} + a_{j} \left(1 - a_{j}\right)") == ["- y_{j}", r"+ a_{j} \left(1 - a_{j}\right)"]


@pytest.mark.parametrize("name, kwargs", [
    ("softmax-cross-entropy", {"n": 3}), ("softmax-cross-entropy", {"n": "symbolic"}),
    ("softmax-cross-entropy", {"n": 3, "normalized_labels": False}),
    ("softmax-layer", {"n": 3, "n_prev": 2, "m": 2}),
    ("expression", {"expression": "binary_cross_entropy(sigmoid(z), y)", "variables": "z=n,y=n", "wrt": "z"}),
    ("expression", {"expression": "cross_entropy(softmax(z / T), y)", "variables": "z=n,y=n,T=scalar",
                    "wrt": "z", "assume": ["sum(y) == 1"]}),
    ("expression", {"expression": "mse(tanh(z), y)", "variables": "z=n,y=n", "wrt": "z"}),
], ids=lambda v: v if isinstance(v, str) else None)
def test_term_order_does_not_flip_between_consecutive_steps(name, kwargs):
    """Two consecutive steps about the same left side print the terms they share in the same
    order (never a_j − y_j then −y_j + a_j)."""
    from symgrad.api import derive_expression

    derivation = (derive_expression(**kwargs, check=False) if name == "expression"
                  else derive(name, **kwargs, check=False))
    printer = PaperLatexPrinter()
    previous = None
    for step in derivation.steps:
        terms = _top_level_terms(printer.doprint(step.rhs))
        if previous is not None and previous[0] == step.lhs:
            shared = [t for t in terms if t in previous[1]]
            before = [t for t in previous[1] if t in terms]
            assert shared == before, (step.title, previous[1], terms)
        previous = (step.lhs, terms)


def test_indices_in_numeric_order():
    from sympy import IndexedBase

    a = IndexedBase("a")
    printer = PaperLatexPrinter()
    assert printer.doprint(-a[20] * a[2]) == r"- a_{2} a_{20}"
    latex = render(_derivation(32), "latex")
    for first, second in re.findall(r"a_\{(\d+)\} a_\{(\d+)\}", latex):
        assert int(first) <= int(second), (first, second)


def test_course_notation_everywhere():
    derivation = _derivation((3, 2, 2))
    latex = render(derivation, "latex", standalone=True, notation="course", bold="bm")
    assert r"n\_prev" not in latex and "n_{\\mathrm{prev}}" not in latex
    assert r"\bm{dW}" not in latex and "{dW^{[L]}}" in latex and "{dA^{[L-1]}}" in latex
    assert r"\mathbf{1}" not in latex  # one way of writing 1_m: \bm{1} in titles and equations
    plain_letters = re.findall(r"\$[^$]*(?<![\\A-Za-z{])[zay]_", latex)
    assert not plain_letters, plain_letters


# --- Markdown and notebooks in the real renderers ----------------------------------------------

def _math_blocks(text: str) -> list[str]:
    """Every display ($$…$$) and inline ($…$) math in a Markdown or notebook text."""
    displays = re.findall(r"\$\$(.*?)\$\$", text, flags=re.S)
    rest = re.sub(r"\$\$(.*?)\$\$", "", text, flags=re.S)
    inline = re.findall(r"\$([^$\n]+)\$", rest)
    return [d.strip() for d in displays] + inline


def _render_errors(blocks: list[str]) -> list[str]:
    assert shutil.which("node") and (JS / "node_modules").is_dir(), \
        "SYMGRAD_REQUIRE_JS is set but node or tests/js/node_modules is missing (npm ci --prefix tests/js)"
    result = subprocess.run(["node", str(JS / "render.js")], input=json.dumps(blocks), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(result.stdout)
    return [f"{message} in: {block[:200]}" for block, found in zip(blocks, errors) for message in found]


@needs_js
def test_renderer_check_can_fail():
    errors = _render_errors([r"\bm{a} = 1", r"\frac{1}{", r"x \label{a}"])
    assert any("MathJax" in e and "bm" in e for e in errors)
    assert any("KaTeX" in e for e in errors)


@needs_js
def test_markdown_and_notebook_render_in_katex_and_mathjax():
    """Every math block of the Markdown (both notations, both bold commands) and of both notebook
    representations, at several sizes, rendered by KaTeX and MathJax 3 in one node run."""
    blocks = []
    for size in [1, 3, 7, 12, 64, "symbolic", (3, 2, 2), (8, 6, 5), ("symbolic", "symbolic", "symbolic"), *NETWORKS]:
        derivation = _derivation(size)
        for notation in ("plain", "course"):
            for bold in ("mathbf", "bm"):
                blocks += _math_blocks(render(derivation, "markdown", notation=notation, bold=bold))
        blocks += _math_blocks(derivation._repr_markdown_())
        blocks += _math_blocks(derivation._repr_latex_())
    assert len(blocks) > 100
    errors = _render_errors(list(dict.fromkeys(blocks)))
    assert not errors, errors[:5]


def test_notebook_shows_the_layout_convention():
    derivation = _derivation(3)
    for shown in (derivation._repr_markdown_(), derivation._repr_latex_()):
        layout = [line for line in shown.splitlines() if line.startswith("Layout:")]
        assert layout and "numerator layout" in layout[0]
        assert not any(line.lstrip().startswith("%") for line in shown.splitlines())


# --- terminal ----------------------------------------------------------------------------------

def _terminal(derivation, width=80, notation=None):
    from symgrad.output.text import rich_renderable

    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    console.print(rich_renderable(derivation, notation=notation))
    return console.export_text()


@pytest.mark.parametrize("size", [6, 12, 64, (8, 6, 5), ("symbolic", "symbolic", "symbolic")], ids=str)
def test_terminal_never_crops_silently(size):
    derivation = _derivation(size)
    for width in (60, 80, 120):
        text = _terminal(derivation, width)
        assert max(len(line) for line in text.splitlines()) <= width
        # the panels close on their right border: nothing was cut inside them
        for line in text.splitlines():
            if line.startswith("│"):
                assert line.rstrip().endswith("│"), line
        if size == 64:
            assert "⋯" in text


def test_terminal_elides_with_a_mark_at_n_6():
    text = _terminal(_derivation(6), 80)
    assert "⋯" in text


def test_terminal_course_notation():
    text = _terminal(_derivation((3, 2, 2)), 100, notation=Notation(dict(NOTATIONS["course"])))
    assert "Z^[L]" in text and "A^[L-1]" in text


def test_terminal_reads_one_way_around_sums():
    """A sum that other terms follow is bracketed (never Σ yᵢ - yⱼ with -yⱼ seemingly inside),
    and a sum of terms inside a product keeps its brackets (aⱼ⋅(ε + Σ …), not aⱼ⋅ε + Σ …)."""
    from sympy import IndexedBase, Sum, Symbol, symbols

    from symgrad.output.pretty import TerminalPrinter

    a, y, t = IndexedBase("a"), IndexedBase("y"), IndexedBase("t")
    i, j = symbols("i j", integer=True, positive=True)
    eps = Symbol("eps")
    total = Sum(y[i], (i, 1, 3))
    printer = TerminalPrinter()
    collected = printer.doprint(a[j] * total - y[j]).splitlines()
    middle = next(line for line in collected if "yⱼ" in line)
    assert middle.index("⎟") < middle.index("- yⱼ"), "\n".join(collected)  # the Σ closes before − yⱼ
    product = printer.doprint(a[j] * (eps + total - eps * total) - t[j]).splitlines()
    middle = next(line for line in product if "tⱼ" in line)
    assert "aⱼ⋅⎜ε" in middle, "\n".join(product)


def test_bound_indices_are_named_by_the_expressions_shape_not_by_creation_order():
    """The network certificate named Σ_p and Σ_p′ differently from run to run: Dummy numbering
    starts at a random offset, so the order Dummies were made in is no order at all."""
    from sympy import Dummy, IndexedBase, Sum, Symbol, exp, srepr

    from symgrad.verify.index_form import readable

    x, W, k = IndexedBase("x"), IndexedBase("W"), Symbol("k")
    texts = set()
    for swap in (False, True):
        first, second = Dummy("p", integer=True), Dummy("p", integer=True)
        if swap:
            first, second = second, first
        e = exp(Sum(W[1, first] * x[first], (first, 1, 2))) / Sum(exp(Sum(W[k, second] * x[second], (second, 1, 2))),
                                                                  (k, 1, 2))
        texts.add(srepr(readable(e)))
    assert len(texts) == 1


@pytest.mark.parametrize("kind", ["Min", "Max"])
def test_min_and_max_print_their_arguments_as_the_terminal_does_elsewhere(kind):
    """SymPy's pretty printer has no rule for Min and Max and falls back to str(): u[i] and
    Max(-1, u[i]) in a derivation whose other entries read uᵢ (the Huber gradient)."""
    import sympy

    from symgrad.output.pretty import TerminalPrinter

    u, i = sympy.IndexedBase("u", real=True), sympy.Symbol("i", integer=True, positive=True)
    printer = TerminalPrinter()
    inner = sympy.Max(-1, u[i]) if kind == "Min" else sympy.Min(1, u[i])
    text = printer.doprint(getattr(sympy, kind)(inner, 1 if kind == "Min" else -1))
    assert printer.doprint(u[i]) in text and "[" not in text, text
    assert text.startswith(kind.lower() + "(") and ("max(" if kind == "Min" else "min(") in text, text


def test_a_transposed_name_with_a_superscript_tail_is_parenthesised():
    """Aᵖʳᵉᵛᵀ reads as one exponent: the layer's dW ends (A − Y)(Aᵖʳᵉᵛ)ᵀ, in equations and titles
    alike, and a title names the matrix as its equations do (Aᵖʳᵉᵛ, not the size-like Aₚᵣₑᵥ)."""
    import re

    from symgrad.output.notation import superscript_letters

    text = render(derive("softmax-layer", check=False), "text")
    assert "(Aᵖʳᵉᵛ)ᵀ" in text
    assert not re.search("[" + superscript_letters() + "]ᵀ", text)
    assert "Aₚᵣₑᵥ" not in text


def test_a_result_line_is_one_line_even_with_a_fraction_over_a_sum():
    """`result:` sums a derivation up on one line; the gradient of logsumexp(z) − z·y is
    e^z / Σₖ e^(zₖ) − y, which the terminal's layout would stack over a dozen rows."""
    derivation = derive(expr="logsumexp(z) - dot(z, y)", wrt="z", vars="z=n,y=n", n=3, check=False)
    lines = render(derivation, "text").rstrip("\n").splitlines()
    head = next(k for k, line in enumerate(lines) if "steps, not checked" in line)
    assert len(lines[head + 1:]) == 1 and lines[-1].startswith("result (not checked): ")
    assert "Σ" in lines[-1] and lines[-1].endswith("- y"), lines[-1]


def test_drawing_puts_sympys_own_unicode_setting_back():
    """SymPy keeps one module-wide "draw with Unicode" flag. symgrad draws its Σ in Unicode
    whatever the stream, but a notebook's own SymPy printing must keep the caller's setting."""
    from sympy.printing.pretty.pretty_symbology import pretty_use_unicode

    import symgrad.api as api

    derivation = api.derive(n=2, check=False)
    previous = pretty_use_unicode(False)
    try:
        text = api.render(derivation, "text")
        assert "Σ" in text or "∑" in text
        assert pretty_use_unicode() is False
    finally:
        pretty_use_unicode(previous)
