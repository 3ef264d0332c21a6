"""Exact checking in index notation, for a symbolic size n.

A step ``lhs = rhs`` about entries ``i, j`` (each in 1..n) is proven for every n when the
difference of both sides, written in the base variables, reduces to 0 under a normal form:

1. matrix notation is read entry-wise at generic indices (``PartialD(L, z)`` → ∂L/∂z_j);
2. each derivative is taken by SymPy's ``diff`` on the definition (one level down for a partial
   by an intermediate such as ∂L/∂a_i, the full base form otherwise);
3. abbreviations are unfolded (a_i → e^{z_i}/Σ_k e^{z_k}), Σ_{i≠j} becomes Σ_i − (term at j);
4. sums are normalised: constants pulled out, terms split, bound indices renamed canonically,
   sums over a Kronecker delta evaluated by SymPy's delta summation. SymPy answers those with
   ``Piecewise((…, j <= n), (0, True))``; the condition is true because j is an index in 1..n,
   so the first branch is taken — and the step's check says so.
5. where both sides are piecewise in i = j (δ_ij, or a ``cases`` display), each case is
   checked on its own: i = j (substitute j → i) and i ≠ j (δ_ij = 0).

Anything this cannot reduce to 0 is reported as *undecided*, never as proven.
"""

from __future__ import annotations

from functools import lru_cache

from dataclasses import dataclass, field

from sympy import (Add, Basic, Derivative, Dummy, Eq, Indexed, KroneckerDelta, Piecewise, Product, S, Sum,
                   Wild, Symbol, cancel, exp, expand)
from sympy import default_sort_key, factor_terms, srepr
from symgrad.differentiate import differentiate
from symgrad.delta_sums import delta_summation
from sympy.core.relational import Relational
from sympy import Mul, Transpose
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions import DiagMatrix, HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixExpr, OneMatrix

from symgrad.model import Model
from symgrad.notation import GradientMatrix, MatVar, PartialD, Vec, index_symbol, index_symbols, plain_sympy
from symgrad.verify.cases import has_kinks, piecewise_as_steps
from symgrad.verify.exact import MAX_OPS_FOR_CANCEL, zero_by_cases, zero_by_cases_in_sums


@dataclass
class IndexResult:
    """Outcome of one symbolic check, with the side conditions it relied on (for the reader)."""

    proven: bool
    used: list[str] = field(default_factory=list)
    reason: str = ""


MAX_SUM_DEPTH = 200  # nested rewrites of one sum's normal form before the step is left undecided


class Undecided(Exception):
    """The normal form could not be reached (a rewrite that does not terminate): not proven."""


class NotGeneric(ValueError):
    """A side with explicit entries (an n × n matrix written out) has no index form."""


def generic_entry(side: Basic, row: Basic, col: Basic) -> Basic:
    """Entry (row, col), 1-based and possibly symbolic, of a vector/matrix side; scalars unchanged.

    Written out here rather than taken from SymPy's ``MatrixExpr._entry``, which calls ``doit``
    on the entries and so turns ∂L/∂a_i (L a bare symbol) into 0."""
    if not isinstance(side, MatrixExpr):
        return side
    if hasattr(side, "entry_template"):  # model.TemplateMatrix: every entry by one rule
        return side.entry_template(row, col)
    if isinstance(side, Vec):
        return side.base[row]
    if isinstance(side, PartialD):
        numerator = side.f.base[row] if isinstance(side.f, Vec) else side.f
        return Derivative(numerator, side.x.base[col])
    if isinstance(side, MatVar):
        return side.base[row, col]
    if isinstance(side, GradientMatrix):
        x = side.x
        return Derivative(side.f, x.base[row] if isinstance(x, Vec) else x.base[row, col])
    if isinstance(side, OneMatrix):
        return S.One
    if isinstance(side, Transpose):
        return generic_entry(side.arg, col, row)
    if isinstance(side, MatAdd):
        return Add(*[generic_entry(term, row, col) for term in side.args])
    if isinstance(side, DiagMatrix):
        return KroneckerDelta(row, col) * generic_entry(side.args[0], row, 1)
    if isinstance(side, HadamardProduct):  # s ⊙ (1 − s): entry by entry
        return Mul(*[generic_entry(factor, row, col) for factor in side.args])
    if isinstance(side, HadamardPower):
        return generic_entry(side.base, row, col) ** side.exp
    if isinstance(side, ElementwiseApplyFunction):  # e^z, tanh(Z) entry by entry
        return side.function(generic_entry(side.expr, row, col))
    if isinstance(side, MatMul):
        scalars = [f for f in side.args if not isinstance(f, MatrixExpr)]
        matrices = [f for f in side.args if isinstance(f, MatrixExpr)]
        entry = _product_entry(matrices, row, col)
        return Mul(*scalars) * entry
    raise NotGeneric(f"{type(side).__name__} has no index form")


def _product_entry(matrices: list, row: Basic, col: Basic) -> Basic:
    if len(matrices) == 1:
        return generic_entry(matrices[0], row, col)
    first, rest = matrices[0], matrices[1:]
    inner = first.shape[1]
    if inner == 1:
        return generic_entry(first, row, 1) * _product_entry(rest, 1, col)
    k = Dummy("k", integer=True, positive=True)
    return Sum(generic_entry(first, row, k) * _product_entry(rest, k, col), (k, 1, inner))


