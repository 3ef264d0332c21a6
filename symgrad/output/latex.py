"""Stage 4 — LaTeX for papers, on SymPy's LaTeX printer with the defaults papers dislike fixed:
∂ for partial derivatives, ``cases`` with "if i = j", a_j − y_j rather than −y_j + a_j, bold
vectors, Σ_{i≠j}, diag(a), aᵀ, and large matrices elided (every entry is still checked).
"""

from __future__ import annotations

import re

from sympy import Add, Eq, Indexed, IndexedBase, MatrixBase, Mul, Piecewise, Symbol
from sympy.printing.latex import LatexPrinter

from symgrad.model import TemplateMatrix
from symgrad.notation import PartialD, Vec, name_markup, replace_names
from symgrad.output.notation import SHORT_GREEK, Notation, layer_name
from symgrad.output.ordering import OrderingMixin, is_sum, ordered_factors, ordered_terms
from symgrad.output.width import width
from symgrad.output.status import index_ranges, status_words
from symgrad.steps import Derivation

MAX_MATRIX = 6  # larger matrices print their corners with \cdots, \vdots, \ddots


class PaperLatexPrinter(OrderingMixin, LatexPrinter):
    """SymPy's LatexPrinter, adjusted for papers and for symgrad's notation objects.

    ``budget`` (em) is the width a printed matrix may take: matrices show as many columns as fit
    (first ones, ⋯, the last) rather than a fixed count.
    """

    def __init__(self, notation: Notation | None = None, max_matrix: int = MAX_MATRIX,
                 budget: float | None = None):
        super().__init__({"mul_symbol": None, "ln_notation": False})
        self.notation = notation or Notation()
        self.max_matrix = max_matrix
        self.budget = budget
        self._sum_body = 0

    # names -----------------------------------------------------------------------------
    def _print_Symbol(self, expr: Symbol, style="plain"):
        if expr.name in self.notation.names or (not expr.is_integer and layer_name(expr.name)):
            return self.notation.latex_name(expr.name)  # a course name, a layer's W_{2} or W^{[2]}
        if expr.name in SHORT_GREEK:
            return SHORT_GREEK[expr.name][0]
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
            written = f"{head}_{{{sub}, {indices}}}"
        else:
            written = f"{name}_{{{indices}}}"
        # a course name carries a superscript (A^{[1]}_{ps}): braced, so a power A^{[1]}_{ps}{}^2 is one
        return f"{{{written}}}" if "^" in name else written

    def _print_Vec(self, expr: Vec):
        return self.notation.latex_bold(expr.base.label.name)

    def _print_MatVar(self, expr):
        return self.notation.latex_bold(expr.base.label.name)

    def _print_GradientMatrix(self, expr):
        return rf"\frac{{\partial {self._print(expr.f)}}}{{\partial {self._print(expr.x)}}}"

    def _print_OneMatrix(self, expr):
        if self._elementwise_term:  # the 1 of 1 − s: every entry is 1, as lecturers write it
            return "1"
        if expr.shape[0] == 1 and expr.shape[1] != 1:  # a row of ones: b 1ᵀ adds b to every column
            return rf"{self.notation.latex_bold('1')}_{{{self._print(expr.shape[1])}}}^{{\top}}"
        return rf"{self.notation.latex_bold('1')}_{{{self._print(expr.shape[0])}}}"

    _elementwise_term = 0

    def _print_HadamardProduct(self, expr):
        """s ⊙ (1 − s), and e^z ⊘ (1 + e^z) for a factor to the power −1; a sum or a matrix
        product among the factors is bracketed."""
        from sympy.matrices.expressions import HadamardPower, HadamardProduct, MatAdd, MatMul

        def factor_text(factor):
            text = self._elementwise(factor)
            return rf"\left({text}\right)" if isinstance(factor, (MatAdd, MatMul, HadamardProduct)) else text

        over = [f for f in expr.args if not (isinstance(f, HadamardPower) and f.exp == -1)]
        under = [f.base for f in expr.args if isinstance(f, HadamardPower) and f.exp == -1]
        text = r" \odot ".join(factor_text(f) for f in over) if over else "1"
        if under:
            divisor = under[0] if len(under) == 1 else HadamardProduct(*under)
            text = (rf"\left({text}\right)" if len(over) > 1 else text) + r" \oslash " + factor_text(divisor)
        return text

    def _print_HadamardPower(self, expr):
        from symgrad.notation import Vec

        if expr.exp == -1:
            return self._print_HadamardProduct(_Quotient(expr))
        base = self._elementwise(expr.base)
        if not isinstance(expr.base, Vec) and expr.base.__class__.__name__ != "MatVar":
            base = rf"\left({base}\right)"
        return rf"{{{base}}}^{{\odot {self._print(expr.exp)}}}"

    def abstract_name(self, function) -> str:
        """A declared function g1 (and its derivatives) as the notation writes it: g_{1}', g^{[1]}'."""
        name = self.notation.latex_name(function.base_name)
        if "^" in name or "_" in name:
            name = f"{{{name}}}"
        return name + "'" * function.order

    def _print_AbstractFunction(self, expr):
        return rf"{self.abstract_name(type(expr))}\left({self._print(expr.args[0])}\right)"

    def _print_ElementwiseApplyFunction(self, expr):
        """A function entry by entry: e^{z}, \tanh(Z), g'(Z) for a declared g."""
        from symgrad.functions import AbstractFunction

        body, argument = expr.function.expr, self._print(expr.expr)
        if isinstance(body, AbstractFunction):
            return rf"{self.abstract_name(body.func)}\left({argument}\right)"
        if body.func.__name__ == "exp":
            return rf"e^{{{argument}}}"
        if body.func.__name__ == "Heaviside" and len(body.args) == 2 and body.args[1] == 0:
            return rf"\mathbf{{1}}\left[{argument} > 0\right]"  # the step with θ(0) = 0: 𝟙[Z > 0]
        name = {"log": r"\log", "tanh": r"\tanh"}.get(body.func.__name__,
                                                      rf"\operatorname{{{body.func.__name__}}}")
        return rf"{name}\left({argument}\right)"

    def _elementwise(self, expr) -> str:
        from sympy.matrices.expressions import MatAdd

        self._elementwise_term += isinstance(expr, MatAdd)
        try:
            return self._print(expr)
        finally:
            self._elementwise_term -= isinstance(expr, MatAdd)

    # calculus ----------------------------------------------------------------------------
    def _print_Derivative(self, expr):
        (variable,) = expr.variables
        return rf"\frac{{\partial {self._print(expr.expr)}}}{{\partial {self._print(variable)}}}"

    def _print_PartialD(self, expr: PartialD):
        return rf"\frac{{\partial {self._print(expr.f)}}}{{\partial {self._print(expr.x)}}}"

    def _sum_term(self, term) -> str:
        r"""The summand, bracketed when it is a sum of terms or starts with a minus sign (one
        reading: \sum_i -x or \sum_i x - y would be ambiguous)."""
        self._sum_body += 1
        try:
            printed = self._print(term)
        finally:
            self._sum_body -= 1
        if isinstance(term, Add) or printed.lstrip().startswith("-"):
            printed = rf"\left({printed}\right)"
        return printed

    def _print_SumExcluding(self, expr):
        return rf"\sum_{{{self._print(expr.index)} \neq {self._print(expr.excluded)}}} {self._sum_term(expr.term)}"

    def _print_Sum(self, expr):
        if len(expr.limits) != 1:
            return super()._print_Sum(expr)
        (index, lower, upper), = expr.limits
        return (rf"\sum_{{{self._print(index)}={self._print(lower)}}}^{{{self._print(upper)}}} "
                + self._sum_term(expr.function))

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
    def add_terms(self, expr) -> list[str]:
        """The printed terms of a sum, each with its sign ("a_{j}", "- y_{j}"): terms printed
        positive lead; a term ending in a sum that other terms follow is bracketed."""
        from sympy.matrices.expressions import MatAdd

        if isinstance(expr, MatAdd):
            terms = ordered_terms(list(expr.args))
        else:
            terms = list(self._as_ordered_terms(expr, order=None))
        printed = [self._print(t) for t in terms]
        signed = []
        for term, text in zip(terms, printed):
            negative = text.lstrip().startswith("-")
            body = text.lstrip()[1:].lstrip() if negative else text
            if isinstance(term, (Add, MatAdd)):
                body = rf"\left({body}\right)"
            signed.append((negative, body, term))
        signed = [t for t in signed if not t[0]] + [t for t in signed if t[0]]
        out = []
        for k, (negative, body, term) in enumerate(signed):
            if k < len(signed) - 1:
                body = _close_trailing_sum(self, term, body)
            out.append(("- " if negative else ("" if k == 0 else "+ ")) + body)
        return out

    def _print_Add(self, expr, order=None):
        return " ".join(self.add_terms(expr))

    def _print_MatAdd(self, expr):
        return self._with_ones_as_1(lambda: " ".join(self.add_terms(expr)))

    def _with_ones_as_1(self, write):
        """A matrix of ones as a term of a sum prints 1 (1 − s, as lecturers write it)."""
        self._elementwise_term += 1
        try:
            return write()
        finally:
            self._elementwise_term -= 1

    def _print_Mul(self, expr):
        """A product written as built (an unevaluated −y_i/a_i · a_i (δ_ij − a_j)) brackets its
        negative factors; a leading one keeps its sign outside, except inside a sum."""
        factors = ordered_factors(list(expr.args))
        negative = [k for k, f in enumerate(factors)
                    if not f.is_Number and not f.is_Add and f.could_extract_minus_sign()]
        if not negative:
            if expr.args[0].is_Number and expr.args[0].is_negative and expr.args[0] != -1:
                return super()._print_Mul(expr)
            if expr.args[0] == -1:
                rest = Mul(*expr.args[1:])
                if isinstance(rest, Mul):
                    return "- " + self._print_Mul(rest)
            return super()._print_Mul(expr)
        sign = ""
        if negative == [0] and not self._sum_body:
            sign, factors, negative = "- ", [-factors[0], *factors[1:]], []
        parts = []
        for k, factor in enumerate(factors):
            text = self._print(factor)
            if k in negative or factor.is_Add or (k < len(factors) - 1 and is_sum(factor)):
                text = rf"\left({text}\right)"
            parts.append(text)
        return sign + " ".join(parts)

    def _wrap(self, printed: str) -> str:
        return rf"\left({printed}\right)"

    def _join_factors(self, sign: str, parts: list[str]) -> str:
        return (sign + " " if sign else "") + " ".join(parts)

    def _print_DiagMatrix(self, expr):
        return rf"\operatorname{{diag}}\left({self._print(expr.args[0])}\right)"

    def _print_Transpose(self, expr):
        inner = self._print(expr.arg)
        if not isinstance(expr.arg, (Vec, Symbol)) and expr.arg.__class__.__name__ != "MatVar":
            inner = rf"\left({inner}\right)"
        else:  # braced: a course name such as \bm{A^{[L]}} already carries a superscript
            inner = f"{{{inner}}}"
        return rf"{inner}^{{\top}}"

    def _print_MatrixBase(self, expr: MatrixBase):
        rows, cols = expr.shape
        row_ids = _elided(rows, self.max_matrix)
        cache: dict = {}

        def cell(r, c):
            if (r, c) not in cache:
                if r is None and c is None:
                    cache[r, c] = r"\ddots"
                elif r is None:
                    cache[r, c] = r"\vdots"
                elif c is None:
                    cache[r, c] = r"\cdots"
                else:
                    cache[r, c] = self._print(expr[r, c])
            return cache[r, c]

        def printed(col_ids):
            lines = [" & ".join(cell(r, c) for c in col_ids) for r in row_ids]
            return r"\begin{pmatrix} " + r" \\ ".join(lines) + r" \end{pmatrix}"

        # amsmath's pmatrix takes at most 10 columns (MaxMatrixCols) without a counter change
        candidates = [list(range(cols))] if cols <= 10 else []
        candidates += [[*range(k - 1), None, cols - 1] for k in range(min(cols - 1, self.max_matrix), 1, -1)]
        for col_ids in candidates:
            text = printed(col_ids)
            if self.budget is None or width(text) <= self.budget:
                return text
        return printed(candidates[-1]) if candidates else printed(list(range(cols)))

    _print_ImmutableMatrix = _print_MatrixBase
    _print_ImmutableDenseMatrix = _print_MatrixBase


