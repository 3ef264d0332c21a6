"""Stage 1 — the expression language of identity files, parsed without ever running user text.

``softmax(z) - y``, ``grad(cross_entropy(softmax(z), y), z)``, ``sum(y) == 1`` …

Python's ``ast`` module *parses* the text (it never evaluates it); every node is then checked
against an explicit whitelist — numbers, declared variable names, the functions below, + − * /
** and unary minus, and ``==`` in assumptions — and turned into SymPy objects by hand. No
``eval``, ``exec``, ``sympify`` or ``parse_expr`` touches user text.

The contract: ``parse_tree`` and ``evaluate`` return a value or raise ``LanguageError`` (one line,
with a column) — for *any* input. Three layers keep it:

* ``parse_tree`` checks everything that does not depend on the variables: characters (ASCII
  only, so look-alike letters and NUL bytes are named, not misread), syntax, the whitelist of
  nodes and functions, arities, literals, nesting, and a static bound on the degree and on the
  digits of the numbers the expression makes (``((9**64)**64)**64`` is refused before SymPy
  computes anything).
* ``evaluate`` estimates, from the sizes of the declared vectors, how large the built expression
  and the work of building it would be, and refuses what would not finish in a few seconds
  (``softmax`` nested ten deep, a gradient of a large sum at n = 64).
* Building calls SymPy only through ``_sympy``, which turns what SymPy raises underneath
  (``KeyError`` from its assumption system, ``TypeError``, overflow …) into a ``LanguageError``.

Vectors are column matrices of entries ``z[1] … z[n]``; arithmetic is elementwise, and a scalar
broadcasts over a vector. ``mse(a, y)`` is the mean (1/n) Σ (a_i − y_i)².
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import unicodedata
import warnings
from dataclasses import dataclass
from fractions import Fraction

from sympy import (Add, Basic, Eq, ImmutableMatrix, IndexedBase, Rational, Symbol, exp, log, nan,
                   oo, sqrt, zoo)

from symgrad.functions import ELEMENTWISE
from symgrad.memo import remember
from symgrad.smooth_algebra import derivative

MAX_LENGTH = 2000  # characters in one expression
MAX_DEPTH = 40  # nested operations
MAX_EXPONENT = 64  # |k| in x ** k
MAX_SIZE = 64  # vector length in identity files (they are checked entry by entry)
MAX_LITERAL_EXPONENT = 308  # number literals lie in 1e-308 … 1e308 (the range of a float), or are 0
MAX_DEGREE = 4096  # the degree an expression can reach through nested powers: ((z + 1)**64)**64
MAX_DIGITS = 4000  # decimal digits of the numbers it can make (Python prints at most 4300)
MAX_ENTRY_NODES = 100_000  # SymPy nodes in one entry of any value built (softmax nested deeply)
MAX_WORK = 1_500_000  # estimated nodes built in all (≈ 2 µs each in SymPy)
MAX_DIFF_WORK = 120_000  # estimated nodes differentiated by grad/jacobian (≈ 40–150 µs each in SymPy:
# the softmax cross-entropy gradient at n = 24 is about 110,000, 4 s on an idle core)


class LanguageError(ValueError):
    """A parse or type error, with the 1-based column where it happened (if known)."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column


class TooMuchWork(LanguageError):
    """A value too large to build as explicit SymPy at these sizes (refused before building):
    a derivative identity can still be checked through its derivation, which never expands it."""


@dataclass(frozen=True)
class Variable:
    """A declared name: a vector of ``length`` entries, or a scalar (length None)."""

    name: str
    length: int | None


def _is_vector(value) -> bool:
    return isinstance(value, ImmutableMatrix) and value.shape[1] == 1


def _is_matrix(value) -> bool:
    return isinstance(value, ImmutableMatrix)


# -- characters ----------------------------------------------------------------------------------
def _check_characters(text: str, offset: int) -> None:
    """Expressions are ASCII. Python would NFKC-normalise identifiers (fullwidth ``ｚ`` silently
    becomes ``z``) and accept Cyrillic ``а`` in ``softmаx`` as a different name: both read as
    something they are not, so any non-ASCII character is refused and named, with the ASCII
    letter it looks like when there is one. NUL and other control characters are named too."""
    for index, char in enumerate(text):
        column = offset + index + 1
        if char in "\t\n\r" or " " <= char <= "~":
            continue
        code = f"U+{ord(char):04X}"
        if char == "\0":
            raise LanguageError(f"NUL character ({code}) at column {column}: expressions are plain text", column)
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            raise LanguageError(f"control character {code} at column {column} is not allowed", column)
        name = unicodedata.name(char, "unnamed character")
        hint = _ascii_look_alike(char, name)
        hint = f"; did you mean {hint!r}?" if hint else ""
        raise LanguageError(f"character {char!r} ({code} {name}) at column {column} is not ASCII: "
                            f"expressions use ASCII letters, digits and operators only{hint}", column)


