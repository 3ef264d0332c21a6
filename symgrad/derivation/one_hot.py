"""Softmax + cross-entropy with a one-hot label y = e_K: a recipe over the built-in derivation.

The thread's last question: with y = e_K the loss is −log a_K, so do only the true class's logit
and the i = j terms matter? No: ∂L/∂z_j = a_j − δ_jK, and every logit j ≠ K gets a_j, because
y_i = 0 removes the rows i ≠ K of the chain rule but not the off-diagonal entries −a_K a_j of
row K of the Jacobian.

The steps of ``softmax_ce`` (general labels, down to a_j Σ_i y_i − y_j) come first; then the
assumption y_i = δ_iK (a named model assumption, so the checker substitutes it like Σ_i y_i = 1)
and its consequences, each right-hand side computed by a rule from a definition or an earlier
step. At a fixed n, K is a number in 1..n; at a symbolic n, K is a model parameter in 1..n (the
index prover proves each step for every n and K; the instances run at several K for each n).
"""

from __future__ import annotations

from dataclasses import replace

from sympy import Derivative, Eq, Integer, KroneckerDelta, Mul, Piecewise, Sum, expand, factor_terms

from symgrad.build import N
from symgrad.derivation import rules
from symgrad.derivation.softmax_ce import derive_softmax_cross_entropy
from symgrad.model import Assumption
from symgrad.notation import index_symbol
from symgrad.one_hot_label import SYMBOLIC_CLASS, parse_class
from symgrad.steps import Derivation, Rule, Step

ONE_HOT = "one-hot label"