class IndexProver:
    """Checks index-form steps of one model with a symbolic size."""

    def __init__(self, model: Model):
        self.model = model
        self._derivatives: dict[Derivative, Basic] = {}
        self._realised_memo: dict[tuple, Basic] = {}
        self._normal_memo: dict[tuple, tuple[Basic, list[str]]] = {}
        self._verdicts: dict[tuple, IndexResult] = {}  # (lhs, rhs, free, equations) → the verdict

    # -- 1. index form -----------------------------------------------------------------------
    def index_form(self, step) -> tuple[Basic, Basic, tuple[Symbol, ...]]:
        """Both sides as scalar templates in free indices (matrix sides read at a generic entry);
        an index, or a dimension, over 1..1 is 1 and not free."""
        free = tuple(step.free_indices)
        if isinstance(step.lhs, MatrixExpr) or isinstance(step.rhs, MatrixExpr):
            shape = (step.lhs if isinstance(step.lhs, MatrixExpr) else step.rhs).shape
            # the entry's indices must not be captured by a sum the sides already bind (Σ_i y_i · a)
            taken = {x.name for side in (step.lhs, step.rhs) for x in side.atoms(Symbol)}
            row, col = self._index_for(shape[0], "i", taken), self._index_for(shape[1], "j", taken)
            row_at = row if shape[0] != 1 else S.One
            col_at = col if shape[1] != 1 else S.One
            lhs, rhs = generic_entry(step.lhs, row_at, col_at), generic_entry(step.rhs, row_at, col_at)
            free = tuple(x for x, size in ((row, shape[0]), (col, shape[1])) if size != 1)
            return readable(lhs), readable(rhs), free
        # likewise a free index over 1..1 (the column s of a batch of m = 1) is 1: left free,
        # delta sums over it end in Piecewise((…, Eq(s, 1)), …) that no normal form resolves
        single = {x: S.One for x in free if self.model.range_of(x) == 1}
        if single:
            return (step.lhs.xreplace(single), step.rhs.xreplace(single),
                    tuple(x for x in free if x not in single))
        return step.lhs, step.rhs, free

    def _index_for(self, dimension: Basic, default: str, taken: set[str]) -> Symbol:
        """An index symbol that runs over 1..dimension in this model (p over n_prev, s over m,
        i or j over n), not already used by the step.

        Only a name whose range in the model *is* ``dimension`` will do: the prover resolves
        SymPy's ``Piecewise((…, i <= h), …)`` by the range the model gives i, and the fixed-size
        checker samples i over it. With several sizes ``index_bound`` is the first shape's row
        size (h for W1 of size h × p), which need not be the range of the default name (i over n):
        reading H (h × m) at row i would give i a range it does not have."""
        if dimension == 1:
            return index_symbol(default)  # a row or column vector: this index is always 1
        declared = [x.name for x, bound in self.model.index_ranges.items() if bound == dimension]
        for name in [default, *declared]:
            if name not in taken and self.model.range_of(index_symbol(name)) == dimension:
                taken.add(name)
                return index_symbol(name)
        name = default
        for _ in range(len(taken) + 1):  # fresh names: undeclared, so they run over index_bound
            name += "'"
            if name not in taken and self.model.range_of(index_symbol(name)) == dimension:
                taken.add(name)
                return index_symbol(name)
        raise NotGeneric(f"no free index name left for a dimension of size {dimension}")

    # -- 2, 3. base variables ----------------------------------------------------------------
    def _definition(self, atom: Basic) -> Basic | None:
        """The definition's body at ``atom``'s indices, its bound indices renamed first.

        Fresh bound indices *before* the template indices are replaced: A_{ik} (k a step's
        summation index over m) with A_{is} := e^{Z_is} / Σ_k e^{Z_ks} must not become
        e^{Z_ik} / Σ_k e^{Z_kk}, which ``Model.definition_for`` (substituting first) would give."""
        if not self.model.is_abbreviation(atom):
            return None
        for d in self.model.definitions:
            if d.head == atom and not d.index:
                return d.body.replace(lambda e: isinstance(e, Sum), _fresh_sum)
            if isinstance(atom, Indexed) and atom.base == d.head and d.index:
                body = d.body.replace(lambda e: isinstance(e, Sum), _fresh_sum)
                return body.xreplace(dict(zip(d.index, atom.indices)))
        return None

    def base_form(self, expr: Basic, keep: frozenset = frozenset()) -> Basic:
        """Every abbreviation replaced by its definition, recursively — except entries of the
        families in ``keep`` (vectors or matrices such as a or Z), which stay as variables."""
        # in a fixed order: each definition gets fresh Dummy indices, and their creation order
        # names them in certificates (``readable``), which must not depend on set order
        atoms = sorted((x for x in expr.atoms(Indexed, Symbol)
                        if self.model.is_abbreviation(x) and self.model.family(x) not in keep), key=default_sort_key)
        if not atoms:
            return expr
        return self.base_form(expr.xreplace({x: self._definition(x) for x in atoms}), keep)

    def _derivative(self, node: Derivative) -> Basic:
        """∂f/∂x with f as a function of x's whole family: for an intermediate x (∂L/∂a_i,
        ∂J/∂Z_js) every abbreviation above x is unfolded down to x's family and no further."""
        if node not in self._derivatives:  # steps share their derivatives (∂a_i/∂z_j, ∂L/∂a_i)
            canonical, back = _canonical_indices(node)
            if canonical not in self._derivatives:
                (wrt,) = canonical.variables
                body = self.base_form(canonical.expr, keep=frozenset({self.model.family(wrt)}))
                self._derivatives[canonical] = piecewise_as_steps(differentiate(body, wrt))
            self._derivatives[node] = self._derivatives[canonical].xreplace(back)
        return self._derivatives[node]

    def _realised(self, side: Basic, keep: frozenset) -> Basic:
        """``realise``, kept: the steps of a derivation share their left-hand side (∂L/∂z_j)."""
        key = (side, keep)
        if key not in self._realised_memo:
            self._realised_memo[key] = self.realise(side, keep)
        return self._realised_memo[key]

    def _normal_side(self, side: Basic, free: tuple, used: list[str]) -> Basic:
        """``normal_form`` of one side, kept with the notes it made."""
        key = (side, free)
        if key not in self._normal_memo:
            notes: list[str] = []
            self._normal_memo[key] = (self.normal_form(side, free, notes), notes)
        value, notes = self._normal_memo[key]
        used.extend(note for note in notes if note not in used)
        return value

    def realise(self, expr: Basic, keep: frozenset = frozenset()) -> Basic:
        """Derivatives evaluated, abbreviations unfolded except the families in ``keep``; a
        function by cases (Huber) as step functions, which sums cannot mangle."""
        expr = plain_sympy(expr).replace(lambda e: isinstance(e, Derivative), self._derivative)
        return piecewise_as_steps(self.base_form(expr, keep))

    def _unfolding_levels(self) -> list[frozenset]:
        """Which abbreviations to keep opaque, tried in turn: first those defined directly in the
        base variables (Z = W A_prev + b: unfolding it turns e^{Z} into a product of
        exponentials that no longer matches), then none."""
        lowest = frozenset(d.head for d in self.model.definitions
                           if not any(self.model.is_abbreviation(x) for x in d.body.atoms(Indexed, Symbol)))
        return [lowest, frozenset()] if lowest else [frozenset()]

    # -- 4. normal form ----------------------------------------------------------------------
    def normal_form(self, expr: Basic, free: tuple[Symbol, ...], used: list[str]) -> Basic:
        expr = expr.replace(lambda e: isinstance(e, Sum) and any(lim[1] != 1 for lim in e.limits), _from_one)
        # every index with its range 1..bound: the free ones from the model, bound ones from their sum
        # With several sizes the same symbol could be bound by two sums over different ranges
        # (Σ_k over n here, Σ_k over p there): such an index has no single known range and is
        # left out, so no Piecewise on it is resolved by a range it may not have.
        ranges: dict[Symbol, set] = {index: {self.model.range_of(index)} for index in free}
        for parameter, bound in self.model.parameters.items():  # K of y = e_K runs over 1..n
            ranges.setdefault(parameter, set()).add(bound)
        # An index that is also free here without being one of ``free`` (a step that uses a bound
        # name outside its sum, too) has no known range either: its sum's range is not its own.
        loose = expr.free_symbols - set(free) - set(self.model.parameters)
        for total in expr.atoms(Sum):
            for index, lower, upper in total.limits:
                ranges.setdefault(index, set()).add(upper if lower == 1 and index not in loose else None)
        bounds = {index: next(iter(found)) for index, found in ranges.items()
                  if len(found) == 1 and None not in found}
        depth = 0

        def guarded(rewrite):
            """Each rewrite of a sum is one level deeper; a form that never shrinks (a delta
            SymPy cannot sum, handed back and forth) ends as *undecided*, never as a crash."""
            def run(total: Sum) -> Basic:
                nonlocal depth
                depth += 1
                try:
                    if depth > MAX_SUM_DEPTH:
                        raise Undecided(f"the normal form of a sum did not terminate (more than "
                                        f"{MAX_SUM_DEPTH} nested rewrites)")
                    return rewrite(total)
                finally:
                    depth -= 1
            return run

        def delta_sum(inside: Basic, index: Symbol, upper: Basic) -> Basic | None:
            """Σ_{index=1}^{upper} inside by delta summation, or None when SymPy does not remove
            the index (the delta is not on it, or sits where deltasummation cannot reach it)."""
            inside = _deltas_out_of_cases(inside, index)  # a δ inside every case of a Piecewise (Huber)
            if not any(index in d.free_symbols for d in inside.atoms(KroneckerDelta)):
                return None
            # deltasummation, not Sum.doit: doit would also write out every inner sum with
            # numeric bounds (Σ_k e^{Z_ks} → e^{Z_1s} + …) and the forms would no longer match
            value = delta_summation(inside, (index, 1, upper))
            if index in value.free_symbols or any(lim[0] == index for e in value.atoms(Sum) for lim in e.limits):
                return None
            return self._resolve_ranges(value, bounds, upper, used)

        @guarded
        def normal_sum(total: Sum) -> Basic:
            if any(lim[1] != 1 for lim in total.limits):
                total = _from_one(total)
            if len(total.limits) != 1:
                return normal_multiple_sum(total)
            term, (index, _, upper) = total.function, total.limits[0]
            out = []
            for t in Add.make_args(expand(term)):
                outside, inside = t.as_independent(index, as_Add=False)
                if inside == 1:
                    out.append(outside * upper)
                    continue
                value = delta_sum(inside, index, upper) if inside.has(KroneckerDelta) else None
                if value is not None:
                    out.append(outside * value)
                else:
                    dummy = _canonical_dummy(inside)
                    total = Sum(inside.xreplace({index: dummy}), (dummy, 1, upper))
                    # Σ_s (Σ_i W_id Y_is) is flattened by SymPy into Σ_{i,s} W_id Y_is: normalised
                    # as a multiple sum, it reads Σ_i W_id Σ_s Y_is, as the same sum does elsewhere
                    out.append(outside * (normal_multiple_sum(total) if len(total.limits) > 1 else total))
            return Add(*out)

        @guarded
        def normal_multiple_sum(total: Sum) -> Basic:
            """Σ_s Σ_i f (SymPy cannot nest one Sum directly in another): a Kronecker delta is
            summed over the first limit whose index it holds; otherwise every bound index is
            renamed canonically and factors free of all of them are pulled out.

            A delta on no bound index (δ_st, s and t free) or out of deltasummation's reach
            (inside a Piecewise) is left in place: summing over a limit SymPy hands back
            unchanged would rebuild the same Σ_s Σ_i, and recurse without end."""
            if any(lim[1] != 1 for lim in total.limits):
                total = _from_one(total)
            term, limits = expand(total.function), total.limits
            indices = [lim[0] for lim in limits]
            out = []
            for t in Add.make_args(term):
                outside, inside = t.as_independent(*indices, as_Add=False)
                if inside.has(KroneckerDelta):
                    summed = None
                    for position, (index, _, upper) in enumerate(limits):
                        if any(bound.has(index) for lim in limits[:position] for bound in lim[1:]):
                            continue  # an inner range depends on this index: it cannot be summed first
                        value = delta_sum(inside, index, upper)
                        if value is not None:
                            others = limits[:position] + limits[position + 1:]
                            summed = expand(Sum(value, *others)).replace(lambda e: isinstance(e, Sum), normal_sum)
                            break
                    if summed is not None:
                        out.append(outside * summed)
                        continue
                nested = nest(inside, limits)
                if nested is not None:
                    out.append(outside * nested)
                    continue
                mapping = {}
                for index in indices:
                    mapping[index] = _canonical_dummy(inside.xreplace(mapping), avoid=set(mapping.values()))
                renamed = [(mapping[lim[0]], *lim[1:]) for lim in limits]
                out.append(outside * Sum(inside.xreplace(mapping), *renamed))
            return Add(*out)

        def nest(inside: Basic, limits) -> Basic | None:
            """Σ_{i,s} f_s · g_is as Σ_s f_s · (Σ_i g_is) when the factors holding i are not all
            of them (and Σ_{i,s} f_s as n · Σ_s f_s): the same value, since every index runs over
            a fixed range, and the form a derivative by the chain rule takes (Σ_i Y_is inside,
            where the assumption Σ_i Y_is = 1 can reach it). None when nothing can be pulled."""
            indices = [lim[0] for lim in limits]
            if any(bound.has(*indices) for lim in limits for bound in lim[1:]):
                return None
            factors = Mul.make_args(inside)
            for position, (index, lower, upper) in enumerate(limits):
                holding = [f for f in factors if f.has(index)]
                if len(holding) == len(factors):
                    continue
                rest = Mul(*[f for f in factors if not f.has(index)])
                inner = (upper - lower + 1) if not holding else normal_sum(Sum(Mul(*holding), (index, lower, upper)))
                others = limits[:position] + limits[position + 1:]
                return expand(Sum(rest * inner, *others)).replace(lambda e: isinstance(e, Sum), normal_sum) \
                    if others else rest * inner
            return None

        return _settle(expr.replace(lambda e: isinstance(e, Sum), normal_sum))

    @staticmethod
    def _resolve_ranges(expr: Basic, bounds: dict, upper: Basic, used: list[str]) -> Basic:
        """Take ``Piecewise((v, 1 <= j <= n), …)`` at v when j is an index known to lie in 1..n
        (the sum's own upper bound n, and j's range the same 1..n)."""
        def holds(rel: Relational) -> bool:
            lo, hi = (rel.lhs, rel.rhs) if rel.rel_op in ("<=", "<") else (rel.rhs, rel.lhs)
            if rel.rel_op not in ("<=", ">="):
                return False
            return (hi in bounds and lo == 1) or (lo in bounds and hi == upper == bounds[lo])

        def resolve(p: Piecewise) -> Basic:
            args = []
            for value, condition in p.args:
                rels = [r for r in condition.atoms(Relational) if holds(r)]
                if rels:
                    indices = sorted({x for r in rels for x in r.free_symbols if x in bounds}, key=str)
                    note = ("delta summation: SymPy's answer is a Piecewise on "
                            + " and ".join(sorted(str(r) for r in rels))
                            + ", true since " + ", ".join(f"{x} runs over 1..{bounds[x]}" for x in indices))
                    if note not in used:
                        used.append(note)
                args.append((value, condition.xreplace({r: S.true for r in rels})))
            return Piecewise(*args)

        return expr.replace(lambda e: isinstance(e, Piecewise), resolve)

    # -- 5. the check ------------------------------------------------------------------------
    def prove(self, step, equations: list[Eq]) -> IndexResult:
        """Proven only when some unfolding reduces lhs − rhs to 0; a normal form that does not
        terminate (or exhausts Python's stack in SymPy) leaves the step undecided. Kept: the
        derivations of one model (a layer's three gradients) share steps."""
        lhs, rhs, free = self.index_form(step)
        key = (lhs, rhs, free, tuple(equations))
        if key not in self._verdicts:
            self._verdicts[key] = self._prove(lhs, rhs, free, equations)
        return self._verdicts[key]

    def _prove(self, lhs: Basic, rhs: Basic, free: tuple, equations: list[Eq]) -> IndexResult:
        levels = self._unfolding_levels()
        if self._by_a_base_variable(lhs, rhs):
            # ∂J/∂W_jp unfolds the model down to W: keeping Z opaque elsewhere cannot match it,
            # so the full unfolding goes first (either order proves the same; this one sooner)
            levels = levels[::-1]
        order = levels
        if len(levels) > 1 and self._kept_opaque(lhs, levels[0]):
            # a definition (a_i = e^{z_i}/Σ_k e^{z_k}) with a kept opaque cannot be unfolded on
            # its left: that level fails, so it goes last (the same verdict, sooner; and when
            # every level fails, the reason reported is still the last level's, as before)
            order = [*levels[1:], levels[0]]
        results = {}
        for keep in order:
            try:
                results[keep] = self._prove_at(lhs, rhs, keep, free, equations)
            except Undecided as reason:
                results[keep] = IndexResult(False, [], str(reason))
            except RecursionError:
                results[keep] = IndexResult(False, [], "the normal form exceeded Python's recursion limit")
            if results[keep].proven:
                return results[keep]
        return results[levels[-1]]

    def _kept_opaque(self, side: Basic, keep: frozenset) -> bool:
        """Whether ``side`` is itself an entry of a family that ``keep`` leaves opaque."""
        return isinstance(side, (Indexed, Symbol)) and self.model.is_abbreviation(side) \
            and self.model.family(side) in keep

    def _by_a_base_variable(self, *sides: Basic) -> bool:
        """Whether a side differentiates by a base variable (W, b, X: no abbreviation)."""
        return any(not self.model.is_abbreviation(node.variables[0])
                   for side in sides for node in plain_sympy(side).atoms(Derivative))

    def _prove_at(self, lhs: Basic, rhs: Basic, keep: frozenset, free, equations: list[Eq]) -> IndexResult:
        used: list[str] = []
        sides = [self._realised(side, keep) for side in (lhs, rhs)]
        parameters = tuple(self.model.parameters)
        cases = _case_splits(sides[0] - sides[1], free, parameters)
        for case_name, in_case in cases:
            # each side in normal form on its own (the normal form of a difference is the
            # difference of the normal forms, settled): the steps of a derivation share their
            # left-hand side, whose normal form is then computed once, not once per step
            left, right = (self._normal_side(side.xreplace(in_case), free, used) for side in sides)
            value = _settle(left - right)
            for equation in equations:
                value = self._apply_equation(value, equation, free)
                if equation.rhs.has(KroneckerDelta) and value.has(Sum):
                    # y_i = δ_iK put a Kronecker delta into a sum: sum it (Σ_i δ_iK = 1)
                    value = self.normal_form(value, free, used)
                value = _settle(_case_of(value, case_name, free, parameters))
            if value != 0 and _cancels_to_zero(value):
                value = S.Zero  # a rational identity that expanding alone does not show
            if value != 0 and value.has(Sum):
                value = _summands_cancelled(value)
            if value != 0 and has_kinks(value):  # relu, |·|, max: region by region
                note = zero_by_cases_in_sums(value) if value.has(Sum) else zero_by_cases(value)
                if note is not None:
                    value = S.Zero
                    if note not in used:
                        used.append(note)
            if value != 0:
                return IndexResult(False, used, f"{case_name}reduces to {value}, not 0")
        if len(cases) > 1 and any(cases[0][0].startswith(f"case {x} ") for x in parameters):
            used.append(f"checked in the two cases {cases[0][0][5:-2]} and {cases[1][0][5:-2]}")
        elif len(cases) > 1:
            used.append("checked in the two cases i = j and i ≠ j")
        return IndexResult(True, used)


    def _apply_equation(self, value: Basic, equation: Eq, free: tuple = ()) -> Basic:
        """Replace the equation's left side by its right side, in normal form; a free index of
        the equation (Σ_i Y_is = 1 for every s in 1..m) matches an index of ``value`` known to
        run over the same range: a free index of the step declared over 1..m, or the index of an
        enclosing sum over 1..m. With several sizes a sum over 1..p is not covered by "every s in
        1..m", so it is left alone (the step then stays unproven) rather than rewritten."""
        lhs, rhs = (self.normal_form(side, (), []) for side in (equation.lhs, equation.rhs))
        sizes = set(self.model.size_symbols().values())  # n in Σ_{i=1}^{n} is a size, not an index
        # a parameter (K in y_i = δ_iK) is one fixed value, the same as in the step: not "for every"
        every = [x for x in index_symbols(equation) if x not in sizes and x not in self.model.parameters]
        if not every:
            return value.xreplace({lhs: rhs})
        wilds = {x: Wild(f"{x.name}_any") for x in every}
        pattern, replacement = lhs.xreplace(wilds), rhs.xreplace(wilds)
        needed = {wilds[x]: self.model.range_of(x) for x in every}
        declared = {x: self.model.range_of(x) for x in free}
        declared.update({x: bound for x, bound in self.model.parameters.items() if x not in declared})

        def covered(match: dict, scope: dict) -> bool:
            for wild, bound in needed.items():
                index = match.get(wild)
                if index == 1:  # the first value (the only one of an index over 1..1) of every range
                    continue
                known = scope.get(index, declared.get(index))
                if known is None or known != bound:
                    return False
            return True

        def walk(expr: Basic, scope: dict) -> Basic:
            if not expr.args:
                return expr
            match = expr.match(pattern)
            if match is not None and covered(match, scope):
                return replacement.xreplace(match)
            if isinstance(expr, Sum):
                inner = dict(scope)
                for index, lower, upper in expr.limits:
                    # this sum binds the index: an outer binding or a free index of that name no longer applies
                    inner.pop(index, None)
                    inner[index] = upper if lower == 1 else None
                shadowed = {index for index, *_ in expr.limits}
                saved = {x: declared.pop(x) for x in shadowed if x in declared}
                try:
                    return Sum(walk(expr.function, inner), *expr.limits)
                finally:
                    declared.update(saved)
            return expr.func(*[walk(arg, scope) for arg in expr.args])

        return walk(value, {})


