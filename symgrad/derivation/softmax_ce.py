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
CONVENTION = (r"numerator layout, so $\partial L/\partial \mathbf{a}$ and $\partial L/\partial \mathbf{z}$ "
              r"are $1 \times n$ rows, $\partial \mathbf{a}/\partial \mathbf{z}$ is the $n \times n$ "
              r"Jacobian with entry $(i, j) = \partial a_i/\partial z_j$; the gradient "
              r"$\mathbf{dz} = (\partial L/\partial \mathbf{z})^\top$ is a column like $\mathbf{z}$")


def derive_softmax_cross_entropy(n: int | str, normalized_labels: bool = True) -> Derivation:
    """∂L/∂z of L = −Σ_i y_i log softmax(z)_i, step by step, for ``n`` (an int, or "symbolic")."""
    problem = Problem(LOSS, {"z": "n", "y": "n"}, wrt="z", assume=(LABELS,) if normalized_labels else (),
                      size=n, name="softmax-cross-entropy", title="Softmax + cross-entropy gradient",
                      assumption_names={LABELS: (NORMALIZED_LABELS, "one-hot or probability labels")})
    derivation = derive_problem(problem)
    notes = list(derivation.notes)
    if n != "symbolic" and int(n) == 1:
        notes.append(r"$n = 1$: the softmax of a single logit is the constant 1, so "
                     r"$\partial a_1/\partial z_1 = 0$ and, with $y_1 = 1$, the gradient "
                     r"$a_1 - y_1$ is 0.")
    return replace(derivation, convention=CONVENTION, notes=tuple(notes))
