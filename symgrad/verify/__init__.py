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
from sympy import Integer, Sum, Symbol

from sympy.matrices.expressions import MatMul, MatrixExpr

from symgrad.steps import Check, Derivation, Rule, Step
from symgrad.model import TemplateMatrix
from symgrad.notation import SumExcluding
from symgrad.verify.concrete import ConcreteModel
from symgrad.verify.cases import has_kinks
from symgrad.verify.exact import ExactProver
from symgrad.verify.index_form import IndexProver, NotGeneric
from symgrad.verify.numeric import DIGITS, TOLERANCE_DIGITS, NumericError, NumericProgram, agree, is_finite
from symgrad.verify.rational import ExactEvaluator, NotExact, Undefined, is_zero, shown, to_fraction

NUMERIC_POINTS = 2
UNDECIDED_POINTS = 24  # more points for entries the exact check could not decide (cheap: only those)
MAX_EXTRA_POINTS = 10  # points drawn in place of ones where a side is not finite
EXACT_POINTS = 4  # exact evaluations per undecided entry
MAX_NUMERIC_ENTRIES = 12  # per step: the numeric check is the independent second opinion
LARGE_RANGE = 16  # beyond this length, entries are never written out one by one
LARGE_NUMERIC_ENTRIES = 4  # 50-digit entries per step where the float screen has seen all
MAX_SCREEN_ENTRIES = 4 * 1024 * 1024  # the float screen's grid (numpy arrays of this many floats)

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


