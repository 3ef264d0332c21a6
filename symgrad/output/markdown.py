"""Stage 4 — Markdown for GitHub/KaTeX: one ``$$ … $$`` block per step with ``\\tag{k}``
(KaTeX has no ``\\label``)."""

from __future__ import annotations

from symgrad.output.latex import PaperLatexPrinter, step_lines
from symgrad.output.notation import Notation
from symgrad.output.status import status_symbol, status_words
from symgrad.steps import Derivation


def render_markdown(derivation: Derivation, notation: Notation | None = None) -> str:
    printer = PaperLatexPrinter(notation)
    rename = printer.notation.rename_markup
    out = [f"# {derivation.title}", "", f"Layout: {rename(derivation.convention)}.", ""]
    lines = step_lines(derivation, printer, tags=True)
    for number, (step, (_, line)) in enumerate(zip(derivation.steps, lines), start=1):
        lhs = printer.doprint(step.lhs)
        equation = line.replace("&=", "=", 1).replace("&&", r"\qquad", 1)
        if equation.startswith(" ="):
            equation = lhs + equation  # every block stands alone, so it names its left side
        out += [f"**{number}. {rename(step.title)}** — _{step.rule.value}; "
                f"{status_symbol(step.check)} {status_words(step.check)}_", "",
                "$$", equation.strip(), "$$", ""]
    out += [f"> **Note.** {rename(note)}" for note in derivation.notes]
    return "\n".join(out).rstrip() + "\n"
