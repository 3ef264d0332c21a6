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
            return str(node.value)
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
                or name not in NAMED and name not in ("grad", "jacobian", "dot", "outer"):
            raise ValueError(f"cannot print a call of {name or 'this'}")
        args = [self.print(a) for a in node.args]
        if name == "grad":
            target = node.args[0]
            wrapped = isinstance(target, ast.UnaryOp) or (isinstance(target, ast.BinOp) and
                                                           isinstance(target.op, (ast.Add, ast.Sub)))
            return rf"\nabla_{{{args[1]}}} " + (rf"\left({args[0]}\right)" if wrapped else args[0])
        if name == "jacobian":
            return rf"\frac{{\partial {args[0]}}}{{\partial {args[1]}}}"
        if name == "dot":
            return rf"{args[0]}^\top {args[1]}"
        if name == "outer":
            return rf"{args[0]} {args[1]}^\top"
        return rf"{NAMED[name]}\left({', '.join(args)}\right)"


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
        lines.append(rf"\[ {equation} \]")
    lines += [r"\end{document}", ""]
    return "\n".join(lines)


def _table_scope(table: dict) -> str:
    """"$n = 3, p = 2, m = 2$", or for symbolic sizes "every $n, p, m$" ("$n = 2$ and every $p$")."""
    fixed = ", ".join(f"{math_name(k)} = {v}" for k, v in table.items() if v != SYMBOLIC)
    every = ", ".join(math_name(k) for k, v in table.items() if v == SYMBOLIC)
    if every and fixed:
        return f"${fixed}$ and every ${every}$"
    return f"every ${every}$" if every else f"${fixed}$"
