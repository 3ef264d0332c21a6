"""Stage 4 — the terminal: one rich panel per step (title, rule, the math in unicode, status)
and a summary line. Used by ``Derivation.__rich__`` and by the CLI."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.cells import cell_len
from rich.text import Text

from symgrad.output.notation import latex_to_unicode
from sympy.printing.pretty.stringpict import prettyForm, stringPict

from symgrad.output.pretty import TerminalPrinter, pretty
from symgrad.output.status import index_ranges, status_symbol, status_words
from symgrad.steps import Derivation, Step


def _equation(step: Step, show_lhs: bool, model, notation=None, width: int | None = None) -> str:
    """lhs = rhs joined on their baselines by SymPy's own layout, plus the index range; matrices
    elided (⋯) until the whole fits ``width`` columns."""
    budget = width
    while True:
        printer = TerminalPrinter(notation, budget)
        right = printer._print(step.rhs)
        left = printer._print(step.lhs) if show_lhs else prettyForm("")
        joined = prettyForm(*stringPict.next(left, " = ", right)).render(wrap_line=False)
        widest = max(len(line) for line in joined.split("\n"))
        if width is None or widest <= width or budget < 12:
            break
        budget = min(budget, widest) - max(4, (widest - width) // 2)
    if step.free_indices:
        joined += "\n(for " + "; ".join(f"{', '.join(printer._name(i) for i in indices)} = 1 … {bound}"
                                        for indices, bound in index_ranges(step, model)) + ")"
    return joined


class _Math:
    """A step's equation, laid out for the width the console gives it; never cropped without a
    mark (what still does not fit ends in …)."""

    def __init__(self, step, show_lhs, model, notation):
        self.args = (step, show_lhs, model, notation)

    def _text(self, width: int) -> Text:
        step, show_lhs, model, notation = self.args
        return Text(_equation(step, show_lhs, model, notation, width), no_wrap=True, overflow="ellipsis")

    def __rich_console__(self, console, options):
        yield self._text(options.max_width)

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement

        text = self._text(options.max_width)
        widest = max(cell_len(line) for line in text.plain.split("\n"))
        return Measurement(min(widest, options.max_width), min(widest, options.max_width))


def _markup(markup: str, notation) -> str:
    return markup_text(markup, notation)


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
    parts.append(summary_text(derivation))
    return Group(*parts)


def summary_text(derivation: Derivation) -> Text:
    total = len(derivation.steps)
    proven = sum(1 for s in derivation.steps if s.check and s.check.proven)
    failed = sum(1 for s in derivation.steps if s.check and (s.check.exact is False or s.check.numeric is False))
    if derivation.proven:
        return Text(f"✓ all {total} steps checked (exact and numeric): "
                    f"{latex_to_unicode(_result_words(derivation))}", style="bold green")
    return Text(f"✗ {proven} of {total} steps proven, {failed} failed, "
                f"{total - proven - failed} undecided — this derivation is NOT a proof", style="bold red")


def _result_words(derivation: Derivation) -> str:
    """The result on one line when it fits there (a − y), else a pointer to the last step."""
    printed = pretty(derivation.result)
    if "\n" in printed:
        return f"result in step {len(derivation.steps)}"
    return f"result (step {len(derivation.steps)}) " + printed
