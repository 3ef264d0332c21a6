"""Stage 3 of 4 — check every step of a derivation, exactly and numerically.

Each step gets a ``Check``: ``exact`` is True only when every entry was proven symbolically,
False when a numeric counterexample refutes it, None when neither happened. ``numeric`` is the
independent high-precision comparison at random points. Nothing is ever marked proven by default.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import mpmath
from sympy import Integer

from sympy.matrices.expressions import MatMul, MatrixExpr

from symgrad.steps import Check, Derivation, Rule, Step
from symgrad.verify.concrete import ConcreteModel
from symgrad.verify.exact import ExactProver
from symgrad.verify.index_form import IndexProver, NotGeneric
from symgrad.verify.numeric import DIGITS, TOLERANCE_DIGITS, NumericError, NumericProgram, agree

NUMERIC_POINTS = 2
MAX_NUMERIC_ENTRIES = 12  # per step: the numeric check is the independent second opinion

Progress = Callable[[int, int, str], None]


def check_derivation(derivation: Derivation, progress: Progress | None = None) -> Derivation:
    """Return the derivation with every step's ``check`` filled in."""
    if derivation.model.symbolic:
        from symgrad.verify.symbolic import check_symbolic_derivation

        return check_symbolic_derivation(derivation, progress)
    checker = StepChecker(derivation.model)
    checked = []
    for number, step in enumerate(derivation.steps, start=1):
        if progress:
            progress(number, len(derivation.steps), step.title)
        seed = f"{derivation.name}:{sorted(derivation.model.sizes.items())}:{number}"
        checked.append(step.with_check(checker.check(step, seed)))
    return derivation.with_steps(checked)


class StepChecker:
    """The fixed-size checker of one model; steps must be checked in order, since a step may
    rely on an earlier one proven about the same left-hand side (transitivity).

    A step written as an index template (a_i(δ_ij − a_j), Σ_i …, vectors and ∂ notation) is
    proven once for every index value by ``IndexProver``; only steps with written-out matrices
    are proven entry by entry. Either way the numeric check evaluates sampled entries.
    """

    def __init__(self, model, index_proofs: bool = True):
        self.model = model
        self.concrete = ConcreteModel(model)
        self.prover = ExactProver(self.concrete)
        self.numeric = NumericProgram(self.concrete)
        self.index_prover = IndexProver(model) if index_proofs else None
        self.proven_sides: dict = {}  # lhs → matrix-level right-hand sides proven equal to it

    def check(self, step: Step, seed: str) -> Check:
        elimination = dict(pair for name in step.assumptions for pair in self.concrete.elimination(name))
        general = self._index_proof(step)
        if general is not None and general.proven:
            lhs, rhs, free = self.index_prover.index_form(step)
            # the same sample of index values for every step over the same ranges, so the
            # numeric check reuses what it computed for the previous step
            ranges = [self.model.range_of(index) for index in free]
            sampler = random.Random(f"{self.model.name}:{sorted(self.model.sizes.items())}:{ranges}")
            total, values = self._sample_indices(free, sampler)
            try:
                entries = [(self.concrete.explicit(lhs.xreplace(v)), self.concrete.explicit(rhs.xreplace(v)))
                           for v in values]
            except (ValueError, TypeError) as error:
                return Check(None, None, f"could not make the step explicit: {error}")
            numeric, counterexample = numeric_check(self.numeric, entries, range(len(entries)), elimination)
            if numeric is False:
                return Check(False, False, f"refuted numerically: {counterexample}")
            self.prover.remember_template(lhs, rhs, free, step.assumptions)
            self._remember_side(step)
            where = _entries(total)
            parts = [f"exact: all {where}, in index form", *general.used]
            parts.append(_numeric_text(numeric, counterexample, len(entries), where))
            return Check(True, numeric, "; ".join(parts))
        congruent = self._factor_by_factor(step, seed)
        if congruent is not None:
            return congruent
        check = check_step(self.concrete, self.prover, self.numeric, step, seed)
        if check.exact:
            self._remember_side(step)
        return check

    def _remember_side(self, step: Step) -> None:
        """A proven matrix-level equality without assumptions, for products proven factor by factor."""
        if not step.free_indices and not step.assumptions:
            self.proven_sides.setdefault(step.lhs, []).append(step.rhs)

    def _factor_by_factor(self, step: Step, seed: str) -> Check | None:
        """A product whose factors are each proven equal to those of a product already proven
        equal to the same left-hand side (∂L/∂z = ∂L/∂a · ∂a/∂z = row · J): equal by
        congruence, without multiplying n × n matrices out. None when the rule does not apply."""
        if step.free_indices or step.assumptions or not _is_product(step.rhs):
            return None
        for earlier in self.proven_sides.get(step.lhs, []):
            if not _is_product(earlier) or len(earlier.args) != len(step.rhs.args):
                continue
            pairs = list(zip(earlier.args, step.rhs.args))
            if not all(getattr(f, "shape", None) == getattr(g, "shape", None) for f, g in pairs):
                continue
            if all(self._factor_equal(f, g, f"{seed}:{k}") for k, (f, g) in enumerate(pairs)):
                return self._numeric_of_product(step, seed)
        return None

    def _factor_equal(self, left, right, seed: str) -> bool:
        if left == right or right in self.proven_sides.get(left, []):
            return True
        return bool(self.check(Step("factor", Rule.SUBSTITUTE, left, right), seed).exact)

    def _numeric_of_product(self, step: Step, seed: str) -> Check:
        rng = random.Random(seed)
        lhs = self.concrete.explicit(step.lhs)
        rows, cols = lhs.shape
        picks = list(itertools.product(range(rows), range(cols)))
        total = len(picks)
        if total > MAX_NUMERIC_ENTRIES:
            picks = sorted(rng.sample(picks, MAX_NUMERIC_ENTRIES))
        entries = [(lhs[r, c], self._product_entry(step.rhs, r, c)) for r, c in picks]
        numeric, counterexample = numeric_check(self.numeric, entries, range(len(entries)), {})
        if numeric is False:
            return Check(False, False, f"refuted numerically: {counterexample}")
        self._remember_side(step)
        return Check(True, numeric, f"exact: all {_entries(total)}, factor by factor (each factor "
                                    f"proven equal); {_numeric_text(numeric, counterexample, len(entries), _entries(total))}")

    def _product_entry(self, product, row: int, col: int):
        """Entry (row, col) of a product of explicit factors, computed alone."""
        factors = [self.concrete.explicit(f) if hasattr(f, "shape") else f for f in product.args]
        scalars = [f for f in factors if not hasattr(f, "shape")]
        matrices = [f for f in factors if hasattr(f, "shape")]
        vector = matrices[0][row, :]
        for matrix in matrices[1:-1]:
            vector = vector * matrix
        value = (vector * matrices[-1][:, col])[0, 0]
        for scalar in scalars:
            value = scalar * value
        return value

    def _index_proof(self, step: Step):
        if self.index_prover is None:
            return None
        equations = [self.model.assumptions[name].equation for name in step.assumptions]
        try:
            return self.index_prover.prove(step, equations)
        except NotGeneric:
            return None

    def _sample_indices(self, free, rng) -> tuple[int, list[dict]]:
        """How many index values there are, and a sample of them (as substitutions)."""
        ranges = self.model.index_values(free)
        total = 1
        for r in ranges:
            total *= len(r)
        if total <= MAX_NUMERIC_ENTRIES:
            picks = list(itertools.product(*ranges))
        else:
            picks = sorted({tuple(rng.choice(r) for r in ranges) for _ in range(MAX_NUMERIC_ENTRIES)})
        return total, [{index: Integer(v) for index, v in zip(free, pick)} for pick in picks]


