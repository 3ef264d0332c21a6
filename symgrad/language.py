"""Stage 1 — the expression language of identity files, parsed without ever running user text.

``softmax(z) - y``, ``grad(cross_entropy(softmax(z), y), z)``, ``sum(y) == 1`` …

Python's ``ast`` module *parses* the text (it never evaluates it); every node is then checked
against an explicit whitelist — numbers, declared variable names, the functions below, + − * /
** and unary minus, and ``==`` in assumptions — and turned into SymPy objects by hand. No
``eval``, ``exec``, ``sympify`` or ``parse_expr`` touches user text. Limits on length, nesting
and exponents keep every input fast: ``9**9**9**9`` is refused before SymPy could evaluate it.

Vectors are column matrices of entries ``z[1] … z[n]``; arithmetic is elementwise, and a scalar
broadcasts over a vector. ``mse(a, y)`` is the mean (1/n) Σ (a_i − y_i)².
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from sympy import (Basic, Eq, ImmutableMatrix, IndexedBase, Integer, Rational, Symbol, exp, log,
                   tanh as sympy_tanh)

MAX_LENGTH = 2000  # characters in one expression
MAX_DEPTH = 40  # nested operations
MAX_EXPONENT = 64  # |k| in x ** k
MAX_SIZE = 64  # vector length in identity files (they are checked entry by entry)


class LanguageError(ValueError):
    """A parse or type error, with the 1-based column where it happened (if known)."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Variable:
    """A declared name: a vector of ``length`` entries, or a scalar (length None)."""

    name: str
    length: int | None


def _is_vector(value) -> bool:
    return isinstance(value, ImmutableMatrix) and value.shape[1] == 1


def _is_matrix(value) -> bool:
    return isinstance(value, ImmutableMatrix)