def _deltas_out_of_cases(expr: Basic, index) -> Basic:
    """Piecewise((δ_ij a, c), (δ_ij b, True)) → δ_ij Piecewise((a, c), (b, True)): the derivative
    of a function by cases (Huber) carries its Kronecker delta into every case, where SymPy's
    delta summation does not find it (and substitutes the index into the value, not the
    condition). The same value: every case is a multiple of δ_ij."""
    def pull(piecewise: Piecewise) -> Basic:
        common = None
        piecewise = Piecewise(*((factor_terms(value), condition) for value, condition in piecewise.args))
        for value, _ in piecewise.args:
            deltas = {f for f in Mul.make_args(value) if isinstance(f, KroneckerDelta) and index in f.args}
            if value != 0:
                common = deltas if common is None else common & deltas
        if not common:
            return piecewise
        delta = sorted(common, key=str)[0]
        return delta * Piecewise(*((value / delta if value != 0 else value, condition)
                                   for value, condition in piecewise.args))
    return expr.replace(lambda e: isinstance(e, Piecewise), pull)


def readable(expr: Basic) -> Basic:
    """SymPy's matrix products sum over Dummy indices from 0 (Σ_{_i_1=0}^{n-1}); rename them to
    plain index symbols and sum from 1, so certificates and messages are deterministic."""
    expr = expr.replace(lambda e: isinstance(e, Sum) and any(lim[1] != 1 for lim in e.limits), _from_one)
    taken = {s.name for s in expr.atoms(Symbol) if not isinstance(s, Dummy)}
    mapping = {}
    for d in _dummies_in_reading_order(expr):
        mapping[d] = _unused_index(d.name.lstrip("_"), taken)
    return expr.xreplace(mapping)


