"""Stage 2 of 4 — the output layer over a batch: from Z = W A_prev + b, A = softmax(Z) column by
column and J = −(1/m) Σ_s Σ_i Y_is log A_is to ∂J/∂Z, dW, db and dA_prev.

The per-example part (∂A/∂Z by the quotient rule, the chain rule, split, cancel, collect, the
assumption) uses the same rules as ``softmax_ce``; the batch adds the 1/m and the sums over s.
Where the 1/m sits is stated on every line: here ∂J/∂Z already holds it; the course convention
(dZ = A − Y, 1/m put into dW and db) is given at the end as checked identities.
"""

from __future__ import annotations

from sympy import Derivative, Integer, Mul, Rational, Sum, Transpose
from sympy.matrices.expressions import MatAdd, MatMul, OneMatrix

from symgrad.build import (A, A_prev, COLUMNS_NORMALIZED, J, Lex, W, Y, Z, b, i, j, p, s, softmax_layer)
from symgrad.derivation import rules
from symgrad.notation import GradientMatrix, MatVar, Vec
from symgrad.steps import Derivation, Rule, Step

CONVENTION = (r"gradients are shaped like the variable: $\partial J/\partial \mathbf{W}$ is "
              r"$n \times n_{\mathrm{prev}}$ with entry $(i, p) = \partial J/\partial W_{ip}$, likewise "
              r"$\partial J/\partial \mathbf{Z}$, $\partial J/\partial \mathbf{b}$ and "
              r"$\partial J/\partial \mathbf{A}_{\mathrm{prev}}$; indices $i, j \le n$ (classes), "
              r"$p \le n_{\mathrm{prev}}$ (units of the previous layer), $s \le m$ (examples)")


