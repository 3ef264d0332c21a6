"""Stage 1 — the expression language as a typed tree, the structure a derivation is built from.

``language.parse_tree`` checks the text against the whitelist (it never runs it); ``to_tree``
turns the checked ``ast`` into these nodes and checks shapes on the way. A node knows what it
is (``softmax`` of what, a sum of what), which is exactly what evaluating straight to SymPy
would lose: the engine names one intermediate per layer and picks a derivative rule per node.

Nodes are frozen dataclasses compared by structure (the column is kept for messages but not
compared), so ``softmax(z)`` written twice is one node and gets one name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from fractions import Fraction

from symgrad.language import FUNCTIONS, LanguageError

VECTOR, SCALAR, MATRIX = "vector", "scalar", "matrix"

# What each function takes and gives: argument kinds and result kind (None: same as argument).
ELEMENTWISE = ("exp", "log", "sigmoid", "tanh")
SIGNATURES = {
    "softmax": ((VECTOR,), VECTOR), "log_softmax": ((VECTOR,), VECTOR),
    "logsumexp": ((VECTOR,), SCALAR), "sum": ((VECTOR,), SCALAR), "dot": ((VECTOR, VECTOR), SCALAR),
    "cross_entropy": ((VECTOR, VECTOR), SCALAR), "binary_cross_entropy": ((VECTOR, VECTOR), SCALAR),
    "mse": ((VECTOR, VECTOR), SCALAR), "outer": ((VECTOR, VECTOR), MATRIX), "diag": ((VECTOR,), MATRIX),
}


@dataclass(frozen=True)
class Node:
    """Base of every node; ``kind`` is scalar, vector or matrix."""

    @property
    def kind(self) -> str:
        raise NotImplementedError

    @property
    def children(self) -> tuple["Node", ...]:
        return ()


@dataclass(frozen=True)
class Var(Node):
    name: str
    var_kind: str
    column: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return self.var_kind


@dataclass(frozen=True)
class Number(Node):
    value: Fraction
    column: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return SCALAR


@dataclass(frozen=True)
class Size(Node):
    """The size n used as a number (``eps / n``)."""

    name: str = "n"
    column: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return SCALAR


@dataclass(frozen=True)
class Negate(Node):
    arg: Node
    column: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return self.arg.kind

    @property
    def children(self):
        return (self.arg,)


@dataclass(frozen=True)
class Arith(Node):
    """Elementwise ``+ - * /`` with scalars broadcast over vectors."""

    op: str
    left: Node
    right: Node
    column: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        kinds = (self.left.kind, self.right.kind)
        return MATRIX if MATRIX in kinds else VECTOR if VECTOR in kinds else SCALAR

    @property
    def children(self):
        return (self.left, self.right)


@dataclass(frozen=True)
class Power(Node):
    base: Node
    exponent: Fraction
    column: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def children(self):
        return (self.base,)


@dataclass(frozen=True)
class Apply(Node):
    """A named function of the language applied to its arguments (``softmax(z)``)."""

    function: str
    args: tuple[Node, ...]
    column: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        if self.function in ELEMENTWISE:
            return self.args[0].kind
        return SIGNATURES[self.function][1]

    @property
    def children(self):
        return self.args


@dataclass(frozen=True)
class Derivative(Node):
    """``grad(f, x)`` (f scalar) or ``jacobian(f, x)`` (f vector): what a derivation derives."""

    function: str  # "grad" or "jacobian"
    of: Node
    wrt: Var
    column: int | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return VECTOR if self.function == "grad" else MATRIX

    @property
    def children(self):
        return (self.of,)


def to_tree(tree: ast.AST, kinds: dict[str, str], size_name: str = "n") -> Node:
    """The typed tree of a checked ``ast`` (from ``language.parse_tree``); ``kinds`` maps each
    declared variable to ``"vector"`` or ``"scalar"``. Shape errors are ``LanguageError``s."""
    return _Converter(kinds, size_name).node(tree.body if isinstance(tree, ast.Expression) else tree)


class _Converter:
    def __init__(self, kinds: dict[str, str], size_name: str):
        self.kinds = kinds
        self.size_name = size_name

    def node(self, n: ast.AST) -> Node:
        column = getattr(n, "col_offset", -1) + 1 or None
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return Number(Fraction(str(n.value)) if isinstance(n.value, float) else Fraction(n.value), column)
        if isinstance(n, ast.Name):
            if n.id == self.size_name and n.id not in self.kinds:
                return Size(n.id, column)
            if n.id not in self.kinds:
                raise LanguageError(f"unknown name {n.id!r}", column)
            return Var(n.id, self.kinds[n.id], column)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            inner = self.node(n.operand)
            return Negate(inner, column) if isinstance(n.op, ast.USub) else inner
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow):
            exponent = self.node(n.right)
            if isinstance(exponent, Negate) and isinstance(exponent.arg, Number):
                exponent = Number(-exponent.arg.value)
            if not isinstance(exponent, Number):
                raise LanguageError("the exponent of ** must be a number literal", column)
            return Power(self.node(n.left), exponent.value, column)
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            left, right = self.node(n.left), self.node(n.right)
            op = _OPS[type(n.op)]
            kinds = {left.kind, right.kind}
            if MATRIX in kinds and not (kinds == {MATRIX} and op in "+-" or
                                        kinds == {MATRIX, SCALAR} and (op == "*" or op == "/" and right.kind == SCALAR)):
                raise LanguageError(f"{left.kind} {op} {right.kind} is not defined", column)
            return Arith(op, left, right, column)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            if n.func.id not in FUNCTIONS:
                import difflib

                near = difflib.get_close_matches(n.func.id, list(FUNCTIONS), n=1)
                hint = f"; did you mean {near[0]}?" if near else f" (known: {', '.join(sorted(FUNCTIONS))})"
                raise LanguageError(f"unknown function {n.func.id!r}{hint}", column)
            if n.keywords:
                raise LanguageError("keyword arguments are not allowed", column)
            return self.call(n, column)
        raise LanguageError(f"{type(n).__name__} is not part of the expression language", column)

    def call(self, n: ast.Call, column) -> Node:
        name = n.func.id
        args = tuple(self.node(a) for a in n.args)
        if name in ("grad", "jacobian"):
            of, wrt = args
            if not isinstance(wrt, Var) or wrt.kind != VECTOR:
                raise LanguageError(f"the second argument of {name} must be a vector variable", column)
            wanted = SCALAR if name == "grad" else VECTOR
            if of.kind != wanted:
                raise LanguageError(f"{name} needs a {wanted} function, got a {of.kind}", column)
            return Derivative(name, of, wrt, column)
        if name in ELEMENTWISE:
            if len(args) != 1:
                raise LanguageError(f"{name} takes 1 argument", column)
            return Apply(name, args, column)
        wanted, _ = SIGNATURES[name]
        if len(args) != len(wanted):
            raise LanguageError(f"{name} takes {len(wanted)} argument(s)", column)
        for arg, kind in zip(args, wanted):
            if arg.kind != kind:
                raise LanguageError(f"{name} needs a {kind}, got a {arg.kind}", column)
        return Apply(name, args, column)


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def depends_on(node: Node, name: str) -> bool:
    """Whether the variable ``name`` occurs in ``node``."""
    if isinstance(node, Var):
        return node.name == name
    return any(depends_on(child, name) for child in node.children)