def _dummies_in_reading_order(expr: Basic) -> list:
    """The Dummy symbols in the order a reader meets them, decided by the expression's shape
    alone: the terms of a sum or product are visited in the order of their text with every
    Dummy written as its bare name. Neither creation order nor hashes enter (SymPy starts
    Dummy numbering at a random offset, and hashes follow it), so the same expression gets the
    same names (k, k′) in every run. Terms whose texts tie are alike up to renaming, and either
    order gives the same result."""
    texts: dict = {}

    def text(e: Basic) -> str:
        if e not in texts:
            if isinstance(e, Dummy):
                texts[e] = f"Dummy({e.name})"
            elif not e.args:
                texts[e] = srepr(e)
            else:
                parts = [text(a) for a in e.args]
                texts[e] = f"{type(e).__name__}({','.join(sorted(parts) if e.is_commutative and isinstance(e, (Add, Mul)) else parts)})"
        return texts[e]

    order: list = []
    seen: set = set()

    def visit(e: Basic) -> None:
        if isinstance(e, Dummy):
            if e not in seen:
                seen.add(e)
                order.append(e)
            return
        args = list(e.args)
        if isinstance(e, (Add, Mul)):
            args.sort(key=text)
        for a in args:
            visit(a)

    visit(expr)
    return order