class _Builder:
    """Turns a checked AST into SymPy objects for one assignment of sizes."""

    def __init__(self, variables: dict[str, Variable], constants: dict | None = None):
        self.variables = variables
        self.values = dict(constants or {})
        for var in variables.values():
            if var.length is None:
                self.values[var.name] = Symbol(var.name, real=True)
            else:
                base = IndexedBase(var.name, real=True)
                self.values[var.name] = ImmutableMatrix(var.length, 1, [base[k + 1] for k in range(var.length)])

    # -- nodes -------------------------------------------------------------------------------
    def build(self, node: ast.AST, depth: int = 0):
        if depth > MAX_DEPTH:
            raise LanguageError(f"expression nested deeper than {MAX_DEPTH} levels", _column(node))
        if isinstance(node, ast.Expression):
            return self.build(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise LanguageError(f"only numbers are allowed as constants, not {node.value!r}", _column(node))
            if isinstance(node.value, int):
                if abs(node.value) > 10**12:
                    raise LanguageError("integer constant too large", _column(node))
                return Integer(node.value)
            return Rational(str(node.value))  # exact: 0.1 means 1/10
        if isinstance(node, ast.Name):
            if node.id not in self.values:
                known = ", ".join(sorted(self.values)) or "none"
                raise LanguageError(f"unknown name {node.id!r} (declared variables: {known})", _column(node))
            return self.values[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.build(node.operand, depth + 1)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            if isinstance(node.op, ast.Pow):
                return self._power(node, depth)
            left, right = self.build(node.left, depth + 1), self.build(node.right, depth + 1)
            return _elementwise(_BINARY[type(node.op)], left, right, node)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        raise LanguageError(f"{_describe(node)} is not part of the expression language", _column(node))

    def _power(self, node: ast.BinOp, depth: int):
        exponent = _literal_number(node.right)
        if exponent is None:
            raise LanguageError("the exponent of ** must be a number literal", _column(node.right))
        if abs(exponent) > MAX_EXPONENT:
            raise LanguageError(f"exponent {exponent} too large (at most {MAX_EXPONENT})", _column(node.right))
        base = self.build(node.left, depth + 1)
        if _is_matrix(base):
            return base.applyfunc(lambda e: e ** exponent)
        return base ** exponent

    def _call(self, node: ast.Call, depth: int):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else _describe(node.func)
            raise LanguageError(f"unknown function {name!r} (known: {', '.join(sorted(FUNCTIONS))})",
                                _column(node))
        if node.keywords:
            raise LanguageError("keyword arguments are not allowed", _column(node))
        function, arity = FUNCTIONS[node.func.id]
        if len(node.args) != arity:
            raise LanguageError(f"{node.func.id} takes {arity} argument{'s' if arity > 1 else ''}, "
                                f"not {len(node.args)}", _column(node))
        if node.func.id in ("grad", "jacobian"):
            target = node.args[1]
            if not isinstance(target, ast.Name) or self.variables.get(target.id, Variable("", None)).length is None:
                raise LanguageError(f"the second argument of {node.func.id} must be a vector variable",
                                    _column(target))
        args = [self.build(arg, depth + 1) for arg in node.args]
        try:
            return function(*args)
        except LanguageError as error:
            raise LanguageError(str(error), error.column or _column(node)) from None


_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: None}


def _elementwise(op, left, right, node):
    if _is_matrix(left) and _is_matrix(right):
        if left.shape != right.shape:
            raise LanguageError(f"shapes {shape_of(left)} and {shape_of(right)} do not match", _column(node))
        return ImmutableMatrix(left.shape[0], left.shape[1], [op(a, b) for a, b in zip(left, right)])
    if _is_matrix(left):
        return left.applyfunc(lambda e: op(e, right))
    if _is_matrix(right):
        return right.applyfunc(lambda e: op(left, e))
    return op(left, right)


def _literal_number(node: ast.AST):
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _literal_number(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Rational(str(node.value))
    return None


# -- the functions -------------------------------------------------------------------------------
def _vector(value, name: str):
    if not _is_vector(value):
        raise LanguageError(f"{name} needs a vector, got {shape_of(value)}")
    return value


def _scalar(value, name: str):
    if _is_matrix(value):
        raise LanguageError(f"{name} needs a scalar, got {shape_of(value)}")
    return value


def _map(function):
    return lambda value: value.applyfunc(function) if _is_matrix(value) else function(value)


def _sigmoid(x):
    return 1 / (1 + exp(-x))


def _softmax(v):
    v = _vector(v, "softmax")
    total = sum(exp(e) for e in v)
    return v.applyfunc(lambda e: exp(e) / total)


def _logsumexp(v):
    return log(sum(exp(e) for e in _vector(v, "logsumexp")))


def _log_softmax(v):
    v = _vector(v, "log_softmax")
    return v.applyfunc(lambda e: e - _logsumexp(v))


def _same(a, b, name):
    _vector(a, name), _vector(b, name)
    if a.shape != b.shape:
        raise LanguageError(f"{name}: vectors of lengths {a.shape[0]} and {b.shape[0]}")


def _cross_entropy(a, y):
    _same(a, y, "cross_entropy")
    return -sum(yi * log(ai) for ai, yi in zip(a, y))


def _binary_cross_entropy(a, y):
    _same(a, y, "binary_cross_entropy")
    return -sum(yi * log(ai) + (1 - yi) * log(1 - ai) for ai, yi in zip(a, y))


def _mse(a, y):
    _same(a, y, "mse")
    return sum((ai - yi) ** 2 for ai, yi in zip(a, y)) / a.shape[0]


def _dot(a, b):
    _same(a, b, "dot")
    return sum(x * y for x, y in zip(a, b))


def _outer(a, b):
    _vector(a, "outer"), _vector(b, "outer")
    return ImmutableMatrix(a * b.T)


def _diag(v):
    v = _vector(v, "diag")
    n = v.shape[0]
    return ImmutableMatrix(n, n, lambda r, c: v[r] if r == c else 0)


def _sum(v):
    if not _is_matrix(v):
        raise LanguageError("sum needs a vector")
    return sum(v)


def _grad(f, x):
    f = _scalar(f, "grad (of a scalar; use jacobian for a vector)")
    return x.applyfunc(lambda entry: f.diff(entry))


def _jacobian(f, x):
    f = _vector(f, "jacobian")
    return ImmutableMatrix(f.shape[0], x.shape[0], lambda r, c: f[r].diff(x[c]))


FUNCTIONS = {
    "exp": (_map(exp), 1), "log": (_map(log), 1), "sigmoid": (_map(_sigmoid), 1),
    "tanh": (_map(sympy_tanh), 1), "sum": (_sum, 1), "dot": (_dot, 2), "outer": (_outer, 2),
    "diag": (_diag, 1), "softmax": (_softmax, 1), "log_softmax": (_log_softmax, 1),
    "logsumexp": (_logsumexp, 1), "cross_entropy": (_cross_entropy, 2),
    "binary_cross_entropy": (_binary_cross_entropy, 2), "mse": (_mse, 2), "grad": (_grad, 2),
    "jacobian": (_jacobian, 2),
}


# -- entry points --------------------------------------------------------------------------------
def parse_tree(text: str, allow_equation: bool = False) -> ast.AST:
    """The checked syntax tree of one expression (or ``lhs == rhs`` if allowed)."""
    if not isinstance(text, str):
        raise LanguageError("an expression must be a string")
    if len(text) > MAX_LENGTH:
        raise LanguageError(f"expression longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise LanguageError("empty expression")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise LanguageError(f"syntax error: {error.msg}", error.offset) from None
    except (RecursionError, MemoryError, ValueError):
        raise LanguageError("expression too deeply nested") from None
    body = tree.body
    if isinstance(body, ast.Compare):
        if not allow_equation:
            raise LanguageError("a comparison is only allowed in assume", _column(body))
        if len(body.ops) != 1 or not isinstance(body.ops[0], ast.Eq):
            raise LanguageError("an assumption must be a single equation  lhs == rhs", _column(body))
    elif allow_equation:
        raise LanguageError("an assumption must be an equation  lhs == rhs", _column(body))
    return tree


def evaluate(text: str, variables: dict[str, Variable], allow_equation: bool = False,
             constants: dict | None = None) -> Basic:
    """SymPy value of an expression (a scalar, a column vector or a matrix), or an ``Eq``.
    ``constants`` names numbers the text may use (the size n)."""
    tree = parse_tree(text, allow_equation)
    builder = _Builder(variables, constants)
    body = tree.body
    if isinstance(body, ast.Compare):
        left, right = builder.build(body.left, 1), builder.build(body.comparators[0], 1)
        if _is_matrix(left) or _is_matrix(right):
            raise LanguageError("an assumption must compare two scalars", _column(body))
        return Eq(left, right)
    return builder.build(tree)


def shape_of(value) -> str:
    if _is_vector(value):
        return f"a vector of length {value.shape[0]}"
    if _is_matrix(value):
        return f"a {value.shape[0]} × {value.shape[1]} matrix"
    return "a scalar"


def _column(node: ast.AST) -> int | None:
    offset = getattr(node, "col_offset", None)
    return None if offset is None else offset + 1


def _describe(node: ast.AST) -> str:
    names = {ast.Attribute: "attribute access", ast.Lambda: "a lambda", ast.ListComp: "a comprehension",
             ast.GeneratorExp: "a comprehension", ast.SetComp: "a comprehension", ast.DictComp: "a comprehension",
             ast.Subscript: "indexing", ast.List: "a list", ast.Tuple: "a tuple", ast.Dict: "a dict",
             ast.BoolOp: "and/or", ast.IfExp: "if/else", ast.NamedExpr: "assignment", ast.Starred: "*args",
             ast.Await: "await", ast.JoinedStr: "an f-string", ast.Compare: "a comparison"}
    return names.get(type(node), type(node).__name__)
