"""Stage 1 — from the typed tree to the model a derivation is about: base variables, one named
intermediate per layer of the composition (a = softmax(z), s = σ(z), u = z / T …) defined by an
index template, and the loss L.

Which nodes get a name: every vector-valued function application (softmax, sigmoid, exp …) and
every vector arithmetic node that is the argument of a function (z / T in softmax(z / T), the
smoothed targets in cross_entropy(a, (1 − ε) y + ε / n)). Reductions (sum, dot, the losses)
stay inside the body of whatever holds them, as sums over a bound index.

Assumptions attached to a name are only those every value satisfies (a softmax of real
arguments is positive; a log of something that may be negative is not even real), so the
checker can never be talked into a false proof by a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sympy import (Basic, Eq, Expr, IndexedBase, KroneckerDelta, Rational, Sum, Symbol, exp, log,
                   tanh)

from symgrad.tree import (ELEMENTWISE, SCALAR, VECTOR, Apply, Arith, Negate, Node, Number,
                                 Power, Size, Var, depends_on)
from symgrad.model import Assumption, Definition, Model
from symgrad.notation import index_symbol

# Preferred names of intermediates, by what they compute; the first free one is taken.
PREFERRED = {"softmax": "a", "sigmoid": "s", "tanh": "h", "exp": "v", "log": "g", "log_softmax": "o"}
FALLBACK = ["u", "v", "w", "p", "q", "r", "t", "b", "c", "d", "e", "f", "g", "h", "o", "x"]
INDEX_NAMES = ("i", "j", "k", "l")
RESERVED = {"i", "j", "k", "l", "n", "L"}
DESCRIPTIONS = {"softmax": "softmax", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exponential",
                "log": "logarithm", "log_softmax": "log-softmax"}


@dataclass(frozen=True)
class Named:
    """An intermediate: ``head[i] := body`` (vector) and what it is."""

    node: Node
    head: IndexedBase
    definition: Definition
    depends: bool  # on the variable the derivative is taken by


class Lowering:
    """Names intermediates and writes index templates for one size (an Integer or the symbol n)."""

    def __init__(self, kinds: dict[str, str], size: Expr, wrt: str | None):
        self.kinds = kinds
        self.size = size
        self.wrt = wrt
        self.i, self.j, self.k = (index_symbol(name) for name in INDEX_NAMES[:3])
        self.bases = {name: IndexedBase(name, real=True) for name, kind in kinds.items() if kind == VECTOR}
        self.scalars = {name: Symbol(name, real=True) for name, kind in kinds.items() if kind == SCALAR}
        self.named: dict[Node, Named] = {}
        self.order: list[Named] = []  # definition order: every name after the names it uses
        self.taken = set(kinds) | RESERVED

    # -- naming ------------------------------------------------------------------------------
    def prepare(self, root: Node) -> None:
        """Name the intermediates of ``root`` (children before parents)."""
        self._walk(root, is_root=True, argument_of_call=False)

    def _walk(self, node: Node, is_root: bool, argument_of_call: bool) -> None:
        for child in node.children:
            self._walk(child, False, isinstance(node, Apply))
        if is_root or node.kind != VECTOR:
            return
        if isinstance(node, Apply) or (argument_of_call and isinstance(node, (Arith, Negate, Power))):
            self.name(node)

    def name(self, node: Node) -> Named:
        """The named intermediate for ``node``, created (with its definition) if new."""
        if node in self.named:
            return self.named[node]
        for child in node.children:  # an intermediate may need others (log-softmax → softmax)
            if child.kind == VECTOR and isinstance(child, Apply) and child not in self.named:
                self.name(child)
        head = IndexedBase(self._fresh_name(node), **self._assumptions(node))
        body = self.body(node, self.i)
        definition = Definition(head, (self.i,), body, self._describe(node))
        named = Named(node, head, definition, self.wrt is not None and depends_on(node, self.wrt))
        self.named[node] = named
        self.order.append(named)
        return named

    def _fresh_name(self, node: Node) -> str:
        preferred = PREFERRED.get(node.function) if isinstance(node, Apply) else None
        if preferred is None:
            preferred = "u" if self.wrt is not None and depends_on(node, self.wrt) else "t"
        for candidate in [preferred, *FALLBACK]:
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate
        raise ValueError("too many intermediates to name")

    def _assumptions(self, node: Node) -> dict:
        sign = sign_of(node)
        return {"positive": True} if sign == "positive" else {"real": True} if sign == "real" else {}

    def _describe(self, node: Node) -> str:
        if isinstance(node, Apply):
            return DESCRIPTIONS.get(node.function, node.function)
        return "an elementwise expression"

    # -- templates ---------------------------------------------------------------------------
    def entry(self, node: Node, index, use_names: bool = True) -> Expr:
        """The value of ``node`` at ``index`` (a vector's entry; a scalar's value), with named
        intermediates written by their names."""
        if use_names and node in self.named:
            return self.named[node].head[index]
        return self.body(node, index)

    def body(self, node: Node, index) -> Expr:
        """What ``node`` computes at ``index`` in terms of its children (named ones by name)."""
        if isinstance(node, Var):
            return self.bases[node.name][index] if node.kind == VECTOR else self.scalars[node.name]
        if isinstance(node, Number):
            return Rational(node.value.numerator, node.value.denominator)
        if isinstance(node, Size):
            return self.size
        if isinstance(node, Negate):
            return -self.entry(node.arg, index)
        if isinstance(node, Arith):
            left, right = self.entry(node.left, index), self.entry(node.right, index)
            return {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                    "/": lambda: left / right}[node.op]()
        if isinstance(node, Power):
            return self.entry(node.base, index) ** _rational(node.exponent)
        if isinstance(node, Apply):
            return self._apply(node, index)
        raise ValueError(f"cannot lower {type(node).__name__}")

    def _apply(self, node: Apply, index) -> Expr:
        name, args = node.function, node.args
        if name in ELEMENTWISE:
            x = self.entry(args[0], index)
            return {"exp": exp, "log": log, "tanh": tanh, "sigmoid": lambda v: 1 / (1 + exp(-v))}[name](x)
        b = self.bound(index)
        if name in ("outer", "diag"):
            raise ValueError(f"{name} gives a matrix: use it on the right-hand side of a jacobian identity")
        at = lambda arg, where=b: self.entry(arg, where)  # noqa: E731 - a short local reader
        total = lambda term: Sum(term, (b, 1, self.size))  # noqa: E731
        if name == "softmax":
            return exp(at(args[0], index)) / total(exp(at(args[0])))
        if name == "log_softmax":
            return at(args[0], index) - log(total(exp(at(args[0]))))
        if name == "logsumexp":
            return log(total(exp(at(args[0]))))
        if name == "sum":
            return total(at(args[0]))
        if name == "dot":
            return total(at(args[0]) * at(args[1]))
        if name == "cross_entropy":
            return -total(at(args[1]) * log(at(args[0])))
        if name == "binary_cross_entropy":
            p, q = at(args[0]), at(args[1])
            return -total(q * log(p) + (1 - q) * log(1 - p))
        if name == "mse":
            return total((at(args[0]) - at(args[1])) ** 2) / self.size
        raise ValueError(f"no template for {name}")

    def matrix_entry(self, node: Node, row, col) -> Expr:
        """Entry (row, col) of a matrix-valued node (diag, outer, and arithmetic on them)."""
        if isinstance(node, Apply) and node.function == "diag":
            return self.entry(node.args[0], row) * KroneckerDelta(row, col)
        if isinstance(node, Apply) and node.function == "outer":
            return self.entry(node.args[0], row) * self.entry(node.args[1], col)
        if isinstance(node, Negate):
            return -self.matrix_entry(node.arg, row, col)
        if isinstance(node, Arith) and node.kind != SCALAR:
            left = self._either(node.left, row, col)
            right = self._either(node.right, row, col)
            return {"+": left + right, "-": left - right, "*": left * right, "/": left / right}[node.op]
        raise ValueError("not a matrix expression")

    def _either(self, node, row, col):
        if node.kind == SCALAR:
            return self.entry(node, None)
        return self.matrix_entry(node, row, col)

    def bound(self, free) -> Symbol:
        """The index a sum in a template runs over: i in a scalar's body, k beside a free i."""
        names = [self.i, self.k, index_symbol("l")]
        return next(x for x in names if x != free)

    # -- the model ---------------------------------------------------------------------------
    def model(self, name: str, assumptions: dict[str, Assumption], size_value,
              root: Definition | None = None) -> Model:
        """The model: base variables, every intermediate's definition, then the loss (if any)."""
        definitions = tuple(n.definition for n in self.order) + ((root,) if root else ())
        return Model(
            name=name,
            sizes={"n": size_value},
            shapes={base: (self.size,) for base in self.bases.values()},
            scalars=tuple(self.scalars.values()),
            definitions=definitions,
            abbreviation_shapes={n.head: (self.size,) for n in self.order},
            assumptions=assumptions,
        )

    def assumption(self, text: str, equation_node: tuple[Node, Node], name: str | None = None,
                   description: str | None = None) -> Assumption:
        left, right = (self.entry(side, None, use_names=False) for side in equation_node)
        return Assumption(name or text, Eq(left, right), description or text)