def derive_one_hot(n: int | str, k: int | str) -> Derivation:
    """∂L/∂z of L = −Σ_i y_i log softmax(z)_i with y = e_K, step by step (unchecked)."""
    k = parse_class(k, n)
    base = derive_softmax_cross_entropy(n, normalized_labels=False)
    steps = list(base.steps)
    if steps and steps[-1].rule is Rule.VECTOR_FORM:  # (Σ y) a − y: the one-hot steps go on from its component
        steps.pop()
    number = {id(step): position for position, step in enumerate(steps, start=1)}
    model = base.model
    y = next(b for b in model.shapes if str(b) == "y")
    z = next(b for b in model.shapes if str(b) == "z")
    softmax = next(d for d in model.definitions if d.index)
    loss = next(d for d in model.definitions if not d.index)
    L, (i,) = loss.head, softmax.index
    general = steps[-1]  # ∂L/∂z_j = a_j Σ_i y_i − y_j
    (j,) = general.free_indices
    jacobian = next(s for s in steps if s.rule is Rule.QUOTIENT_RULE)  # ∂a_i/∂z_j = a_i(δ_ij − a_j)
    loss_by_a = next(s for s in steps if s.rule is Rule.LOG_RULE)  # ∂L/∂a_i = −y_i/a_i
    chain = next(s for s in steps if s.rule is Rule.CHAIN_RULE and s.free_indices == (j,))

    symbolic = k == SYMBOLIC_CLASS
    K = index_symbol("K") if symbolic else Integer(k)
    size = N if n == "symbolic" else Integer(n)
    label = Eq(y[i], KroneckerDelta(i, K))
    one_hot = {y[i]: KroneckerDelta(i, K)}
    model = replace(model, assumptions={**model.assumptions,
                                        ONE_HOT: Assumption(ONE_HOT, label, f"y = e_{K}: the true class is {K}")},
                    parameters={K: size} if symbolic else {})
    kk = "K" if symbolic else str(k)
    e_k = rf"\bname{{e}}_{{{kk}}}"
    delta = rf"\delta_{{i{kk}}}"
    where = "" if symbolic else f" (here $K = {kk}$)"
    assume = (ONE_HOT,)

    def step(title, rule, lhs, rhs, free=(), assumptions=assume):
        steps.append(Step(title, rule, lhs, rhs, tuple(free), assumptions=assumptions))
        number[id(steps[-1])] = len(steps)
        return steps[-1]

    # the loss: y_i = δ_iK in its definition, the sum over the Kronecker delta taken
    one_term = rules.collapse_delta_sums(loss.body.xreplace(one_hot))
    step(rf"Assume a one-hot label $\bname{{y}} = {e_k}${where}: $\entry{{y}}{{i}} = {delta}$, so the loss "
         rf"keeps only its term $i = {kk}$", Rule.ASSUMPTION, L, one_term)
    # the labels sum to 1
    label_sum = Sum(y[i], (i, 1, size))
    total = rules.collapse_kronecker(label_sum.xreplace(one_hot))
    step(rf"A one-hot label is normalized: $\sum_i {delta} = 1$, since ${kk}$ is one of $1, \ldots, "
         rf"{'n' if n == 'symbolic' else n}$", Rule.ASSUMPTION, label_sum, total)
    # the gradient of the general labels (a_j Σ_i y_i − y_j) with both
    gradient = rules.replace_sum(general.rhs, label_sum, total).xreplace({y[j]: KroneckerDelta(j, K)})
    result = step(rf"Step {number[id(general)]} with $\sum_i \entry{{y}}{{i}} = 1$ and "
                  rf"$\entry{{y}}{{j}} = \delta_{{j{kk}}}$", Rule.ASSUMPTION, Derivative(L, z[j]), gradient, (j,))
    # its two cases: the true class, every other class
    cases = rules.split_kronecker_cases(gradient, K, j)
    step(rf"Its two cases: the true class $j = {kk}$ gets $\entry{{a}}{{{kk}}} - 1$, every other class "
         rf"$j \neq {kk}$ gets $\entry{{a}}{{j}}$: every logit gets a gradient", Rule.CASE_SPLIT,
         Derivative(L, z[j]), Piecewise((cases.args[0][0], Eq(j, K)), (cases.args[1][0], True), evaluate=False), (j,))
    # why: the chain rule keeps row K of the Jacobian, whose off-diagonal entries are not 0
    summand = rules.substitute_factors(chain.rhs, {loss_by_a.lhs: loss_by_a.rhs})
    collapsed = rules.evaluated(rules.collapse_kronecker(summand.xreplace(one_hot)))
    coefficient, entry = collapsed.as_independent(Derivative, as_Add=False)  # −1/a_K and ∂a_K/∂z_j
    row = Mul(coefficient, entry, evaluate=False)
    step(rf"Why $j \neq {kk}$ gets one: in the chain rule (step {number[id(chain)]}) $\entry{{y}}{{i}} = 0$ "
         rf"removes every term $i \neq {kk}$, which leaves row ${kk}$ of the Jacobian", Rule.CHAIN_RULE,
         Derivative(L, z[j]), row, (j,))
    row_k = {jacobian.lhs.xreplace({i: K}): jacobian.rhs.xreplace({i: K})}  # step 4 at i = K
    substituted = Mul(coefficient, entry.xreplace(row_k), evaluate=False)
    step(rf"Row ${kk}$ of the Jacobian (step {number[id(jacobian)]}): off the diagonal its entries "
         rf"$-\entry{{a}}{{{kk}}} \entry{{a}}{{j}}$ do not vanish, though $\entry{{y}}{{j}} = 0$ there",
         Rule.SUBSTITUTE, Derivative(L, z[j]), substituted, (j,))
    step(rf"Cancel: the gradient of step {number[id(result)]}, now from row ${kk}$ alone",
         Rule.CANCEL, Derivative(L, z[j]), factor_terms(expand(rules.evaluated(substituted))), (j,))

    notes = [note for note in base.notes if "left in" not in note]
    notes.append(rf"A one-hot label zeroes the terms $i \neq {kk}$ of the loss and of the chain rule's sum, "
                 rf"not the entries of the Jacobian: row ${kk}$, $\partial \entry{{a}}{{{kk}}}/\partial "
                 rf"\entry{{z}}{{j}} = \entry{{a}}{{{kk}}}(\delta_{{{kk}j}} - \entry{{a}}{{j}})$, is "
                 rf"$-\entry{{a}}{{{kk}}} \entry{{a}}{{j}} \neq 0$ for $j \neq {kk}$. Every wrong class's logit "
                 rf"is pushed down by $\entry{{a}}{{j}}$ and the true class's up by $1 - \entry{{a}}{{{kk}}}$.")
    title = base.title.replace("gradient", rf"gradient with a one-hot label $\bname{{y}} = {e_k}$", 1)
    title = title.replace("for every n", r"for every n and every class $1 \le K \le n$")
    return replace(base, name="softmax-cross-entropy-one-hot", title=title, model=model, steps=tuple(steps),
                   notes=tuple(notes))
