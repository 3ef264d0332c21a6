"""Stage 1 — from the typed tree to the model a derivation is about: base variables, one named
intermediate per layer of the composition (a = softmax(z), s = σ(z), u = z / T …) defined by an
index template, and the loss L.

Which nodes get a name: every vector-valued function application (softmax, sigmoid, exp …) and
every vector arithmetic node that is the argument of a function (z / T in softmax(z / T), the
smoothed targets in cross_entropy(a, (1 − ε) y + ε / n)). Reductions (sum, dot, the losses)
stay inside the body of whatever holds them, as sums over a bound index.

Matrices (``W = "n x p"``) get entry templates with one free index per dimension, each
running over the range of its size name: i, j, k, l over n; s, t, u, v over m; q, r over p
(``INDEX_NAMES``); a sum over a bound index runs over that index's size. Matrix intermediates
are named with capitals (Z = W @ X + b, A = softmax(Z)); ``@``, ``transpose``, ``colsum`` and
``rowsum`` stay inside the templates that use them, as index sums and swapped indices.

Assumptions attached to a name are only those every value satisfies (a softmax of real
arguments is positive; a log of something that may be negative is not even real), so the
checker can never be talked into a false proof by a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sympy import Basic, Eq, Expr, IndexedBase, KroneckerDelta, Rational, Sum, Symbol, exp, log, sqrt

from symgrad.tree import (MATRIX, MATRIX_FUNCTIONS, SCALAR, VECTOR, Apply, Arith,
                          MatProduct, Negate, Node, Number, Power, Size, Var, depends_on)
from symgrad.functions import ELEMENTWISE as ELEMENTWISE_FUNCTIONS, elementwise, is_elementwise, sign_of_value
from symgrad.model import Assumption, Definition, Model
from symgrad.notation import index_symbol

# Preferred names of intermediates, by what they compute; the first free one is taken.
PREFERRED = {"softmax": "a", "log_softmax": "o", **{f.name: f.vector_name for f in ELEMENTWISE_FUNCTIONS.values()}}
FALLBACK = ["u", "v", "w", "p", "q", "r", "t", "b", "c", "d", "e", "f", "g", "h", "o", "x"]
MATRIX_PREFERRED = {"softmax": "A", **{f.name: f.matrix_name for f in ELEMENTWISE_FUNCTIONS.values()}}
MATRIX_FALLBACK = ["Z", "U", "V", "B", "C", "D", "F", "G", "H", "K", "M", "N", "P", "Q", "R"]
INDEX_NAMES = ("i", "j", "k", "l")
RESERVED = {"i", "j", "k", "l", "n", "L"}
# Index names per size name: free indices take them in this order, bound ones (sums inside a
# template) start with the third (Σ_k beside a free i). Other size names (h, d, n1) take letters
# of INDEX_POOL: never a user's name, a size's name, or an intermediate's usual name (a, s, h …).
INDEX_NAMES_BY_SIZE = {"n": ("i", "j", "k", "l"), "m": ("s", "t", "u", "v"), "p": ("q", "r", "q'", "r'"),
                       "n_prev": ("p", "r", "p'", "r'")}  # a layer's n_prev units (not beside a size p)
INDEX_POOL = ("i", "j", "k", "l", "p", "q", "r", "c", "d", "f", "w", "x", "y", "z", "s", "t", "u", "v",
              "a", "b", "g", "o")


def index_names(size_name: str) -> tuple[str, ...]:
    """The index names that run over 1..size_name when nothing else claims them, free ones first."""
    return index_scheme((size_name,), ())[size_name]


def index_scheme(size_names, avoid=()) -> dict[str, tuple[str, ...]]:
    """Index names for every size: each size's usual names (i, j over n; s, t over m) unless a
    user's variable, a size or another size's index has it, then letters of INDEX_POOL; so a
    size may take any name (h, d, q) and a variable any name the sizes leave free: the engine
    chooses its indices around the user's names, never the other way round."""
    taken = set(avoid) | set(size_names)
    scheme: dict[str, tuple[str, ...]] = {}
    def layer(name: str) -> int:  # n2 before n1 before n0: the output layer takes i, j
        digits = name.lstrip("abcdefghijklmnopqrstuvwxyz_")
        return -int(digits) if digits.isdigit() else 0
    ordered = sorted(size_names, key=lambda name: (name not in INDEX_NAMES_BY_SIZE, layer(name),
                                                   list(size_names).index(name)))
    for size in ordered:
        names = [x for x in INDEX_NAMES_BY_SIZE.get(size, ()) if x.rstrip("'") not in taken]
        for letter in INDEX_POOL:
            if len(names) >= 4:
                break
            if letter not in taken and letter not in names:
                names.append(letter)
        scheme[size] = tuple(names[:4])
        taken |= {x.rstrip("'") for x in names[:4]}
    return scheme


