"""Checking a derivation whose size n is a symbol: a proof for every n, plus instances.

Each step is (1) proven in index notation for all n by ``IndexProver`` and (2), independently,
instantiated at n = 1, 2, 3, 5, 8 and checked there exactly and numerically by the fixed-n
checker. A step proven only at the instances is labelled so (``Check.scope``) and is *not*
counted as proven: a pattern at five sizes is evidence, not a proof for all n.
"""

from __future__ import annotations

from sympy import srepr

from symgrad.notation import plain_sympy
from symgrad.steps import Check, Derivation, Step
from symgrad.verify.index_form import IndexProver, readable

INSTANCE_SIZES = (1, 2, 3, 5, 8)


def check_symbolic_derivation(derivation: Derivation, progress=None) -> Derivation:
    from symgrad.verify import StepChecker

    model = derivation.model
    (size_name, size), = model.size_symbols().items()
    prover = IndexProver(model)
    # entry by entry at each instance: an independent route, not the index prover again
    instances = {n: StepChecker(model.at_size(**{size_name: n}), index_proofs=False)
                 for n in INSTANCE_SIZES}
    checked = []
    for number, step in enumerate(derivation.steps, start=1):
        if progress:
            progress(number, len(derivation.steps), step.title)
        equations = [model.assumptions[name].equation for name in step.assumptions]
        general = prover.prove(step, equations)
        at = {}
        for n, checker in instances.items():
            seed = f"{derivation.name}:{size_name}={n}:{number}"
            at[n] = checker.check(_at_size(step, size, n), seed)
        checked.append(step.with_check(_combine(general, at, size_name)))
    return derivation.with_steps(checked)


def _at_size(step: Step, size, n: int) -> Step:
    from dataclasses import replace

    return replace(step, lhs=step.lhs.xreplace({size: n}), rhs=step.rhs.xreplace({size: n}))


def _combine(general, at: dict[int, Check], size_name: str) -> Check:
    sizes = ", ".join(str(n) for n in at)
    refuted = [(n, c) for n, c in at.items() if c.exact is False or c.numeric is False]
    if refuted:
        n, c = refuted[0]
        return Check(False, False, f"refuted at {size_name} = {n}: {c.detail}")
    all_exact = all(c.exact is True for c in at.values())
    numeric = True if all(c.numeric is True for c in at.values()) else None
    instance_text = (f"exact at {size_name} = {sizes}" if all_exact
                     else f"not proven at every {size_name} in {sizes}")
    if general.proven and all_exact:
        detail = "; ".join([f"exact: for all {size_name} in index notation", *general.used,
                            instance_text, f"numeric at {size_name} = {sizes}"])
        return Check(True, numeric, detail, scope=f"all {size_name}")
    reason = general.reason or "the index-notation check did not reduce to 0"
    detail = f"symbolic check undecided ({reason}); {instance_text}"
    scope = f"instantiation only: {size_name} = {sizes}" if all_exact else ""
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
