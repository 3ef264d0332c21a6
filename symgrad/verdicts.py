"""What checking an identity concludes, as plain data: at each size, and over all its sizes.

Kept apart from ``symgrad.verify`` (which imports SymPy) so that a run served wholly from the
result cache, and the reports printing it, never import SymPy.
"""

from __future__ import annotations

from dataclasses import dataclass

from symgrad.identity_file import Identity


@dataclass(frozen=True)
class SizeResult:
    """The outcome at one size: ``holds`` True (proven), False (refuted) or None (undecided)."""

    size: int | str  # an integer, or "symbolic"
    holds: bool | None
    method: str
    detail: str
    seconds: float


@dataclass(frozen=True)
class IdentityResult:
    identity: Identity
    results: tuple[SizeResult, ...]

    @property
    def holds(self) -> bool | None:
        """False if refuted at some size, True only if proven at every size and there was at
        least one: a check that checked nothing (``n = []``) has no verdict."""
        if any(r.holds is False for r in self.results):
            return False
        return True if self.results and all(r.holds for r in self.results) else None

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)
