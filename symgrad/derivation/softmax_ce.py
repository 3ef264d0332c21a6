"""Stage 2 of 4 — the steps from softmax + cross-entropy to dz = a − y.

Every right-hand side is computed by a rule in ``rules`` from the definitions or an earlier
step; ``verify`` then checks each step independently of how it was produced.
"""

from __future__ import annotations

from sympy import Derivative, ImmutableMatrix, Mul, Sum, Transpose
from sympy.matrices.expressions import DiagMatrix, MatMul

from symgrad.build import L, NORMALIZED_LABELS, a, i, j, softmax_cross_entropy, y, z
from symgrad.derivation import rules
from symgrad.notation import PartialD, Vec
from symgrad.steps import Derivation, Rule, Step

CONVENTION = (r"numerator layout: $\partial L/\partial \mathbf{a}$ and $\partial L/\partial \mathbf{z}$ "
              r"are $1 \times n$ rows, $\partial \mathbf{a}/\partial \mathbf{z}$ is the $n \times n$ "
              r"Jacobian with entry $(i, j) = \partial a_i/\partial z_j$; the gradient "
              r"$\mathbf{dz} = (\partial L/\partial \mathbf{z})^\top$ is a column like $\mathbf{z}$")


def derive_softmax_cross_entropy(n: int | str, normalized_labels: bool = True) -> Derivation:
    """Build the model for ``n`` (an int, or "symbolic") and derive ∂L/∂z step by step."""
    model = softmax_cross_entropy(n)
    softmax, loss = model.definitions
    size = model.shapes[z][0]
    fixed = not model.symbolic
    zv, av, yv = Vec(z, size), Vec(a, size), Vec(y, size)
    steps: list[Step] = []
    notes: list[str] = []

    steps.append(Step("Softmax of the logits", Rule.DEFINITION, a[i], softmax.body, (i,)))
    steps.append(Step("Cross-entropy loss", Rule.DEFINITION, L, loss.body))

    (loss_sum,) = loss.body.atoms(Sum)
    dL_da = rules.derivative_of_summand(loss.body.coeff(loss_sum) * loss_sum.function, a[i])
    steps.append(Step(r"Loss by one activation: only the $i$-th term of the sum holds $a_i$",
                      Rule.LOG_RULE, Derivative(L, a[i]), dL_da, (i,)))

    (exponent,) = softmax.body.as_numer_denom()[0].args
    jac_delta = rules.quotient_rule(exponent, z[j], a[i], a[j], i, j)
    steps.append(Step(r"Softmax Jacobian by the quotient rule, with $\partial (\sum_k e^{z_k}) / \partial z_j = e^{z_j}$",
                      Rule.QUOTIENT_RULE, Derivative(a[i], z[j]), jac_delta, (i, j)))
    jac_cases = rules.split_kronecker_cases(jac_delta, i, j)
    steps.append(Step("The Jacobian's two cases", Rule.CASE_SPLIT, Derivative(a[i], z[j]),
                      jac_cases, (i, j)))

    if fixed:
        count = int(size)
        # each entry from its case (not by substituting into the Piecewise: that evaluates
        # the condition n² times)
        (diagonal, _), (off_diagonal, _) = jac_cases.args
        entries = ImmutableMatrix(count, count, lambda r, c: diagonal.xreplace({i: r + 1}) if r == c
                                  else off_diagonal.xreplace({i: r + 1, j: c + 1}))
        steps.append(Step(rf"The ${count} \times {count}$ Jacobian", Rule.MATRIX_FORM, PartialD(av, zv), entries))
        steps.append(Step(r"which is $\operatorname{diag}(\mathbf{a}) - \mathbf{a} \mathbf{a}^\top$", Rule.MATRIX_FORM, PartialD(av, zv),
                          DiagMatrix(av) - av * av.T))

    steps.append(Step(r"Chain rule: the $1 \times n$ row $\partial L/\partial \mathbf{a}$ times the $n \times n$ Jacobian",
                      Rule.CHAIN_RULE, PartialD(L, zv), MatMul(PartialD(L, av), PartialD(av, zv))))
    if fixed:
        count = int(size)
        row = ImmutableMatrix(1, count, lambda _, c: dL_da.xreplace({i: c + 1}))
        steps.append(Step("with the entries written out", Rule.SUBSTITUTE, PartialD(L, zv),
                          MatMul(row, steps[5].rhs)))

    chain = Sum(Mul(Derivative(L, a[i]), Derivative(a[i], z[j]), evaluate=False), (i, 1, size))
    steps.append(Step(r"Component $j$ of that product", Rule.CHAIN_RULE, Derivative(L, z[j]), chain, (j,)))
    substituted = rules.substitute_factors(
        chain, {Derivative(L, a[i]): dL_da, Derivative(a[i], z[j]): jac_delta})
    steps.append(Step(r"Substitute $\partial L/\partial a_i = -y_i/a_i$ and $\partial a_i/\partial z_j = a_i(\delta_{ij} - a_j)$", Rule.SUBSTITUTE, Derivative(L, z[j]),
                      substituted, (j,)))
    split = rules.split_sum_at(substituted, j)
    steps.append(Step(r"Split the sum into its $i = j$ term ($\delta_{jj} = 1$) and its $i \neq j$ terms ($\delta_{ij} = 0$)", Rule.SPLIT_SUM,
                      Derivative(L, z[j]), split, (j,)))
    cancelled = rules.evaluated(split)
    steps.append(Step(r"Cancel $a_j$ and $a_i$", Rule.CANCEL, Derivative(L, z[j]), cancelled, (j,)))
    collected = rules.collect_excluded_sum(cancelled)
    steps.append(Step(r"Collect: the $a_j y_j$ term completes the sum", Rule.COLLECT,
                      Derivative(L, z[j]), collected, (j,)))

    gradient_lhs = Transpose(PartialD(L, zv))
    if normalized_labels:
        assumption = model.assumptions[NORMALIZED_LABELS]
        final = rules.apply_equation(collected, assumption.equation)
        steps.append(Step(r"Assume normalized labels, $\sum_i y_i = 1$ (one-hot or probability labels)",
                          Rule.ASSUMPTION, Derivative(L, z[j]), final, (j,),
                          assumptions=(NORMALIZED_LABELS,)))
        steps.append(Step(r"As a vector: $\mathbf{dz} = \mathbf{a} - \mathbf{y}$, i.e. $dZ = A - Y$", Rule.VECTOR_FORM, gradient_lhs,
                          rules.vector_form(final, j, size), assumptions=(NORMALIZED_LABELS,)))
    else:
        steps.append(Step(r"As a vector: $\mathbf{dz} = (\sum_i y_i)\, \mathbf{a} - \mathbf{y}$", Rule.VECTOR_FORM, gradient_lhs,
                          rules.vector_form(collected, j, size)))
        notes.append(r"Stopped at $\mathbf{dz} = (\sum_i y_i)\, \mathbf{a} - \mathbf{y}$: without the "
                     r"assumption $\sum_i y_i = 1$ (normalized labels) it does not reduce to "
                     r"$\mathbf{a} - \mathbf{y}$.")
    if fixed and int(size) == 1:
        notes.append(r"$n = 1$: the softmax of a single logit is the constant 1, so "
                     r"$\partial a_1/\partial z_1 = 0$ and, with $y_1 = 1$, the gradient "
                     r"$a_1 - y_1$ is 0.")
    return Derivation(
        name="softmax-cross-entropy",
        title="Softmax + cross-entropy gradient, " + ("for every n" if n == "symbolic" else f"n = {n}"),
        model=model,
        steps=tuple(steps),
        convention=CONVENTION,
        notes=tuple(notes),
    )
