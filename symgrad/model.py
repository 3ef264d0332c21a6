"""What a derivation is *about*: base variables, named abbreviations (definitions) and assumptions.

A definition is an index template, e.g. ``a[i] := exp(z[i]) / Sum(exp(z[k]), (k, 1, n))``, so one
object serves a fixed n (instantiate it at i = 1..n) and a symbolic n (use it as it stands).
The checker expands abbreviations through these definitions; the certificate exports them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from sympy import Basic, Eq, Expr, ImmutableMatrix, Indexed, IndexedBase, Integer, Symbol, Tuple, sympify
from sympy.matrices.expressions import MatrixExpr

from symgrad import interning

interning.install()


@dataclass(frozen=True)
class Definition:
    """``head[index] := body`` (or ``head := body`` for a scalar head)."""

    head: Symbol | IndexedBase
    index: tuple[Symbol, ...]
    body: Expr
    description: str

    def template_lhs(self) -> Expr:
        return self.head[self.index] if self.index else self.head

    def instantiate(self, values: tuple) -> Expr:
        """The body at concrete (or other symbolic) index values."""
        if not self.index:
            return self.body
        return self.body.xreplace(dict(zip(self.index, values)))


@dataclass(frozen=True)
class Assumption:
    """A named hypothesis a step may use, e.g. Σ_i y_i = 1 (normalised labels)."""

    name: str
    equation: Eq
    description: str


@dataclass
class Model:
    """Base variables with their shapes, definitions in dependency order, and assumptions."""

    name: str
    sizes: dict[str, int | Symbol]
    shapes: dict[IndexedBase, tuple]
    scalars: tuple[Symbol, ...] = ()
    definitions: tuple[Definition, ...] = ()
    abbreviation_shapes: dict[IndexedBase, tuple] = field(default_factory=dict)
    assumptions: dict[str, Assumption] = field(default_factory=dict)
    index_ranges: dict[Symbol, Basic] = field(default_factory=dict)  # index → its upper bound
    # a fixed but unknown integer in 1..bound that the steps and assumptions speak of (the class
    # K of a one-hot label y = e_K): proven for every value, instantiated like a size
    parameters: dict[Symbol, Basic] = field(default_factory=dict)
    _head_cache: frozenset | None = field(default=None, repr=False, compare=False)

    @property
    def symbolic(self) -> bool:
        return any(not isinstance(v, int) for v in self.sizes.values())

    @property
    def index_bound(self) -> Basic:
        """The upper bound n (an Integer or the symbol n) over which free indices run."""
        return next(iter(self.shapes.values()))[0]

    def range_of(self, index: Symbol) -> Basic:
        """The upper bound of a free index (it runs over 1..bound); n unless declared."""
        return self.index_ranges.get(index, self.index_bound)

    def index_values(self, indices) -> list[range]:
        """For concrete sizes: the values 1..bound of each index, in order."""
        return [range(1, int(self.range_of(index)) + 1) for index in indices]

    def at_size(self, **values: int) -> "Model":
        """The same model with symbolic sizes (by name, e.g. n=3) replaced by numbers."""
        mapping = {x: Integer(values[name]) for name, x in self.size_symbols().items() if name in values}
        mapping.update({x: Integer(values[x.name]) for x in self.parameters if x.name in values})

        def put(e):
            return e.xreplace(mapping)

        return Model(
            name=self.name,
            sizes={k: (int(values[k]) if k in values else v) for k, v in self.sizes.items()},
            shapes={b: tuple(put(d) for d in shape) for b, shape in self.shapes.items()},
            scalars=self.scalars,
            definitions=tuple(Definition(d.head, d.index, put(d.body), d.description)
                              for d in self.definitions),
            abbreviation_shapes={b: tuple(put(d) for d in shape)
                                 for b, shape in self.abbreviation_shapes.items()},
            assumptions={k: Assumption(v.name, put(v.equation), v.description)
                         for k, v in self.assumptions.items()},
            index_ranges={index: put(bound) for index, bound in self.index_ranges.items()},
            parameters={x: put(bound) for x, bound in self.parameters.items() if x.name not in values},
        )

    def fingerprint(self) -> tuple:
        """What the model says, hashable, without its name: two models with the same fingerprint
        give every step the same proof (the three gradients of one layer derive three models
        that differ in their names alone)."""
        return (tuple(self.sizes.items()), tuple(self.shapes.items()), self.scalars, self.definitions,
                tuple(self.abbreviation_shapes.items()),
                tuple((name, a.equation) for name, a in self.assumptions.items()),
                tuple(self.index_ranges.items()), tuple(self.parameters.items()))

    def digest(self) -> str:
        """The fingerprint as a short stable text (the same on every run and machine): a name
        for the model's content, to seed random points by what is checked, not by who asks."""
        import hashlib

        from sympy import srepr

        parts = [repr(list(self.sizes.items())), srepr(list(self.shapes.items())), srepr(list(self.scalars)),
                 *(srepr((d.head, d.index, d.body)) for d in self.definitions),
                 srepr(list(self.abbreviation_shapes.items())),
                 *(f"{name}: {srepr(a.equation)}" for name, a in self.assumptions.items()),
                 srepr(list(self.index_ranges.items())), srepr(list(self.parameters.items()))]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def size_symbols(self) -> dict:
        """Each symbolic size's name → its SymPy symbol (n → n)."""
        return {x.name: x for shape in [*self.shapes.values(), *self.abbreviation_shapes.values()]
                for d in shape for x in getattr(d, "free_symbols", ())}

    def definition_for(self, atom: Basic) -> Expr | None:
        """The body defining ``atom`` (an abbreviation symbol or an indexed entry), else None."""
        if not self.is_abbreviation(atom):
            return None
        for d in self.definitions:
            if d.head == atom and not d.index:
                return d.body
            if isinstance(atom, Indexed) and atom.base == d.head and d.index:
                return d.instantiate(atom.indices)
        return None

    def is_abbreviation(self, atom: Basic) -> bool:
        heads = self._heads()
        return atom in heads or (isinstance(atom, Indexed) and atom.base in heads)

    def _heads(self) -> frozenset:
        if self._head_cache is None:
            self._head_cache = frozenset(d.head for d in self.definitions)
        return self._head_cache

    def base_entries(self) -> list[Basic]:
        """Every scalar base variable (z[1], …, y[n], W[1, 1], …) for concrete sizes, in a fixed order."""
        entries: list[Basic] = list(self.scalars)
        for base, shape in self.shapes.items():
            if not all(isinstance(s, (int, Integer)) for s in shape):
                raise ValueError("base entries exist only for concrete sizes")
            ranges = [range(1, int(s) + 1) for s in shape]
            entries += [base[idx] for idx in itertools.product(*ranges)]
        return entries

    def abbreviation_entries(self) -> list[Basic]:
        """Every concrete abbreviation (a[1] … a[n], L), in definition order."""
        entries: list[Basic] = []
        for d in self.definitions:
            if not d.index:
                entries.append(d.head)
                continue
            shape = self.abbreviation_shapes[d.head]
            ranges = [range(1, int(s) + 1) for s in shape]
            entries += [d.head[idx] for idx in itertools.product(*ranges)]
        return entries

    def family(self, atom: Basic) -> Basic:
        """The vector an entry belongs to (its IndexedBase), or the symbol itself."""
        return atom.base if isinstance(atom, Indexed) else atom