def sign_of(node: Node) -> str | None:
    """"positive", "real" or None (may be complex, e.g. the log of a possibly negative value)."""
    if isinstance(node, Var):
        return "real"
    if isinstance(node, (Number, Size)):
        return "positive" if (not isinstance(node, Number) or node.value > 0) else "real"
    if isinstance(node, Negate):
        return "real" if sign_of(node.arg) else None
    if isinstance(node, Arith):
        left, right = sign_of(node.left), sign_of(node.right)
        if left is None or right is None:
            return None
        if node.op in ("+", "*", "/") and left == right == "positive":
            return "positive"
        return "real"
    if isinstance(node, Power):
        base = sign_of(node.base)
        if base == "positive":
            return "positive"
        return "real" if base and node.exponent.denominator == 1 else None
    if isinstance(node, Apply):
        if node.function in ("exp", "sigmoid", "softmax"):
            return "positive" if sign_of(node.args[0]) else None
        if node.function in ("tanh", "sum", "dot", "mse", "logsumexp", "log_softmax"):
            return "real" if all(sign_of(a) for a in node.args) else None
        if node.function == "log":
            return "real" if sign_of(node.args[0]) == "positive" else None
    return None


def _rational(value: Fraction) -> Rational:
    return Rational(value.numerator, value.denominator)


def is_constant(node: Node, wrt: str) -> bool:
    return not depends_on(node, wrt)


def atoms_named(expr: Basic, heads) -> set:
    """The heads (named intermediates or base vectors) whose entries occur in ``expr``."""
    from sympy import Indexed

    return {x.base for x in expr.atoms(Indexed) if x.base in heads}
