"""Stage 1 — the expression language as a typed tree, the structure a derivation is built from.

``language.parse_tree`` checks the text against the whitelist (it never runs it); ``to_tree``
turns the checked ``ast`` into these nodes and checks shapes on the way. A node knows what it
is (``softmax`` of what, a sum of what), which is exactly what evaluating straight to SymPy
would lose: the engine names one intermediate per layer and picks a derivative rule per node.

Nodes are frozen dataclasses compared by structure (the column is kept for messages but not
compared), so ``softmax(z)`` written twice is one node and gets one name.

Every node has a ``shape``: a tuple of size names — ``()`` a scalar, ``("n",)`` a vector of
length n, ``("n", "p")`` an n × p matrix. Shapes are checked here, by name, so that ``W @ X``
with W n × p and X q × m is refused before any size is chosen. On a matrix (one example per
column, as in a batch): ``softmax`` acts on each column, ``cross_entropy`` sums the columns'
losses, ``sum`` adds every entry, and a vector added to a matrix is added to each column.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from fractions import Fraction

from symgrad.functions import ELEMENTWISE as ELEMENTWISE_FUNCTIONS, abstract, elementwise, is_elementwise
from symgrad.language import FUNCTIONS, LanguageError

VECTOR, SCALAR, MATRIX = "vector", "scalar", "matrix"
KIND_OF_RANK = {0: SCALAR, 1: VECTOR, 2: MATRIX}
DEFAULT_SHAPES = {SCALAR: (), VECTOR: ("n",), MATRIX: ("n", "n")}

# Functions of matrices the language's own table (language.FUNCTIONS) does not know yet: the
# tree accepts them; each maps an argument shape to the result shape.
MATRIX_FUNCTIONS = {
    "transpose": lambda shape: (shape[1], shape[0]),
    "colsum": lambda shape: (shape[1],),  # one sum per column: a vector over the columns
    "rowsum": lambda shape: (shape[0],),  # one sum per row: a vector over the rows
}
# Functions that also take matrices, column by column (softmax) or entry by entry.
ON_MATRICES = {"softmax", "sum", "mean", "cross_entropy", "binary_cross_entropy", *MATRIX_FUNCTIONS}

# What each function takes and gives: argument kinds and result kind (None: same as argument).
ELEMENTWISE = tuple(ELEMENTWISE_FUNCTIONS)  # functions.py: one entry each
SIGNATURES = {
    "softmax": ((VECTOR,), VECTOR), "log_softmax": ((VECTOR,), VECTOR),
    "logsumexp": ((VECTOR,), SCALAR), "sum": ((VECTOR,), SCALAR), "mean": ((VECTOR,), SCALAR),
    "norm": ((VECTOR,), SCALAR), "dot": ((VECTOR, VECTOR), SCALAR),
    "cross_entropy": ((VECTOR, VECTOR), SCALAR), "binary_cross_entropy": ((VECTOR, VECTOR), SCALAR),
    "mse": ((VECTOR, VECTOR), SCALAR), "outer": ((VECTOR, VECTOR), MATRIX), "diag": ((VECTOR,), MATRIX),
}


@dataclass(frozen=True)
class Node:
    """Base of every node; ``shape`` is a tuple of size names, ``kind`` scalar, vector or matrix."""

    @property
    def shape(self) -> tuple:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        return KIND_OF_RANK[len(self.shape)]

    @property
    def children(self) -> tuple["Node", ...]:
        return ()


@dataclass(frozen=True)
class Var(Node):
    """A declared variable; ``var_shape`` defaults to the usual shape of its kind (a vector of
    length n)."""

    name: str
    var_kind: str
    column: int | None = field(default=None, compare=False)
    var_shape: tuple | None = None

    def __post_init__(self):
        if self.var_shape is None:
            object.__setattr__(self, "var_shape", DEFAULT_SHAPES[self.var_kind])

    @property
    def shape(self) -> tuple:
        return self.var_shape


@dataclass(frozen=True)
class Number(Node):
    value: Fraction
    column: int | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple:
        return ()


@dataclass(frozen=True)
class Size(Node):
    """A size used as a number (``eps / n``, ``/ m``)."""

    name: str = "n"
    column: int | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple:
        return ()


@dataclass(frozen=True)
class Negate(Node):
    arg: Node
    column: int | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple:
        return self.arg.shape

    @property
    def children(self):
        return (self.arg,)


@dataclass(frozen=True)
class Arith(Node):
    """Elementwise ``+ - * /``: scalars broadcast over everything, a vector over a matrix's
    columns (``W @ X + b``)."""

    op: str
    left: Node
    right: Node
    column: int | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple:
        return max(self.left.shape, self.right.shape, key=len)

    @property
    def children(self):
        return (self.left, self.right)


@dataclass(frozen=True)
class Power(Node):
    """``base ** exponent``: a number, or a declared scalar (``x ** g``, for a positive base)."""

    base: Node
    exponent: Fraction | Node
    column: int | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple:
        return self.base.shape

    @property
    def children(self):
        return (self.base, self.exponent) if isinstance(self.exponent, Node) else (self.base,)


@dataclass(frozen=True)
class Apply(Node):
    """A named function of the language applied to its arguments (``softmax(z)``)."""

    function: str
    args: tuple[Node, ...]
    column: int | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple:
        name, first = self.function, self.args[0].shape
        if is_elementwise(name):  # several arguments: scalars broadcast over the others' shape
            return max((arg.shape for arg in self.args), key=len)
        if name in ("softmax", "log_softmax"):
            return first
        if name in MATRIX_FUNCTIONS:
            return MATRIX_FUNCTIONS[name](first)
        if name == "outer":
            return (first[0], self.args[1].shape[0])
        if name == "diag":
            return (first[0], first[0])
        return ()

    @property
    def children(self):
        return self.args


@dataclass(frozen=True)
class MatProduct(Node):
    """``left @ right``: matrix times matrix, or matrix times vector."""

    left: Node
    right: Node
    column: int | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple:
        return self.left.shape[:1] + self.right.shape[1:]

    @property
    def children(self):
        return (self.left, self.right)


@dataclass(frozen=True)
class Derivative(Node):
    """``grad(f, x)`` (f scalar) or ``jacobian(f, x)`` (f vector): what a derivation derives."""

    function: str  # "grad" or "jacobian"
    of: Node
    wrt: Var
    column: int | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple:
        if self.function == "grad":
            return self.wrt.shape  # shaped like the variable
        return self.of.shape + self.wrt.shape

    @property
    def children(self):
        return (self.of,)


def to_tree(tree: ast.AST, kinds: dict, size_name: str = "n", more_sizes=(), functions=()) -> Node:
    """The typed tree of a checked ``ast`` (from ``language.parse_tree``). ``kinds`` maps each
    declared variable to ``"vector"`` or ``"scalar"`` (a vector of length ``size_name``), or to
    its shape, a tuple of size names (``("n", "p")``). Every size name, and ``size_name``, may be
    used as a number, as may the names in ``more_sizes`` (sizes no variable is declared over, m in
    sum(z) / m). ``functions``: names declared as abstract functions (g=function), applied entry
    by entry like tanh. Shape errors are ``LanguageError``s."""
    shapes = {name: tuple(k) if isinstance(k, tuple) else (size_name,) * len(DEFAULT_SHAPES[k])
              for name, k in kinds.items()}
    return _Converter(shapes, size_name, more_sizes, functions).node(tree.body if isinstance(tree, ast.Expression) else tree)


def _describe(shape: tuple) -> str:
    if not shape:
        return "a scalar"
    if len(shape) == 1:
        return f"a vector of length {shape[0]}"
    return f"a matrix of size {shape[0]} × {shape[1]}"


class _Converter:
    def __init__(self, shapes: dict[str, tuple], size_name: str, more_sizes=(), functions=()):
        self.shapes = shapes
        self.functions = frozenset(functions)
        for name in self.functions:
            if name in FUNCTIONS or name in MATRIX_FUNCTIONS:
                raise LanguageError(f"{name!r} cannot be declared a function: it is a function of the language")
            abstract(name)  # its entry in the function table (functions.py)
        self.sizes = {size_name, *more_sizes} | {d for shape in shapes.values() for d in shape if isinstance(d, str)}

    def node(self, n: ast.AST) -> Node:
        column = getattr(n, "col_offset", -1) + 1 or None
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return Number(Fraction(str(n.value)) if isinstance(n.value, float) else Fraction(n.value), column)
        if isinstance(n, ast.Name):
            if n.id in self.functions:
                raise LanguageError(f"{n.id} is a declared function: apply it to one argument, as in {n.id}(x)",
                                    column)
            if n.id in self.sizes and n.id not in self.shapes:
                return Size(n.id, column)
            if n.id not in self.shapes:
                raise LanguageError(f"unknown name {n.id!r}: declare it with its shape (--vars, or vars in an "
                                    "identity file)", column)
            shape = self.shapes[n.id]
            return Var(n.id, KIND_OF_RANK[len(shape)], column, shape)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            inner = self.node(n.operand)
            return Negate(inner, column) if isinstance(n.op, ast.USub) else inner
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow):
            exponent = self.node(n.right)
            if isinstance(exponent, Negate) and isinstance(exponent.arg, Number):
                exponent = Number(-exponent.arg.value)
            if isinstance(exponent, Var) and exponent.kind == SCALAR:
                from symgrad.lowering import sign_of  # (lowering reads this module)

                base = self.node(n.left)
                if sign_of(base) != "positive":
                    raise LanguageError("x ** g with g a variable needs a base known to be positive (exp, "
                                        "softmax, sigmoid, a positive number …): its power is complex otherwise",
                                        column)
                return Power(base, exponent, column)
            if not isinstance(exponent, Number):
                raise LanguageError("the exponent of ** must be a number literal or a scalar variable", column)
            return Power(self.node(n.left), exponent.value, column)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult):
            return self.product(self.node(n.left), self.node(n.right), column)
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return self.arith(_OPS[type(n.op)], self.node(n.left), self.node(n.right), column)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            known = sorted({*FUNCTIONS, *MATRIX_FUNCTIONS, *self.functions})
            if n.func.id not in known:
                import difflib

                near = difflib.get_close_matches(n.func.id, known, n=1)
                hint = f"; did you mean {near[0]}?" if near else f" (known: {', '.join(known)})"
                raise LanguageError(f"unknown function {n.func.id!r}{hint}", column)
            if n.keywords:
                raise LanguageError(f"{n.func.id} takes no keyword arguments", column)
            return self.call(n, column)
        raise LanguageError(f"{type(n).__name__} is not part of the expression language", column)

    def arith(self, op: str, left: Node, right: Node, column) -> Node:
        a, b = left.shape, right.shape
        if a and b and a != b:
            rows = a[0] if len(a) == 2 else b[0]
            vector = b if len(a) == 2 else a
            broadcast = sorted((len(a), len(b))) == [1, 2] and vector[0] == rows and op in "+-"
            if not broadcast:
                raise LanguageError(f"{_describe(a)} {op} {_describe(b)}: the sizes do not agree"
                                    + (" (a vector is added to each column of a matrix: its length must be the "
                                       "number of rows)" if 2 in (len(a), len(b)) else ""), column)
        if not a and b and op == "/" and len(b) == 2:
            raise LanguageError(f"a scalar / {_describe(b)} is not defined", column)
        return Arith(op, left, right, column)

    def product(self, left: Node, right: Node, column) -> Node:
        a, b = left.shape, right.shape
        if len(a) != 2 or len(b) not in (1, 2):
            raise LanguageError(f"@ multiplies a matrix by a matrix or a vector, not {_describe(a)} @ "
                                f"{_describe(b)}", column)
        if a[1] != b[0]:
            raise LanguageError(f"{_describe(a)} @ {_describe(b)}: the inner sizes {a[1]} and {b[0]} differ", column)
        return MatProduct(left, right, column)

    def call(self, n: ast.Call, column) -> Node:
        name = n.func.id
        args = tuple(self.node(a) for a in n.args)
        if name in ("grad", "jacobian"):
            if len(args) != 2:
                raise LanguageError(f"{name} takes 2 arguments", column)
            of, wrt = args
            if not isinstance(wrt, Var) or wrt.kind == SCALAR or name == "jacobian" and wrt.kind != VECTOR:
                raise LanguageError(f"the second argument of {name} must be a "
                                    f"{'vector' if name == 'jacobian' else 'vector or matrix'} variable", column)
            wanted = SCALAR if name == "grad" else VECTOR
            if of.kind != wanted:
                raise LanguageError(f"{name} needs a {wanted} function, got a {of.kind}", column)
            return Derivative(name, of, wrt, column)
        if name in MATRIX_FUNCTIONS:
            if len(args) != 1 or args[0].kind != MATRIX:
                raise LanguageError(f"{name} takes one matrix", column)
            return Apply(name, args, column)
        if name in ELEMENTWISE or name in self.functions:
            function = elementwise(name)
            if len(args) != function.arity:
                raise LanguageError(f"{name} takes {function.arity} argument{'s' if function.arity > 1 else ''}",
                                    column)
            shapes = {arg.shape for arg in args if arg.shape}
            if len(shapes) > 1:
                raise LanguageError(f"{name} needs arguments of one shape (or scalars), got "
                                    + " and ".join(_describe(arg.shape) for arg in args), column)
            for k in function.positive_parameters:
                if not (isinstance(args[k], Number) and args[k].value > 0):
                    raise LanguageError(f"{name}: argument {k + 1} must be a positive number", column)
            return Apply(name, args, column)
        wanted, _ = SIGNATURES[name]
        if len(args) != len(wanted):
            raise LanguageError(f"{name} takes {len(wanted)} argument(s)", column)
        on_matrices = name in ON_MATRICES and any(arg.kind == MATRIX for arg in args)
        for arg, kind in zip(args, wanted):
            if on_matrices and kind == VECTOR and arg.kind == MATRIX:
                continue
            if arg.kind != kind:
                raise LanguageError(f"{name} needs a {kind}, got {_describe(arg.shape)}", column)
        if len({arg.shape for arg in args}) > 1 and all(kind == VECTOR for kind in wanted):
            raise LanguageError(f"{name} needs arguments of one shape, got "
                                + " and ".join(_describe(arg.shape) for arg in args), column)
        return Apply(name, args, column)


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def depends_on(node: Node, name: str) -> bool:
    """Whether the variable ``name`` occurs in ``node``."""
    if isinstance(node, Var):
        return node.name == name
    return any(depends_on(child, name) for child in node.children)
