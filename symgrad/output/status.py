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
