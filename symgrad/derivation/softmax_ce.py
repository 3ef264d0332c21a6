"""Softmax + cross-entropy down to dz = a − y: a named entry of the general engine.

The steps come from ``engine.derive_problem`` like those of any loss a user writes; this recipe
only fixes the question (cross_entropy(softmax(z), y) by z, with Σ_i y_i = 1 when the labels are
normalized) and the words around it (the layout convention, the n = 1 remark).
"""

from __future__ import annotations

from dataclasses import replace

from symgrad.build import NORMALIZED_LABELS
from symgrad.derivation.engine import Problem, derive_problem
from symgrad.steps import Derivation

LOSS = "cross_entropy(softmax(z), y)"
LABELS = "sum(y) == 1"
CONVENTION = (r"numerator layout, so $\partial \name{L}/\partial \bname{a}$ and $\partial \name{L}/\partial "
              r"\bname{z}$ are $1 \times n$ rows, $\partial \bname{a}/\partial \bname{z}$ is the $n \times n$ "
              r"Jacobian with entry $(i, j) = \partial \entry{a}{i}/\partial \entry{z}{j}$; the gradient "
              r"$\bname{dz} = (\partial \name{L}/\partial \bname{z})^\top$ is a column like $\bname{z}$")


def derive_softmax_cross_entropy(n: int | str, normalized_labels: bool = True) -> Derivation:
    """∂L/∂z of L = −Σ_i y_i log softmax(z)_i, step by step, for ``n`` (an int, or "symbolic")."""
    problem = Problem(LOSS, {"z": "n", "y": "n"}, wrt="z", assume=(LABELS,) if normalized_labels else (),
                      size=n, name="softmax-cross-entropy", title="Softmax + cross-entropy gradient",
                      assumption_names={LABELS: (NORMALIZED_LABELS, "one-hot or probability labels")})
    derivation = derive_problem(problem)
    notes = list(derivation.notes)
    if n != "symbolic" and int(n) == 1:
        notes.append(r"$n = 1$: the softmax of a single logit is the constant 1, so "
                     r"$\partial \entry{a}{1}/\partial \entry{z}{1} = 0$ and, with $\entry{y}{1} = 1$, the gradient "
                     r"$\entry{a}{1} - \entry{y}{1}$ is 0.")
    return replace(derivation, convention=CONVENTION, notes=tuple(notes))