def _close_trailing_sum(printer, term, body: str) -> str:
    """``a_j \\sum_i y_i`` followed by ``- y_j`` reads as one sum: bracket the sum."""
    if is_sum(term):
        return rf"\left({body}\right)"
    if isinstance(term, Mul) and not body.startswith(r"\frac"):
        last = ordered_factors(list(term.args))[-1]
        if is_sum(last):
            tail = printer._print(last)
            if body.endswith(tail):
                return body[: len(body) - len(tail)] + rf"\left({tail}\right)"
    return body


def _elided(count: int, limit: int) -> list:
    """Row numbers to show; None marks the elision."""
    if count <= limit:
        return list(range(count))
    return [0, 1, None, count - 1]


# characters people type in titles and descriptions that pdflatex (without extra packages) lacks
_UNICODE_IN_TEXT = {"−": "$-$", "ε": r"$\varepsilon$", "σ": r"$\sigma$", "Σ": r"$\Sigma$",
                    "ᵀ": r"$^\top$", "×": r"$\times$", "′": "$'$", "²": "$^2$", "∇": r"$\nabla$",
                    "∂": r"$\partial$", "≠": r"$\neq$", "≤": r"$\leq$", "→": r"$\to$", "…": r"\dots{}",
                    "—": "---", "–": "--", "’": "'", "“": "``", "”": "''"}