def reserved_names(size_names, scheme: dict | None = None) -> set[str]:
    """Names an intermediate cannot take: sizes, their indices, the loss L."""
    scheme = scheme if scheme is not None else index_scheme(tuple(size_names))
    return RESERVED | set(size_names) | {x for names in scheme.values() for x in names}


DESCRIPTIONS = {"softmax": "softmax", "log_softmax": "log-softmax",
                **{f.name: f.description for f in ELEMENTWISE_FUNCTIONS.values()}}


@dataclass(frozen=True)
class Named:
    """An intermediate: ``head[i] := body`` (vector) and what it is."""

    node: Node
    head: IndexedBase
    definition: Definition
    depends: bool  # on the variable the derivative is taken by


class Lowering:
    """Names intermediates and writes index templates for one size (an Integer or the symbol n)."""

    def __init__(self, kinds: dict[str, str], size: Expr, wrt: str | tuple[str, ...] | None,
                 shapes: dict[str, tuple] | None = None, sizes: dict[str, Expr] | None = None,
                 names: dict[Node, str] | None = None, functions=()):
        """``kinds``: name → "vector" / "scalar" (length n), or ``shapes``: name → tuple of
        size names; ``sizes``: each size name → an Integer or a symbol (default: n → ``size``);
        ``names``: the names a recipe gives some intermediates (a network's Z1, A1)."""
        self.given_names = dict(names or {})
        self.kinds = kinds
        self.size = size
        # the variables the derivative is taken by (one name, or several: a layer's W, b, A_prev)
        self.wrt = (wrt,) if isinstance(wrt, str) else tuple(wrt or ())
        self.shapes = shapes or {name: ("n",) if kind == VECTOR else () for name, kind in kinds.items()}
        self.sizes = dict(sizes or {"n": size})
        self.i, self.j, self.k = (index_symbol(name) for name in INDEX_NAMES[:3])
        self.bases = {name: IndexedBase(name, real=True) for name, shape in self.shapes.items() if shape}
        self.scalars = {name: Symbol(name, real=True) for name, shape in self.shapes.items() if not shape}
        self.named: dict[Node, Named] = {}
        self.order: list[Named] = []  # definition order: every name after the names it uses
        self.functions = frozenset(functions)  # declared functions (g=function): names no index or intermediate takes
        self.index_scheme = index_scheme(tuple(self.sizes), set(kinds) | {"L", "J"} | self.functions)
        self.taken = set(kinds) | reserved_names(self.sizes, self.index_scheme) | self.functions
        self.used_indices: dict = {}  # index symbol → its size name, for the model's ranges

    def depends(self, node: Node) -> bool:
        """Whether ``node`` depends on a variable the derivative is taken by."""
        return any(depends_on(node, name) for name in self.wrt)

    # -- naming ------------------------------------------------------------------------------
    def prepare(self, root: Node) -> None:
        """Name the intermediates of ``root`` (children before parents)."""
        self._walk(root, is_root=True, argument_of_call=False)

    def _walk(self, node: Node, is_root: bool, argument_of_call: bool) -> None:
        for child in node.children:
            self._walk(child, False, isinstance(node, Apply))
        if is_root or node.kind == SCALAR:
            return
        if node in self.given_names:  # a recipe's name (the output Z2 of a network): always named
            self.name(node)
            return
        inline = isinstance(node, MatProduct) or isinstance(node, Apply) and node.function in MATRIX_FUNCTIONS
        if isinstance(node, Apply) and not inline or \
                (argument_of_call and (inline or isinstance(node, (Arith, Negate, Power)))):
            self.name(node)

    def name(self, node: Node) -> Named:
        """The named intermediate for ``node``, created (with its definition) if new."""
        if node in self.named:
            return self.named[node]
        for child in node.children:  # an intermediate may need others (log-softmax → softmax)
            if child.kind != SCALAR and isinstance(child, Apply) and child not in self.named and \
                    child.function not in MATRIX_FUNCTIONS:
                self.name(child)
        head = IndexedBase(self._fresh_name(node), **self._assumptions(node))
        index = self.outer(node)
        body = self.at(node, index)
        definition = Definition(head, index, body, self._describe(node))
        named = Named(node, head, definition, self.depends(node))
        self.named[node] = named
        self.order.append(named)
        return named

    def _fresh_name(self, node: Node) -> str:
        given = self.given_names.get(node)
        if given is not None and given not in self.taken:
            self.taken.add(given)
            return given
        matrix = node.kind == MATRIX
        table, fallback = (MATRIX_PREFERRED, MATRIX_FALLBACK) if matrix else (PREFERRED, FALLBACK)
        preferred = table.get(node.function) if isinstance(node, Apply) else None
        if preferred is None and isinstance(node, Apply) and elementwise(node.function) is not None:
            preferred = getattr(elementwise(node.function), "matrix_name" if matrix else "vector_name")
        if preferred is None:
            depends = self.depends(node)
            preferred = ("Z" if depends else "T") if matrix else ("u" if depends else "t")
        for candidate in [preferred, *fallback]:
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate
        raise ValueError("too many intermediates to name")

    def _assumptions(self, node: Node) -> dict:
        sign = sign_of(node)
        return {"positive": True} if sign == "positive" else {"real": True} if sign == "real" else {}

    def _describe(self, node: Node) -> str:
        if isinstance(node, Apply):
            entry = elementwise(node.function)
            return DESCRIPTIONS.get(node.function, entry.description if entry else node.function)
        return "an elementwise expression"

    @property
    def several_sizes(self) -> bool:
        """Matrices or several size names: entries carry index tuples (the matrix engine path)."""
        return set(self.sizes) != {"n"} or any(len(shape) == 2 for shape in self.shapes.values())

    # -- indices ---------------------------------------------------------------------------
    def _check_positive_base(self, base: Node) -> None:
        """1 − softmax(v) is positive only where v has two entries or more: over one entry
        softmax is 1 and the base of x ** g is 0 (its power, and the derivative, undefined)."""
        if (isinstance(base, Arith) and base.op == "-" and isinstance(base.left, Number) and base.left.value == 1
                and isinstance(base.right, Apply) and base.right.function == "softmax"
                and self.size_of(base.right.args[0].shape[0]) == 1):
            from symgrad.language import LanguageError

            raise LanguageError("x ** g needs a positive base, but 1 − softmax(…) over 1 entry is 0: "
                                "use a size of 2 or more", base.column)

    def size_of(self, size_name) -> Expr:
        return self.sizes[size_name]

    def index_names(self, size_name: str) -> tuple[str, ...]:
        """The index names over ``size_name`` in this derivation (see ``index_scheme``)."""
        return self.index_scheme.get(size_name) or index_names(size_name)

    def pick(self, size_name: str, avoid, bound: bool = False) -> Symbol:
        """An index over ``size_name`` not in ``avoid``: a free one (i, then j …) or a bound one
        (a sum's: k first, then l, then i, j)."""
        names = self.index_names(size_name)
        order = (names[0], *names[2:], names[1]) if bound else names
        avoid = {getattr(x, "name", x) for x in avoid}
        for name in [*order, *(x + "'" for x in order), *(x + "''" for x in order)]:
            if name not in avoid:
                symbol = index_symbol(name)
                self.used_indices[symbol] = size_name
                return symbol
        raise ValueError(f"no index name left for size {size_name}")

    def outer(self, node: Node, avoid=()) -> tuple:
        """The free indices of a node's entry template (i for a vector, (i, s) for an n × m
        matrix), avoiding ``avoid`` (a child's indices avoid its parent's: (j, t))."""
        taken = set(avoid)
        picked = []
        for size_name in node.shape:
            index = self.pick(size_name, taken)
            taken.add(index)
            picked.append(index)
        return tuple(picked)

    def bound(self, free, size_name: str = "n") -> Symbol:
        """The index a sum in a template runs over: i in a scalar's body, k beside a free i."""
        avoid = set(free) if isinstance(free, tuple) else {free} if free is not None else set()
        return self.pick(size_name, avoid | set(getattr(self, "_enclosing", ())), bound=True)

    def _sum(self, term_at, shape: tuple, avoid) -> Expr:
        """Σ over every entry of a ``shape``: term_at(index tuple) summed over bound indices."""
        taken, indices = set(avoid), []
        for size_name in shape:
            index = self.bound(tuple(taken), size_name)
            taken.add(index)
            indices.append(index)
        limits = [(index, 1, self.size_of(size_name)) for index, size_name in zip(indices, shape)]
        return Sum(term_at(tuple(indices)), *limits)  # the first index innermost: Σ_s Σ_i

    # -- templates ---------------------------------------------------------------------------
    def entry(self, node: Node, index, use_names: bool = True) -> Expr:
        """The value of ``node`` at ``index`` (a vector's entry at a symbol, a matrix's at a
        pair of indices, a scalar's value at None), with named intermediates written by their
        names."""
        return self.at(node, _as_tuple(index))

    def at(self, node: Node, index: tuple, use_names: bool = True) -> Expr:
        if use_names and node in self.named:
            return self.named[node].head[index]
        return self.body(node, index)

    def body(self, node: Node, index) -> Expr:
        """What ``node`` computes at ``index`` in terms of its children (named ones by name).
        A sum inside it (sum(x) in x − sum(x)) binds an index distinct from ``index``, even
        where the sum itself is a scalar and takes no index."""
        enclosing = getattr(self, "_enclosing", ())
        self._enclosing = enclosing + tuple(x for x in _as_tuple(index) if isinstance(x, Symbol))
        try:
            return self._body(node, index)
        finally:
            self._enclosing = enclosing

    def _body(self, node: Node, index) -> Expr:
        index = _as_tuple(index)
        at = lambda child: self.at(child, _broadcast(child, index))  # noqa: E731
        if isinstance(node, Var):
            return self.bases[node.name][index] if node.shape else self.scalars[node.name]
        if isinstance(node, Number):
            return Rational(node.value.numerator, node.value.denominator)
        if isinstance(node, Size):
            return self.sizes.get(node.name, self.size)
        if isinstance(node, Negate):
            return -at(node.arg)
        if isinstance(node, Arith):
            left, right = at(node.left), at(node.right)
            return {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                    "/": lambda: left / right}[node.op]()
        if isinstance(node, Power):
            if isinstance(node.exponent, Node):  # a declared scalar
                self._check_positive_base(node.base)
                return at(node.base) ** self.at(node.exponent, ())
            return at(node.base) ** _rational(node.exponent)
        if isinstance(node, MatProduct):
            inner = node.left.shape[1]
            r = self.bound(index, inner)
            return Sum(self.at(node.left, (index[0], r)) * self.at(node.right, (r, *index[1:])),
                       (r, 1, self.size_of(inner)))
        if isinstance(node, Apply):
            if any(arg.kind == MATRIX for arg in node.args):
                return self._apply_matrix(node, index)
            return self._apply(node, index[0] if index else None)
        raise ValueError(f"cannot lower {type(node).__name__}")

    def _apply_matrix(self, node: Apply, index: tuple) -> Expr:
        """Functions of matrices: column by column (softmax), entry by entry, or index sums."""
        name, args = node.function, node.args
        at = lambda arg, where: self.at(arg, where)  # noqa: E731
        if is_elementwise(name):
            return self._apply(node, index)
        rows, cols = args[0].shape
        if name == "transpose":
            return at(args[0], (index[1], index[0]))
        if name == "colsum":
            k = self.bound(index, rows)
            return Sum(at(args[0], (k, index[0])), (k, 1, self.size_of(rows)))
        if name == "rowsum":
            k = self.bound(index, cols)
            return Sum(at(args[0], (index[0], k)), (k, 1, self.size_of(cols)))
        if name == "softmax":  # each column is one example
            k = self.bound(index, rows)
            return exp(at(args[0], index)) / Sum(exp(at(args[0], (k, index[1]))), (k, 1, self.size_of(rows)))
        if name == "sum":
            return self._sum(lambda where: at(args[0], where), args[0].shape, index)
        if name == "mean":  # every entry of the matrix
            return self._sum(lambda where: at(args[0], where), args[0].shape, index) / \
                (self.size_of(rows) * self.size_of(cols))
        if name == "cross_entropy":  # the columns' losses, added
            return -self._sum(lambda where: at(args[1], where) * log(at(args[0], where)), args[0].shape, index)
        if name == "binary_cross_entropy":  # every entry's loss, added (one example per column)
            return -self._sum(lambda where: at(args[1], where) * log(at(args[0], where))
                              + (1 - at(args[1], where)) * log(1 - at(args[0], where)), args[0].shape, index)
        raise ValueError(f"{name} of a matrix has no template")

    def _apply(self, node: Apply, index) -> Expr:
        name, args = node.function, node.args
        if is_elementwise(name):  # scalar arguments broadcast (maximum(0, z)); g=function too
            where = _as_tuple(index)
            return elementwise(name).value(*(self.at(a, _broadcast(a, where)) for a in args))
        size_name = args[0].shape[0]
        b = self.bound(index, size_name)
        size = self.size_of(size_name)
        if name in ("outer", "diag"):
            raise ValueError(f"{name} gives a matrix: use it on the right-hand side of a jacobian identity")
        at = lambda arg, where=b: self.at(arg, _as_tuple(where))  # noqa: E731 - a short local reader
        total = lambda term: Sum(term, (b, 1, size))  # noqa: E731
        if name == "softmax":
            return exp(at(args[0], index)) / total(exp(at(args[0])))
        if name == "log_softmax":
            return at(args[0], index) - log(total(exp(at(args[0]))))
        if name == "logsumexp":
            return log(total(exp(at(args[0]))))
        if name == "sum":
            return total(at(args[0]))
        if name == "mean":
            return total(at(args[0])) / size
        if name == "norm":
            return sqrt(total(at(args[0]) ** 2))
        if name == "dot":
            return total(at(args[0]) * at(args[1]))
        if name == "cross_entropy":
            return -total(at(args[1]) * log(at(args[0])))
        if name == "binary_cross_entropy":
            p, q = at(args[0]), at(args[1])
            return -total(q * log(p) + (1 - q) * log(1 - p))
        if name == "mse":
            return total((at(args[0]) - at(args[1])) ** 2) / size
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

    # -- the model ---------------------------------------------------------------------------
    def model(self, name: str, assumptions: dict[str, Assumption], size_value,
              root: Definition | None = None) -> Model:
        """The model: base variables, every intermediate's definition, then the loss (if any)."""
        definitions = tuple(n.definition for n in self.order) + ((root,) if root else ())
        several = self.several_sizes
        dims = lambda shape: tuple(self.size_of(d) for d in shape)  # noqa: E731
        return Model(
            name=name,
            sizes=size_value if isinstance(size_value, dict) else {"n": size_value},
            shapes={self.bases[v]: dims(shape) for v, shape in self.shapes.items() if shape},
            scalars=tuple(self.scalars.values()),
            definitions=definitions,
            abbreviation_shapes={n.head: dims(n.node.shape) for n in self.order},
            assumptions=assumptions,
            index_ranges={index: self.size_of(size) for size in self.sizes for index in
                          map(index_symbol, self.index_names(size))} | {
                index: self.size_of(size) for index, size in self.used_indices.items()} if several else {},
        )

    def assumption(self, text: str, equation_node: tuple[Node, Node], name: str | None = None,
                   description: str | None = None) -> Assumption:
        """An equation between scalars, or a vector and a number: every entry (colsum(Y) == 1
        is Σ_i Y_is = 1 for every column s, with s a free index)."""
        shape = max((side.shape for side in equation_node), key=len)
        index = self.outer(Var("_", VECTOR, None, shape)) if shape else ()
        left, right = (self.at(side, _broadcast(side, index), use_names=False) for side in equation_node)
        return Assumption(name or text, Eq(left, right), description or text)