_HOMOGLYPHS = {"A": "a", "IE": "e", "O": "o", "ER": "p", "ES": "c", "HA": "x", "U": "y", "KA": "k",
               "ALPHA": "a", "OMICRON": "o", "NU": "v", "RHO": "p", "IOTA": "i", "KAPPA": "k", "CHI": "x",
               "UPSILON": "u", "EPSILON": "e", "TAU": "t"}


def _ascii_look_alike(char: str, name: str) -> str | None:
    """The ASCII character a non-ASCII one is mistaken for (fullwidth digits, Cyrillic/Greek
    letters), or None."""
    normal = unicodedata.normalize("NFKC", char)
    if len(normal) == 1 and " " <= normal <= "~":
        return normal
    words = name.split()
    if len(words) == 4 and words[0] in ("CYRILLIC", "GREEK") and words[2] == "LETTER":
        letter = _HOMOGLYPHS.get(words[3])
        if letter:
            return letter if words[1] == "SMALL" else letter.upper()
    return None


# -- the static check: whitelist, literals, nesting, degree and digits ---------------------------
_OPERATORS = {
    ast.MatMult: "`@` (matrix product) is not part of identity files yet (`symgrad derive --expr` takes it); use dot(a, b) for two vectors "
                 "or outer(a, b) for their outer product",
    ast.FloorDiv: "`//` (floor division) is not part of the language; use /",
    ast.Mod: "`%` (remainder) is not part of the language",
    ast.BitXor: "`^` (bitwise xor) is not part of the language; use ** for a power",
    ast.BitAnd: "`&` (bitwise and) is not part of the language",
    ast.BitOr: "`|` (bitwise or) is not part of the language",
    ast.LShift: "`<<` (shift) is not part of the language",
    ast.RShift: "`>>` (shift) is not part of the language",
}
_COMPARISONS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
                ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_LOG10_SIZE = math.log10(MAX_SIZE)


@dataclass(frozen=True)
class _Bound:
    """Static upper bounds for a subexpression, whatever the sizes: the degree it reaches in the
    variables (through nested powers and products) and the decimal digits of the numbers SymPy
    may compute for it (it folds numbers eagerly: ``9**64**…`` is computed when built)."""

    degree: float
    digits: float


def _number_digits(value: Fraction) -> float:
    return math.log10(abs(value.numerator) + 1) + math.log10(value.denominator)


