"""Stage 4 — identity files as LaTeX, printed from the expressions *as written* (∇_z CE(softmax(z),
y) = softmax(z) − y), not from their n-dependent expansion. Deterministic, so a committed .tex
can be compared with a fresh export (``symgrad verify --check-exports``)."""

from __future__ import annotations

import ast
import re

from symgrad.functions import ELEMENTWISE
from symgrad.identity_file import SYMBOLIC, Identity, IdentityFileError
from symgrad.language import FUNCTIONS, LanguageError, parse_tree
from symgrad.output.latex import _UNICODE_IN_TEXT
from symgrad.output.notation import SHORT_GREEK

VECTOR_VALUED = set(ELEMENTWISE)  # elementwise (functions.py): a vector for a vector
RETURNS_VECTOR = {"softmax", "log_softmax", "grad"}
RETURNS_MATRIX = {"jacobian", "outer", "diag"}
NAMED = {"softmax": r"\operatorname{softmax}", "log_softmax": r"\operatorname{log\,softmax}",
         "logsumexp": r"\operatorname{logsumexp}", "cross_entropy": r"\operatorname{CE}",
         "binary_cross_entropy": r"\operatorname{BCE}", "mse": r"\operatorname{MSE}",
         "diag": r"\operatorname{diag}", "sum": r"\operatorname{sum}", "exp": r"\exp", "log": r"\log",
         **{f.name: f.tex for f in ELEMENTWISE.values()}}
GREEK = {**{name: latex for name, (latex, _) in SHORT_GREEK.items()}, "epsilon": r"\varepsilon",
         "alpha": r"\alpha", "beta": r"\beta", "gamma": r"\gamma", "tau": r"\tau", "sigma": r"\sigma", "mu": r"\mu"}
PRECEDENCE = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.MatMult: 2, ast.Div: 2, ast.Pow: 4}
# the mean of a vector (1/n Σᵢ xᵢ) or of every entry of a matrix, the Euclidean norm, √x, |x|
DELIMITED = {"mean": r"\operatorname{{mean}}\left({0}\right)", "norm": r"\left\lVert {0}\right\rVert",
             "sqrt": r"\sqrt{{{0}}}", "abs": r"\left\lvert {0}\right\rvert"}
MATRIX_CALLS = {"transpose": r"{0}^\top", "colsum": r"\mathbf{{1}}^\top {0}", "rowsum": r"{0} \mathbf{{1}}"}


