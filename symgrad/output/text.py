"""Stage 4 — the terminal: one rich panel per step (title, rule, the math in unicode, status)
and a summary line. Used by ``Derivation.__rich__`` and by the CLI."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from symgrad.output.notation import latex_to_unicode
from sympy.printing.pretty.stringpict import prettyForm, stringPict

from symgrad.output.pretty import TerminalPrinter, pretty
from symgrad.output.status import index_ranges, status_symbol, status_words
from symgrad.steps import Derivation, Step


def _equation(step: Step, show_lhs: bool, model) -> str:
    """lhs = rhs joined on their baselines by SymPy's own layout, plus the index range."""
    printer = TerminalPrinter()
    right = printer._print(step.rhs)
    left = printer._print(step.lhs) if show_lhs else prettyForm("")
    joined = prettyForm(*stringPict.next(left, " = ", right)).render(wrap_line=False)
    if step.free_indices:
        joined += "\n(for " + "; ".join(f"{', '.join(map(str, indices))} = 1 … {bound}"
                                        for indices, bound in index_ranges(step, model)) + ")"
    return joined


def rich_renderable(derivation: Derivation) -> Group:
    parts = [Text(latex_to_unicode(derivation.title), style="bold"),
             Text("Layout: " + latex_to_unicode(derivation.convention), style="dim")]
    previous = None
    for number, step in enumerate(derivation.steps, start=1):
        status = status_words(step.check)
        colour = "green" if step.check and step.check.proven else "red"
        math = Text(_equation(step, step.lhs != previous, derivation.model), no_wrap=True, overflow="ignore")
        title = Text(f"{number}. {latex_to_unicode(step.title)}", style="bold")
        status_line = Text(f"{step.rule.value} · {status_symbol(step.check)} {status}", style=colour)
        parts.append(Panel(Group(title, math, status_line), expand=False))
        previous = step.lhs
    for note in derivation.notes:
        parts.append(Text("Note: " + latex_to_unicode(note), style="yellow"))
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
