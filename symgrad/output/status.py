"""One wording of a step's check status, shared by every output format."""

from __future__ import annotations

from symgrad.steps import Check


def status_words(check: Check | None) -> str:
    """e.g. "checked: exact, numeric" — never "checked" unless the check really passed."""
    if check is None:
        return "not checked"
    if check.exact is False or check.numeric is False:
        return "FAILED"
    exact = "exact" + (f" for {check.scope}" if check.scope and check.exact else "")
    done = [name for name, ok in ((exact, check.exact), ("numeric", check.numeric)) if ok]
    if check.exact is True:
        return "checked: " + ", ".join(done)
    if check.scope:
        return f"NOT PROVEN for all sizes (checked by {check.scope})"
    return "NOT PROVEN" + (" (numeric only)" if check.numeric else "")


def status_symbol(check: Check | None) -> str:
    if check is None:
        return "·"
    if check.exact is False or check.numeric is False:
        return "✗"
    if check.exact is True:
        return "✓"
    return "?"


def index_ranges(step, model) -> list[tuple[list, object]]:
    """The step's free indices grouped by range, in order: [([i, j], n), ([s], m)]."""
    groups: list[tuple[list, object]] = []
    for index in step.free_indices:
        bound = model.range_of(index)
        for indices, existing in groups:
            if existing == bound and model.index_ranges.get(indices[0]) == model.index_ranges.get(index):
                indices.append(index)
                break
        else:
            groups.append(([index], bound))
    return groups


def result_steps(derivation) -> list:
    """The steps that state the derivation's results, in order: for each variable it is
    differentiated by (a layer's W, b and A_prev), the last step about the derivative by it, in
    whichever form the derivation reached (the matrix ∂J/∂W, the vector (∂L/∂z)ᵀ, or the entry
    formula ∂L/∂zⱼ); the last step when no step is about a variable (a derivation by hand).
    Derivatives of intermediates (∂J/∂Z) and restatements (m ∂J/∂Z, the course convention) are
    not results."""
    variables = set(derivation.model.shapes) | set(derivation.model.scalars)
    last: dict = {}
    for number, step in enumerate(derivation.steps):
        variable = _denominator(step.lhs)
        if variable is not None and variable in variables:
            last[variable] = number
    numbers = sorted(last.values()) or [len(derivation.steps) - 1]
    return [derivation.steps[k] for k in numbers if k >= 0]


def _denominator(lhs):
    """x in ∂f/∂x, (∂f/∂x)ᵀ, ∂f/∂xⱼ (the IndexedBase of a vector or matrix), else None."""
    from sympy import Derivative, Indexed, Transpose

    if isinstance(lhs, Transpose):
        lhs = lhs.arg
    if isinstance(lhs, Derivative) and len(lhs.variables) == 1:
        variable = lhs.variables[0]
        return variable.base if isinstance(variable, Indexed) else variable
    if lhs.__class__.__name__ in ("PartialD", "GradientMatrix"):
        return getattr(lhs.args[1], "base", lhs.args[1])
    return None
