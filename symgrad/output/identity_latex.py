"""Stage 4 — identity files as LaTeX, printed from the expressions *as written* (∇_z CE(softmax(z),
y) = softmax(z) − y), not from their n-dependent expansion. Deterministic, so a committed .tex
can be compared with a fresh export (``symgrad verify --check-exports``)."""

from __future__ import annotations

import ast

from symgrad.identity_file import Identity
from symgrad.language import parse_tree
from symgrad.output.latex import markup_to_latex

VECTOR_VALUED = {"exp", "log", "sigmoid", "tanh"}  # elementwise: a vector for a vector
RETURNS_VECTOR = {"softmax", "log_softmax", "grad"}
RETURNS_MATRIX = {"jacobian", "outer", "diag"}
NAMED = {"softmax": r"\operatorname{softmax}", "log_softmax": r"\operatorname{log\,softmax}",
         "logsumexp": r"\operatorname{logsumexp}", "cross_entropy": r"\operatorname{CE}",
         "binary_cross_entropy": r"\operatorname{BCE}", "mse": r"\operatorname{MSE}",
         "diag": r"\operatorname{diag}", "sum": r"\operatorname{sum}", "exp": r"\exp", "log": r"\log",
         "tanh": r"\tanh", "sigmoid": r"\sigma"}
GREEK = {"eps": r"\varepsilon", "epsilon": r"\varepsilon", "alpha": r"\alpha", "beta": r"\beta",
         "gamma": r"\gamma", "lam": r"\lambda", "tau": r"\tau", "sigma": r"\sigma", "mu": r"\mu"}
PRECEDENCE = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.Pow: 4}


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
        if isinstance(node, ast.Constant):
            return str(node.value)
        if isinstance(node, ast.Name):
            name = GREEK.get(node.id, node.id)
            return rf"\mathbf{{{name}}}" if self.is_vector(node) else name
        if isinstance(node, ast.UnaryOp):
            inner = self.print(node.operand, 3)
            return f"-{inner}" if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            return self._binary(node, parent)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise ValueError(f"cannot print {type(node).__name__}")

    def _binary(self, node: ast.BinOp, parent: int) -> str:
        level = PRECEDENCE[type(node.op)]
        if isinstance(node.op, ast.Div):
            text = rf"\frac{{{self.print(node.left)}}}{{{self.print(node.right)}}}"
        elif isinstance(node.op, ast.Pow):
            text = f"{self.print(node.left, 5)}^{{{self.print(node.right)}}}"
        elif isinstance(node.op, ast.Mult):
            both = self.is_vector(node.left) and self.is_vector(node.right)
            operator = "\\odot " if both else ""
            text = f"{self.print(node.left, 2)} {operator}{self.print(node.right, 3)}"
        else:
            sign = "+" if isinstance(node.op, ast.Add) else "-"
            text = f"{self.print(node.left, 1)} {sign} {self.print(node.right, 2)}"
        return rf"\left({text}\right)" if level < parent else text

    def _call(self, node: ast.Call) -> str:
        name = node.func.id
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


def identity_latex(identity: Identity) -> tuple[str, list[str]]:
    """The display equation and the assumptions, as LaTeX."""
    printer = _SourcePrinter(identity.variables)
    equation = f"{printer.print(parse_tree(identity.lhs))} = {printer.print(parse_tree(identity.rhs))}"
    assumptions = [printer.print(parse_tree(a, allow_equation=True)) for a in identity.assume]
    return equation, assumptions


def render_identities(identities: list[Identity], title: str) -> str:
    lines = [r"\documentclass{article}", r"\usepackage{amsmath,amssymb}", r"\begin{document}",
             rf"\section*{{{markup_to_latex(title)}}}"]
    for identity in identities:
        equation, assumptions = identity_latex(identity)
        sizes = ", ".join(str(size) for size in identity.sizes if size != "symbolic")
        every_n = " and for every $n$" if "symbolic" in identity.sizes else ""
        lines.append(rf"\subsection*{{{markup_to_latex(identity.name)}}}")
        if identity.description:
            lines.append(markup_to_latex(identity.description))
        condition = (r", assuming $" + r"$ and $".join(assumptions) + "$") if assumptions else ""
        lines.append(rf"\noindent For $n \in \{{{sizes}\}}${every_n}{condition} (checked by \texttt{{symgrad verify}}):")
        lines.append(rf"\[ {equation} \]")
    lines += [r"\end{document}", ""]
    return "\n".join(lines)