class _Program(NumericProgram):
    """``NumericProgram`` whose random points are looked up by the elimination's identity (the
    checker's eliminations are cached objects) before its own key, which prints every solution
    (y_n = 1 − Σ of n − 1 others: 0.2 s at n = 1024, at every step)."""

    def __init__(self, concrete):
        super().__init__(concrete)
        self._by_identity: dict = {}

    def point(self, number: int, elimination: dict):
        key = (number, id(elimination))
        if key not in self._by_identity:
            self._by_identity[key] = (elimination, super().point(number, elimination))
        return self._by_identity[key][1]


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
        self.numeric = _Program(self.concrete)
        self.exact = ExactEvaluator(self.concrete)
        self.index_prover = IndexProver(model) if index_proofs else None
        self.proven_sides: dict = {}  # lhs → matrix-level right-hand sides proven equal to it
        self._grids: dict = {}  # the float screen's model at each random point
        self._proofs: dict = {}  # index-form claims already decided (``_proof_key``)

    def check(self, step: Step, seed: str) -> Check:
        elimination = self.concrete.joint_elimination(tuple(step.assumptions))
        general = self._index_proof(step)
        large = self._large(step)
        if general is not None and general.proven:
            lhs, rhs, free = self.index_prover.index_form(step)
            # the same sample of index values for every step over the same ranges, so the
            # numeric check reuses what it computed for the previous step
            ranges = [self.model.range_of(index) for index in free]
            sampler = random.Random(f"{self.model.name}:{sorted(self.model.sizes.items())}:{ranges}")
            total, values = self._sample_indices(free, sampler)
            screen, screen_text = self._screen(lhs, rhs, free, elimination)
            if screen is False:
                return Check(False, False, screen_text)
            if screen is True:
                # the float screen has evaluated every entry at these points; the 50-digit check
                # looks at a few of them (at n = 16 its numerical derivatives of a loss over
                # 256 terms were two thirds of the layer's time), and at a large size only at
                # entries whose evaluation stays O(n) (a sum of n numerical derivatives, each
                # O(n), would be O(n²) per entry)
                if large:
                    values = [v for v in values if not _large_sum(lhs.xreplace(v))
                              and not _large_sum(rhs.xreplace(v))]
                values = values[:LARGE_NUMERIC_ENTRIES]
            try:
                entries = [(self.concrete.explicit(lhs.xreplace(v)), self.concrete.explicit(rhs.xreplace(v)))
                           for v in values]
            except (ValueError, TypeError) as error:
                return Check(None, None, f"could not make the step explicit: {error}")
            if entries:
                numeric, counterexample = numeric_check(self.numeric, entries, range(len(entries)), elimination,
                                                        exact=self.exact)
            else:
                numeric, counterexample = True, ""
            if numeric is False:
                return Check(False, False, f"refuted numerically: {counterexample}")
            regional, region_text = region_check(self.numeric, self.prover, entries, range(len(entries)),
                                                 elimination, seed, self.exact)
            if regional is False:
                return Check(False, False, region_text)
            self.prover.remember_template(lhs, rhs, free, step.assumptions)
            self._remember_side(step)
            where = _entries(total)
            parts = [f"exact: all {where}, in index form", *general.used]
            if entries or screen is not True:
                parts.append(_numeric_text(numeric, counterexample, len(entries), where))
            if screen_text:
                parts.append(screen_text)
            if region_text:
                parts.append(region_text)
            return Check(True, numeric, "; ".join(parts))
        if large:
            # not proven in index form, and too large to write out entry by entry: the float
            # screen looks at every entry for a counterexample; without one it stays undecided
            try:
                lhs, rhs, free = self.index_prover.index_form(step)
            except (NotGeneric, TypeError, ValueError) as error:
                return Check(None, None, f"not proven: no index form ({error}), and too large to write out")
            screen, screen_text = self._screen(lhs, rhs, free, elimination)
            if screen is False:
                return Check(False, False, screen_text)
            reason = general.reason if general is not None else "no index form"
            return Check(None, screen, f"exact: not proven in index form ({reason}); "
                                       + (screen_text or "numeric: not evaluated"))
        congruent = self._factor_by_factor(step, seed)
        if congruent is not None:
            return congruent
        check = check_step(self.concrete, self.prover, self.numeric, step, seed, self.exact)
        if check.exact:
            self._remember_side(step)
        return check

    def numeric_only(self, step: Step, seed: str) -> Check:
        """``numeric_step_check`` with this checker's model (see there)."""
        return numeric_step_check(self.concrete, self.prover, self.numeric, step, seed, self.exact)

    def _large(self, step: Step) -> bool:
        """A step over an index range longer than ``LARGE_RANGE`` (or holding a template matrix
        that long): its entries are never written out one by one."""
        sides = [step.lhs, step.rhs]
        dims = [d for side in sides if isinstance(side, MatrixExpr) for d in side.shape]
        dims += [self.model.range_of(x) for x in step.free_indices]
        dims += [d for side in sides for t in side.atoms(TemplateMatrix) for d in t.shape]
        return any(getattr(d, "is_Integer", False) and int(d) > LARGE_RANGE for d in dims)

    def _screen(self, lhs, rhs, free, elimination) -> tuple[bool | None, str]:
        """The float screen of every entry (``grid.py``) at the random points of the numeric
        check: (False, counterexample) on a disagreement confirmed at 50 digits or exactly;
        (True, what was done); (None, "") where the screen does not apply."""
        ranges = [self.model.range_of(index) for index in free]
        try:
            total = 1
            for bound in ranges:
                total *= int(bound)
        except TypeError:
            return None, ""
        if total <= MAX_NUMERIC_ENTRIES:
            return None, ""  # the 50-digit check evaluates every entry: a float screen adds nothing
        # numpy (0.1 s to import) only for a step with more entries than that
        import numpy

        from symgrad.verify.grid import GridModel, Unsupported, base_arrays, disagreements
        from symgrad.verify.grid import supports as grid_supports
        if total > MAX_SCREEN_ENTRIES or _model_has_kinks(self.model) or not grid_supports(self.model):
            return None, ""
        points = 0
        for number in range(NUMERIC_POINTS):
            try:
                # a value outside a function's domain (log of a negative pre-activation) is a NaN
                # the screen skips, not a warning for the user: numpy is silenced for all of it
                with numpy.errstate(all="ignore"):
                    key = (number, id(elimination))
                    grid = self._grids.get(key, (None, None))[1]
                    if grid is None:
                        state = self.numeric.point(number, elimination)
                        base = [float(v) for v in state.values[:len(self.numeric.base)]]
                        grid = GridModel(self.model, base_arrays(self.model, base))
                        self._grids[key] = (elimination, grid)  # (the elimination kept alive: its id is the key)
                    left, right = grid.grid(lhs, free, ranges), grid.grid(rhs, free, ranges)
            except (Unsupported, ZeroDivisionError, NumericError, ValueError, TypeError, IndexError,
                    KeyError, OverflowError):
                return None, ""
            bad = disagreements(left, right)
            if len(bad):
                where = {index: Integer(int(k) + 1) for index, k in zip(free, bad[0])}
                entry = [(self.concrete.explicit(lhs.xreplace(where)), self.concrete.explicit(rhs.xreplace(where)))]
                verdict, text = numeric_check(self.numeric, entry, [0], elimination, range(number, number + 1),
                                              exact=self.exact)
                if verdict is False:
                    at = ", ".join(f"{index} = {value}" for index, value in where.items())
                    return False, f"refuted numerically (float screen of every entry, then 50 digits) at {at}: {text}"
            points += 1
        return True, (f"float screen: all {_entries(total)} at {points} random points (numpy; derivatives "
                      "by complex step)")

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
        numeric, counterexample = numeric_check(self.numeric, entries, range(len(entries)), {}, exact=self.exact)
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
            key = self._proof_key(step)
        except NotGeneric:
            return None
        if key is not None and key in self._proofs:
            return self._proofs[key]  # the same identity, its indices named differently (∂a_i/∂z_j thrice)
        try:
            result = self.index_prover.prove(step, equations)
        except NotGeneric:
            return None
        if key is not None:
            self._proofs[key] = result
        return result

    def _proof_key(self, step: Step):
        """The step's index form with its free indices renamed by position (and their ranges),
        under its assumptions: equal keys are the same claim."""
        lhs, rhs, free = self.index_prover.index_form(step)
        placeholders = [Symbol(f"ι{k}", integer=True, positive=True) for k in range(len(free))]
        if any(p in lhs.free_symbols | rhs.free_symbols for p in placeholders):
            return None
        rename = dict(zip(free, placeholders))
        return (lhs.xreplace(rename), rhs.xreplace(rename), tuple(self.model.range_of(x) for x in free),
                tuple(sorted(step.assumptions)))

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


