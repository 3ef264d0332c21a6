"""Exact (symbolic) checking of explicit entries.

An entry ``lhs = rhs`` is proven when ``lhs − rhs`` — derivatives evaluated by the chain rule,
abbreviations unfolded, assumptions substituted — expands to exactly 0. Where a claim about the
same quantity was already proven (``lhs = r_prev``), the new claim is reduced to
``r_prev = rhs``: equal by transitivity, and usually equal structurally, which costs nothing.
"""

from __future__ import annotations

from sympy import Basic, cancel, expand, together

from symgrad.verify.concrete import ConcreteModel

# Past this many operations the fall-back rational simplification is not attempted: the
# entry is reported as undecided rather than allowed to run for minutes.
MAX_OPS_FOR_CANCEL = 1000


class ExactProver:
    """Proves entries and remembers, per left-hand side, the latest proven right-hand side."""

    def __init__(self, concrete: ConcreteModel):
        self.concrete = concrete
        self.proven: dict[Basic, Basic] = {}

    def prove(self, lhs: Basic, rhs: Basic, elimination: dict) -> bool:
        """True if lhs = rhs is proven; False only if it was not (the numeric check decides
        whether it is *refuted*)."""
        reference = self.proven.get(lhs, lhs)
        if reference == rhs or self._is_zero(reference - rhs, elimination):
            if not elimination:
                self.proven[lhs] = rhs
            return True
        if reference is not lhs and self._is_zero(lhs - rhs, elimination):
            return True
        return False

    def _is_zero(self, difference: Basic, elimination: dict) -> bool:
        cm = self.concrete
        value = cm.evaluate_derivatives(difference)
        if value == 0:
            return True
        unfolded = cm.unfold(value, keep_sums=True)
        if expand(unfolded.xreplace(elimination) if elimination else unfolded) == 0:
            return True
        # Fall-backs for rational identities that expanding does not show, e.g.
        # (a³ − y³)/(a² + a y + y²) = a − y: clear denominators while the sums are still opaque
        # and only then apply the assumptions (applying them first can multiply the size
        # a hundredfold); then, for small entries, unfold everything.
        if unfolded.count_ops() <= MAX_OPS_FOR_CANCEL:
            numerator = together(unfolded).as_numer_denom()[0]
            if expand(numerator.xreplace(elimination) if elimination else numerator) == 0:
                return True
        value = cm.unfold(unfolded, keep_sums=False)
        if elimination:
            value = value.xreplace(elimination)
        if value.count_ops() > MAX_OPS_FOR_CANCEL:
            return False
        return cancel(expand(value)) == 0