def _is_product(expr) -> bool:
    return isinstance(expr, MatMul) and sum(isinstance(f, MatrixExpr) for f in expr.args) > 1


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def _numeric_text(numeric, reason: str, sampled: int, where: str) -> str:
    if numeric is None:
        return f"numeric: not evaluated ({reason})"
    return (f"numeric: {sampled} of {where} at {NUMERIC_POINTS} random points, "
            f"{TOLERANCE_DIGITS} of {DIGITS} digits")


def check_step(concrete: ConcreteModel, prover: ExactProver, program: NumericProgram, step: Step,
               seed: str) -> Check:
    """Check one step entry by entry, at every value of its free indices."""
    try:
        indices, lhs, rhs = concrete.instances(step)
    except (ValueError, TypeError) as error:
        return Check(None, None, f"could not make the step explicit: {error}")
    elimination = dict(pair for name in step.assumptions for pair in concrete.elimination(name))
    entries = list(zip(lhs, rhs))
    where = _entries(len(entries))
    rng = random.Random(seed)
    # numeric first: a wrong step is refuted in milliseconds instead of being fed to the
    # symbolic fall-backs, which can take long on an expression that is not zero
    sample = sorted(rng.sample(range(len(entries)), min(len(entries), MAX_NUMERIC_ENTRIES)))
    numeric, counterexample = numeric_check(program, entries, sample, elimination)
    if numeric is False:
        return Check(False, False, f"refuted numerically: {counterexample}")

    assumptions = frozenset(step.assumptions)
    unproven = [k for k, (left, right) in enumerate(entries)
                if not prover.prove(left, right, elimination, assumptions)]
    extra = [k for k in unproven if k not in sample][:MAX_NUMERIC_ENTRIES]
    if extra:  # the entries the exact check could not decide get a numeric look of their own
        more, reason = numeric_check(program, entries, extra, elimination)
        if more is False:
            return Check(False, False, f"refuted numerically: {reason}")
        if more is None:
            numeric, counterexample = None, reason
        sample = sample + extra

    exact = True if not unproven else None
    parts = [f"exact: {'all ' + where if exact else f'{len(unproven)} of {where} not proven'}",
             _numeric_text(numeric, counterexample, len(sample), where)]
    return Check(exact, numeric, "; ".join(parts))


def numeric_check(program: NumericProgram, entries, sample, elimination) -> tuple[bool | None, str]:
    """Compare both sides at random points; on disagreement return the counterexample."""
    with mpmath.workdps(DIGITS):
        for number in range(NUMERIC_POINTS):
            try:
                compiled = [(program.compile(entries[k][0]), program.compile(entries[k][1])) for k in sample]
                state = program.point(number, elimination)
                for k, (left, right) in zip(sample, compiled):
                    lv, rv = left(state), right(state)
                    if not agree(lv, rv):
                        return False, counterexample_text(program, state, entries[k], k, lv, rv)
            except (NumericError, ValueError, ZeroDivisionError) as error:
                return None, str(error)
    return True, ""


def counterexample_text(program: NumericProgram, state, entry, k, lv, rv) -> str:
    shown = ", ".join(f"{atom} = {mpmath.nstr(state.values[slot], 8)}"
                      for atom, slot in list(program.slots.items())[:min(8, len(program.base))])
    more = " …" if len(program.base) > 8 else ""
    left, right = entry
    return (f"entry {k + 1}: {left} = {mpmath.nstr(lv, 12)} but {right} = {mpmath.nstr(rv, 12)} "
            f"at {shown}{more}")