def _large_sum(expr) -> bool:
    """A sum over a range longer than ``LARGE_RANGE``: written out, its n terms cost O(n) SymPy
    objects per entry (and with a derivative inside, n numerical derivatives, each O(n))."""
    return any(any(getattr(hi - lo, "is_Integer", False) and int(hi - lo) >= LARGE_RANGE
                   for _, lo, hi in t.limits)
               for t in expr.atoms(Sum)) or bool(expr.atoms(SumExcluding))


def _is_product(expr) -> bool:
    return isinstance(expr, MatMul) and sum(isinstance(f, MatrixExpr) for f in expr.args) > 1


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def _numeric_text(numeric, reason: str, sampled: int, where: str, points: int = NUMERIC_POINTS) -> str:
    if numeric is None:
        return f"numeric: not evaluated ({reason})"
    return (f"numeric: {sampled} of {where} at {points} random points, "
            f"{TOLERANCE_DIGITS} of {DIGITS} digits" + (f" ({reason})" if reason else ""))


def check_step(concrete: ConcreteModel, prover: ExactProver, program: NumericProgram, step: Step,
               seed: str, exact: ExactEvaluator | None = None) -> Check:
    """Check one step entry by entry, at every value of its free indices.

    Numeric first (a wrong step is refuted in milliseconds instead of being fed to the symbolic
    fall-backs); then the exact prover; an entry it cannot decide is evaluated exactly at
    rational points (a non-zero exact difference refutes it) and numerically at more points."""
    exact = exact or ExactEvaluator(concrete)
    screened = _screened_entries(concrete, prover, program, step, seed, exact)
    if isinstance(screened, Check):
        return screened
    entries, sample, elimination, numeric, counterexample, region_text = screened
    where = _entries(len(entries))

    assumptions = frozenset(step.assumptions)
    notes_before = len(prover.case_notes)
    unproven = [k for k, (left, right) in enumerate(entries)
                if not prover.prove(left, right, elimination, assumptions)]
    by_cases = list(dict.fromkeys(prover.case_notes[notes_before:]))
    points = NUMERIC_POINTS
    evidence = ""
    if unproven:
        looked_at = unproven[:MAX_NUMERIC_ENTRIES]
        refuted, evidence = case_refutation(program, prover, entries, looked_at, elimination, seed, exact)
        if refuted is False:
            return Check(False, False, evidence)
        refuted, evidence = exact_refutation(exact, entries, looked_at, elimination, seed)
        if refuted is False:
            return Check(False, numeric, evidence)
        # the undecided entries get a numeric look of their own, at more points
        more, reason = numeric_check(program, entries, looked_at, elimination,
                                     range(NUMERIC_POINTS, NUMERIC_POINTS + UNDECIDED_POINTS), exact)
        if more is False:
            return Check(False, False, f"refuted numerically: {reason}")
        if more is None and numeric is not None:
            numeric, counterexample = None, reason
        sample = sorted(set(sample) | set(looked_at))
        points += UNDECIDED_POINTS

    proven = True if not unproven else None
    parts = [f"exact: {'all ' + where if proven else f'{len(unproven)} of {where} not proven'}", *by_cases,
             _numeric_text(numeric, counterexample, len(sample), where,
                           NUMERIC_POINTS if not unproven else points)]
    if region_text:
        parts.append(region_text)
    if evidence:
        parts.append(evidence)
    return Check(proven, numeric, "; ".join(parts))