def below_one(node: Node) -> bool:
    """Whether every entry of ``node`` is known to be below 1: σ(x) of a real x, or softmax(v)_i
    of a real v with at least two entries (``Lowering`` refuses a power of 1 − softmax over one
    entry, which is 0)."""
    return (isinstance(node, Apply) and node.function in ("sigmoid", "softmax")
            and sign_of(node.args[0]) is not None)


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
        if node.op == "-" and below_one(node.right) and isinstance(node.left, Number) and node.left.value >= 1:
            return "positive"  # c − σ(x), c − softmax(v)_i with c ≥ 1 and 0 < σ, softmax_i < 1
        return "real"
    if isinstance(node, Power):
        base = sign_of(node.base)
        if base == "positive":
            return "positive"
        if isinstance(node.exponent, Node):
            return None
        return "real" if base and node.exponent.denominator == 1 else None
    if isinstance(node, MatProduct):
        return "real" if sign_of(node.left) and sign_of(node.right) else None
    if isinstance(node, Apply):
        if node.function in MATRIX_FUNCTIONS:
            return "real" if sign_of(node.args[0]) else None
        if is_elementwise(node.function):
            if not all(sign_of(a) for a in node.args[1:]):
                return None
            return sign_of_value(elementwise(node.function), sign_of(node.args[0]))
        if node.function == "softmax":
            return "positive" if sign_of(node.args[0]) else None
        if node.function in ("sum", "mean", "norm", "dot", "mse", "logsumexp", "log_softmax"):
            return "real" if all(sign_of(a) for a in node.args) else None
    return None


def _as_tuple(index) -> tuple:
    if index is None:
        return ()
    return tuple(index) if isinstance(index, (tuple, list)) else (index,)


def _broadcast(child: Node, index: tuple) -> tuple:
    """A child's index inside a parent's entry: a scalar takes none, a vector added to a
    matrix takes the row index (it is added to every column)."""
    return index[:len(child.shape)]


def _rational(value: Fraction) -> Rational:
    return Rational(value.numerator, value.denominator)


def atoms_named(expr: Basic, heads) -> set:
    """The heads (named intermediates or base vectors) whose entries occur in ``expr``."""
    from sympy import Indexed

    return {x.base for x in expr.atoms(Indexed) if x.base in heads}