class _SourcePrinter:
    def __init__(self, variables: dict):
        self.variables = variables

    def is_vector(self, node) -> bool:
        if isinstance(node, ast.Name):
            return self.variables.get(node.id, "scalar") != "scalar" and node.id in self.variables
        if isinstance(node, ast.BinOp):
            return self.is_vector(node.left) or self.is_vector(node.right)
        if isinstance(node, ast.UnaryOp):
            return self.is_vector(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            return name in RETURNS_VECTOR or name in RETURNS_MATRIX or (
                name in VECTOR_VALUED and self.is_vector(node.args[0]))
        return False

    def print(self, node, parent: int = 0) -> str:
        if isinstance(node, ast.Expression):
            return self.print(node.body)
        if isinstance(node, ast.Compare):
            return f"{self.print(node.left)} = {self.print(node.comparators[0])}"
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return number_text(node.value)
        if isinstance(node, ast.Name):
            name = math_name(node.id)
            return rf"\mathbf{{{name}}}" if self.is_vector(node) else name
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self.print(node.operand, 3)
            return f"-{inner}" if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            return self._binary(node, parent)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise ValueError(f"cannot print {type(node).__name__}")

    def _binary(self, node: ast.BinOp, parent: int) -> str:
        if type(node.op) not in PRECEDENCE:
            raise ValueError(f"cannot print the operator {type(node.op).__name__}")
        level = PRECEDENCE[type(node.op)]
        if isinstance(node.op, ast.Div):
            text = rf"\frac{{{self.print(node.left)}}}{{{self.print(node.right)}}}"
        elif isinstance(node.op, ast.Pow):
            text = f"{self.print(node.left, 5)}^{{{self.print(node.right)}}}"
        elif isinstance(node.op, ast.MatMult):
            text = f"{self.print(node.left, 2)} {self.print(node.right, 3)}"
        elif isinstance(node.op, ast.Mult):
            both = self.is_vector(node.left) and self.is_vector(node.right)
            operator = "\\odot " if both else ""
            text = f"{self.print(node.left, 2)} {operator}{self.print(node.right, 3)}"
        else:
            sign = "+" if isinstance(node.op, ast.Add) else "-"
            text = f"{self.print(node.left, 1)} {sign} {self.print(node.right, 2)}"
        return rf"\left({text}\right)" if level < parent else text

    def _call(self, node: ast.Call) -> str:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name in MATRIX_CALLS and len(node.args) == 1 and not node.keywords:
            inner = self.print(node.args[0], 5)
            return MATRIX_CALLS[name].format(inner)
        if name not in FUNCTIONS or len(node.args) != FUNCTIONS[name][1] or node.keywords \
                or name not in NAMED and name not in ("grad", "jacobian", "dot", "outer", *DELIMITED):
            raise ValueError(f"cannot print a call of {name or 'this'}")
        if name == "dot":  # xᵀy: a sum or product as either factor is bracketed
            return rf"{self.print(node.args[0], 5)}^\top {self.print(node.args[1], 3)}"
        if name == "outer":
            return rf"{self.print(node.args[0], 3)} {self.print(node.args[1], 5)}^\top"
        args = [self.print(a) for a in node.args]
        if name in DELIMITED:
            return DELIMITED[name].format(args[0])
        if name == "grad":
            target = node.args[0]
            wrapped = isinstance(target, ast.UnaryOp) or (isinstance(target, ast.BinOp) and
                                                           isinstance(target.op, (ast.Add, ast.Sub)))
            return rf"\nabla_{{{args[1]}}} " + (rf"\left({args[0]}\right)" if wrapped else args[0])
        if name == "jacobian":
            return rf"\frac{{\partial {args[0]}}}{{\partial {args[1]}}}"
        return rf"{NAMED[name]}\left({', '.join(args)}\right)"


def number_text(value) -> str:
    """A number as it is written in decimal (0.000001, not Python's 1e-06)."""
    if isinstance(value, int):
        return str(value)
    from decimal import Decimal

    text = format(Decimal(repr(value)), "f")
    return text[:-2] if text.endswith(".0") else text


_UNPRINTABLE = (LanguageError, ValueError, KeyError, AttributeError, IndexError, TypeError, RecursionError)


def math_name(name: str) -> str:
    """A variable name in math mode: Greek letters by name, one letter as it is, longer names
    upright-italic as one word; underscores and anything outside ASCII are escaped, so no name
    can be read as a LaTeX command or a subscript."""
    if name in GREEK:
        return GREEK[name]
    if re.fullmatch(r"[A-Za-z]", name):
        return name
    return rf"\mathit{{{text_to_latex(name)}}}"


_TEXT_ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%",
                 "#": r"\#", "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}",
                 "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def text_to_latex(text: str) -> str:
    """Plain text (a name, a description, a file name) as LaTeX text: every character that
    means something to TeX is escaped, control characters are dropped, and characters pdflatex
    cannot typeset by default are written as their code point. Nothing in the text can reach
    TeX as a command (\\input, \\write, \\catcode) or unbalance a group."""
    out = []
    for ch in str(text):
        if ch in _TEXT_ESCAPES:
            out.append(_TEXT_ESCAPES[ch])
        elif ch in _UNICODE_IN_TEXT:
            out.append(_UNICODE_IN_TEXT[ch])
        elif ch in "\t\n\r":
            out.append(" ")
        elif ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) < 0xE000:
            continue
        elif ord(ch) < 0x7F or ch.isalpha() and ord(ch) < 0x180:
            out.append(ch)  # ASCII, and Latin letters (é, ß, ł) that pdflatex's utf8 input knows
        else:
            out.append(rf"\texttt{{[U+{ord(ch):04X}]}}")
    return "".join(out)


def markup_text(text: str, printer: "_SourcePrinter") -> str:
    """A name or description: text, escaped; a $…$ part that is an expression of the language
    is printed through it, any other $…$ part is text like the rest."""
    parts = text.split("$")
    if len(parts) % 2 == 0:  # an unmatched $: all of it is text
        return text_to_latex(text)
    out = []
    for k, part in enumerate(parts):
        if k % 2:
            try:
                out.append(f"${printer.print(parse_tree(part, allow_equation='==' in part))}$")
                continue
            except _UNPRINTABLE:
                part = f"${part}$"
        out.append(text_to_latex(part))
    return "".join(out)


# -- breaking a long equation into lines ------------------------------------------------------------
# Widths are estimated in ems of display math (a letter ≈ 0.5 em, a relation or binary operator with
# its spaces ≈ 1.3 em). The article class's text is 345 pt, 34.5 em at 10 pt; a line of multline*
# loses its 10 pt indent, so an equation wider than LINE_EMS is broken, each line at most LINE_EMS.
LINE_EMS = 30.0
_OPERATOR_EMS = 1.3