def numeric_step_check(concrete: ConcreteModel, prover: ExactProver, program: NumericProgram, step: Step,
                       seed: str, exact: ExactEvaluator | None = None) -> Check:
    """The numeric half of ``check_step`` alone: sampled entries at random points, and each
    entry with kinks inside every region between them. Never proven (``exact`` is None): for an
    instance of a step already proven for every size in index notation, which its instances
    follow from without being proven again."""
    screened = _screened_entries(concrete, prover, program, step, seed, exact or ExactEvaluator(concrete))
    if isinstance(screened, Check):
        return screened
    entries, sample, _, numeric, counterexample, region_text = screened
    parts = [_numeric_text(numeric, counterexample, len(sample), _entries(len(entries)))]
    if region_text:
        parts.append(region_text)
    return Check(None, numeric, "; ".join(parts))


def _screened_entries(concrete, prover, program, step, seed, exact):
    """The step's entries written out, and the numeric and by-region checks of a sample of them:
    a refuting ``Check``, or (entries, sample, elimination, numeric, counterexample, region text)."""
    try:
        _, lhs, rhs = concrete.instances(step)
    except (ValueError, TypeError) as error:
        return Check(None, None, f"could not make the step explicit: {error}")
    elimination = concrete.joint_elimination(tuple(step.assumptions))
    entries = list(zip(lhs, rhs))
    rng = random.Random(seed)
    sample = sorted(rng.sample(range(len(entries)), min(len(entries), MAX_NUMERIC_ENTRIES)))
    numeric, counterexample = numeric_check(program, entries, sample, elimination, exact=exact)
    if numeric is False:
        return Check(False, False, f"refuted numerically: {counterexample}")
    regional, region_text = region_check(program, prover, entries, sample, elimination, seed, exact)
    if regional is False:
        return Check(False, False, region_text)
    return entries, sample, elimination, numeric, counterexample, region_text


