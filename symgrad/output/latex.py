"""Stage 4 — LaTeX for papers, on SymPy's LaTeX printer with the defaults papers dislike fixed:
∂ for partial derivatives, ``cases`` with "if i = j", a_j − y_j rather than −y_j + a_j, bold
vectors, Σ_{i≠j}, diag(a), aᵀ, and large matrices elided (every entry is still checked).
"""

from __future__ import annotations

from sympy import Add, Eq, Indexed, MatrixBase, Piecewise, Symbol
from sympy.printing.latex import LatexPrinter

from symgrad.notation import PartialD, Vec
from symgrad.output.notation import Notation
from symgrad.output.ordering import OrderingMixin
from symgrad.output.status import index_ranges, status_words
from symgrad.steps import Derivation

MAX_MATRIX = 6  # larger matrices print their corners with \cdots, \vdots, \ddots


class PaperLatexPrinter(OrderingMixin, LatexPrinter):
    """SymPy's LatexPrinter, adjusted for papers and for symgrad's notation objects."""

    def __init__(self, notation: Notation | None = None, max_matrix: int = MAX_MATRIX):
        super().__init__({"mul_symbol": None, "ln_notation": False})
        self.notation = notation or Notation()
        self.max_matrix = max_matrix

    # names -----------------------------------------------------------------------------
    def _print_Symbol(self, expr: Symbol, style="plain"):
        if expr.name in self.notation.names:
            return self.notation.latex_name(expr.name)
        return super()._print_Symbol(expr, style)

    def _print_Indexed(self, expr: Indexed):
        name = self.notation.latex_name(expr.base.label.name)
        # W_{ip} for letters; W_{1,2} for numbers (W_{12} would read as one index)
        separator = "," if any(i.is_Integer for i in expr.indices) else ""
        indices = separator.join(self._print(i) for i in expr.indices)
        if "_" in name:  # a name with its own subscript (A_{\mathrm{prev}}): index it as A_{\mathrm{prev}, ps}
            head, _, sub = name.partition("_")
            if sub.startswith("{") and sub.endswith("}"):
                sub = sub[1:-1]
            return f"{head}_{{{sub}, {indices}}}"
        return f"{name}_{{{indices}}}"

    def _print_Vec(self, expr: Vec):
        return self.notation.latex_bold(expr.base.label.name)

    def _print_MatVar(self, expr):
        return self.notation.latex_bold(expr.base.label.name)

    def _print_GradientMatrix(self, expr):
        return rf"\frac{{\partial {self._print(expr.f)}}}{{\partial {self._print(expr.x)}}}"

    def _print_OneMatrix(self, expr):
        return rf"\mathbf{{1}}_{{{self._print(expr.shape[0])}}}"

    # calculus ----------------------------------------------------------------------------
    def _print_Derivative(self, expr):
        (variable,) = expr.variables
        return rf"\frac{{\partial {self._print(expr.expr)}}}{{\partial {self._print(variable)}}}"

    def _print_PartialD(self, expr: PartialD):
        return rf"\frac{{\partial {self._print(expr.f)}}}{{\partial {self._print(expr.x)}}}"

    def _print_SumExcluding(self, expr):
        term = self._print(expr.term)
        if isinstance(expr.term, Add) or expr.term.could_extract_minus_sign():
            term = rf"\left({term}\right)"
        return rf"\sum_{{{self._print(expr.index)} \neq {self._print(expr.excluded)}}} {term}"

    def _print_Piecewise(self, expr: Piecewise):
        rows = []
        for k, (piece, condition) in enumerate(expr.args):
            if condition == True:  # noqa: E712
                previous = expr.args[k - 1][1] if k else None
                if isinstance(previous, Eq) and len(expr.args) == 2:
                    when = rf"\text{{if }} {self._print(previous.lhs)} \neq {self._print(previous.rhs)}"
                else:
                    when = r"\text{otherwise}"
            else:
                when = rf"\text{{if }} {self._print(condition)}"
            rows.append(rf"{self._print(piece)} & {when}")
        return r"\begin{cases} " + r" \\ ".join(rows) + r" \end{cases}"

    # algebra -----------------------------------------------------------------------------
    def _wrap(self, printed: str) -> str:
        return rf"\left({printed}\right)"

    def _join_factors(self, sign: str, parts: list[str]) -> str:
        return (sign + " " if sign else "") + " ".join(parts)

    def _print_DiagMatrix(self, expr):
        return rf"\operatorname{{diag}}\left({self._print(expr.args[0])}\right)"

    def _print_Transpose(self, expr):
        inner = self._print(expr.arg)
        if not isinstance(expr.arg, (Vec, Symbol)):
            inner = rf"\left({inner}\right)"
        else:  # braced: a course name such as \bm{A^{[L]}} already carries a superscript
            inner = f"{{{inner}}}"
        return rf"{inner}^{{\top}}"

    def _print_MatrixBase(self, expr: MatrixBase):
        rows, cols = expr.shape
        row_ids = _elided(rows, self.max_matrix)
        col_ids = _elided(cols, self.max_matrix)
        lines = []
        for r in row_ids:
            cells = []
            for c in col_ids:
                if r is None and c is None:
                    cells.append(r"\ddots")
                elif r is None:
                    cells.append(r"\vdots")
                elif c is None:
                    cells.append(r"\cdots")
                else:
                    cells.append(self._print(expr[r, c]))
            lines.append(" & ".join(cells))
        return r"\begin{pmatrix} " + r" \\ ".join(lines) + r" \end{pmatrix}"

    _print_ImmutableMatrix = _print_MatrixBase
    _print_ImmutableDenseMatrix = _print_MatrixBase


