"""Stage 4 — Markdown for GitHub (MathJax 3) and KaTeX sites, and what a notebook shows.

One ``$$ … $$`` display per step, numbered with ``\\tag{k}`` (KaTeX has no ``\\label``), long
lines broken inside ``aligned``. Only commands both MathJax 3 and KaTeX know: ``\\bm`` (unknown
to MathJax) is written ``\\boldsymbol``. One display per step also keeps every display far below
MathJax's input buffer (5 KB), which a whole derivation in one display exceeds.
"""

from __future__ import annotations

from dataclasses import replace

from symgrad.output.latex import (PaperLatexPrinter, TEXT_WIDTH, equation_rows, identifiers_as_math,
                                   names_as_latex)
from symgrad.output.notation import Notation
from symgrad.output.status import status_symbol, status_words
from symgrad.output.width import width
from symgrad.steps import Derivation

WEB_WIDTH = TEXT_WIDTH * 1.2  # em: a README or notebook column is a little wider than a paper's


def web_notation(notation: Notation | None) -> Notation:
    """The notation with a bold command every web renderer knows."""
    notation = notation or Notation()
    return replace(notation, bold="boldsymbol") if notation.bold == "bm" else notation


def _names(notation: Notation | None):
    """Titles and notes with their names (and n_prev in text, "for all n, n_prev, m") written in
    the web notation, as the displays write them."""
    printer = PaperLatexPrinter(web_notation(notation))
    return lambda markup: names_as_latex(identifiers_as_math(markup), printer)


def step_displays(derivation: Derivation, notation: Notation | None = None, tags: bool = True):
    """(number, title markup, rule and status words, display math) per step; every display names
    its left side, so each stands alone."""
    printer = PaperLatexPrinter(web_notation(notation))
    rename = _names(notation)
    out = []
    for number, step in enumerate(derivation.steps, start=1):
        lhs = printer.doprint(step.lhs)
        budget = WEB_WIDTH - width(lhs) - 1.5 - (3.5 if tags else 0.0)
        rows = equation_rows(step, printer, derivation.model, lhs, budget)
        if len(rows) == 1:
            math = rows[0].replace("&=", "=", 1)
        else:
            math = r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"
        if tags:
            math += rf" \tag{{{number}}}"
        status = f"{step.rule.value}; {status_symbol(step.check)} {status_words(step.check)}"
        out.append((number, rename(step.title), rename(status), math))
    return out


def render_markdown(derivation: Derivation, notation: Notation | None = None) -> str:
    rename = _names(notation)
    out = [f"# {rename(derivation.title)}", "",
           f"Layout: {rename(derivation.convention)}.", ""]
    for number, title, status, math in step_displays(derivation, notation):
        out += [f"**{number}. {title}** — _{status}_", "", "$$", math, "$$", ""]
    out += [f"> **Note.** {rename(note)}" for note in derivation.notes]
    return "\n".join(out).rstrip() + "\n"


def render_notebook_latex(derivation: Derivation, notation: Notation | None = None) -> str:
    """``text/latex`` for notebooks: text lines with inline math and one ``$$ … $$`` display per
    step (no ``\\tag``: the number is in the text), the layout convention as visible text."""
    rename = _names(notation)
    out = [rename(derivation.title), "",
           f"Layout: {rename(derivation.convention)}.", ""]
    for number, title, status, math in step_displays(derivation, notation, tags=False):
        out += [f"{number}. {title} ({status})", "", f"$${math}$$", ""]
    out += [f"Note: {rename(note)}" for note in derivation.notes]
    return "\n".join(out).rstrip() + "\n"
