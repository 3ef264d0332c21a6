"""Turn what a step *says* (index templates, vector notation, sums) into explicit entries for a
concrete n, and know how every abbreviation unfolds.

Closed sums that occur in definitions (Σ_k e^{z_k}, Σ_i y_i log a_i) become opaque symbols σ_0,
σ_1, … with their expansion kept aside. Proving an identity with σ left free proves it for every
value of σ, in particular the true one — and it keeps expressions O(n) instead of O(n²).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

from sympy import (S, Add, Basic, Derivative, Eq, ImmutableMatrix, Indexed, Integer, KroneckerDelta, MatrixBase, Mul, Sum,
                   Symbol, Transpose, expand)
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions import HadamardPower, HadamardProduct, DiagMatrix, Identity, MatAdd, MatMul, MatrixExpr, OneMatrix, ZeroMatrix

from symgrad.differentiate import differentiate
from symgrad.model import Model, TemplateMatrix
from symgrad.notation import GradientMatrix, MatVar, PartialD, SumExcluding, Vec, index_symbols


EXPAND, ABBREVIATE, KEEP = "expand", "abbreviate", "keep"  # what ``explicit`` does with sums


def _pinned_by_delta(term: Basic, index: Symbol) -> int | None:
    """The one value of ``index`` at which ``term`` can be nonzero when it has a factor
    δ(index, c) with c a number; None otherwise."""
    for factor in Mul.make_args(term):
        if isinstance(factor, KroneckerDelta) and index in factor.args:
            other = factor.args[1] if factor.args[0] == index else factor.args[0]
            if other.is_Integer:
                return int(other)
    return None


def _is_closed(expr: Basic) -> bool:
    """True when no free *index* symbol remains (IndexedBase labels like z do not count)."""
    return not index_symbols(expr)


class ConcreteModel:
    """A model at concrete sizes: explicit entries, one-level unfolding, total derivatives."""

    def __init__(self, model: Model):
        if model.symbolic:
            raise ValueError("ConcreteModel needs concrete sizes")
        self.model = model
        self.sum_symbols: dict[Sum, Symbol] = {}
        self.sum_expansions: dict[Symbol, Basic] = {}
        for definition in model.definitions:
            for s in sorted(definition.body.atoms(Sum), key=str):
                if _is_closed(s):
                    self._abbreviate_sum(s)
        self._scalars = frozenset(model.scalars)
        self._unfold_memo: dict[Basic, Basic] = {}
        self._full_unfold_memo: dict[tuple, Basic] = {}  # (atom, keep_sums) → in the base variables
        self._derivative_memo: dict[tuple, Basic] = {}
        self._reach_memo: dict[tuple, bool] = {}  # (abbreviation, atom) → whether it depends on it
        self._direct_memo: dict[Basic, frozenset] = {}  # abbreviation → the atoms of its definition
        self._instance_memo: dict[tuple, ImmutableMatrix] = {}
        self.vacuous: set[str] = set()  # assumptions that turned out to say nothing (1 == 1)

    # -- explicit entries -------------------------------------------------------------------
    def explicit(self, expr: Basic, sums: str = ABBREVIATE) -> Basic:
        """Matrix notation into explicit matrices, and sums over concrete ranges: written out
        (``EXPAND``), written out except the known closed ones, which become σ symbols
        (``ABBREVIATE``), or kept as SymPy ``Sum`` objects (``KEEP``, for export: compact, and
        ``doit`` recovers the terms)."""
        if isinstance(expr, (MatrixExpr, MatrixBase)):
            matrix = self._explicit_matrix(expr)
            return ImmutableMatrix(matrix.shape[0], matrix.shape[1],
                                   [self._explicit_scalar(e, sums) for e in matrix])
        if isinstance(expr, Eq):
            return Eq(self.explicit(expr.lhs, sums), self.explicit(expr.rhs, sums))
        return self._explicit_scalar(expr, sums)

    def _explicit_matrix(self, expr: Basic) -> ImmutableMatrix:
        """Evaluate matrix notation operand by operand. SymPy's own ``as_explicit`` would call
        ``doit`` on the entries and turn ∂L/∂a_i (L being a bare symbol) into 0."""
        if isinstance(expr, MatrixBase):
            return ImmutableMatrix(expr)
        if isinstance(expr, TemplateMatrix):
            return expr.as_explicit()
        if isinstance(expr, (Vec, PartialD, MatVar, GradientMatrix)):
            rows, cols = (int(d) for d in expr.shape)
            return ImmutableMatrix(rows, cols, lambda r, c: expr._entry(r, c))
        if isinstance(expr, MatMul):
            result = None
            for factor in expr.args:
                value = self._explicit_matrix(factor) if isinstance(factor, MatrixExpr) else factor
                result = value if result is None else result * value
            return ImmutableMatrix(result)
        if isinstance(expr, MatAdd):
            parts = [self._explicit_matrix(arg) for arg in expr.args]
            return ImmutableMatrix(sum(parts[1:], parts[0]))
        if isinstance(expr, Transpose):
            return self._explicit_matrix(expr.arg).T
        if isinstance(expr, DiagMatrix):
            vector = list(self._explicit_matrix(expr.args[0]))
            size = len(vector)
            return ImmutableMatrix(size, size, lambda r, c: vector[r] if r == c else 0)
        if isinstance(expr, HadamardProduct):  # s ⊙ (1 − s): entry by entry
            parts = [self._explicit_matrix(arg) for arg in expr.args]
            return ImmutableMatrix(*parts[0].shape, lambda r, c: Mul(*[p[r, c] for p in parts]))
        if isinstance(expr, HadamardPower):
            return self._explicit_matrix(expr.base).applyfunc(lambda e: e ** expr.exp)
        if isinstance(expr, ElementwiseApplyFunction):  # e^z, tanh(Z) entry by entry
            return self._explicit_matrix(expr.expr).applyfunc(expr.function)
        if isinstance(expr, (OneMatrix, Identity, ZeroMatrix)):
            return ImmutableMatrix(expr.as_explicit())
        raise ValueError(f"no explicit form for {type(expr).__name__}")

    def _explicit_scalar(self, expr: Basic, sums: str) -> Basic:
        if expr.is_Atom or isinstance(expr, Indexed):
            return expr
        if sums == ABBREVIATE and expr in self.sum_symbols:
            return self.sum_symbols[expr]
        if isinstance(expr, SumExcluding):
            if sums == KEEP:  # Σ_{i≠j} f(i) = Σ_i f(i) − f(j): plain SymPy, still one term
                return self._explicit_scalar(expr.full_sum() - expr.term.xreplace({expr.index: expr.excluded}), sums)
            return self._explicit_scalar(expr.doit(), sums)
        if isinstance(expr, Sum):
            if sums == KEEP:
                return Sum(self._explicit_scalar(expr.function, sums), *expr.limits)
            if len(expr.limits) > 1:  # Σ_s Σ_i f (innermost limit first): write the outer one out
                (index, lower, upper), inner = expr.limits[-1], Sum(expr.function, *expr.limits[:-1])
                return Add(*[self._explicit_scalar(inner.xreplace({index: Integer(v)}), sums)
                             for v in range(int(lower), int(upper) + 1)])
            term, (index, lower, upper) = expr.function, expr.limits[0]
            values = range(int(lower), int(upper) + 1)
            pinned = _pinned_by_delta(term, index)
            if pinned is not None:  # Σ_i δ_i3 f(i): every other term is 0
                values = [v for v in values if v == pinned]
            gates = self._zero_gates(term, index)
            return Add(*[self._explicit_scalar(term.xreplace({index: Integer(v)}), sums)
                         for v in values if not (gates and self._any_vanishes(gates, index, Integer(v)))])
        args = [self._explicit_scalar(arg, sums) for arg in expr.args]
        if all(new is old for new, old in zip(args, expr.args)):
            return expr  # unchanged: rebuilding (a Derivative above all) costs ~100 µs
        return expr.func(*args)

    # -- terms that vanish ------------------------------------------------------------------
    def _zero_gates(self, term: Basic, index: Symbol) -> list[Derivative]:
        """The factors ∂f/∂x of ``term`` whose entry f holds the summation index: at an index
        value where f does not depend on x such a factor is 0, and so is the term
        (Σ_{i,s} ∂J/∂Z_is ∂Z_is/∂W_jp: 240 of 256 terms have i ≠ j). A scalar f (the loss) is
        left out: it depends on nearly everything, and searching its definitions costs most."""
        return [factor for factor in Mul.make_args(term)
                if isinstance(factor, Derivative) and len(factor.variables) == 1
                and isinstance(factor.expr, Indexed) and index in factor.free_symbols]

    def _any_vanishes(self, gates: list[Derivative], index: Symbol, value: Integer) -> bool:
        return any(self._vanishes(gate.xreplace({index: value})) for gate in gates)

    def _vanishes(self, derivative: Derivative) -> bool:
        """Whether ∂f/∂x is 0 because x does not occur anywhere in f's definitions (unfolded
        through every abbreviation and closed sum): exactly what the chain rule would give."""
        function, (variable,) = derivative.expr, derivative.variables
        if function == variable or not self.is_abbreviation(function):
            return False
        return not self._reaches(function, variable)

    def _reaches(self, atom: Basic, target: Basic) -> bool:
        """Whether ``target`` occurs in abbreviation ``atom``'s definition or in those of the
        abbreviations it uses; each (atom, target) decided once."""
        key = (atom, target)
        if key not in self._reach_memo:
            direct = self._direct_atoms(atom)
            self._reach_memo[key] = target in direct or any(
                self._reaches(a, target) for a in direct if self.is_abbreviation(a))
        return self._reach_memo[key]

    def _direct_atoms(self, atom: Basic) -> frozenset:
        if atom not in self._direct_memo:
            self._direct_memo[atom] = frozenset(self.unfold_once(atom).free_symbols)
        return self._direct_memo[atom]

    def instances(self, step, sums: str = ABBREVIATE) -> tuple[list[tuple], ImmutableMatrix, ImmutableMatrix]:
        """Both sides of a step at every value of its free indices, as equal-shaped matrices.

        ``sums=KEEP`` keeps sums as SymPy ``Sum`` objects (for export, where the opaque sum
        symbols mean nothing to a reader)."""
        free = tuple(step.free_indices)
        lhs, rhs = self.side_instances(step.lhs, free, sums), self.side_instances(step.rhs, free, sums)
        if lhs.shape != rhs.shape:
            raise ValueError(f"sides of different shapes {lhs.shape} and {rhs.shape}")
        ranges = self.model.index_values(free)
        return list(itertools.product(*ranges)), lhs, rhs

    def side_instances(self, side: Basic, free: tuple, sums: str = ABBREVIATE) -> ImmutableMatrix:
        """One side at every value of the free indices (a matrix: rows for the first index,
        columns for the second), or its explicit matrix when it has no free index. Memoised:
        consecutive steps share a side (∂a_i/∂z_j = … = … = …)."""
        key = (side, free, sums)
        if key not in self._instance_memo:
            self._instance_memo[key] = self._side_instances(side, free, sums)
        return self._instance_memo[key]

    def _side_instances(self, side: Basic, free: tuple, sums: str) -> ImmutableMatrix:
        if not free:
            if sums == KEEP and isinstance(side, MatMul):
                # the product as the step writes it, of explicit factors (shared with other
                # steps): O(n²) text, not n² sums
                factors = [self.side_instances(f, (), sums) if isinstance(f, MatrixExpr) else f
                           for f in side.args]
                if sum(isinstance(f, MatrixBase) for f in factors) > 1:
                    return MatMul(*factors, evaluate=False)
            value = self.explicit(side, sums)
            return value if isinstance(value, MatrixBase) else ImmutableMatrix([[value]])
        ranges = self.model.index_values(free)
        # Templates without sums only need their indices replaced (Piecewise and δ evaluate
        # themselves); walking every entry through ``explicit`` would cost O(n²) tree walks.
        walk = side.has(Sum, SumExcluding)
        entries = []
        for values in itertools.product(*ranges):
            entry = side.xreplace({index: Integer(v) for index, v in zip(free, values)})
            entries.append(self.explicit(entry, sums) if walk else entry)
        # one index: a column; two: a matrix (row index first); more: one column, in
        # lexicographic order of the index values
        shape = (len(ranges[0]), len(ranges[1])) if len(ranges) == 2 else (len(entries), 1)
        return ImmutableMatrix(*shape, entries)

    # -- abbreviations ----------------------------------------------------------------------
    def is_abbreviation(self, atom: Basic) -> bool:
        return atom in self.sum_expansions or self.model.is_abbreviation(atom)

    def _abbreviate_sum(self, total: Sum) -> Symbol:
        if total not in self.sum_symbols:
            symbol = Symbol(f"σ_{len(self.sum_symbols)}")
            self.sum_symbols[total] = symbol
            self.sum_expansions[symbol] = total  # written out when first needed (n terms)
        return self.sum_symbols[total]

    def _expansion(self, symbol: Symbol) -> Basic:
        """The n terms of an abbreviated sum, written out once, on first use."""
        value = self.sum_expansions[symbol]
        if isinstance(value, Sum) and value in self.sum_symbols:
            value = self.sum_expansions[symbol] = self.explicit(value, EXPAND)
        return value

    def unfold_once(self, atom: Basic) -> Basic:
        """The definition of one abbreviation, in explicit form (closed sums abbreviated).

        A sum that becomes closed only at a concrete index (Σ_k e^{Z_ks} at s = 2) is
        abbreviated here too, so that A_12 and A_22 share one σ instead of each carrying n terms."""
        if atom in self.sum_expansions:
            return self._expansion(atom)
        if atom not in self._unfold_memo:
            body = self.model.definition_for(atom)
            closed = {total: self._abbreviate_sum(total) for total in body.atoms(Sum) if _is_closed(total)}
            self._unfold_memo[atom] = self.explicit(body.xreplace(closed) if closed else body)
        return self._unfold_memo[atom]

    def unfold(self, expr: Basic, keep_sums: bool = True) -> Basic:
        """Replace abbreviations by definitions until only base variables (and, if
        ``keep_sums``, the opaque sum symbols) remain."""
        mapping = {}
        for atom in expr.free_symbols:
            if atom in self.sum_expansions:
                if not keep_sums:
                    mapping[atom] = self._unfolded(atom, keep_sums)
            elif self.model.is_abbreviation(atom):
                mapping[atom] = self._unfolded(atom, keep_sums)
        return expr.xreplace(mapping) if mapping else expr

    def _unfolded(self, atom: Basic, keep_sums: bool) -> Basic:
        """One abbreviation unfolded all the way, kept: a ReLU network's region checks unfold
        the same entries of Z and A for every step."""
        key = (atom, keep_sums)
        if key not in self._full_unfold_memo:
            body = self._expansion(atom) if atom in self.sum_expansions else self.unfold_once(atom)
            self._full_unfold_memo[key] = self.unfold(body, keep_sums)
        return self._full_unfold_memo[key]

    def base_form(self, expr: Basic) -> Basic:
        """Fully unfolded in the base variables — what the JSON certificate exports."""
        return self.unfold(expr, keep_sums=False)

    # -- derivatives ------------------------------------------------------------------------
    def total_derivative(self, expr: Basic, wrt: Basic) -> Basic:
        """d expr / d wrt by the chain rule through every abbreviation in ``expr``.

        Entries of the same vector as ``wrt`` are held as independent variables, so
        ∂L/∂a_i means L as a function of a, and ∂L/∂z_j the full dependence through a and σ.
        """
        family = self.model.family(wrt)
        partials = self._partials(expr)
        terms = [partials.get(wrt, 0)]
        for atom, partial in partials.items():
            if not self.is_abbreviation(atom):
                continue
            if atom == wrt or self.model.family(atom) == family:
                continue
            inner = self.atom_derivative(atom, wrt)
            if inner != 0:
                terms.append(partial * inner)
        return Add(*terms)  # one Add: growing it term by term re-sorts it n times

    def _partials(self, expr: Basic) -> dict[Basic, Basic]:
        """∂expr/∂u for every variable u in expr, term by term: differentiating a whole
        n-term sum once per variable would cost O(n²) where this costs O(n)."""
        key = ("partials", expr)
        if key in self._derivative_memo:
            return self._derivative_memo[key]
        partials: dict[Basic, list] = {}
        for term in Add.make_args(expr):
            for atom in term.free_symbols:
                if isinstance(atom, Indexed) or self.is_abbreviation(atom) or atom in self._scalars:
                    partials.setdefault(atom, []).append(differentiate(term, atom))
        result = {atom: Add(*parts) for atom, parts in sorted(partials.items(), key=lambda p: str(p[0]))}
        self._derivative_memo[key] = result
        return result

    def atom_derivative(self, atom: Basic, wrt: Basic) -> Basic:
        key = (atom, wrt)
        if key not in self._derivative_memo:
            self._derivative_memo[key] = self.total_derivative(self.unfold_once(atom), wrt)
        return self._derivative_memo[key]

    def evaluate_derivatives(self, expr: Basic) -> Basic:
        """Replace every first-order Derivative node by its chain-rule value."""
        nodes = expr.atoms(Derivative)
        if not nodes:
            return expr
        return expr.xreplace({node: self._derivative_node(node) for node in nodes})

    def _derivative_node(self, node: Derivative) -> Basic:
        if node not in self._derivative_memo:
            if len(node.variables) != 1:
                raise ValueError("only first derivatives are supported")
            expr, wrt = node.expr, node.variables[0]
            if expr == wrt:
                value = 1
            elif self.is_abbreviation(expr):
                value = self.atom_derivative(expr, wrt)
            else:
                value = self.total_derivative(expr, wrt)
            self._derivative_memo[node] = value
        return self._derivative_memo[node]

    # -- assumptions ------------------------------------------------------------------------
    @lru_cache(maxsize=None)
    def elimination(self, assumption_name: str) -> tuple[tuple[Basic, Basic], ...]:
        """Solve an assumption for base variables that it holds linearly (the last one in base
        order, e.g. y_n = 1 − Σ_{i<n} y_i), so checks can substitute them. An assumption with a
        free index (Σ_i Y_is = 1 for every example s) is solved once per index value."""
        return tuple(self.joint_elimination((assumption_name,)).items())

    @lru_cache(maxsize=None)
    def joint_elimination(self, assumption_names: tuple) -> dict:
        """All the named assumptions solved together, one base variable per equation.

        Each equation is solved after the earlier solutions are substituted into it, and every
        solution is then written in the variables left free: solving two assumptions for the
        same variable separately would silently drop one of them. An equation that becomes
        0 = 0 is vacuous (noted in ``vacuous``); one that becomes c = 0 with c ≠ 0 makes the
        assumptions contradictory (``Contradictory``); one that holds no base variable
        linearly cannot be used (ValueError) — never an exception of another kind."""
        solution: dict[Basic, Basic] = {}
        for name in assumption_names:
            for equation in self._equations(name):
                if equation is S.true or equation is S.false:
                    difference = S.Zero if equation is S.true else S.One
                else:
                    difference = expand(equation.lhs - equation.rhs)
                difference = expand(difference.xreplace(solution)) if solution else difference
                if difference == 0:
                    self.vacuous.add(name)
                    continue
                if difference.is_number:
                    if difference.is_zero:
                        self.vacuous.add(name)
                        continue
                    if difference.is_zero is None:
                        raise ValueError(f"cannot tell whether assumption {name!r} holds: it is the "
                                         f"constant {difference} = 0")
                    raise Contradictory(f"the assumptions are contradictory ({name!r} cannot hold"
                                        + (" together with the others)" if len(assumption_names) > 1 else ")"))
                variable, value = self._solve_for_base_variable(difference, name)
                solution = {v: expand(e.xreplace({variable: value})) for v, e in solution.items()}
                solution[variable] = value
        return solution

    def _equations(self, assumption_name: str) -> list:
        """The assumption at every value of its free indices, explicit (or SymPy's true/false)."""
        template = self.model.assumptions[assumption_name].equation
        if template is S.true or template is S.false:
            return [template]
        free = index_symbols(template)
        ranges = self.model.index_values(free)
        return [self.explicit(template.xreplace(dict(zip(free, map(Integer, values)))), EXPAND)
                for values in itertools.product(*ranges)]

    def _solve_for_base_variable(self, difference: Basic, assumption_name: str) -> tuple[Basic, Basic]:
        for variable in reversed(self.model.base_entries()):
            coefficient = difference.coeff(variable)
            if coefficient != 0 and not coefficient.has(variable) and coefficient.is_number:
                rest = expand(difference - coefficient * variable)
                if not rest.has(variable):
                    return variable, -rest / coefficient
        raise ValueError(f"cannot solve assumption {assumption_name!r} for a base variable")


class Contradictory(ValueError):
    """Assumptions no values satisfy: nothing may be claimed to hold under them."""
