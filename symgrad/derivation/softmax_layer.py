"""The softmax output layer over a batch — Z = W A_prev + b, A = softmax(Z) column by column,
J = −(1/m) Σ_s Σ_i Y_is log A_is — down to ∂J/∂Z, dW, db and dA_prev: a named entry of the
general engine.

The steps come from ``engine.derive_problem`` like those of any loss a user writes (one
derivation by W, b and A_prev together, sharing ∂J/∂Z); this recipe fixes the question, the
names (J, the assumption) and adds the course convention at the end: dZ := A − Y without the
1/m (so dZ = m ∂J/∂Z) and dA_prev := Wᵀ dZ, each a checked step like the others.
"""

from __future__ import annotations

from dataclasses import replace

from sympy import Transpose
from sympy.matrices.expressions import MatMul

from symgrad.build import COLUMNS_NORMALIZED
from symgrad.derivation.engine import Problem, derive_problem
from symgrad.notation import GradientMatrix, MatVar
from symgrad.steps import Derivation, Rule, Step

COST = "cross_entropy(softmax(W @ A_prev + b), Y) / m"
VARIABLES = {"W": "n x n_prev", "A_prev": "n_prev x m", "b": "n", "Y": "n x m"}
LABELS = "colsum(Y) == 1"


def derive_softmax_layer(n: int | str = 3, normalized_labels: bool = True, *, n_prev: int | str = 2,
                         m: int | str = 2) -> Derivation:
    """∂J/∂Z, dW, db and dA_prev of the softmax output layer at sizes n, n_prev, m (each an int,
    or "symbolic")."""
    problem = Problem(COST, dict(VARIABLES), wrt="W", also=("b", "A_prev"),
                      assume=(LABELS,) if normalized_labels else (), sizes={"n": n, "n_prev": n_prev, "m": m},
                      name="softmax-layer", title="Softmax output layer over a batch", loss_name="J",
                      assumption_names={LABELS: (COLUMNS_NORMALIZED, "one-hot or probability labels")})
    derivation = derive_problem(problem)
    return replace(derivation, steps=derivation.steps + _course_convention(derivation))


def _course_convention(derivation: Derivation) -> tuple[Step, ...]:
    """dZ := A − Y and dA_prev := Wᵀ dZ, as courses write them: m times the gradients of J (whose
    1/m the course puts into dW and db instead). Empty when the derivation did not reach
    ∂J/∂Z as a matrix (labels not normalized)."""
    forms = {str(step.lhs.x.base): step for step in derivation.steps
             if step.rule is Rule.MATRIX_FORM and isinstance(step.lhs, GradientMatrix)}
    if "Z" not in forms or "A_prev" not in forms:
        return ()
    dZ, dA_prev = forms["Z"], forms["A_prev"]  # noqa: N806
    batch = derivation.model.size_symbols().get("m", derivation.model.sizes["m"])
    difference = dZ.rhs  # (A − Y)/m, or A − Y at m = 1: the matrix factors without the number
    if isinstance(difference, MatMul):
        difference = MatMul(*difference.as_coeff_matrices()[1])
    W = next(x for x in dA_prev.rhs.atoms(MatVar) if str(x.base) == "W")  # noqa: N806
    labels = dZ.assumptions
    return (
        Step(r"Course convention: $\name{dZ} := \bname{A} - \bname{Y}$ per example, without the $1/m$, "
             r"so $\name{dZ} = m\, \partial \name{J}/\partial \bname{Z}$; then "
             r"$\name{dW} = \frac{1}{m} \name{dZ}\, \bname{A_prev}^\top$ and "
             r"$\name{db} = \frac{1}{m} \name{dZ}\, \bname{1}_m$ are the gradients above",
             Rule.MATRIX_FORM, MatMul(batch, dZ.lhs), difference, assumptions=labels),
        Step(r"Course convention: $\name{dA_prev} := \bname{W}^\top \name{dZ}$ carries the factor $m$ "
             r"backward ($= m\, \partial \name{J}/\partial \bname{A_prev}$); the next layer's $\frac{1}{m}$ in "
             r"its $\name{dW}$, $\name{db}$ removes it", Rule.MATRIX_FORM, MatMul(batch, dA_prev.lhs),
             MatMul(Transpose(W), difference), assumptions=labels),
    )