def numeric_check(program: NumericProgram, entries, sample, elimination, points: range | None = None,
                  exact: ExactEvaluator | None = None) -> tuple[bool | None, str]:
    """Compare both sides at random points; on a *confirmed* disagreement return the counterexample.

    A point where a side is not finite (±∞, NaN, a division by zero) says nothing: further
    points are drawn (at most ``MAX_EXTRA_POINTS`` more) until each entry has been compared at
    ``len(points)`` finite points, or at one at least. A disagreement in 50 digits refutes only
    once confirmed at the same point — exactly (``ExactEvaluator``, the point's coordinates
    are binary fractions) or, failing that, by a difference that stays the same as the
    precision rises (``NumericProgram.confirm``); a disagreement that is neither confirmed nor
    resolved leaves the numeric check undecided."""
    points = points if points is not None else range(NUMERIC_POINTS)
    wanted = len(points)
    compared = dict.fromkeys(sample, 0)
    resolved: set[str] = set()  # how 50-digit disagreements were shown to be rounding
    with mpmath.workdps(DIGITS):
        try:
            compiled = {k: (program.compile(entries[k][0]), program.compile(entries[k][1])) for k in sample}
        except (NumericError, ValueError, TypeError) as error:
            return None, str(error)
        tried = 0
        for number in itertools.chain(points, range(points.stop, points.stop + MAX_EXTRA_POINTS)):
            if all(c >= wanted for c in compared.values()):
                break
            tried += 1
            try:
                state = program.point(number, elimination)
            except ZeroDivisionError:
                continue
            except (NumericError, ValueError) as error:
                return None, str(error)
            for k, (left, right) in compiled.items():
                if compared[k] >= wanted:
                    continue
                try:
                    lv, rv = left(state), right(state)
                except ZeroDivisionError:
                    continue
                except (NumericError, ValueError, TypeError) as error:
                    return None, str(error)
                if not (is_finite(lv) and is_finite(rv)):
                    continue
                if not agree(lv, rv):
                    verdict, confirmed = _confirm(program, exact, entries[k], (left, right), state, elimination)
                    if verdict == "differ":
                        how = "exactly" if confirmed[2] == "exact" else f"at {confirmed[2]} digits"
                        return False, (counterexample_text(program, state, entries[k], k, *confirmed[:2])
                                       + f" (confirmed {how})")
                    if verdict == "unstable":
                        return None, (f"entry {k + 1} differs in {DIGITS} digits at a point, but the difference "
                                      f"was not stable up to {confirmed} digits (cancellation?): not a counterexample")
                    resolved.add("exactly" if confirmed == "exact" else f"at {confirmed} digits")
                compared[k] += 1
        nowhere = [k for k, c in compared.items() if c == 0]
        if nowhere:
            return None, (f"the identity is defined nowhere in the sampled region (entry {nowhere[0] + 1} "
                          f"is not finite at any of {tried} points)")
    if resolved:
        return True, (f"a {DIGITS}-digit disagreement was rounding (equal when evaluated "
                      f"{' and '.join(sorted(resolved))})")
    return True, ""


def _confirm(program, exact, entry, compiled, state, elimination):
    """("differ", (lv, rv)), ("agree", digits) or ("unstable", digits) for a 50-digit disagreement."""
    if exact is not None:
        point = {atom: to_fraction(state.values[program.slots[atom]])
                 for atom in program.base if atom not in elimination}
        try:
            for atom, solution in elimination.items():
                point[atom] = exact.value(solution, point, {})
            difference = exact.difference(entry[0], entry[1], point, {})
            if is_zero(difference):
                return "agree", "exact"
            with mpmath.workdps(DIGITS):
                lv, rv = compiled[0](state), compiled[1](state)
            return "differ", (lv, rv, "exact")
        except (NotExact, Undefined):
            pass
    return program.confirm(compiled[0], compiled[1], state, elimination)


MAX_REGION_ENTRIES = 4  # entries with kinks evaluated at a point inside every region


