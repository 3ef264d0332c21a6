"""Checking a derivation whose sizes are symbols: a proof for all sizes, plus instances.

Each step is (1) proven in index notation for every value of the size symbols by
``IndexProver`` and (2), independently, instantiated at a few concrete sizes and evaluated
there numerically (at random points, and inside every region between kinks). An instance of a
proven step follows from the proof and is not proven again (proving the n = 8 instance entry by
entry took 10 times as long as the proof for every n). A step the index prover leaves open is
checked exactly at each instance instead; proven only there, it is labelled so
(``Check.scope``) and is *not* counted as proven: a pattern at a few sizes is evidence, not a
proof for all sizes.
"""

from __future__ import annotations

from functools import lru_cache

from sympy import srepr

from symgrad.memo import remember
from symgrad.notation import plain_sympy
from symgrad.steps import Check, Derivation, Step
from symgrad.verify.index_form import IndexProver, IndexResult, NotGeneric, readable

INSTANCE_SIZES = (1, 2, 3, 5, 8)
# a step proven for every size is evaluated at the instances no larger than this (n = 1, 2, 3):
# the larger ones cost most, and the proof, not the sample, is what covers every n
PROVEN_INSTANCE_SIZE = 3
# several symbols (n, p, m): every entry of every instance is checked, so the count stays small
EQUAL_SIZES = (1, 2, 3)
ROTATED_SIZES = (3, 2, 1)


def instances(names: list[str]) -> list[dict[str, int]]:
    """The size combinations a step is instantiated at, in a fixed order.

    One symbol: n = 1, 2, 3, 5, 8. Several: all sizes equal (1, 2, 3), then the rotations of
    (3, 2, 1) — n = 3, p = 2, m = 1 and so on — because instances with equal sizes alone cannot
    tell W Xᵀ from Wᵀ X: a transposed factor is refuted only where the sizes differ."""
    if len(names) == 1:
        return [{names[0]: n} for n in INSTANCE_SIZES]
    out = [{name: n for name in names} for n in EQUAL_SIZES]
    for shift in range(len(ROTATED_SIZES)):
        out.append({name: ROTATED_SIZES[(k + shift) % len(ROTATED_SIZES)] for k, name in enumerate(names)})
    return out


