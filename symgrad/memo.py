"""Process-wide memos with a bound: what one process computes once and asks for again (checked
derivations, index provers, built values), with the oldest entries forgotten first."""

from __future__ import annotations


def remember(store: dict, key, value, limit: int):
    """Keep ``value`` under a new ``key`` in ``store`` and return it, forgetting the oldest
    entries so that at most ``limit`` stay (a dict keeps its insertion order)."""
    while len(store) >= limit:
        del store[next(iter(store))]
    store[key] = value
    return value
