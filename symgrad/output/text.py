"""Stage 4 — the terminal: one rich panel per step (title, rule, the math in unicode, status)
and a summary (how many steps were proven, then each result written out). An equation wider than
the terminal is wrapped, never cropped. Used by ``Derivation.__rich__`` and by the CLI."""

from __future__ import annotations

import re

from rich.console import Group
from rich.panel import Panel
from rich.cells import cell_len
from rich.text import Text

from symgrad.output.notation import latex_to_unicode
from sympy.printing.pretty.stringpict import prettyForm, stringPict

from symgrad.output.pretty import TerminalPrinter, unicode_drawing
from symgrad.output.status import index_ranges, result_steps, status_symbol, status_words
from symgrad.steps import Derivation, Step


@unicode_drawing()
def _equation(step: Step, show_lhs: bool, model, notation=None, width: int | None = None,
              lead: str = "", inline: bool = False) -> tuple[str, int | None]:
    """``lead`` lhs = rhs joined on their baselines by SymPy's own layout, plus the index range.
    To fit ``width`` columns, matrices are elided first (⋯, as many columns as fit); a sum still
    too wide continues on further lines, one break between two of its terms; what is still too
    wide is wrapped by SymPy, each cut marked ↪. Nothing is left out. ``inline``: ∂L/∂z on one
    line on the left (the summary).

    Also returns the columns the layout took when it fit ``width`` at the first try, else None:
    that layout is then the same at every width from those columns up to ``width`` (a matrix
    shows the first of its elisions, in a fixed order, that fits; those that did not fit
    ``width`` fit no narrower width, and the one shown fits), which lets ``_Math`` reuse it."""
    budget = width
    first_try = True
    while True:
        printer = TerminalPrinter(notation, budget)
        right = printer._print(step.rhs)
        if inline and right.height() > MAX_RESULT_ROWS:
            right = _one_line(step.rhs, notation) or right
        left = TerminalPrinter(notation, inline=inline)._print(step.lhs) if show_lhs else prettyForm("")
        left = prettyForm(*stringPict.next(prettyForm(lead), left, " = "))
        joined = prettyForm(*stringPict.next(left, right))
        if width is None or joined.width() <= width or budget < 12:
            break
        first_try = False
        budget = min(budget, joined.width()) - max(4, (joined.width() - width) // 2)
    fitted = joined.width() if first_try and (width is None or joined.width() <= width) else None
    text = joined.render(wrap_line=False) if width is None or joined.width() <= width else \
        _broken(printer, step.rhs, left, right, width)
    if step.free_indices:
        text += "\n(for " + "; ".join(f"{', '.join(printer._name(i) for i in indices)} = 1 … {bound}"
                                      for indices, bound in index_ranges(step, model)) + ")"
    return text, fitted


MAX_RESULT_ROWS = 3  # a result line's rhs stacked higher (a fraction over a sum) is written on one line


def _one_line(rhs, notation) -> prettyForm | None:
    """A result line's rhs on one line (1/(Σₖ₌₁³ e^(zₖ)) eᶻ - y), where the terminal's layout
    stacks it (a fraction over a sum): the LaTeX of the paper, read as a title is. None for an
    explicit matrix, which needs its rows."""
    from sympy import MatrixBase, preorder_traversal

    from symgrad.output.latex import PaperLatexPrinter

    if any(isinstance(node, MatrixBase) for node in preorder_traversal(rhs)):
        return None
    printer = PaperLatexPrinter(notation)
    printer._settings["mul_symbol_latex"] = r" \cdot "  # 2⋅1 + 2⋅y: juxtaposed, 2 1 would read 21
    text = latex_to_unicode("$" + printer.doprint(rhs) + "$").replace("−", "-").replace(" · ", "⋅")
    if _LATEX_LEFT.search(text) or not _balanced(text):
        return None  # LaTeX the reading does not cover: the stacked layout, which is always right
    return prettyForm(text)  # (the minus sign of the terminal's other equations)


_LATEX_LEFT = re.compile(r"frac|sqrt|left|right|operatorname|math[a-z]+|begin|end|cdot|\\")


def _balanced(text: str) -> bool:
    depth = 0
    for character in text:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if depth < 0:
            return False
    return depth == 0


def _broken(printer: TerminalPrinter, rhs, left: prettyForm, right: prettyForm, width: int) -> str:
    """``left`` followed by ``rhs`` over several lines of at most ``width`` columns: a sum breaks
    between its terms (each further line starts with its sign, indented under the first term);
    any line still too wide, or an rhs that is not a sum, is cut by SymPy's wrapping, which marks
    every cut with ↪."""
    terms = printer.top_level_terms(rhs)
    if not terms or len(terms) < 2:
        return _wrapped(prettyForm(*stringPict.next(left, right)), width)
    indent = " " * (left.width() if left.width() <= width // 3 else 4)
    rows: list[prettyForm] = []
    row = None
    for k, (negative, piece) in enumerate(terms):
        if row is None:
            row = prettyForm(*stringPict.next(left, prettyForm(*piece.left("-")) if negative else piece))
            continue
        sign = " - " if negative else " + "
        longer = prettyForm(*stringPict.next(row, sign, piece))
        if longer.width() <= width:
            row = longer
        else:
            rows.append(row)
            row = prettyForm(*stringPict.next(prettyForm(indent + sign.lstrip()), piece))
    rows.append(row)
    return "\n".join(_wrapped(r, width) for r in rows)


def _wrapped(form: prettyForm, width: int) -> str:
    """``form`` cut by SymPy into screens of ``width`` columns, every cut marked ↪; a further
    screen loses its rows above and below what it holds (SymPy keeps the first screen's height:
    a last "- sⱼ)" would otherwise stand in a dozen empty rows)."""
    if form.width() <= width:
        return form.render(wrap_line=False)
    screens = form.render(wrap_line=True, num_columns=max(width, 12), use_unicode=True).split("\n\n")
    trimmed = [screens[0]]
    for screen in screens[1:]:
        rows = screen.split("\n")
        filled = [k for k, row in enumerate(rows) if row.replace("↪", "").strip()]
        trimmed.append("\n".join(rows[filled[0]:filled[-1] + 1] if filled else rows))
    return "\n\n".join(trimmed)


class _Math:
    """A step's equation, laid out for the width the console gives it (``_equation``): wrapped,
    never cropped."""

    def __init__(self, step, show_lhs, model, notation, lead: str = "", inline: bool = False, style: str = ""):
        self.args = (step, show_lhs, model, notation)
        self.options = {"lead": lead, "inline": inline}
        self.style = style
        self._last: tuple[int, str, int | None] | None = None  # width, text, columns it fit in

    def _text(self, width: int) -> Text:
        """Laid out again only when the width calls for it: rich measures a panel's contents at
        the console's width and then renders them at the measured one, and SymPy's layout is
        the slow part of printing (``_equation`` says when a layout holds at a narrower width)."""
        last = self._last
        if last is not None and (last[0] == width or last[2] is not None and last[2] <= width <= last[0]):
            text = last[1]
        else:
            step, show_lhs, model, notation = self.args
            text, fitted = _equation(step, show_lhs, model, notation, width, **self.options)
            self._last = (width, text, fitted)
        return Text(text, style=self.style, no_wrap=True, overflow="ellipsis")

    def __rich_console__(self, console, options):
        yield self._text(options.max_width)

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement

        text = self._text(options.max_width)
        widest = max(cell_len(line) for line in text.plain.split("\n"))
        return Measurement(min(widest, options.max_width), min(widest, options.max_width))


def _markup(markup: str, notation) -> str:
    return markup_text(markup, notation)


@unicode_drawing()
def markup_text(markup: str, notation=None) -> str:
    """A title or note for a terminal: names written by the terminal printer, as in its
    equations (course names included), then the rest of the math as Unicode."""
    from sympy import IndexedBase, Symbol

    from symgrad.notation import replace_names
    from symgrad.output.latex import identifiers_as_math

    printer = TerminalPrinter(notation)
    markup = replace_names(identifiers_as_math(markup),
                           entry=lambda name, indices: printer.doprint(IndexedBase(name)[indices]),
                           name=lambda name: printer.doprint(Symbol(name)),
                           bold=printer.name)
    return latex_to_unicode(markup)


def without_trailing_spaces(text: str) -> str:
    """Rich wraps a long line at a space and keeps that space at the end of the line: piped or
    saved text output would differ from an editor's view of it (and from itself after a
    trailing-whitespace hook). Plain text only: with colours a line ends in escape codes."""
    return "\n".join(line.rstrip(" ") for line in text.split("\n"))


def rich_renderable(derivation: Derivation, notation=None) -> Group:
    """The derivation for a rich console; ``notation`` as for the LaTeX (names in titles and math)."""
    parts = [Text(_markup(derivation.title, notation), style="bold"),
             Text("Layout: " + _markup(derivation.convention, notation), style="dim")]
    previous = None
    for number, step in enumerate(derivation.steps, start=1):
        status = status_words(step.check)
        colour = "green" if step.check and step.check.proven else "red"
        math = _Math(step, step.lhs != previous, derivation.model, notation)
        title = Text(f"{number}. {_markup(step.title, notation)}", style="bold")
        status_line = Text(f"{step.rule.value} · {status_symbol(step.check)} {_markup(status, notation)}",
                           style=colour)
        parts.append(Panel(Group(title, math, status_line), expand=False))
        previous = step.lhs
    for note in derivation.notes:
        parts.append(Text("Note: " + _markup(note, notation), style="yellow"))
    parts.append(summary_text(derivation, notation))
    return Group(*parts)


def summary_text(derivation: Derivation, notation=None) -> Group:
    """How many steps were proven and then each result (a layer's dW, db and dA_prev each), in
    the terminal's notation; a result is called checked only when every step was proven."""
    total = len(derivation.steps)
    proven = sum(1 for s in derivation.steps if s.check and s.check.proven)
    failed = sum(1 for s in derivation.steps if s.check and (s.check.exact is False or s.check.numeric is False))
    if derivation.proven:
        head = Text(f"✓ all {total} steps checked (exact and numeric)", style="bold green")
        lead, style = "result: ", "bold green"
    elif not any(s.check for s in derivation.steps):
        head = Text(f"· {total} steps, not checked", style="bold yellow")
        lead, style = "result (not checked): ", "bold yellow"
    else:
        head = Text(f"✗ {proven} of {total} steps proven, {failed} failed, "
                    f"{total - proven - failed} undecided — this derivation is NOT a proof", style="bold red")
        lead, style = "result (NOT proven): ", "bold red"
    results = [_Math(step, True, derivation.model, notation, lead=lead, inline=True, style=style)
               for step in result_steps(derivation)]
    return Group(head, *results)