def width(node) -> float:
    """The estimated width, in ems, of ``_SourcePrinter.print(node)``."""
    if isinstance(node, ast.Expression):
        return width(node.body)
    if isinstance(node, ast.Constant):
        return 0.5 * len(number_text(node.value))
    if isinstance(node, ast.Name):
        return 0.6 if node.id in GREEK or len(node.id) == 1 else 0.55 * len(node.id)
    if isinstance(node, ast.UnaryOp):
        return 0.8 + width(node.operand)
    if isinstance(node, ast.Compare):
        return width(node.left) + _OPERATOR_EMS + width(node.comparators[0])
    if isinstance(node, ast.BinOp):
        left, right = width(node.left), width(node.right)
        if isinstance(node.op, ast.Div):
            return max(left, right) + 0.4
        if isinstance(node.op, ast.Pow):
            return left + 0.7 * right + 0.8
        brackets = 0.8 * sum(isinstance(side, ast.BinOp) and isinstance(side.op, (ast.Add, ast.Sub))
                             for side in (node.left, node.right))
        operator = _OPERATOR_EMS if isinstance(node.op, (ast.Add, ast.Sub)) else 0.8
        return left + right + operator + brackets
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [width(a) + (0.8 if isinstance(a, ast.BinOp) else 0) for a in node.args]
        name = node.func.id
        if name in ("dot", "outer"):
            return sum(args) + 0.8
        if name in ("sqrt", "abs", "norm"):
            return args[0] + 1.2
        if name == "grad":
            return 1.5 + args[0]
        if name == "jacobian":
            return max(args) + 0.6
        label = {"sigmoid": 0.6, "maximum": 1.6, "minimum": 1.6, "exp": 1.4, "log": 1.4, "tanh": 1.8}
        return label.get(name, 0.5 * len(name)) + sum(args) + 0.9 * len(args) + 0.4
    return 0.6 * len(ast.dump(node)) / 10  # not printed by this module: a generous guess


def _wrap(pieces: list, opening: str, closing: str, ems: float = 1.0) -> list:
    """Pieces bracketed: the opening on the first, the closing on the last."""
    first, *rest = pieces
    pieces = [(f"{opening}{first[0]}", first[1] + ems / 2), *rest]
    return [*pieces[:-1], (f"{pieces[-1][0]}{closing}", pieces[-1][1] + ems / 2)]


def _pieces(printer: "_SourcePrinter", node, parent: int = 0) -> list[tuple[str, float]]:
    r"""``printer.print(node, parent)`` as pieces a line may end after, each (LaTeX, width): what
    fits on a line is one piece; a wider sum, product or function of one argument is opened into
    the pieces of its parts, a bracket around them written \Bigl( … \Bigr) (which, unlike
    \left … \right, may open on one line and close on another)."""
    if isinstance(node, ast.Expression):
        node = node.body
    if width(node) <= LINE_EMS:
        return [(printer.print(node, parent), width(node))]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.MatMult)):
        additive = isinstance(node.op, (ast.Add, ast.Sub))
        if additive:
            operator = "+ " if isinstance(node.op, ast.Add) else "- "
            left, right = _pieces(printer, node.left, 1), _pieces(printer, node.right, 2)
        else:
            both = isinstance(node.op, ast.Mult) and printer.is_vector(node.left) and printer.is_vector(node.right)
            operator = "\\odot " if both else ""
            left, right = _pieces(printer, node.left, 2), _pieces(printer, node.right, 3)
        joined = [*left, (f"{operator}{right[0][0]}", right[0][1] + (_OPERATOR_EMS if operator else 0)), *right[1:]]
        level = PRECEDENCE[type(node.op)]
        return _wrap(joined, r"\Bigl(", r"\Bigr)") if level < parent else joined
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _wrap(_pieces(printer, node.operand, 3), "-", "", 1.6)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1
            and node.func.id in NAMED and node.func.id not in DELIMITED):
        return _wrap(_pieces(printer, node.args[0]), rf"{NAMED[node.func.id]}\Bigl(", r"\Bigr)", 2.5)
    return [(printer.print(node, parent), width(node))]