def _unused_index(name: str, taken: set[str]) -> Symbol:
    while name in taken:
        name += "'"
    taken.add(name)
    return index_symbol(name)


@lru_cache(maxsize=4096)
def _cancels_to_zero(value: Basic) -> bool:
    """A rational function that ``cancel`` shows is 0 (small enough to try). Kept: the same
    remainders come back in the steps of one derivation and across identities (a sigmoid's
    derivative written three ways: 0.1 s of ``cancel`` each time)."""
    return value.count_ops() <= MAX_OPS_FOR_CANCEL and cancel(value) == 0


def _summands_cancelled(value: Basic) -> Basic:
    """Sums over the same ranges, with coefficients free of their indices, added into one sum
    whose summand is then cancelled: Σ_i f_i − Σ_i g_i is 0 when f_i − g_i is 0 as a rational
    function (σ(u_i)(1 − σ(u_i)) written two ways, one per sum, after ``expand`` split them).
    Both are identities (a finite sum is linear; ``cancel`` decides rational functions), so a 0
    here is a proof; anything else leaves ``value`` as it was."""
    groups: dict[tuple, list] = {}
    rest = []
    for term in Add.make_args(value):
        sums = [f for f in Mul.make_args(term) if isinstance(f, Sum)]
        if len(sums) != 1 or any(lim[1] != 1 for lim in sums[0].limits):
            rest.append(term)
            continue
        (total,) = sums
        coefficient = term / total
        indices = [lim[0] for lim in total.limits]
        if coefficient.has(*indices):
            rest.append(term)
            continue
        groups.setdefault(tuple(lim[2] for lim in total.limits), []).append((coefficient, total))
    out = list(rest)
    for uppers, members in groups.items():
        if len(members) < 2:
            out.extend(coefficient * total for coefficient, total in members)
            continue
        common = [Dummy("d", integer=True, positive=True) for _ in uppers]
        summand = Add(*[coefficient * total.function.xreplace(dict(zip([lim[0] for lim in total.limits], common)))
                        for coefficient, total in members])
        if _cancels_to_zero(summand):
            continue
        out.extend(coefficient * total for coefficient, total in members)
    return Add(*out)