class _StaticCheck:
    """Walks a parsed tree once and raises a ``LanguageError`` for anything outside the
    language, before SymPy sees any of it."""

    def __init__(self, source: str, offset: int, matrices: bool = False, declared=()):
        self.source = source
        self.offset = offset
        self.functions = {**FUNCTIONS, **MATRIX_FUNCTIONS} if matrices else FUNCTIONS
        self.declared = frozenset(declared)  # functions the user declared (g=function): one argument
        if self.declared:
            self.functions = {**self.functions, **{name: (None, 1) for name in self.declared}}
        self.operators = {k: v for k, v in _OPERATORS.items() if not (matrices and k is ast.MatMult)}

    def column(self, node: ast.AST) -> int | None:
        column = _column(node)
        return None if column is None else column + self.offset

    def fail(self, message: str, node: ast.AST):
        raise LanguageError(message, self.column(node))

    def check(self, node: ast.AST, depth: int) -> _Bound:
        if depth > MAX_DEPTH:
            self.fail(f"expression nested deeper than {MAX_DEPTH} levels", node)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            self.name(node)
            return _Bound(1, 0)
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                what = "`not`" if isinstance(node.op, ast.Not) else "`~` (bitwise not)"
                self.fail(f"{what} is not part of the language", node)
            return self.check(node.operand, depth + 1)
        if isinstance(node, ast.BinOp):
            return self.binary(node, depth)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, ast.Compare):
            operator = _COMPARISONS.get(type(node.ops[0]), "?")
            self.fail(f"a comparison (`{operator}`) is only allowed in assume, as one equation  lhs == rhs", node)
        self.fail(f"{_describe(node)} is not part of the expression language", node)

    def constant(self, node: ast.Constant) -> _Bound:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"{_describe_constant(value)} is not part of the language: only numbers are", node)
        exact = _exact_literal(node, self.source)
        if exact != 0 and abs(math.log10(abs(exact.numerator)) - math.log10(exact.denominator)) > MAX_LITERAL_EXPONENT:
            text = ast.get_source_segment(self.source, node) or repr(value)
            self.fail(f"number {text[:40]} is out of range: literals lie between 1e-{MAX_LITERAL_EXPONENT} "
                      f"and 1e{MAX_LITERAL_EXPONENT} in size (or are 0)", node)
        node.exact = exact  # read by the builder: the value as written, not a rounded float
        return _Bound(0, _number_digits(exact))

    def name(self, node: ast.Name) -> None:
        if node.id.startswith("__") and node.id.endswith("__"):
            self.fail(f"{node.id} is a dunder name: names like that are not part of the language", node)
        if node.id in self.declared:
            self.fail(f"{node.id} is a declared function (g=function): apply it to one argument, as in "
                      f"{node.id}(W1 @ X + b1), it is not a value", node)

    def binary(self, node: ast.BinOp, depth: int) -> _Bound:
        if type(node.op) in self.operators:
            self.fail(self.operators[type(node.op)], node)
        left = self.check(node.left, depth + 1)
        if isinstance(node.op, ast.Pow):
            self.check(node.right, depth + 1)
            exponent = _literal_number(node.right)
            if exponent is None and isinstance(node.right, ast.Name):  # x ** g, g a declared scalar
                self.name(node.right)
                return self.bounded(_Bound(left.degree, left.digits), node)
            if exponent is None:
                self.fail("the exponent of ** must be a number literal or a scalar variable", node.right)
            if abs(exponent) > MAX_EXPONENT:
                self.fail(f"exponent {_show(exponent)} too large (at most {MAX_EXPONENT})", node.right)
            k = max(1, math.ceil(abs(exponent)))
            return self.bounded(_Bound(left.degree * k, left.digits * k), node)
        right = self.check(node.right, depth + 1)
        if isinstance(node.op, (ast.Add, ast.Sub)):
            return self.bounded(_Bound(max(left.degree, right.degree), max(left.digits, right.digits) + 0.31), node)
        return self.bounded(_Bound(left.degree + right.degree, left.digits + right.digits), node)

    def bounded(self, bound: _Bound, node: ast.AST) -> _Bound:
        """The resulting degree and digits, not each literal, are what make work: refuse them here."""
        if bound.degree > MAX_DEGREE:
            self.fail(f"this expression reaches degree {_count(bound.degree)} through nested powers and "
                      f"products (at most {MAX_DEGREE}, e.g. ((z + 1)**64)**64)", node)
        if bound.digits > MAX_DIGITS:
            self.fail(f"numbers in this expression would reach about {_count(bound.digits)} digits "
                      f"(at most {MAX_DIGITS})", node)
        return bound

    def call(self, node: ast.Call, depth: int) -> _Bound:
        if not isinstance(node.func, ast.Name):
            what = "a method call (`.name(...)`)" if isinstance(node.func, ast.Attribute) else \
                f"calling {_describe(node.func)}"
            self.fail(f"{what} is not part of the language", node)
        name = node.func.id
        if name not in self.functions:
            self.name(node.func)
            self.fail(_unknown_function(name, self.functions), node)
        for keyword in node.keywords:
            if keyword.arg is None:
                self.fail(f"`**` (keyword unpacking) in {name}(...) is not part of the language", keyword)
            self.fail(f"keyword argument `{keyword.arg}=` is not allowed: {name} takes its arguments "
                      f"by position", keyword)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail(f"a starred argument (`*...`) in {name}(...) is not part of the language", arg)
        arity = self.functions[name][1]
        if len(node.args) != arity:
            self.fail(f"{name} takes {arity} argument{'s' if arity > 1 else ''}, not {len(node.args)}", node)
        if name in ("grad", "jacobian") and not isinstance(node.args[1], ast.Name):
            self.fail(f"the second argument of {name} must be a vector variable", node.args[1])
        bounds = [self.check(arg, depth + 1) for arg in node.args]
        degree = max(b.degree for b in bounds)
        digits = max(b.digits for b in bounds)
        if name in ("dot", "outer", "cross_entropy", "binary_cross_entropy", "mse"):
            degree, digits = 2 * degree, 2 * digits + _LOG10_SIZE
        elif name in ("sum", "mean", "softmax", "log_softmax", "logsumexp"):
            digits += _LOG10_SIZE
        elif name == "norm":
            degree, digits = 2 * degree, 2 * digits + _LOG10_SIZE
        elif name in ("grad", "jacobian"):
            digits += math.log10(degree + 2)
        return self.bounded(_Bound(degree, digits), node)