# a one-letter name with a word subscript (n_prev, A_prev); not a function name (cross_entropy)
_IDENTIFIER = re.compile(r"(?<![\\$\w{])([A-Za-z]_[A-Za-z]+)\b")


def identifiers_as_math(markup: str) -> str:
    r"""``n_prev`` written in the text of a title (a size in "n = 3, n_prev = 2") is a name, not
    text with an underscore: make it a name token in math, which each printer writes in its
    notation (n_{\mathrm{prev}}, n^{[L-1]}, nₚᵣₑᵥ), so nothing prints ``n\_prev``."""
    parts = markup.split("$")
    for k in range(0, len(parts), 2):
        parts[k] = _IDENTIFIER.sub(lambda m: f"${name_markup(m.group(1))}$", parts[k])
    return "$".join(parts)


def names_as_latex(markup: str, printer: "PaperLatexPrinter") -> str:
    """The name tokens of a title or note (``notation.py``) written by ``printer``, exactly as in
    its equations (braced, so a following ^\\top or subscript applies to the whole name)."""
    return replace_names(
        markup,
        entry=lambda name, indices: "{" + printer._print(IndexedBase(name)[indices]) + "}",
        name=lambda name: "{" + printer._print(Symbol(name)) + "}",
        bold=lambda name: "{" + printer.notation.latex_bold(name) + "}")