def with_parameters(model, sizes: list[dict[str, int]]) -> list[dict[str, int]]:
    """Each size instance with every model parameter (K in 1..n) at its first, middle and last
    value there: n = 3 gives K = 1, 2, 3."""
    out = []
    for values in sizes:
        combos = [dict(values)]
        for x, bound in model.parameters.items():
            top = int(bound.xreplace({s: values[name] for name, s in model.size_symbols().items()}))
            combos = [{**c, x.name: k} for c in combos for k in sorted({1, (top + 1) // 2, top})]
        out += combos
    return out


def check_symbolic_derivation(derivation: Derivation, progress=None) -> Derivation:
    from symgrad.verify import StepChecker

    model = derivation.model
    symbols = dict(sorted(model.size_symbols().items(), key=lambda item: _size_order(model, item[0])))
    names = list(symbols)
    prover = shared_prover(model)
    # entry by entry at each instance: an independent route, not the index prover again
    content = model.digest()
    checkers = [(values, StepChecker(_instance_model(model, values, content), index_proofs=False))
                for values in with_parameters(model, instances(names))]
    symbols.update({x.name: x for x in model.parameters})
    checked = []
    for number, step in enumerate(derivation.steps, start=1):
        if progress:
            progress(number, len(derivation.steps), step.title)
        equations = [model.assumptions[name].equation for name in step.assumptions]
        try:
            general = prover.prove(step, equations)
        except NotGeneric as error:  # no index form: the instances alone, never a proof for all sizes
            general = IndexResult(False, [], f"no index form: {error}")
        at = []
        # a step that does not mention a parameter (K) is the same at every value of it: once per size
        mentioned = {x.name for x in model.parameters
                     if any(side.has(x) for side in (step.lhs, step.rhs, *equations))}
        seen = set()
        digest = _step_digest(step)
        for values, checker in checkers:
            if general.proven and any(values[name] > PROVEN_INSTANCE_SIZE for name in names):
                continue
            key = tuple((name, value) for name, value in values.items()
                        if name in names or name in mentioned)
            if key in seen:
                continue
            seen.add(key)
            values = dict(key)
            # proven for every size: the instances follow from the proof and are evaluated
            # numerically only; unproven: each instance is checked exactly, for the report
            at.append((values, _instance_check(checker, step, digest, values, symbols,
                                               numeric_only=general.proven)))
            if _refutes(at[-1][1]):
                # one counterexample settles the step; the later instances could only cost time
                # (a wrong step can be slow to decide at a size where it indexes past a shape)
                break
        every = names + [x.name for x in model.parameters if x.name in mentioned]
        checked.append(step.with_check(_combine(general, at, every)))
    return derivation.with_steps(checked)


# numeric checks of instances of proven steps, kept for the process: an identity that lists
# n = 1, 2 or 3 beside "symbolic" is an instance of its proof for every n, and its steps were
# already evaluated there (``check_instance``); the three gradients of one layer share their
# first fifteen steps. A numeric check depends on nothing but its key — the model's content
# (which, through ``_instance_model``, also seeds its points), the step and the seed — unlike a
# full check, which may use steps proven before it, so only numeric checks are kept.
_NUMERIC_INSTANCE_CHECKS: dict = {}
_KEPT_NUMERIC_CHECKS = 4096


def _instance_model(model, values: dict[str, int], content: str):
    """The model at these sizes, named by its content: its random points are then those of any
    identity whose derivation has the same model, whatever the identity is called."""
    from dataclasses import replace

    return replace(model.at_size(**values), name=f"model {content}")


def _instance_check(checker, step: Step, digest: str, values: dict[str, int], symbols: dict,
                    numeric_only: bool) -> Check:
    """The step at one assignment of the sizes (and parameters) in ``values``, seeded by what
    the step says (not by its number or its derivation's name, so that a step two derivations
    share is the same check in both)."""
    seed = f"{_label(values)}:{digest}"
    instance = _at_size(step, {symbols[key]: value for key, value in values.items()})
    if not numeric_only:
        return checker.check(instance, seed)
    key = (checker.model.fingerprint(), checker.model.name, seed, instance.lhs, instance.rhs,
           tuple(instance.assumptions), tuple(instance.free_indices))
    kept = _NUMERIC_INSTANCE_CHECKS.get(key)
    if kept is None:
        kept = remember(_NUMERIC_INSTANCE_CHECKS, key, checker.numeric_only(instance, seed), _KEPT_NUMERIC_CHECKS)
    return kept


def _step_digest(step: Step) -> str:
    """What the step says as a short stable text (its sides, assumptions and free indices)."""
    return _digest(step.lhs, step.rhs, tuple(step.assumptions), tuple(step.free_indices))


@lru_cache(maxsize=4096)
def _digest(lhs, rhs, assumptions: tuple, free: tuple) -> str:
    import hashlib

    text = "\n".join([srepr(lhs), srepr(rhs), repr(assumptions), srepr(free)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# index provers by model content: the derivations of one layer's three gradients have one model
# (up to its name), and a prover keeps its normal forms and verdicts
_PROVERS: dict = {}
_KEPT_PROVERS = 8


def shared_prover(model) -> IndexProver:
    """The ``IndexProver`` of this model's content, kept for the process."""
    key = model.fingerprint()
    prover = _PROVERS.get(key)
    return prover if prover is not None else remember(_PROVERS, key, IndexProver(model), _KEPT_PROVERS)


def check_instance(derivation: Derivation, values: dict[str, int]) -> list[Check]:
    """Every step of a derivation *proven for every size* evaluated numerically at one
    assignment of its sizes (n = 3, p = 2, m = 2): an identity listing such a size beside
    "symbolic" gets its exact part from the proof, as the instances above do, instead of
    proving the same steps again at that size. Not for a model with parameters (K in 1..n)."""
    from symgrad.verify import StepChecker

    model = derivation.model
    assert derivation.proven and not model.parameters, "an instance of a proof for every size only"
    symbols = model.size_symbols()
    checker = StepChecker(_instance_model(model, values, model.digest()), index_proofs=False)
    checks = []
    for step in derivation.steps:
        checks.append(_instance_check(checker, step, _step_digest(step), values, symbols, numeric_only=True))
        if _refutes(checks[-1]):
            break
    return checks


def _size_order(model, name: str) -> tuple:
    """Size names in the order the model declares them (n, p, m), then by name."""
    order = list(model.sizes)
    return (order.index(name) if name in order else len(order), name)


def _refutes(check: Check) -> bool:
    return check.exact is False or check.numeric is False


def _label(values: dict[str, int]) -> str:
    return ", ".join(f"{name} = {value}" for name, value in values.items())


def _at_size(step: Step, mapping: dict) -> Step:
    from dataclasses import replace

    return replace(step, lhs=step.lhs.xreplace(mapping), rhs=step.rhs.xreplace(mapping))


def _combine(general, at: list[tuple[dict, Check]], names: list[str]) -> Check:
    every = ", ".join(names)
    if len(names) == 1 and all(set(values) == set(names) for values, _ in at):
        sizes = ", ".join(str(values[names[0]]) for values, _ in at)
        where = f"{every} = {sizes}"
        not_every = f"not proven at every {every} in {sizes}"
    else:
        where = "; ".join(f"({_label(values)})" for values, _ in at)
        not_every = f"not proven at every instance {where}"
    refuted = [(values, c) for values, c in at if _refutes(c)]
    if refuted:
        values, c = refuted[0]
        return Check(False, False, f"refuted at {_label(values)}: {c.detail}")
    numeric = True if all(c.numeric is True for _, c in at) else None
    if general.proven:
        detail = "; ".join([f"exact: for all {every} in index notation", *general.used,
                            f"numeric at {where}"])
        return Check(True, numeric, detail, scope=f"all {every}")
    all_exact = all(c.exact is True for _, c in at)
    instance_text = f"exact at {where}" if all_exact else not_every
    reason = general.reason or "the index-notation check did not reduce to 0"
    detail = f"symbolic check undecided ({reason}); {instance_text}"
    scope = f"instantiation only: {where}" if all_exact else ""
    return Check(None, numeric, detail, scope=scope)


def symbolic_certificate_parts(derivation: Derivation):
    """Definitions, assumptions and each step's sides as index templates (srepr)."""
    model = derivation.model
    prover = IndexProver(model)
    definitions = {srepr(d.template_lhs()): srepr(readable(prover.base_form(d.body)))
                   for d in model.definitions}
    direct = {srepr(d.template_lhs()): srepr(d.body) for d in model.definitions}
    assumptions = {name: srepr(a.equation) for name, a in model.assumptions.items()}
    sides = []
    for step in derivation.steps:
        lhs, rhs, free = prover.index_form(step)
        sides.append((srepr(plain_sympy(lhs)), srepr(plain_sympy(rhs)), free))
    return definitions, direct, assumptions, sides