def _exact_literal(node: ast.Constant, source: str) -> Fraction:
    """A literal's value as written: ``0.1`` is 1/10 and ``1e-400`` is 10⁻⁴⁰⁰, not the float
    Python rounded it to (``1e309`` would be inf, ``1e-400`` 0)."""
    if isinstance(node.value, int):
        return Fraction(node.value)
    text = (ast.get_source_segment(source, node) or "").replace("_", "")
    written = re.fullmatch(r"([0-9.]*)[eE]([+-]?[0-9]+)", text)
    if written and abs(int(written.group(2))) > len(text) + MAX_LITERAL_EXPONENT:
        # far out of range whatever the digits before the e (at most len(text) decades of them):
        # Fraction("1e1000431880051") would build a billion-digit integer (the fuzz campaign's)
        if not written.group(1).strip("0."):
            return Fraction(0)
        return Fraction(10) ** (MAX_LITERAL_EXPONENT + 1) if int(written.group(2)) > 0 \
            else Fraction(1, 10 ** (MAX_LITERAL_EXPONENT + 1))
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return Fraction(node.value) if math.isfinite(node.value) else Fraction(10) ** (MAX_LITERAL_EXPONENT + 1)


def _unknown_function(name: str, functions=None) -> str:
    functions = FUNCTIONS if functions is None else functions
    close = difflib.get_close_matches(name, functions, n=1, cutoff=0.7)
    if close:
        return f"unknown function {name!r} — did you mean {close[0]}?"
    if name in MATRIX_FUNCTIONS:
        return f"{name} works on matrices, which `symgrad derive` supports and identity files do not yet"
    return f"unknown function {name!r} (known: {', '.join(sorted(functions))})"


def _describe_constant(value) -> str:
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, complex):
        return "an imaginary number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes):
        return "a bytes literal"
    if value is None:
        return "None"
    if value is Ellipsis:
        return "`...` (Ellipsis)"
    return f"the constant {value!r}"


def _show(value) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}…"


def _count(value: float) -> str:
    return f"{value:,.0f}" if value < 1e15 else f"{value:.1e}"