def markup_to_latex(markup: str, notation: Notation | None = None) -> str:
    """Titles/notes are text with $…$ math: write the names in the chosen notation and escape
    the text parts for LaTeX."""
    markup = names_as_latex(identifiers_as_math(markup), PaperLatexPrinter(notation))
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


def range_text(step, printer: PaperLatexPrinter, model) -> str:
    r""""\text{for } i, j = 1, \dots, n" — the values the step's free indices take."""
    if not step.free_indices:
        return ""
    return r"\text{for } " + r",\ ".join(
        rf"{', '.join(printer.doprint(i) for i in indices)} = 1, \dots, {printer.doprint(bound)}"
        for indices, bound in index_ranges(step, model))


def step_lines(derivation: Derivation, printer: PaperLatexPrinter, label: str | None = None,
               tags: bool = False) -> list[tuple[str, str]]:
    """(intertext, equation line) per step, each equation on one line (the certificate's
    ``latex`` field); a step about the same quantity as the previous one continues the chain
    (``&= …``) instead of repeating its left side."""
    lines = []
    previous_lhs = None
    for number, step in enumerate(derivation.steps, start=1):
        lhs = "" if step.lhs == previous_lhs else printer.doprint(step.lhs)
        line = f"{lhs} &= {printer.doprint(step.rhs)}"
        if step.free_indices:
            line += " && " + range_text(step, printer, derivation.model).removeprefix(r"\text{for } ")
        lines.append((intertext(number, step, printer.notation), line))
        previous_lhs = step.lhs
    return lines


def intertext(number: int, step, notation: Notation) -> str:
    """The step's number and title, and on a line of its own its rule and check status (so the
    status never collides with or wraps into the title)."""
    title = markup_to_latex(step.title, notation)
    return (rf"\textbf{{{number}.}} {title}\newline"
            rf"\hspace*{{1.5em}}\textit{{{step.rule.value}; "
            rf"{markup_to_latex(status_words(step.check), notation)}}}")


TEXT_WIDTH = 34.5  # em: \textwidth of a plain 10 pt article (345 pt); every fragment line fits it
STANDALONE_WIDTH = 49.0  # em: the standalone document's letter/A4 page with 2 cm margins (≥ 497 pt)
MARGIN = 0.9  # of the estimate: the width estimate is rough, pdflatex tests keep it honest
TAG_WIDTH = 3.5  # an equation number (12) with its space