def _from_one(total: Sum) -> Sum:
    """Σ_{i=lo}^{hi} f(i) as Σ_{i=1}^{hi-lo+1} f(i + lo - 1), for every limit of the sum:
    SymPy's matrix products sum from 0, and the normal form sums every index from 1. (An inner
    limit's bounds may hold an outer index, Σ_{i=1}^{j}; they are shifted with the summand.)"""
    function, limits = total.function, [list(lim) for lim in total.limits]
    for position, (index, lower, upper) in enumerate(limits):
        if lower == 1:
            continue
        shift = {index: index + lower - 1}
        function = function.xreplace(shift)
        for inner in limits[:position]:
            inner[1], inner[2] = inner[1].xreplace(shift), inner[2].xreplace(shift)
        limits[position] = [index, S.One, upper - lower + 1]
    return Sum(function, *[tuple(lim) for lim in limits])


_PLACEHOLDERS: dict[tuple, Dummy] = {}  # (position, assumptions) → one Dummy for the process


def _placeholder(position: int, symbol: Symbol) -> Dummy:
    """The same Dummy for every symbol at this position with these assumptions (an index over
    1..n is a positive integer): SymPy sees the placeholder exactly as it saw the symbol."""
    key = (position, tuple(sorted(symbol.assumptions0.items())))
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = Dummy(f"ι{position}", **symbol.assumptions0)
    return _PLACEHOLDERS[key]