def region_check(program: NumericProgram, prover: ExactProver, entries, sample, elimination, seed: str,
                 exact: ExactEvaluator | None = None) -> tuple[bool | None, str]:
    """The numeric check in every region between the kinks: both sides at a point strictly
    inside each region (found exactly for linear kinks, however far away), never at a kink.
    (False, counterexample) on a confirmed disagreement; (True, what was done); (None, "") when
    no entry has kinks."""
    with_kinks = [k for k in sample if has_kinks(entries[k][0]) or has_kinks(entries[k][1])
                  or _unfolds_to_kinks(prover, entries[k])][:MAX_REGION_ENTRIES]
    if not with_kinks:
        return None, ""
    compared, regions_seen = 0, 0
    for k in with_kinks:
        left, right = entries[k]
        try:
            witnesses = prover.case_witnesses(left, right, elimination, every_region=True)
            compiled = (program.compile(left), program.compile(right))
        except (NumericError, TypeError, ValueError, KeyError, NotImplementedError, RecursionError):
            continue
        rng = random.Random(f"regions:{seed}:{k}")
        regions_seen = max(regions_seen, len(witnesses))
        for region, point in witnesses:
            with mpmath.workdps(DIGITS):
                evaluated = _at_witness(program, compiled, point, rng, elimination)
                if evaluated is None:
                    continue
                compared += 1
                refuted = _refuted_at(program, exact, entries[k], k, compiled, evaluated, elimination, region)
                if refuted:
                    return False, refuted
    if not compared:
        return None, ""
    return True, (f"numeric by region: {len(with_kinks)} entr{'y' if len(with_kinks) == 1 else 'ies'} with kinks "
                  f"at a point inside each region between the kinks (up to {regions_seen}), never at a kink")


def _at_witness(program: NumericProgram, compiled, point: dict, rng: random.Random, elimination):
    """(state, lhs, rhs) at a region's witness point (the variables it leaves free drawn from
    ``rng``), or None where either side cannot be evaluated to a finite real number there."""
    base = [mpmath.mpf(point[atom].numerator) / point[atom].denominator if atom in point
            else mpmath.mpf(rng.randint(-2 ** 20, 2 ** 20)) / 2 ** 19 for atom in program.base]
    try:
        state = program.state_from(base, elimination)
        lv, rv = compiled[0](state), compiled[1](state)
    except (ZeroDivisionError, NumericError, ValueError, TypeError):
        return None
    if not (is_finite(lv) and is_finite(rv)) or not (_real(lv) and _real(rv)):
        return None  # a real side evaluated to a complex number: the evaluation broke down there
    return state, lv, rv


def _refuted_at(program, exact, entry, k: int, compiled, evaluated, elimination, region) -> str:
    """The counterexample text when the two sides differ at the witness, confirmed exactly or at
    rising precision; "" when they agree or the difference is not confirmed."""
    state, lv, rv = evaluated
    if agree(lv, rv):
        return ""
    verdict, confirmed = _confirm(program, exact, entry, compiled, state, elimination)
    if verdict != "differ":
        return ""
    how = "exactly" if confirmed[2] == "exact" else f"at {confirmed[2]} digits"
    return (f"refuted by cases, in the region {region}: "
            + counterexample_text(program, state, entry, k, *confirmed[:2]) + f" (confirmed {how})")


def _real(value) -> bool:
    """Every side of a step is real; a complex value at a far-away point (e^{-10^4} underflowing
    inside a numerical derivative) is a breakdown of the evaluation there, not a counterexample."""
    return not isinstance(value, mpmath.mpc) or value.imag == 0


def _unfolds_to_kinks(prover: ExactProver, entry) -> bool:
    if not _model_has_kinks(prover.concrete.model):
        return False  # unfolding puts in definitions only, and none of them has a kink
    try:
        return has_kinks(prover._prepared(entry[0] - entry[1], {}))
    except (TypeError, ValueError, KeyError, NotImplementedError, RecursionError):
        return False


_KINKS_OF_MODEL: dict[int, tuple] = {}


def _model_has_kinks(model) -> bool:
    """Whether any definition (or assumption) of the model has a kink: when none has, no entry
    can gain one by unfolding (a model is immutable once built; keyed by identity)."""
    known = _KINKS_OF_MODEL.get(id(model))
    if known is None or known[0] is not model:
        known = (model, any(has_kinks(d.body) for d in model.definitions)
                 or any(has_kinks(a.equation) for a in model.assumptions.values()))
        _KINKS_OF_MODEL[id(model)] = known
    return known[1]


