"""Stage 4 — the JSON certificate: everything needed to re-check the derivation with SymPy
alone. Sides are ``srepr`` strings of explicit objects (matrices for vector/matrix sides);
``definitions`` give each abbreviation in the base variables, ``direct_definitions`` one level
down (what ∂L/∂a_i differentiates)."""

from __future__ import annotations

import json

from sympy import ImmutableMatrix, srepr

from symgrad.output.latex import PaperLatexPrinter, step_lines
from symgrad.steps import Derivation
from symgrad.verify.concrete import ConcreteModel

FORMAT_VERSION = 1


def certificate(derivation: Derivation) -> dict:
    model = derivation.model
    printer = PaperLatexPrinter()
    latex_lines = [line for _, line in step_lines(derivation, printer)]
    if model.symbolic:
        from symgrad.verify.symbolic import symbolic_certificate_parts

        definitions, direct, assumptions, sides = symbolic_certificate_parts(derivation)
        base = []
    else:
        concrete = ConcreteModel(model)
        entries = model.abbreviation_entries()
        definitions = {srepr(e): srepr(concrete.base_form(e)) for e in entries}
        direct = {srepr(e): srepr(concrete.explicit(model.definition_for(e), abbreviate=False))
                  for e in entries}
        assumptions = {name: srepr(concrete.explicit(a.equation, abbreviate=False))
                       for name, a in model.assumptions.items()}
        sides = []
        for step in derivation.steps:
            _, lhs, rhs = concrete.instances(step, abbreviate=False)
            sides.append((_side(lhs), _side(rhs), step.free_indices))
        base = [srepr(e) for e in model.base_entries()]
    steps = []
    for step, (lhs, rhs, free), latex in zip(derivation.steps, sides, latex_lines):
        check = step.check
        steps.append({
            "title": step.title,
            "rule": step.rule.value,
            "lhs": lhs,
            "rhs": rhs,
            "free_indices": [str(i) for i in free],
            "latex": latex,
            "assumptions": list(step.assumptions),
            "check": {"exact": check.exact if check else None,
                      "numeric": check.numeric if check else None,
                      "scope": check.scope if check else "",
                      "detail": check.detail if check else "not checked"},
        })
    return {
        "format": "symgrad-certificate",
        "version": FORMAT_VERSION,
        "derivation": derivation.name,
        "n": "symbolic" if model.symbolic else model.sizes.get("n"),
        "sizes": {k: (v if isinstance(v, int) else "symbolic") for k, v in model.sizes.items()},
        "convention": derivation.convention,
        "base_variables": base,
        "definitions": definitions,
        "direct_definitions": direct,
        "assumptions": assumptions,
        "steps": steps,
        "proven": derivation.proven,
        "notes": list(derivation.notes),
    }


def _side(matrix: ImmutableMatrix) -> str:
    """A 1 × 1 side is its single entry; anything else stays a Matrix."""
    if matrix.shape == (1, 1):
        return srepr(matrix[0, 0])
    return srepr(matrix)


def render_json(derivation: Derivation) -> str:
    return json.dumps(certificate(derivation), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