def _canonical_indices(node: Derivative) -> tuple[Derivative, dict]:
    """∂f/∂x with its free indices renamed by order of appearance to fixed placeholders, and the
    renaming back: ∂J/∂W_jp (one step) and ∂J/∂W_ik (the next, in matrix form) are one
    derivative, differentiated once. Renaming commutes with differentiation (∂f/∂x_ι read at
    ι = j is ∂f/∂x_j, KroneckerDeltas included), and the definitions' bound indices are fresh
    Dummies, so renaming back captures nothing."""
    order: list[Symbol] = []
    for entry in (node.expr, *node.variables):
        for index in getattr(entry, "indices", ()):
            for symbol in sorted(index.free_symbols, key=default_sort_key):
                if symbol not in order:
                    order.append(symbol)
    rename = {symbol: _placeholder(k, symbol) for k, symbol in enumerate(order)}
    return node.xreplace(rename), {placeholder: symbol for symbol, placeholder in rename.items()}


def _fresh_sum(total: Sum) -> Sum:
    """The sum with every bound index (Σ_s Σ_i is one Sum with two limits) renamed to a fresh
    Dummy, so a definition's bound i or s cannot capture a step's free i or s. Every limit is
    kept: dropping one would silently turn the loss's Σ_s Σ_i into Σ_i at a free s."""
    mapping = {}
    limits = []
    for index, *bounds in total.limits:
        dummy = Dummy(index.name, integer=True, positive=True)
        mapping[index] = dummy
        # a later limit's bound may mention an earlier index (not in our models, but kept exact)
        limits.append((dummy, *(b.xreplace(mapping) for b in bounds)))
    return Sum(total.function.xreplace(mapping), *limits)


