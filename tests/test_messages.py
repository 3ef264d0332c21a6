"""Issue 15, item 8: messages and display a user can act on. An internal error is a few lines
and a crash report (the traceback with --debug); the summary prints the results; a long equation
is wrapped, never cut; titles hold no raw LaTeX; W2 prints as W₂ / W_{2} / W^{[2]}."""

import os
import re
import signal
import stat
import subprocess
import sys

import pytest
import typer

from symgrad import api, cli
from symgrad.errors import UsageError


# -- internal errors ------------------------------------------------------------------------------
@pytest.fixture
def crash(monkeypatch, capsys, tmp_path):
    """Run ``symgrad ARGS`` in this process with ``api.derive`` raising ``error``; returns
    (exit code, stdout, stderr, the crash folder). Signal handlers are restored afterwards."""
    handlers = {name: signal.getsignal(name) for name in (signal.SIGINT, signal.SIGTERM)}
    folder = tmp_path / "cache" / "symgrad"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SYMGRAD_DEBUG", raising=False)
    monkeypatch.setitem(cli._DEBUG, "traceback", False)

    def run(error: BaseException, *args: str):
        def fail(*_args, **_kwargs):
            raise error

        monkeypatch.setattr(api, "derive", fail)
        with pytest.raises(SystemExit) as stopped:
            cli.main(list(args or ("derive", "--n", "2")))
        streams = capsys.readouterr()
        return stopped.value.code, streams.out, streams.err, folder

    yield run
    for name, handler in handlers.items():
        signal.signal(name, handler)


def _report_path(stderr: str):
    found = re.search(r"the traceback is in (\S+)", stderr)
    assert found, stderr
    return found.group(1)


def test_an_internal_error_is_a_few_lines_and_a_crash_report_holds_the_traceback(crash):
    import sympy

    from symgrad import __version__

    code, out, err, folder = crash(RuntimeError("boom: the engine lost an index"))
    assert code == cli.EXIT_INTERNAL
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4, err
    assert "RuntimeError: boom: the engine lost an index" in err and __version__ in err
    report = _report_path(err)
    assert os.path.dirname(report) == str(folder)  # $XDG_CACHE_HOME/symgrad
    assert re.fullmatch(r"crash-\d{8}T\d{6}Z-\d+\.txt", os.path.basename(report))
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o600  # the command line may name private files
    text = open(report, encoding="utf-8").read()
    assert "Traceback (most recent call last)" in text and "in fail" in text
    assert "RuntimeError: boom: the engine lost an index" in text
    assert "command: symgrad derive --n 2" in text
    assert f"sympy: {sympy.__version__}" in text and f"python: {sys.version.split()[0]}" in text
    assert [p.name for p in folder.iterdir()] == [os.path.basename(report)]  # no temporary left