def _literal_number(node: ast.AST) -> Fraction | None:
    """The exact value of a (possibly negated) number literal already checked, or None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal_number(node.operand)
        return None if inner is None or isinstance(node.op, ast.UAdd) else -inner
    if isinstance(node, ast.Constant):
        return getattr(node, "exact", None)
    return None


# -- the cost estimate: how large the built value would be, for the declared sizes ---------------
_ELEMENTWISE_COST = {name: f.cost for name, f in ELEMENTWISE.items()}


class _Estimate:
    """An upper estimate of the SymPy nodes in one entry of each value (``size``) and of the node
    operations needed to build everything (``work``), from the shapes alone. SymPy walks whole
    trees (free symbols, ``logcombine`` in ``exp``), so the time to build tracks these numbers:
    ``softmax`` of length n multiplies the entry size by n + 1 at each nesting, and ``grad``
    differentiates a whole scalar once per entry of the vector."""

    def __init__(self, variables: dict[str, Variable]):
        self.lengths = {v.name: v.length for v in variables.values()}
        self.work = 0
        self.diff_work = 0
        self.largest = 0

    def estimate(self, node: ast.AST) -> tuple[tuple, int]:
        """(shape, entry size): shape () for a scalar, (m,) for a vector, (m, k) for a matrix."""
        if isinstance(node, ast.Expression):
            return self.estimate(node.body)
        if isinstance(node, ast.Name):
            length = self.lengths.get(node.id)
            return ((length,), 4) if length else ((), 1)
        if isinstance(node, ast.UnaryOp):
            shape, size = self.estimate(node.operand)
            return self.count(shape, size + 1)
        if isinstance(node, ast.BinOp):
            left, left_size = self.estimate(node.left)
            if isinstance(node.op, ast.Pow):
                return self.count(left, left_size + 2)
            right, right_size = self.estimate(node.right)
            return self.count(max(left, right, key=len), left_size + right_size + 1)
        if isinstance(node, ast.Call):
            return self.call(node.func.id, [self.estimate(arg) for arg in node.args])
        return (), 1

    def count(self, shape: tuple, size: int, shared: bool = False) -> tuple[tuple, int]:
        """Add the work of building a value of this shape; ``shared`` entries (softmax) reuse one sum."""
        entries = math.prod(shape)
        self.work += size + entries if shared else entries * size
        self.largest = max(self.largest, size)
        return shape, size

    def call(self, name: str, args: list) -> tuple[tuple, int]:
        (shape, size), length = args[0], _length(args[0][0])
        if name in _ELEMENTWISE_COST:
            shape = max((arg_shape for arg_shape, _ in args), key=len)
            return self.count(shape, sum(arg_size for _, arg_size in args) + _ELEMENTWISE_COST[name])
        if name in ("softmax", "log_softmax"):
            return self.count((length,), (length + 1) * (size + 1) + 3, shared=True)
        if name in ("sum", "logsumexp", "mean", "norm"):
            return self.count((), length * (size + 2) + 3)
        if name == "diag":
            return self.count((length, length), size)
        other_shape, other_size = args[1]
        if name == "outer":
            return self.count((length, _length(other_shape)), size + other_size + 1)
        if name in ("dot", "cross_entropy", "binary_cross_entropy", "mse"):
            return self.count((), length * (size + other_size + 4))
        # grad and jacobian: one differentiation of the whole expression per output entry
        outputs = math.prod(shape) * _length(other_shape) if name == "jacobian" else _length(other_shape)
        self.diff_work += outputs * size
        self.largest = max(self.largest, 2 * size)
        return ((math.prod(shape), _length(other_shape)) if name == "jacobian" else other_shape), 2 * size


def _length(shape: tuple) -> int:
    return shape[0] if shape else 1


def _check_cost(tree: ast.AST, variables: dict[str, Variable]) -> None:
    """Refuse, before building, a value too large to build in a few seconds at these sizes."""
    estimate = _Estimate(variables)
    estimate.estimate(tree)
    size = estimate.largest
    sizes = ", ".join(sorted({f"{v.length}" for v in variables.values() if v.length})) or "these sizes"
    if size > MAX_ENTRY_NODES:
        raise TooMuchWork(f"too large to build at length {sizes}: one entry would have about {_count(size)} "
                            f"terms (at most {MAX_ENTRY_NODES:,}); nest fewer vector functions such as "
                            f"softmax, or use a smaller n", 1)
    if estimate.work > MAX_WORK:
        raise TooMuchWork(f"too much work to build at length {sizes}: about {_count(estimate.work)} "
                            f"terms (at most {MAX_WORK:,}); use a smaller n", 1)
    if estimate.diff_work > MAX_DIFF_WORK:
        raise TooMuchWork(f"too much work to differentiate at length {sizes}: about "
                            f"{_count(estimate.diff_work)} terms (at most {MAX_DIFF_WORK:,}); use a smaller n", 1)


# -- building SymPy values -----------------------------------------------------------------------
# What SymPy may raise underneath for input it does not expect (its assumption system raises
# KeyError: 'extended_real'): caught only around calls into SymPy, never around our own checks.
_SYMPY_FAILURES = (KeyError, TypeError, ValueError, ArithmeticError, RecursionError, MemoryError,
                   NotImplementedError)


def _sympy(node: ast.AST, operation, *args):
    """``operation(*args)``, with a failure inside SymPy reported as a ``LanguageError`` at ``node``."""
    try:
        return operation(*args)
    except LanguageError as error:
        raise LanguageError(str(error), error.column or _column(node)) from None
    except _SYMPY_FAILURES as error:
        if any(isinstance(a, Basic) and a.has(zoo, nan) for a in args):  # maximum(0, 0/0): Max refuses nan
            raise LanguageError("the expression is undefined: it divides by zero or takes log(0)",
                                _column(node)) from None
        detail = f"{type(error).__name__}: {error}".strip().rstrip(":")
        raise LanguageError(f"SymPy cannot build this expression ({_show_line(detail)})", _column(node)) from None


def _show_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 120 else text[:117] + "…"


class _Builder:
    """Turns a checked AST into SymPy objects for one assignment of sizes."""

    def __init__(self, variables: dict[str, Variable], constants: dict | None = None):
        self.variables = variables
        # sizes given as plain Python numbers ({"n": 3}) are SymPy numbers here
        self.values = {name: Rational(value) if isinstance(value, (int, Fraction)) and not isinstance(value, bool)
                       else value for name, value in (constants or {}).items()}
        for var in variables.values():
            if var.length is None:
                self.values[var.name] = Symbol(var.name, real=True)
            else:
                base = IndexedBase(var.name, real=True)
                self.values[var.name] = ImmutableMatrix(var.length, 1, [base[k + 1] for k in range(var.length)])

    def build(self, node: ast.AST):
        if isinstance(node, ast.Expression):
            return self.build(node.body)
        if isinstance(node, ast.Constant):
            exact = getattr(node, "exact", None)
            exact = Fraction(node.value) if exact is None else exact
            return Rational(exact.numerator, exact.denominator)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            value = self.build(node.operand)
            return _sympy(node, lambda v: -v, value) if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left = self.build(node.left)
            if isinstance(node.op, ast.Pow):
                exponent = _literal_number(node.right)
                if exponent is None:  # a scalar variable (checked by name in parse_tree)
                    power = self.name(node.right)
                    if _is_matrix(power):
                        raise LanguageError("the exponent of ** must be a number or a scalar variable, "
                                            f"not {shape_of(power)}", _column(node.right))
                else:
                    power = Rational(exponent.numerator, exponent.denominator)
                return _sympy(node, _elementwise, lambda a, b: a ** b, left, power, node)
            right = self.build(node.right)
            return _sympy(node, _elementwise, _BINARY[type(node.op)], left, right, node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise LanguageError(f"{_describe(node)} is not part of the expression language", _column(node))

    def name(self, node: ast.Name):
        if node.id in self.values:
            return self.values[node.id]
        if node.id in FUNCTIONS:
            raise LanguageError(f"{node.id} is a function: call it, as in {node.id}(...)", _column(node))
        close = difflib.get_close_matches(node.id, self.values, n=1, cutoff=0.6)
        hint = f" — did you mean {close[0]}?" if close else ""
        known = ", ".join(sorted(self.values)) or "none"
        raise LanguageError(f"unknown name {node.id!r}{hint} (declared variables: {known})", _column(node))

    def call(self, node: ast.Call):
        name = node.func.id
        if name in ("grad", "jacobian"):
            target = node.args[1]
            if self.variables.get(target.id, Variable("", None)).length is None:
                raise LanguageError(f"the second argument of {name} must be a vector variable", _column(target))
        args = [self.build(arg) for arg in node.args]
        for arg, arg_node in zip(args, node.args):
            _refuse_astronomical(arg, name, arg_node)
        return _sympy(node, FUNCTIONS[name][0], *args)


LARGEST_CONSTANT = 1e300  # about the largest double: beyond it no float check means anything


def _refuse_astronomical(value, name: str, node: ast.AST) -> None:
    """Refuse a constant argument beyond ±1e300 (exp(4e6)): SymPy keeps exp(exp(4e6)) unevaluated,
    but its first sign query (in log, in Max) evaluates it with mpmath at millions of digits and
    runs for minutes (the fuzz campaign's softplus(exp(4e6))). The argument itself is cheap to
    evaluate, because every function it contains already passed this check. A vector or matrix
    argument is checked entry by entry: exp applied to exp(y/y) (a vector of e^e) thirty times is
    the same tower, one entry at a time (the fuzz campaign's)."""
    if _is_matrix(value):
        for entry in set(value):
            _refuse_astronomical(entry, name, node)
        return
    if not isinstance(value, Basic) or value.free_symbols or value.is_Number:
        return
    try:
        magnitude = abs(complex(value.evalf(15)))
    except (TypeError, ValueError, ArithmeticError, OverflowError):
        return  # not a finite number (SymPy's own checks report undefined values)
    if magnitude > LARGEST_CONSTANT:
        raise LanguageError(f"the argument of {name} is a number beyond ±1e300 ({_show_line(str(value))}), "
                            "too large to evaluate; no check could use it", _column(node))


_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b}


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


def _map_many(function, name: str):
    """An elementwise function of several arguments (maximum(a, b), clip(x, lo, hi)): vectors or
    matrices of one shape entry by entry, scalars broadcast."""
    def apply(*args):
        shapes = {arg.shape for arg in args if _is_matrix(arg)}
        if len(shapes) > 1:
            raise LanguageError(f"{name}: arguments of different shapes ("
                                + " and ".join(shape_of(a) for a in args if _is_matrix(a)) + ")")
        if not shapes:
            return function(*args)
        (rows, cols), = shapes
        entry = lambda arg, k: arg[k] if _is_matrix(arg) else arg  # noqa: E731
        return ImmutableMatrix(rows, cols, [function(*(entry(a, k) for a in args)) for k in range(rows * cols)])
    return apply


def _elementwise_function(f):
    if f.arity == 1:
        return _map(f.value)
    mapped = _map_many(f.value, f.name)

    def checked(*args):
        for k in f.positive_parameters:
            value = args[k]
            if _is_matrix(value) or not value.is_number or not value.is_positive:
                raise LanguageError(f"{f.name}: argument {k + 1} must be a positive number")
        return mapped(*args)
    return checked


def _softmax(v):
    v = _vector(v, "softmax")
    total = Add(*(exp(e) for e in v))
    return v.applyfunc(lambda e: exp(e) / total)


def _logsumexp(v):
    return log(Add(*(exp(e) for e in _vector(v, "logsumexp"))))


def _log_softmax(v):
    v = _vector(v, "log_softmax")
    return v.applyfunc(lambda e: e - _logsumexp(v))


def _same(a, b, name):
    _vector(a, name), _vector(b, name)
    if a.shape != b.shape:
        raise LanguageError(f"{name}: vectors of lengths {a.shape[0]} and {b.shape[0]}")


def _cross_entropy(a, y):
    _same(a, y, "cross_entropy")
    return -Add(*(yi * log(ai) for ai, yi in zip(a, y)))


def _binary_cross_entropy(a, y):
    _same(a, y, "binary_cross_entropy")
    return -Add(*(yi * log(ai) + (1 - yi) * log(1 - ai) for ai, yi in zip(a, y)))


def _mse(a, y):
    _same(a, y, "mse")
    return Add(*((ai - yi) ** 2 for ai, yi in zip(a, y))) / a.shape[0]


def _dot(a, b):
    _same(a, b, "dot")
    return Add(*(x * y for x, y in zip(a, b)))


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
    return Add(*v)


def _mean(v):
    """(1/n) Σ v_i over a vector, or over every entry of a matrix."""
    if not _is_matrix(v):
        raise LanguageError("mean needs a vector or a matrix")
    return Add(*v) / len(v)


def _norm(v):
    """The Euclidean norm √(Σ v_i²)."""
    v = _vector(v, "norm")
    return sqrt(Add(*(e ** 2 for e in v)))


def _grad(f, x):
    f = _scalar(f, "grad (of a scalar; use jacobian for a vector)")
    return x.applyfunc(lambda entry: derivative(f, entry))


def _jacobian(f, x):
    f = _vector(f, "jacobian")
    return ImmutableMatrix(f.shape[0], x.shape[0], lambda r, c: derivative(f[r], x[c]))


# Matrix functions the derivation engine's tree knows (``parse_tree(..., matrices=True)``):
# name → (None, arity), like FUNCTIONS; ``evaluate`` does not build them yet.
MATRIX_FUNCTIONS = {"transpose": (None, 1), "colsum": (None, 1), "rowsum": (None, 1)}

FUNCTIONS = {
    **{name: (_elementwise_function(f), f.arity) for name, f in ELEMENTWISE.items()}, "sum": (_sum, 1),
    "mean": (_mean, 1), "norm": (_norm, 1), "dot": (_dot, 2), "outer": (_outer, 2),
    "diag": (_diag, 1), "softmax": (_softmax, 1), "log_softmax": (_log_softmax, 1),
    "logsumexp": (_logsumexp, 1), "cross_entropy": (_cross_entropy, 2),
    "binary_cross_entropy": (_binary_cross_entropy, 2), "mse": (_mse, 2), "grad": (_grad, 2),
    "jacobian": (_jacobian, 2),
}


# -- entry points --------------------------------------------------------------------------------
def parse_tree(text: str, allow_equation: bool = False, matrices: bool = False, functions=()) -> ast.AST:
    """The checked syntax tree of one expression (or ``lhs == rhs`` if allowed): everything that
    does not depend on the variables' sizes is checked here, so loading a file reports it.
    ``matrices``: also accept ``@`` and the matrix functions (the derivation engine's typed tree
    handles them; ``evaluate`` does not yet). ``functions``: names declared as abstract functions
    of one argument (``g=function``), applied entry by entry (the derivation engine only)."""
    if not isinstance(text, str):
        raise LanguageError("an expression must be a string")
    if len(text) > MAX_LENGTH:
        raise LanguageError(f"expression longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise LanguageError("empty expression")
    _check_characters(text, 0)
    offset = len(text) - len(text.lstrip())
    source = text.strip()
    if ":=" in source:
        raise LanguageError("`:=` (assignment) is not part of the language", offset + source.index(":=") + 1)
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" warnings: the error says it
            warnings.simplefilter("ignore")
            tree = ast.parse(source, mode="eval")
    except SyntaxError as error:
        column = None if error.offset is None or error.lineno not in (None, 1) else \
            min(max(error.offset, 1) + offset, len(text) + 1)  # Python says 0 for "-", past the end for "f("
        hint = ""
        if re.search(r"(?<![=<>!])=(?!=)", source):  # a lone = where an equation needs ==
            hint = " (an equation is written with ==, as in sum(y) == 1)"
        raise LanguageError(f"syntax error: {error.msg}{hint}", column) from None
    except (RecursionError, MemoryError, ValueError):
        raise LanguageError("expression too deeply nested") from None
    checker = _StaticCheck(source, offset, matrices, functions)
    body = tree.body
    if isinstance(body, ast.Compare):
        operator = _COMPARISONS.get(type(body.ops[0]), "?")
        if not allow_equation:
            checker.fail(f"a comparison (`{operator}`) is only allowed in assume, as one equation  lhs == rhs", body)
        if len(body.ops) != 1 or not isinstance(body.ops[0], ast.Eq):
            checker.fail("an assumption must be a single equation  lhs == rhs", body)
        checker.check(body.left, 1), checker.check(body.comparators[0], 1)
    elif allow_equation:
        checker.fail("an assumption must be an equation, lhs == rhs", body)
    else:
        checker.check(body, 1)
    if offset:
        for node in ast.walk(tree):  # columns of the text as given, not of the stripped text
            if getattr(node, "lineno", None) == 1 and hasattr(node, "col_offset"):
                node.col_offset += offset
    return tree


def evaluate(text: str, variables: dict[str, Variable], allow_equation: bool = False,
             constants: dict | None = None) -> Basic:
    """SymPy value of an expression (a scalar, a column vector or a matrix), or an ``Eq``.
    ``constants`` names numbers the text may use (the size n).

    Values are remembered (the last ``_KEPT_VALUES``, errors never): reading an identity file
    evaluates each identity at its smallest size, and checking it there builds the same value
    again — in this process, or in a ``verify -j`` worker forked after the reading. A value
    depends on the limits above too: whoever changes one (a test) calls ``forget_values``."""
    named = sorted((name, type(value).__name__, value) for name, value in (constants or {}).items())
    key = (text, tuple(sorted(variables.items())), allow_equation, tuple(named))
    kept = _VALUES.get(key)
    if kept is None:
        kept = remember(_VALUES, key, _evaluate(text, variables, allow_equation, constants), _KEPT_VALUES)
    return kept


_VALUES: dict = {}
_KEPT_VALUES = 256


def forget_values() -> None:
    """Drop every remembered value (see ``evaluate``): after changing a limit, or to free memory."""
    _VALUES.clear()


def _evaluate(text: str, variables: dict[str, Variable], allow_equation: bool, constants: dict | None) -> Basic:
    tree = parse_tree(text, allow_equation)
    _check_cost(tree, variables)
    builder = _Builder(variables, constants)
    body = tree.body
    if isinstance(body, ast.Compare):
        left, right = builder.build(body.left), builder.build(body.comparators[0])
        if _is_matrix(left) or _is_matrix(right):
            raise LanguageError("an assumption must compare two scalars", _column(body))
        # SymPy's own Eq tries to decide the equation and can run for minutes
        # ((440)**64 == tanh(binary_cross_entropy(y, y)**3)); an equation without variables
        # constrains nothing, true or false, so that is all we need to decide.
        difference = _sympy(body, lambda a, b: a - b, left, right)
        if not difference.free_symbols:
            raise LanguageError(f"the assumption {_show(text.strip())} has no variables once built: "
                                f"it constrains nothing", _column(body))
        return _defined(_sympy(body, lambda a, b: Eq(a, b, evaluate=False), left, right), body)
    return _defined(builder.build(tree), body)


def _defined(value, node: ast.AST):
    """Refuse a value SymPy made undefined (a division by zero, log(0)): zoo and nan are not
    expressions an identity can be about."""
    if _sympy(node, lambda v: v.has(zoo, nan, oo, -oo), value):
        raise LanguageError("the expression is undefined: it divides by zero or takes log(0)", _column(node))
    return value


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
    names = {ast.Attribute: "attribute access (`.name`)", ast.Lambda: "a lambda",
             ast.ListComp: "a comprehension", ast.GeneratorExp: "a comprehension", ast.SetComp: "a comprehension",
             ast.DictComp: "a comprehension", ast.Subscript: "indexing (`z[...]`)", ast.Slice: "a slice",
             ast.List: "a list", ast.Tuple: "a tuple", ast.Set: "a set", ast.Dict: "a dict",
             ast.BoolOp: "`and`/`or`", ast.IfExp: "`if`/`else`", ast.NamedExpr: "`:=` (assignment)",
             ast.Starred: "a starred argument (`*...`)", ast.Await: "await", ast.Yield: "yield",
             ast.YieldFrom: "yield", ast.JoinedStr: "an f-string", ast.FormattedValue: "an f-string",
             ast.Compare: "a comparison", ast.Call: "the result of a call", ast.Constant: "a constant"}
    return names.get(type(node), type(node).__name__)