def _settle(expr: Basic) -> Basic:
    """``expand``, then every sum written one way, so that equal terms cancel.

    Two things stop equal terms from cancelling after ``expand`` at several sizes: (1) SymPy
    expands e^{Σ_q W_iq X_qs} into Π_q e^{W_iq X_qs} but leaves e^{-Σ_q …} alone, so
    e^{Z} · e^{-Z} with Z unfolded does not cancel; products of exponentials are folded back
    into e^{Σ} here (a finite product of exponentials is the exponential of the sum, exactly);
    (2) a bound index's name depended on the term the sum sat in while it was normalised
    (Σ_ι1 Y_ι1,t in one term, Σ_ι2 Y_ι2,t in another); ``_canonical_names`` renames them
    from the sum alone."""
    expr = expand(expr)
    expr = expr.replace(lambda e: isinstance(e, Product) and isinstance(e.function, exp),
                        lambda p: exp(Sum(p.function.args[0], *p.limits)))
    return _canonical_names(expr)


def _canonical_names(expr: Basic) -> Basic:
    """Every sum's bound indices renamed ι_1, ι_2, … from the sum itself, innermost sums first:
    each index gets the first name not used anywhere in the summand (after its own indices are
    set aside), so α-equivalent sums become identical whatever surrounds them, and no renaming
    can capture a free index or an inner sum's index."""
    return _canonical_names_at(expr, 0)


def _canonical_names_at(expr: Basic, depth: int) -> Basic:
    if isinstance(expr, Sum):
        return _canonical_sum(expr, depth)
    if not expr.args or not expr.has(Sum):
        return expr
    return expr.func(*[_canonical_names_at(arg, depth) for arg in expr.args])


@lru_cache(maxsize=1 << 16)
def _canonical_sum(total: Sum, depth: int) -> Basic:
    """One sum in its canonical names, its inner sums through this cache too. First its own
    indices become placeholders fixed by depth and position, so an inner sum's names do not
    depend on the names the enclosing indices happen to have (Σ_ι2 … Σ_ι3 vs Σ_ι3 … Σ_ι2),
    and each sum is renamed once, however many steps hold it (a network's steps hold the same
    sums again and again)."""
    placeholders = {lim[0]: Dummy("bound", dummy_index=_PLACEHOLDER_BASE + 64 * depth + position)
                    for position, lim in enumerate(total.limits)}
    function = _canonical_names_at(total.function.xreplace(placeholders), depth + 1)
    taken = {index_symbol(x.name) for x in function.atoms(Symbol)}
    mapping: dict = {}
    for placeholder in placeholders.values():
        mapping[placeholder] = _canonical_dummy(S.Zero, avoid=taken | set(mapping.values()))
    limits = [(mapping[placeholders[index]], *bounds) for index, *bounds in total.limits]
    return Sum(function.xreplace(mapping), *limits)


_PLACEHOLDER_BASE = 7_000_000  # dummy indices of the placeholders: fixed, so renamed sums can be kept


def _canonical_dummy(expr: Basic, avoid: set = frozenset()) -> Symbol:
    """ι_1, ι_2, …: the first name not already used inside ``expr`` (inner sums come first)."""
    names = {s.name for s in expr.atoms(Symbol)} | {s.name for s in avoid}
    number = 1
    while f"ι_{number}" in names:
        number += 1
    return index_symbol(f"ι_{number}")


def _case_splits(expr: Basic, free: tuple[Symbol, ...], parameters: tuple = ()) -> list[tuple[str, dict]]:
    """[("", {})] or, when expr depends on whether two free indices are equal (or a free index
    and a parameter: j and K), both cases, each as the substitution that puts an expression in
    it. In the equal case the free index is replaced by the other (j by K: the assumptions speak
    of K, so K must stay)."""
    for p in (*parameters, *free):
        for q in free:
            if p == q:
                continue
            if expr.has(KroneckerDelta(p, q)) or expr.has(Eq(p, q)):
                equal = {q: p}
                apart = {KroneckerDelta(p, q): S.Zero, KroneckerDelta(q, p): S.Zero,
                         Eq(p, q): S.false, Eq(q, p): S.false}
                return [(f"case {p} = {q}: ", equal), (f"case {p} ≠ {q}: ", apart)]
    return [("", {})]


def _case_of(value: Basic, case_name: str, free: tuple, parameters: tuple) -> Basic:
    """In the case p ≠ q of ``_case_splits``, δ_pq = 0 again wherever applying an assumption
    brought it back (y_j = δ_jK in the case j ≠ K); otherwise ``value`` unchanged."""
    for p in (*parameters, *free):
        for q in free:
            if p != q and case_name == f"case {p} ≠ {q}: ":
                return value.xreplace({KroneckerDelta(p, q): 0, KroneckerDelta(q, p): 0,
                                       Eq(p, q): S.false, Eq(q, p): S.false})
    return value