def rhs_pieces(printer: PaperLatexPrinter, expr) -> list[str]:
    """A right-hand side cut where a line may break: between the terms of a sum, between the
    matrices of a product."""
    from sympy.matrices.expressions import MatAdd, MatMul

    if isinstance(expr, (Add, MatAdd)):
        return printer.add_terms(expr)
    if isinstance(expr, MatMul) and any(isinstance(f, (MatrixBase, TemplateMatrix)) for f in expr.args):
        pieces: list[str] = []
        prefix = ""
        for factor in expr.args:
            if factor == -1:
                prefix += "- "
                continue
            text = printer.doprint(factor)
            if isinstance(factor, (Add, MatAdd)):
                text = rf"\left({text}\right)"
            if factor.is_Number or not isinstance(factor, (MatrixBase, TemplateMatrix)) and not pieces and len(text) < 40:
                prefix += text + " "
                continue
            pieces.append(prefix + text)
            prefix = ""
        if prefix:
            pieces.append(prefix.strip())
        return pieces
    return [printer.doprint(expr)]


def equation_rows(step, printer: PaperLatexPrinter, model, lhs: str, budget: float,
                  relation: str = "&=", continuation: str = r"&\quad") -> list[str]:
    """``lhs &= …`` broken into rows that each fit ``budget`` em, the index range at the end of
    the last row or, if it does not fit there, on a row of its own."""
    printer.budget = budget - 2.0
    pieces = rhs_pieces(printer, step.rhs)
    rows: list[list[str]] = [[]]
    for piece in pieces:
        trial = " ".join(rows[-1] + [piece])
        if rows[-1] and width(trial) + 2.0 > budget:
            rows.append([piece])
        else:
            rows[-1].append(piece)
    texts = [" ".join(r) for r in rows]
    ranges = range_text(step, printer, model)
    if ranges:
        if width(texts[-1]) + 2.0 + 2.0 + width(ranges) <= budget:
            texts[-1] += r" \qquad " + ranges
        else:
            texts.append(r"\qquad " + ranges)
    out = [f"{lhs} {relation} {texts[0]}".lstrip()]
    out += [f"{continuation} {t}" for t in texts[1:]]
    return out


def rhs_budget(derivation: Derivation, printer: PaperLatexPrinter, numbered: bool,
               text_width: float = TEXT_WIDTH) -> float:
    """Width left for right-hand sides in one alignment: the widest left side takes its share
    of every row."""
    widest = max((width(printer.doprint(s.lhs)) for s in derivation.steps), default=0.0)
    return text_width * MARGIN - widest - 1.5 - (TAG_WIDTH if numbered else 0.0)


def render_latex(derivation: Derivation, *, standalone: bool = False, notation: Notation | None = None,
                 label: str | None = None) -> str:
    """The derivation as an amsmath ``align*`` (``align`` with labels) block, or a whole document.
    Long lines break at + and between matrices; matrices show as many columns as fit."""
    printer = PaperLatexPrinter(notation)
    env = "align" if label else "align*"
    budget = rhs_budget(derivation, printer, numbered=bool(label),
                        text_width=STANDALONE_WIDTH if standalone else TEXT_WIDTH)
    body = []
    previous_lhs = None
    for number, step in enumerate(derivation.steps, start=1):
        lhs = "" if step.lhs == previous_lhs else printer.doprint(step.lhs)
        rows = equation_rows(step, printer, derivation.model, lhs, budget)
        if label:
            rows[-1] += rf" \label{{{label}:step-{number}}}"
            rows[:-1] = [r + r" \notag" for r in rows[:-1]]
        body.append(rf"\intertext{{{intertext(number, step, printer.notation)}}}")
        body.append(" \\\\\n".join(rows) + r" \\")
        previous_lhs = step.lhs
    if body:
        body[-1] = body[-1].removesuffix(r" \\")
    block = "\n".join([rf"\begin{{{env}}}", *body, rf"\end{{{env}}}"])
    title = markup_to_latex(derivation.title, printer.notation)
    layout = markup_to_latex(derivation.convention, printer.notation)
    if not standalone:
        return f"% symgrad: {title}\n% layout: {layout}\n{block}\n"
    notes = "\n\n".join(markup_to_latex(n, printer.notation) for n in derivation.notes)
    return "\n".join([
        r"\documentclass{article}",
        r"\usepackage{amsmath,amssymb,bm}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\pagestyle{empty}",
        r"\allowdisplaybreaks",
        r"\begin{document}",
        rf"\section*{{{title}}}",
        rf"\noindent Layout: {layout}.",
        block,
        notes,
        r"\end{document}",
        "",
    ])


class _Quotient:
    """1 ⊘ u: a lone factor to the power −1, printed as the quotient it is."""

    def __init__(self, power):
        self.args = (power,)