def case_refutation(program: NumericProgram, prover: ExactProver, entries, sample, elimination, seed: str,
                    exact: ExactEvaluator | None = None) -> tuple[bool | None, str]:
    """For entries with kinks: evaluate both sides at a point inside every region where they
    are not proven equal — however far from the usual sampling range that region lies
    (relu(x − 1000) = 0 is false only for x > 1000). A disagreement confirmed there refutes."""
    for k in sample:
        left, right = entries[k]
        try:
            witnesses = prover.case_witnesses(left, right, elimination)
        except (TypeError, ValueError, KeyError, NotImplementedError, RecursionError):
            continue
        if not witnesses:
            continue
        try:
            compiled = (program.compile(left), program.compile(right))
        except (NumericError, ValueError, TypeError):
            continue
        rng = random.Random(f"cases:{seed}:{k}")
        for region, point in witnesses:
            with mpmath.workdps(DIGITS):
                evaluated = _at_witness(program, compiled, point, rng, elimination)
                refuted = evaluated and _refuted_at(program, exact, entries[k], k, compiled, evaluated,
                                                    elimination, region)
                if refuted:
                    return False, refuted
    return None, ""


def exact_refutation(evaluator: ExactEvaluator, entries, sample, elimination, seed: str,
                     points: int = EXACT_POINTS) -> tuple[bool | None, str]:
    """Evaluate sampled entries exactly at points where every exponential is rational.

    (False, counterexample) when some entry's exact difference is not 0 — a refutation;
    (None, text) when every entry that could be evaluated was equal at every point tried — the
    Schwartz–Zippel argument, evidence and not a proof; (None, "") when nothing could be
    evaluated exactly."""
    rng = random.Random(f"exact:{seed}")
    equal = 0
    for k in sample:
        left, right = entries[k]
        variables = evaluator.exponential_variables([left, right])
        agreed = 0
        for _ in range(points):
            try:
                point, shown_as = evaluator.point(rng, variables, elimination)
                difference = evaluator.difference(left, right, point, {})
                zero = is_zero(difference)
            except Undefined:
                continue
            except NotExact:
                break
            if not zero:
                where = ", ".join(f"{atom} = {text}" for atom, text in list(shown_as.items())[:8])
                more = " …" if len(shown_as) > 8 else ""
                return False, (f"refuted exactly: entry {k + 1} at {where}{more}: "
                               f"lhs − rhs = {shown(difference)}")
            agreed += 1
        equal += agreed > 0
    if not equal:
        return None, ""
    return None, (f"random exact evaluation (Schwartz–Zippel, not a proof): {equal} of {len(sample)} "
                  f"entr{'y' if len(sample) == 1 else 'ies'} equal at up to {points} rational points")


def counterexample_text(program: NumericProgram, state, entry, k, lv, rv) -> str:
    shown_values = ", ".join(f"{atom} = {mpmath.nstr(state.values[slot], 8)}"
                             for atom, slot in list(program.slots.items())[:min(8, len(program.base))])
    more = " …" if len(program.base) > 8 else ""
    left, right = entry
    return (f"entry {k + 1}: {left} = {mpmath.nstr(lv, 12)} but {right} = {mpmath.nstr(rv, 12)} "
            f"at {shown_values}{more}{_where(program, entry)}")


def _where(program: NumericProgram, entry) -> str:
    """The definitions of the named scalars an entry is written in (S_1 for Σ_K e^{z_K}), which
    the reader of a counterexample has not seen anywhere else."""
    model = program.concrete.model
    named = sorted({x for side in entry for x in side.free_symbols
                    if isinstance(x, Symbol) and model.is_abbreviation(x)}, key=str)
    if not named:
        return ""
    return " (where " + ", ".join(f"{x} = {model.definition_for(x)}" for x in named) + ")"