def test_a_huge_message_is_cut_on_the_terminal_and_kept_whole_in_the_report(crash):
    message = "maximum recursion depth exceeded " + "x" * 20000
    code, out, err, folder = crash(RecursionError(message))
    assert code == cli.EXIT_INTERNAL
    assert len(err) < 1000 and "…" in err, err
    assert message in open(_report_path(err), encoding="utf-8").read()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_debug_prints_the_traceback_and_writes_no_report(crash, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("SYMGRAD_DEBUG", "1")
        args = ("derive", "--n", "2")
    else:
        args = ("--debug", "derive", "--n", "2")
    code, out, err, folder = crash(RuntimeError("boom"), *args)
    assert code == cli.EXIT_INTERNAL
    assert "Traceback (most recent call last)" in err and "in fail" in err and "RuntimeError: boom" in err
    assert "the traceback is in" not in err and not folder.exists()


def test_an_unwritable_report_location_says_so_and_prints_the_traceback(crash, monkeypatch, tmp_path):
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # $XDG_CACHE_HOME/symgrad cannot be made
    monkeypatch.setattr(tempfile, "tempdir", str(blocker))  # nor can the temporary folder be used
    code, out, err, folder = crash(RuntimeError("boom"))
    assert code == cli.EXIT_INTERNAL
    assert "could not write a crash report" in err and "Traceback (most recent call last)" in err


@pytest.mark.parametrize("error, expected", [
    (UsageError("no such derivation"), cli.EXIT_USAGE), (KeyboardInterrupt(), cli.EXIT_INTERRUPTED),
    (typer.Exit(cli.EXIT_FAILED), cli.EXIT_FAILED), (MemoryError(), cli.EXIT_FAILED)])
def test_what_is_not_a_bug_gets_no_crash_report(crash, error, expected):
    code, out, err, folder = crash(error)
    assert code == expected
    assert "crash report" not in err and "Traceback" not in err and not folder.exists()


def test_a_user_sees_the_short_message_from_the_real_program(tmp_path):
    """The installed entry point in a subprocess, as a user runs it (``python -m`` semantics)."""
    program = "import symgrad.api as a; a.derive = lambda *x, **k: 1 / 0; from symgrad.cli import main; main()"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("SYMGRAD_DEBUG", None)
    result = subprocess.run([sys.executable, "-c", program, "derive", "--n", "2"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 4 and "ZeroDivisionError: division by zero" in lines[0], result.stderr
    assert "Traceback (most recent call last)" in open(_report_path(result.stderr), encoding="utf-8").read()


# -- the summary prints the results --------------------------------------------------------------
def _terminal(derivation, width=80, notation=None) -> str:
    import io

    from rich.console import Console

    from symgrad.output.text import rich_renderable

    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    console.print(rich_renderable(derivation, notation=notation))
    return console.export_text()


def _summary(text: str) -> list[str]:
    """The lines after the last panel (the notes, the summary line and the results)."""
    lines = text.rstrip("\n").splitlines()
    last_panel = max(k for k, line in enumerate(lines) if line.startswith("╰"))
    return [line.rstrip() for line in lines[last_panel + 1:] if not line.startswith("Note:")]


def _layer():
    return api.derive("softmax-layer", 3, n_prev=2, m=2)


@pytest.fixture(scope="module")
def layer():
    return _layer()


def test_the_summary_prints_each_result_of_a_layer(layer):
    """dW, db and dA_prev (not ∂J/∂Z, an intermediate, nor the course convention's m ∂J/∂Z),
    each as the lhs = rhs of its matrix-form step, in that order."""
    from symgrad.notation import GradientMatrix, MatVar, Vec
    from symgrad.steps import Rule

    assert layer.proven
    summary = _summary(_terminal(layer))
    assert summary[0] == f"✓ all {len(layer.steps)} steps checked (exact and numeric)"
    results = [line for line in summary if line.startswith("result")]
    assert [re.match(r"result: ∂J/∂(\S+) = ", line).group(1) for line in results] == ["W", "b", "Aᵖʳᵉᵛ"]
    expected = [s for s in layer.steps if s.rule in (Rule.MATRIX_FORM, Rule.VECTOR_FORM)
                and isinstance(s.lhs, GradientMatrix) and str(s.lhs.x.base) in ("W", "b", "A_prev")]
    for line, step in zip(results, expected):  # every matrix of the result, by name
        names = {str(m.base) for m in step.rhs.atoms(MatVar, Vec)}
        shown = {"Aᵖʳᵉᵛ" if name == "A_prev" else name for name in names}
        assert shown and all(name in line.split(" = ")[1] for name in shown), (line, names)


def _with_checks(derivation, checks):
    return derivation.with_steps(s.with_check(c) for s, c in zip(derivation.steps, checks))


def test_a_result_is_never_called_checked_when_a_step_failed_or_was_not_checked(layer):
    from symgrad.steps import Check

    good = Check(exact=True, numeric=True)
    for bad, words in ((Check(exact=False, numeric=True), "NOT proven"), (Check(exact=None, numeric=True), "NOT proven"),
                       (None, "not checked")):
        checks = [good] * len(layer.steps)
        if bad is None:
            checks = [None] * len(layer.steps)
        else:
            checks[5] = bad
        summary = _summary(_terminal(_with_checks(layer, checks)))
        assert "✓" not in "\n".join(summary) and "steps checked" not in summary[0], summary
        results = [line for line in summary if line.startswith("result")]
        assert len(results) == 3 and all(f"result ({words}): " in line for line in results), summary


@pytest.mark.parametrize("expression, variables, assume, last", [
    ("binary_cross_entropy(sigmoid(z), y)", "z=n,y=n", [], "s - y"),
    ("cross_entropy(softmax(z), y)", "z=n,y=n", ["sum(y) == 1"], "a - y")])
def test_a_vector_result_reads_back_as_the_derivation_result(expression, variables, assume, last):
    """The summary's rhs, parsed back with SymPy, is the derivation's result (names as symbols)."""
    from sympy import MatrixSymbol, sympify

    from symgrad.notation import Vec

    derivation = api.derive_expression(expression, variables=variables, wrt="z", n=3, assume=assume)
    summary = _summary(_terminal(derivation))
    (result,) = [line for line in summary if line.startswith("result")]
    lhs, rhs = result.removeprefix("result: ").split(" = ")
    assert lhs == "(∂L/∂z)ᵀ"
    as_symbols = derivation.result.replace(lambda e: isinstance(e, Vec), lambda e: MatrixSymbol(str(e.base), *e.shape))
    assert sympify(rhs) - sympify(str(as_symbols)) == 0
    if last is not None:
        assert rhs == last



# -- long equations wrap, never cut ----------------------------------------------------------------
LONG = ("cross_entropy(softmax(W @ x + b), y) + lam / 2 * sum(W * W)", "W=n x p,x=p,b=n,y=n,lam=scalar", "W",
        {"n": 3, "p": 2})


def _panels(text: str) -> list[str]:
    """The text of each step's panel, in order."""
    return re.findall(r"^╭.*?^╰[^\n]*", text, flags=re.S | re.M)


def _printed_atoms(expr) -> set[str]:
    """How the terminal prints each entry and each scalar name of ``expr`` (bound indices left out)."""
    from sympy import Indexed, Symbol

    from symgrad.output.pretty import TerminalPrinter

    from symgrad.model import TemplateMatrix

    printer = TerminalPrinter()
    # a matrix written by one rule (the Jacobian) shows its entries: the atoms of those entries
    expr = expr.replace(lambda e: isinstance(e, TemplateMatrix), lambda e: e.as_explicit())
    atoms = {a for a in expr.atoms(Indexed)} | {s for s in expr.free_symbols
                                                 if isinstance(s, Symbol) and not s.is_integer}
    return {printer.doprint(a) for a in atoms}


@pytest.mark.parametrize("width", [60, 80])
def test_every_entry_of_every_step_is_shown_in_a_narrow_terminal(width):
    """The λ‖W‖² loss by W has steps wider than 60 columns (the one with the lhs written out
    is 77 wide): each panel still fits the terminal, closes on its border, and shows every entry
    and scalar of its equation (nothing cut with …)."""
    derivation = api.derive_expression(LONG[0], variables=LONG[1], wrt=LONG[2], sizes=LONG[3], check=False)
    text = _terminal(derivation, width)
    assert max(len(line) for line in text.splitlines()) <= width
    panels = _panels(text)
    assert len(panels) == len(derivation.steps)
    for step, panel in zip(derivation.steps, panels):
        assert "↪" not in panel  # sums break between their terms: SymPy's cutting is not needed here
        assert all(line.rstrip().endswith("│") for line in panel.splitlines()[1:-1]), panel
        missing = {a for a in _printed_atoms(step.rhs) if a not in panel}
        assert not missing, (step.title, missing, panel)
    # the widest steps needed continuation lines at 60 columns, each starting with its sign
    assert width > 60 or any(re.search(r"^│ +\+ ", line) for line in text.splitlines())


def _step(rhs, indices=()):
    from sympy import Derivative, IndexedBase, Symbol

    from symgrad.steps import Rule, Step

    z = IndexedBase("z")
    return Step("t", Rule.SIMPLIFY, Derivative(Symbol("L"), z[indices[0]] if indices else z[1]), rhs, tuple(indices))


@pytest.fixture(scope="module")
def model():
    return api.derive("softmax-cross-entropy", 3, check=False).model


def test_a_long_sum_continues_on_lines_that_each_start_with_a_sign(model):
    from sympy import IndexedBase, exp, symbols

    from symgrad.output.text import _equation

    j = symbols("j", integer=True, positive=True)
    s = IndexedBase("s")
    letters = "abcdefghkmpqrtuvw"
    rhs = sum((-1) ** k * IndexedBase(letter)[j] ** (k + 2) / (k + 1 + exp(s[j])) for k, letter in enumerate(letters))
    step = _step(rhs, (j,))
    whole, _ = _equation(step, True, model, width=None)
    for width in (40, 60, 80):
        text, _ = _equation(step, True, model, width=width)
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= width < max(len(line) for line in whole.splitlines())
        assert "↪" not in text and lines[-1] == "(for j = 1 … 3)"
        assert all(atom in text for atom in _printed_atoms(rhs))  # every term, by its entry
        # each further line holding a term starts with its sign, under the first term
        starts = [line.lstrip()[:2] for line in lines[1:-1] if re.match(r"^ +[+-] ", line)]
        assert starts and set(starts) <= {"+ ", "- "}


def _characters(picture: str) -> list[str]:
    """The printed characters of a picture, wrap marks and spaces left out, sorted."""
    return sorted(picture.replace("↪", "").replace(" ", "").replace("\n", ""))


def test_an_equation_too_wide_to_break_between_terms_is_wrapped_with_marks_and_nothing_lost(model):
    """One wide fraction: SymPy's wrapping cuts it into screens marked ↪, which together hold
    every character of the unwrapped picture, and the first screen keeps its full height."""
    from sympy import IndexedBase, exp, symbols

    from symgrad.output.text import _equation

    j = symbols("j", integer=True, positive=True)
    s, y = IndexedBase("s"), IndexedBase("y")
    numerator = sum(k * s[j] ** k * y[j] * exp(k * s[j]) for k in range(1, 10))
    step = _step(numerator / (3 * (1 + exp(s[j]))), (j,))
    whole = _equation(step, True, model, width=None)[0].rsplit("\n", 1)[0]
    for width in (50, 80):
        text, _ = _equation(step, True, model, width=width)
        body, ranges = text.rsplit("\n", 1)
        assert ranges == "(for j = 1 … 3)" and "↪" in body
        assert max(len(line) for line in text.splitlines()) <= width
        assert _characters(body) == _characters(whole)
        assert len(body.split("\n\n")[0].splitlines()) == len(whole.splitlines())


# -- titles hold no raw LaTeX in the terminal -----------------------------------------------------
RAW_LATEX = re.compile(r"[\\{}]|\^\{|_\{")


def _expression_derivations():
    """Losses over every entry of the function table, over a vector and through a matrix layer
    (log through exp: its argument must be positive)."""
    from symgrad.functions import ELEMENTWISE

    found = []
    for name, function in ELEMENTWISE.items():
        if function.arity != 1:  # leaky_relu(x, α), clip(x, lo, hi): their own tests
            continue
        inner = "exp(z)" if name == "log" else "z"
        layer = "exp(W @ x + b)" if name == "log" else "W @ x + b"
        for expression, variables, wrt, sizes in (
                (f"mse({name}({inner}), y)", "z=n,y=n", "z", None),
                (f"dot(y, {name}({inner}))", "z=n,y=n", "z", None),
                (f"mse({name}({layer}), y)", "W=n x p,x=p,b=n,y=n", "W", {"n": 3, "p": 2})):
            found.append(api.derive_expression(expression, variables=variables, wrt=wrt, sizes=sizes,
                                               n=None if sizes else 3, check=False))
    return found


def test_no_terminal_title_shows_raw_latex():
    from symgrad.output.notation import NOTATIONS, Notation
    from symgrad.output.status import status_words
    from symgrad.output.text import markup_text
    from symgrad.steps import Check

    derivations = [api.derive("softmax-cross-entropy", 3, check=False),
                   api.derive("softmax-cross-entropy", "symbolic", check=False),
                   api.derive("softmax-cross-entropy", 3, normalized_labels=False, check=False),
                   api.derive("softmax-layer", 3, n_prev=2, m=2, check=False), *_expression_derivations()]
    statuses = [status_words(c) for c in (Check(True, True, scope="all n"), Check(None, True), None)]
    seen = 0
    for derivation in derivations:
        texts = [derivation.title, derivation.convention, *derivation.notes, *statuses,
                 *(step.title for step in derivation.steps)]
        for notation in (None, Notation(dict(NOTATIONS["course"]))):
            for text in texts:
                shown = markup_text(text, notation)
                assert not RAW_LATEX.search(shown), (text, shown)
                seen += "$" in text
    assert seen > 100  # titles with math were there to convert


def test_every_function_fact_reads_as_unicode():
    """The sentence each function's derivative is stated with (σ' = σ(1 − σ), tanh' = 1 − tanh²)
    in a terminal: no backslash or brace, and the function's own name is there."""
    from symgrad.functions import ELEMENTWISE
    from symgrad.output.text import markup_text

    for function in ELEMENTWISE.values():
        shown = markup_text(function.fact)
        assert not RAW_LATEX.search(shown), (function.fact, shown)
        name = {"sigmoid": "σ", "exp": "e", "abs": "|x|", "sqrt": "√", "maximum": "max", "minimum": "min"}.get(function.name, function.name)
        assert name in shown, (function.fact, shown)
    assert markup_text(ELEMENTWISE["tanh"].fact) == "tanh' = 1 − tanh²"


def test_latex_commands_in_titles_become_unicode():
    from symgrad.output.notation import latex_to_unicode

    cases = {r"$\lambda \mathbf{W}^\top$": "λ Wᵀ", r"$\frac{a_{i} + 1}{2}$": "(aᵢ + 1)/2",
             r"$\sum_{i=1}^{n} y_i$": "Σᵢ₌₁ⁿ yᵢ", r"$e^{z_{k}}$": "e^(zₖ)", r"$\operatorname{softplus}'(x)$": "softplus'(x)",
             r"$\Sigma \alpha_{\mathrm{max}}$": "Σ αₘₐₓ", r"$W_{i,q}$": "W_i,q",
             # nested: a fraction in a script, a script in a font, a sum under a root, a braced argument
             r"$\frac{5 z_{j}^{\frac{3}{2}}}{2}$": "(5 zⱼ^(3/2))/2", r"$\mathbf{x_{2}} - \sqrt{\sum_{i=1}^{n} x_{i}^{2}}$":
             "x₂ − √(Σᵢ₌₁ⁿ xᵢ²)", r"$\frac{1 + \operatorname{sign}{\left(x \right)}}{2}$": "(1 + sign(x ))/2",
             r"$\frac{1}{\frac{a}{b}}$": "1/(a/b)"}
    for latex, unicode in cases.items():
        assert latex_to_unicode(latex) == unicode, latex


# -- names with a layer number -------------------------------------------------------------------
TWO_LAYER_NAMES = dict(expression="cross_entropy(softmax(W2 @ X + b2), Y) / m", wrt="W2",
                       variables="W2=n x p,X=p x m,b2=n,Y=n x m", sizes={"n": 2, "p": 2, "m": 2},
                       assume=["colsum(Y) == 1"])


@pytest.fixture(scope="module")
def layer2():
    return api.derive_expression(**TWO_LAYER_NAMES)


def test_a_layer_number_prints_as_a_subscript_or_the_course_bracket():
    from sympy import IndexedBase, Integer, Symbol, symbols

    from symgrad.notation import MatVar, Vec
    from symgrad.output.latex import PaperLatexPrinter
    from symgrad.output.notation import NOTATIONS, Notation
    from symgrad.output.pretty import TerminalPrinter

    i, j = symbols("i j", integer=True, positive=True)
    W2, b1, A0 = IndexedBase("W2"), IndexedBase("b1"), IndexedBase("A0")  # noqa: N806
    course = Notation(dict(NOTATIONS["course"]))
    cases = [  # (expression, plain LaTeX, course LaTeX, plain terminal, course terminal)
        (Symbol("W2"), "W_{2}", "W^{[2]}", "W₂", "W^[2]"),
        (MatVar(W2, 3, 2), r"\mathbf{W_{2}}", r"\mathbf{W^{[2]}}", "W₂", "W^[2]"),
        (Vec(b1, 3), r"\mathbf{b_{1}}", r"\mathbf{b^{[1]}}", "b₁", "b^[1]"),
        # an entry of a course name is braced, so that its square is no double superscript
        (W2[i, j], "W_{2, ij}", "{W^{[2]}_{ij}}", "W₂,ᵢⱼ", "W^[2]ᵢⱼ"),
        (W2[Integer(1), Integer(2)], "W_{2, 1,2}", "{W^{[2]}_{1,2}}", "W₂_1,2", "W^[2]_1,2"),
        (A0[i, j], "A_{0, ij}", "{A^{[0]}_{ij}}", "A₀,ᵢⱼ", "A^[0]ᵢⱼ"),
        (Symbol("lam2"), r"\lambda_{2}", r"\lambda^{[2]}", "λ₂", "λ^[2]"),
        (Symbol("alpha1"), r"\alpha_{1}", r"\alpha^{[1]}", "α₁", "α^[1]"),
    ]
    for expr, plain, in_course, terminal, terminal_course in cases:
        assert PaperLatexPrinter().doprint(expr) == plain
        assert PaperLatexPrinter(course).doprint(expr) == in_course
        assert TerminalPrinter().doprint(expr) == terminal
        assert TerminalPrinter(course).doprint(expr) == terminal_course
    # an index or a size (an integer symbol) is not a layer: i1 stays SymPy's i₁
    assert TerminalPrinter(course).doprint(Symbol("i1", integer=True)) == "i₁"


def test_no_equation_or_title_writes_a_layer_number_as_part_of_the_name(layer2):
    """W2 and b2 never appear as such in the LaTeX equations, the step titles or the terminal
    panels (only in the derivation's title, which quotes the expression the user typed)."""
    assert layer2.proven
    for notation, written in (("plain", "W_{2"), ("course", "W^{[2]}")):
        latex = api.render(layer2, "latex", notation=notation)
        body = latex.split(r"\begin{align*}", 1)[1]
        assert not re.search(r"(?<![A-Za-z])[Wb]2", body), re.findall(r".{20}[Wb]2.{20}", body)
        assert written in body and ("b_{2" if notation == "plain" else "b^{[2]}") in body
    from symgrad.output.notation import NOTATIONS, Notation

    for notation in (None, Notation(dict(NOTATIONS["course"]))):
        panels = "\n".join(_panels(_terminal(layer2, 100, notation)))
        assert not re.search(r"(?<![A-Za-z])[Wb]2", panels)
        assert ("W₂" if notation is None else "W^[2]") in panels


def test_layer_numbers_compile_in_pdflatex(layer2, tmp_path):
    import shutil

    from support import compile_latex

    if shutil.which("pdflatex") is None and not os.environ.get("SYMGRAD_REQUIRE_LATEX"):
        pytest.skip("pdflatex not found: install texlive-latex-base (or set SYMGRAD_REQUIRE_LATEX=1)")
    for notation in ("plain", "course"):
        tex = tmp_path / f"layer2-{notation}.tex"
        tex.write_text(api.render(layer2, "latex", standalone=True, notation=notation, bold="bm"), encoding="utf-8")
        compile_latex(tex)