def _elided(count: int, limit: int) -> list:
    """Row/column numbers to show; None marks the elision."""
    if count <= limit:
        return list(range(count))
    return [0, 1, None, count - 1]


# characters people type in titles and descriptions that pdflatex (without extra packages) lacks
_UNICODE_IN_TEXT = {"−": "$-$", "ε": r"$\varepsilon$", "σ": r"$\sigma$", "Σ": r"$\Sigma$",
                    "ᵀ": r"$^\top$", "×": r"$\times$", "′": "$'$", "²": "$^2$", "∇": r"$\nabla$",
                    "∂": r"$\partial$", "≠": r"$\neq$", "≤": r"$\leq$", "→": r"$\to$", "…": r"\dots{}",
                    "—": "---", "–": "--", "’": "'", "“": "``", "”": "''"}


def markup_to_latex(markup: str, notation: Notation | None = None) -> str:
    """Titles/notes are text with $…$ math: escape the text parts for LaTeX, and write the math
    in the chosen notation."""
    if notation is not None:
        markup = notation.rename_markup(markup)
    parts = markup.split("$")
    out = []
    for k, part in enumerate(parts):
        if k % 2:
            out.append(f"${part}$")
        else:
            text = (part.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%")
                    .replace("#", r"\#").replace("_", r"\_"))
            out.append("".join(_UNICODE_IN_TEXT.get(ch, ch) for ch in text))
    return "".join(out)


def step_lines(derivation: Derivation, printer: PaperLatexPrinter, label: str | None = None,
               tags: bool = False) -> list[tuple[str, str]]:
    """(intertext, equation line) per step; a step about the same quantity as the previous one
    continues the chain (``&= …``) instead of repeating its left side."""
    lines = []
    previous_lhs = None
    for number, step in enumerate(derivation.steps, start=1):
        title = markup_to_latex(step.title, printer.notation)
        status = status_words(step.check)
        intertext = rf"\textbf{{{number}.}} {title} \hfill \textit{{{step.rule.value}; {status}}}"
        lhs = "" if step.lhs == previous_lhs else printer.doprint(step.lhs)
        line = f"{lhs} &= {printer.doprint(step.rhs)}"
        if step.free_indices:
            line += " && " + r",\ ".join(
                rf"{', '.join(printer.doprint(i) for i in indices)} = 1, \dots, {printer.doprint(bound)}"
                for indices, bound in index_ranges(step, derivation.model))
        if label:
            line += rf" \label{{{label}:step-{number}}}"
        elif tags:
            line += rf" \tag{{{number}}}"
        lines.append((intertext, line))
        previous_lhs = step.lhs
    return lines


def render_latex(derivation: Derivation, *, standalone: bool = False, notation: Notation | None = None,
                 label: str | None = None, environment: str | None = None) -> str:
    """The derivation as an amsmath ``align*`` (``align`` with labels) block, or a whole document."""
    printer = PaperLatexPrinter(notation)
    env = environment or ("align" if label else "align*")
    body = []
    for intertext, line in step_lines(derivation, printer, label=label):
        if env == "aligned":
            body.append(rf"&\text{{{_strip_for_text(intertext)}}} \\")
            body.append(line + r" \\")
        else:
            body.append(rf"\intertext{{{intertext}}}")
            body.append(line + r" \\")
    if body:
        body[-1] = body[-1].removesuffix(r" \\")
    block = "\n".join([rf"\begin{{{env}}}", *body, rf"\end{{{env}}}"])
    header = rf"% symgrad: {markup_to_latex(derivation.title)}" + "\n" + \
        rf"% layout: {printer.notation.rename_markup(derivation.convention)}"
    if not standalone:
        return header + "\n" + block + "\n"
    notes = "\n\n".join(markup_to_latex(n, printer.notation) for n in derivation.notes)
    return "\n".join([
        r"\documentclass{article}",
        r"\usepackage{amsmath,amssymb,bm}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\pagestyle{empty}",
        r"\allowdisplaybreaks",
        r"\begin{document}",
        rf"\section*{{{markup_to_latex(derivation.title)}}}",
        rf"\noindent Layout: {markup_to_latex(derivation.convention, printer.notation)}.",
        block,
        notes,
        r"\end{document}",
        "",
    ])


def _strip_for_text(intertext: str) -> str:
    return intertext.replace(r"\hfill", r"\quad")