class TemplateMatrix(MatrixExpr):
    """A matrix at a fixed size whose every entry follows one rule: entry (r, c) is ``template``
    with the row index set to r and the column index to c (1-based). The n × n softmax Jacobian
    is one object of O(1) size instead of n² SymPy entries: the checker proves the template once
    in index form (every entry is an instance), the printers elide it like any matrix (they read
    only the entries they show), and the certificate writes it as the template with its index
    ranges.

    ``rows`` and ``cols`` are ``(index, size)``; a dimension of size 1 may give the index as
    the number 1 (a row ∂L/∂a: ``(1, 1), (i, n)``)."""

    def __new__(cls, template, rows, cols):
        return Basic.__new__(cls, sympify(template), Tuple(*map(sympify, rows)), Tuple(*map(sympify, cols)))

    @property
    def template(self) -> Expr:
        return self.args[0]

    @property
    def row_index(self):
        return self.args[1][0]

    @property
    def col_index(self):
        return self.args[2][0]

    @property
    def shape(self):
        return (self.args[1][1], self.args[2][1])

    @property
    def indices(self) -> tuple:
        """The index symbols the template is written in (row first), without the fixed 1."""
        return tuple(x for x in (self.row_index, self.col_index) if isinstance(x, Symbol))

    def entry_template(self, row, col) -> Expr:
        """Entry (row, col), 1-based, possibly symbolic: the template with its indices replaced
        (simultaneously, so swapping i and j is safe)."""
        mapping = {index: value for index, value in ((self.row_index, row), (self.col_index, col))
                   if isinstance(index, Symbol)}
        return self.template.xreplace(mapping)

    def _entry(self, i, j, **kwargs):
        return self.entry_template(Integer(int(i) + 1), Integer(int(j) + 1))

    def as_explicit(self):
        rows, cols = (int(d) for d in self.shape)
        return ImmutableMatrix(rows, cols, lambda r, c: self._entry(r, c))

    def _shown(self, printer):
        """What the printers show: the explicit matrix when small (exactly as before), else this
        object itself — their elision reads only the entries it shows."""
        rows, cols = (int(d) for d in self.shape)
        return self.as_explicit() if rows <= 16 and cols <= 16 else self

    def _latex(self, printer):
        return printer._print_MatrixBase(self._shown(printer))

    def _pretty(self, printer):
        return printer._print_MatrixBase(self._shown(printer))