def derive_softmax_layer(n: int | str = 3, normalized_labels: bool = True, *, n_prev: int | str = 2,
                         m: int | str = 2) -> Derivation:
    """Build the layer model at concrete sizes and derive ∂J/∂Z, dW, db and dA_prev."""
    from symgrad.errors import UsageError

    if "symbolic" in (n, n_prev, m):
        raise UsageError("softmax-layer is derived at concrete sizes; give integers for --n, --n-prev and --m")
    model = softmax_layer(int(n), int(n_prev), int(m))
    pre, softmax, example_loss, cost = model.definitions
    size, size_prev, batch = Integer(n), Integer(n_prev), Integer(m)
    Zm, Am, Ym, Wm = MatVar(Z, size, batch), MatVar(A, size, batch), MatVar(Y, size, batch), MatVar(W, size, size_prev)
    Pm, bv = MatVar(A_prev, size_prev, batch), Vec(b, size)
    inverse_m = Rational(1, int(m))
    steps: list[Step] = [
        Step(r"Pre-activations: $\mathbf{Z} = \mathbf{W} \mathbf{A}_{\mathrm{prev}} + \mathbf{b}$, "
             r"$\mathbf{b}$ added to every column", Rule.DEFINITION, Z[i, s], pre.body, (i, s)),
        Step("Softmax of each column of Z", Rule.DEFINITION, A[i, s], softmax.body, (i, s)),
        Step(r"Loss of example $s$: cross-entropy of column $s$", Rule.DEFINITION, Lex[s], example_loss.body, (s,)),
        Step(r"Cost: the loss averaged over the $m$ examples", Rule.DEFINITION, J, cost.body),
    ]

    # J = (1/m) Σ_s L_s and L_s = −Σ_i Y_is log A_is: A_is sits in one term of each sum
    (loss_sum,) = example_loss.body.atoms(Sum)
    summand = inverse_m * example_loss.body.coeff(loss_sum) * loss_sum.function
    dJ_dA = rules.derivative_of_summand(summand, A[i, s])
    steps.append(Step(r"Cost by one activation: only the term $(i, s)$ holds $A_{is}$; the $1/m$ stays",
                      Rule.LOG_RULE, Derivative(J, A[i, s]), dJ_dA, (i, s)))

    (exponent,) = softmax.body.as_numer_denom()[0].args
    jacobian = rules.quotient_rule(exponent, Z[j, s], A[i, s], A[j, s], i, j)
    steps.append(Step(r"Within column $s$, the softmax Jacobian by the quotient rule (a column of "
                      r"$\mathbf{A}$ does not depend on another column of $\mathbf{Z}$)",
                      Rule.QUOTIENT_RULE, Derivative(A[i, s], Z[j, s]), jacobian, (i, j, s)))

    lhs = Derivative(J, Z[j, s])
    chain = Sum(Mul(Derivative(J, A[i, s]), Derivative(A[i, s], Z[j, s]), evaluate=False), (i, 1, size))
    steps.append(Step(r"Chain rule through column $s$ of $\mathbf{A}$, the only one that holds $Z_{js}$",
                      Rule.CHAIN_RULE, lhs, chain, (j, s)))
    substituted = rules.substitute_factors(
        chain, {Derivative(J, A[i, s]): dJ_dA, Derivative(A[i, s], Z[j, s]): jacobian})
    steps.append(Step("Substitute the two derivatives", Rule.SUBSTITUTE, lhs, substituted, (j, s)))
    split = rules.split_sum_at(substituted, j)
    steps.append(Step(r"Split the sum at $i = j$", Rule.SPLIT_SUM, lhs, split, (j, s)))
    cancelled = rules.evaluated(split)
    steps.append(Step(r"Cancel $A_{js}$ and $A_{is}$", Rule.CANCEL, lhs, cancelled, (j, s)))
    collected = rules.collect_excluded_sum(cancelled)
    steps.append(Step(r"Collect: the $i = j$ term completes the sum", Rule.COLLECT, lhs, collected, (j, s)))
    if not normalized_labels:
        return _derivation(model, steps, notes=(
            r"Stopped at $\partial J/\partial Z_{js}$ with $\sum_i Y_{is}$ left in: without the "
            r"assumption that every column of $\mathbf{Y}$ sums to 1 it does not reduce to "
            r"$(A_{js} - Y_{js})/m$, and dW, db, dA_prev would carry the same factor.",))

    labels = (COLUMNS_NORMALIZED,)
    dZ = rules.apply_equation(collected, model.assumptions[COLUMNS_NORMALIZED].equation)
    steps.append(Step(r"Assume every column of $\mathbf{Y}$ sums to 1 (one-hot or probability labels)",
                      Rule.ASSUMPTION, lhs, dZ, (j, s), assumptions=labels))
    difference = MatAdd(Am, -Ym)
    steps.append(Step(r"As a matrix, with the $1/m$ inside: $\partial J/\partial \mathbf{Z} = (\mathbf{A} - \mathbf{Y})/m$",
                      Rule.MATRIX_FORM, GradientMatrix(J, Zm), MatMul(inverse_m, difference), assumptions=labels))

    dZ_is = dZ.xreplace({j: i})
    # dW: Z_is = Σ_p W_ip A_prev,ps + b_i holds W_ip in row i only, with ∂Z_is/∂W_ip = A_prev,ps
    dW_chain = Sum(Mul(Derivative(J, Z[i, s]), Derivative(Z[i, s], W[i, p]), evaluate=False), (s, 1, batch))
    steps.append(Step(r"$\mathbf{dW}$: chain rule through row $i$ of $\mathbf{Z}$, the only one that holds $W_{ip}$",
                      Rule.CHAIN_RULE, Derivative(J, W[i, p]), dW_chain, (i, p)))
    dW = rules.substitute_factors(dW_chain, {Derivative(J, Z[i, s]): dZ_is,
                                             Derivative(Z[i, s], W[i, p]): rules.derivative_through_sum(pre.body, W[i, p])})
    steps.append(Step(r"Substitute $\partial J/\partial Z_{is}$ and $\partial Z_{is}/\partial W_{ip} = A^{\mathrm{prev}}_{ps}$",
                      Rule.SUBSTITUTE, Derivative(J, W[i, p]), rules.evaluated(dW), (i, p), assumptions=labels))
    steps.append(Step(r"As a matrix: $\partial J/\partial \mathbf{W} = \frac{1}{m} (\mathbf{A} - \mathbf{Y}) \mathbf{A}_{\mathrm{prev}}^\top$",
                      Rule.MATRIX_FORM, GradientMatrix(J, Wm), MatMul(inverse_m, difference, Transpose(Pm)),
                      assumptions=labels))

    db_chain = Sum(Mul(Derivative(J, Z[i, s]), Derivative(Z[i, s], b[i]), evaluate=False), (s, 1, batch))
    steps.append(Step(r"$\mathbf{db}$: $b_i$ is added to every column of row $i$", Rule.CHAIN_RULE,
                      Derivative(J, b[i]), db_chain, (i,)))
    db = rules.substitute_factors(db_chain, {Derivative(J, Z[i, s]): dZ_is,
                                             Derivative(Z[i, s], b[i]): rules.derivative_through_sum(pre.body, b[i])})
    steps.append(Step(r"Substitute: $\partial J/\partial b_i$ sums row $i$ of $(\mathbf{A} - \mathbf{Y})/m$ over the examples",
                      Rule.SUBSTITUTE, Derivative(J, b[i]), rules.evaluated(db), (i,), assumptions=labels))
    steps.append(Step(r"As a vector: $\partial J/\partial \mathbf{b} = \frac{1}{m} (\mathbf{A} - \mathbf{Y}) \mathbf{1}_m$ (the row sums)",
                      Rule.VECTOR_FORM, GradientMatrix(J, bv), MatMul(inverse_m, difference, OneMatrix(batch, 1)),
                      assumptions=labels))

    dP_chain = Sum(Mul(Derivative(J, Z[i, s]), Derivative(Z[i, s], A_prev[p, s]), evaluate=False), (i, 1, size))
    steps.append(Step(r"$\mathbf{dA}_{\mathrm{prev}}$: $A^{\mathrm{prev}}_{ps}$ enters column $s$ of every row of $\mathbf{Z}$",
                      Rule.CHAIN_RULE, Derivative(J, A_prev[p, s]), dP_chain, (p, s)))
    dP = rules.substitute_factors(dP_chain, {Derivative(J, Z[i, s]): dZ_is,
                                             Derivative(Z[i, s], A_prev[p, s]): rules.derivative_through_sum(pre.body, A_prev[p, s])})
    steps.append(Step(r"Substitute $\partial Z_{is}/\partial A^{\mathrm{prev}}_{ps} = W_{ip}$", Rule.SUBSTITUTE,
                      Derivative(J, A_prev[p, s]), rules.evaluated(dP), (p, s), assumptions=labels))
    steps.append(Step(r"As a matrix: $\partial J/\partial \mathbf{A}_{\mathrm{prev}} = \frac{1}{m} \mathbf{W}^\top (\mathbf{A} - \mathbf{Y})$",
                      Rule.MATRIX_FORM, GradientMatrix(J, Pm), MatMul(inverse_m, Transpose(Wm), difference),
                      assumptions=labels))

    batch_size = Integer(m)
    steps.append(Step(r"Course convention: $dZ := \mathbf{A} - \mathbf{Y}$ per example, without the $1/m$, "
                      r"so $dZ = m\, \partial J/\partial \mathbf{Z}$; then $dW = \frac{1}{m} dZ\, \mathbf{A}_{\mathrm{prev}}^\top$ "
                      r"and $db = \frac{1}{m} dZ\, \mathbf{1}_m$ are the gradients above",
                      Rule.MATRIX_FORM, MatMul(batch_size, GradientMatrix(J, Zm)), difference, assumptions=labels))
    steps.append(Step(r"Course convention: $dA_{\mathrm{prev}} := \mathbf{W}^\top dZ$ carries the factor $m$ "
                      r"backward ($= m\, \partial J/\partial \mathbf{A}_{\mathrm{prev}}$); the next layer's $\frac{1}{m}$ in its "
                      r"$dW$, $db$ removes it", Rule.MATRIX_FORM, MatMul(batch_size, GradientMatrix(J, Pm)),
                      MatMul(Transpose(Wm), difference), assumptions=labels))
    return _derivation(model, steps)


def _derivation(model, steps, notes=()) -> Derivation:
    sizes = model.sizes
    return Derivation(
        name="softmax-layer",
        title=(f"Softmax output layer over a batch: n = {sizes['n']}, "
               f"n_prev = {sizes['n_prev']}, m = {sizes['m']}"),
        model=model,
        steps=tuple(steps),
        convention=CONVENTION,
        notes=tuple(notes),
    )
