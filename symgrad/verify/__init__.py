"""Stage 3 of 4 — check every step of a derivation, exactly and numerically.

Each step gets a ``Check``: ``exact`` is True only when every entry was proven symbolically,
False when a numeric counterexample refutes it, None when neither happened. ``numeric`` is the
independent high-precision comparison at random points. Nothing is ever marked proven by default.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import mpmath

from symgrad.steps import Check, Derivation, Step
from symgrad.verify.concrete import ConcreteModel
from symgrad.verify.exact import ExactProver
from symgrad.verify.numeric import DIGITS, TOLERANCE_DIGITS, NumericError, NumericProgram, agree

NUMERIC_POINTS = 2
MAX_NUMERIC_ENTRIES = 24

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
    rely on an earlier one proven about the same left-hand side (transitivity)."""

    def __init__(self, model):
        self.concrete = ConcreteModel(model)
        self.prover = ExactProver(self.concrete)
        self.numeric = NumericProgram(self.concrete)

    def check(self, step: Step, seed: str) -> Check:
        return check_step(self.concrete, self.prover, self.numeric, step, seed)


def check_step(concrete: ConcreteModel, prover: ExactProver, program: NumericProgram, step: Step,
               seed: str) -> Check:
    """Check one step at every value of its free indices."""
    try:
        indices, lhs, rhs = concrete.instances(step)
    except (ValueError, TypeError) as error:
        return Check(None, None, f"could not make the step explicit: {error}")
    elimination = dict(concrete.elimination(name) for name in step.assumptions)
    entries = list(zip(lhs, rhs))
    unproven = [k for k, (left, right) in enumerate(entries) if not prover.prove(left, right, elimination)]

    rng = random.Random(seed)
    sample = sorted(set(unproven[:MAX_NUMERIC_ENTRIES]) | set(
        rng.sample(range(len(entries)), min(len(entries), MAX_NUMERIC_ENTRIES))))
    numeric, counterexample = numeric_check(program, entries, sample, elimination, rng)

    where = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
    if numeric is False:
        return Check(False, False, f"refuted numerically: {counterexample}")
    exact = True if not unproven else None
    parts = [f"exact: {'all ' + where if exact else f'{len(unproven)} of {where} not proven'}"]
    if numeric is None:
        parts.append(f"numeric: not evaluated ({counterexample})")
    else:
        parts.append(f"numeric: {len(sample)} of {where} at {NUMERIC_POINTS} random points, "
                     f"{TOLERANCE_DIGITS} of {DIGITS} digits")
    return Check(exact, numeric, "; ".join(parts))


def numeric_check(program: NumericProgram, entries, sample, elimination, rng) -> tuple[bool | None, str]:
    """Compare both sides at random points; on disagreement return the counterexample."""
    with mpmath.workdps(DIGITS):
        for _ in range(NUMERIC_POINTS):
            try:
                compiled = [(program.compile(entries[k][0]), program.compile(entries[k][1])) for k in sample]
                state = program.random_state(rng, elimination)
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