def display(printer: "_SourcePrinter", lhs, rhs) -> str:
    r"""``lhs = rhs`` as a display: \[ … \] when it fits on a line, otherwise multline* broken
    between pieces (``_pieces``), a further line of the rhs starting with its sign or operator;
    the rhs starts a line of its own (``= …``) when the lhs leaves too little room."""
    if width(lhs) + _OPERATOR_EMS + width(rhs) <= LINE_EMS:
        return rf"\[ {printer.print(lhs)} = {printer.print(rhs)} \]"
    left, right = _pieces(printer, lhs), _pieces(printer, rhs)
    pieces = [*left[:-1], (f"{left[-1][0]} =", left[-1][1] + _OPERATOR_EMS / 2),
              (right[0][0], right[0][1] + _OPERATOR_EMS / 2), *right[1:]]
    lines, current, used = [], "", 0.0
    for text, ems in pieces:
        if current and used + ems > LINE_EMS:
            lines.append(current)
            current, used = "", 0.0
        current = f"{current} {text}".strip()
        used += ems
    lines.append(current)
    lines = [line if k == 0 or not line.startswith("=") else line for k, line in enumerate(lines)]
    body = " \\\\\n".join(lines)
    return f"\\begin{{multline*}}\n{body}\n\\end{{multline*}}"


def identity_latex(identity: Identity) -> tuple[str, list[str]]:
    """The display equation and the assumptions, as LaTeX."""
    printer = _SourcePrinter(identity.variables)
    try:
        equation = (f"{printer.print(parse_tree(identity.lhs, matrices=True))} = "
                    f"{printer.print(parse_tree(identity.rhs, matrices=True))}")
        assumptions = [printer.print(parse_tree(a, allow_equation=True, matrices=True)) for a in identity.assume]
    except _UNPRINTABLE as error:
        raise IdentityFileError(f"{identity.path}: identity {identity.name!r}: cannot be written as LaTeX: "
                                f"{error}", identity.path, identity.name) from None
    return equation, assumptions


def _status(result) -> tuple[bool, str]:
    """(checked, why not) for an identity's result (None: not checked at all)."""
    if result is None:
        return False, "not checked"
    said = []
    for holds, word in ((False, "refuted"), (None, "undecided")):
        sizes = [r.size for r in result.results if r.holds is holds]
        where = []
        if any(size != SYMBOLIC for size in sizes):
            where.append(f"at $n = {', '.join(str(size) for size in sizes if size != SYMBOLIC)}$")
        if SYMBOLIC in sizes:
            where.append("for every $n$")
        if where:
            said.append(f"{word} {' and '.join(where)}")
    return not said, "; ".join(said)


def render_identities(items: list, title: str) -> str:
    """The identities as a LaTeX document. ``items`` are checked results
    (``symgrad.verify.identity.IdentityResult``) or bare ``Identity`` objects: only a result that
    holds at every listed size is stated as checked; every other statement is marked, in the
    document itself, as NOT verified (and why)."""
    lines = [r"\documentclass{article}", r"\usepackage{amsmath,amssymb}", r"\begin{document}",
             rf"\section*{{{text_to_latex(title)}}}"]
    for item in items:
        identity, result = (item, None) if isinstance(item, Identity) else (item.identity, item)
        equation, assumptions = identity_latex(identity)
        printer = _SourcePrinter(identity.variables)
        checked, why = _status(result)
        integers = [str(size) for size in identity.sizes if size != SYMBOLIC]
        every_n = " and for every $n$" if SYMBOLIC in identity.sizes else ""
        lines.append(rf"\subsection*{{{markup_text(identity.name, printer)}}}")
        if identity.description:
            lines.append(markup_text(identity.description, printer))
        condition = (r", assuming $" + r"$ and $".join(assumptions) + "$") if assumptions else ""
        tables = [size.values for size in identity.sizes if hasattr(size, "values")]
        if tables:  # several size names: list each assignment
            integers = []
            scope = "For " + "; ".join(_table_scope(t) for t in tables)
        else:
            scope = rf"For $n \in \{{{', '.join(integers)}\}}${every_n}" if integers else "For every $n$"
        claim = r"(checked by \texttt{symgrad verify})" if checked else rf"(\textbf{{NOT verified}}: {why})"
        lines.append(rf"\noindent {scope}{condition} {claim}:")
        lines.append(display(printer, parse_tree(identity.lhs, matrices=True), parse_tree(identity.rhs, matrices=True)))
    lines += [r"\end{document}", ""]
    return "\n".join(lines)


def _table_scope(table: dict) -> str:
    """"$n = 3, p = 2, m = 2$", or for symbolic sizes "every $n, p, m$" ("$n = 2$ and every $p$")."""
    fixed = ", ".join(f"{math_name(k)} = {v}" for k, v in table.items() if v != SYMBOLIC)
    every = ", ".join(math_name(k) for k, v in table.items() if v == SYMBOLIC)
    if every and fixed:
        return f"${fixed}$ and every ${every}$"
    return f"every ${every}$" if every else f"${fixed}$"
