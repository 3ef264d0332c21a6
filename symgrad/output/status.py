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
