"""Transformations that turn one step's right-hand side into the next.

Each rule is a plain function on SymPy expressions, so the final result of a derivation is
*computed from its steps* — there is no second algorithm that could drift from them.
"""

from __future__ import annotations

from sympy import (Add, Basic, Eq, Indexed, KroneckerDelta, Mul, Piecewise, S, Sum, Symbol,
                   exp, expand, factor_terms)
from symgrad.differentiate import differentiate
from symgrad.delta_sums import delta_summation

from symgrad.notation import SumExcluding


def evaluated(expr: Basic) -> Basic:
    """Rebuild an expression held with ``evaluate=False`` so SymPy applies its automatic
    simplifications (a_j / a_j cancels, signs combine)."""
    if expr.is_Atom or isinstance(expr, Indexed):
        return expr
    return expr.func(*[evaluated(arg) for arg in expr.args])


def quotient_rule(numerator_exp_arg, wrt, activation_i, activation_j, i, j) -> Basic:
    """∂/∂x_j of e^{x_i} / Σ_k e^{x_k}, rewritten in the activations: a_i (δ_ij − a_j).

    The denominator is treated as a symbol S with ∂S/∂x_j = e^{x_j}; e^{x_i} = a_i S afterwards.
    ``activation_i``/``activation_j`` are the entries a_i and a_j (A_is and A_js for a column s).
    """
    S = Symbol("S", positive=True)
    quotient = exp(numerator_exp_arg) / S
    derivative = (quotient.diff(numerator_exp_arg) * KroneckerDelta(i, j)
                  + quotient.diff(S) * exp(wrt))
    derivative = derivative.xreplace({exp(numerator_exp_arg): activation_i * S,
                                      exp(wrt): activation_j * S})
    return factor_terms(expand(derivative))


def split_kronecker_cases(expr: Basic, i, j) -> Piecewise:
    """Resolve δ_ij into its two cases: i = j (δ = 1, written with i) and i ≠ j (δ = 0)."""
    delta = KroneckerDelta(i, j)
    diagonal = factor_terms(expand(expr.xreplace({delta: 1}).xreplace({j: i})))
    off_diagonal = factor_terms(expand(expr.xreplace({delta: 0})))
    return Piecewise((diagonal, Eq(i, j)), (off_diagonal, True))


def split_sum_at(total: Sum, j) -> Basic:
    """Σ_i u_i(δ_ij)  →  u_j(δ_jj = 1) + Σ_{i≠j} u_i(δ_ij = 0).

    Both products are kept unevaluated so the reader sees the factors before they cancel.
    """
    term, (i, lower, upper) = total.function, total.limits[0]
    if lower != 1:
        raise ValueError("split_sum_at expects a sum from 1 to n")
    delta = KroneckerDelta(i, j)
    factors = Mul.make_args(term)
    diagonal = Mul(*[f.xreplace({delta: 1}).xreplace({i: j}) for f in factors], evaluate=False)
    off_diagonal = SumExcluding(Mul(*[f.xreplace({delta: 0}) for f in factors], evaluate=False),
                                i, j, upper)
    return Add(diagonal, off_diagonal, evaluate=False)


def collect_excluded_sum(expr: Basic) -> Basic:
    """c·g_j + c·Σ_{i≠j} g_i  →  c·Σ_i g_i (after expanding the other terms)."""
    terms = []
    excluded = []
    for t in Add.make_args(expr):
        coeff, sums = [], []
        for f in Mul.make_args(t):
            (sums if isinstance(f, SumExcluding) else coeff).append(f)
        if sums:
            excluded.append((Mul(*coeff), sums[0]))
        else:
            terms.extend(Add.make_args(expand(t)))
    result = list(terms)
    for outer, s in excluded:
        inner_const, inner = s.term.as_independent(s.index, as_Add=False)
        factor = outer * inner_const
        missing = expand(factor * inner.xreplace({s.index: s.excluded}))
        if missing in result:
            result.remove(missing)
            result.append(factor * Sum(inner, (s.index, 1, s.upper)))
        else:
            result.append(factor * SumExcluding(inner, s.index, s.excluded, s.upper))
    return Add(*result)


def apply_equation(expr: Basic, equation: Eq) -> Basic:
    """Replace every occurrence of the equation's left side by its right side."""
    return expr.xreplace({equation.lhs: equation.rhs})


def substitute_factors(total: Sum, known: dict) -> Sum:
    """In Σ_i f_1 f_2 …, replace factors by earlier results (keyed by e.g. a Derivative) while
    keeping the product unevaluated, so the reader sees (−y_i/a_i)·(cases) before they combine."""
    factors = [known.get(f, f) for f in Mul.make_args(total.function)]
    return Sum(Mul(*factors, evaluate=False), *total.limits)


def derivative_of_summand(summand: Basic, wrt: Basic) -> Basic:
    """∂/∂x of the one term of a sum that holds x (the others do not depend on it)."""
    return differentiate(summand, wrt)



def derivative_through_sum(expr: Basic, wrt: Basic) -> Basic:
    """∂/∂x of an expression holding Σ_q c_q x_q (Z_is = Σ_q W_iq A_prev,qs + b_i by W_ip):
    SymPy's derivative leaves Σ_q δ_pq A_prev,qs; the delta sum is taken, and the range
    condition (p lies in 1..n_prev) dropped — the step's check confirms it."""
    return differentiate(expr, wrt).replace(lambda e: isinstance(e, Sum),
                                  lambda e: delta_summation(e.function, e.limits[0], no_piecewise=True))


def rebind(expr: Basic, avoid: set) -> Basic:
    """Rename every sum's bound index that is in ``avoid`` (e.g. the free index i about to be
    put into a template), so that Σ_i y_i next to a_i cannot capture it."""
    from symgrad.notation import index_symbol

    taken = {s.name for s in expr.atoms(Symbol)} | {x.name for x in avoid}

    def fresh(total: Sum) -> Sum:
        index = total.limits[0][0]
        if index not in avoid:
            return total
        for name in ("k", "l", "q", "r", "t", "k'", "l'", *(f"k_{m}" for m in range(1, 100))):  # norms: many sums
            if name not in taken:
                taken.add(name)
                new = index_symbol(name)
                return Sum(total.function.xreplace({index: new}), (new, *total.limits[0][1:]), *total.limits[1:])
        raise ValueError("no free index name left")

    def fresh_excluding(total: SumExcluding) -> SumExcluding:
        if total.index not in avoid:
            return total
        renamed = fresh(Sum(total.term, (total.index, 1, total.upper)))
        return SumExcluding(renamed.function, renamed.limits[0][0], total.excluded, total.upper)

    expr = expr.replace(lambda e: isinstance(e, SumExcluding), fresh_excluding)
    return expr.replace(lambda e: isinstance(e, Sum), fresh)


def _centring(factor: Add, index) -> bool:
    """δ_ij − c with c free of indices and of every variable (1/n): a centring's Jacobian."""
    deltas = [t for t in Add.make_args(factor) if isinstance(t, KroneckerDelta) and index in t.args]
    others = [t for t in Add.make_args(factor) if not isinstance(t, KroneckerDelta)]
    return (len(deltas) == 1 and len(others) == len(Add.make_args(factor)) - 1
            and all(not t.has(Indexed) and not t.has(KroneckerDelta) and not any(
                getattr(x, "is_real", None) and not x.is_integer for x in t.free_symbols) for t in others))


def collapse_delta_sums(expr: Basic) -> Basic:
    """Σ_i f_i δ_ij → f_j for every sum holding a Kronecker delta of its own index (the index
    on the other side lies in the same range, so SymPy's range condition holds)."""
    def collapse(total: Sum) -> Basic:
        index, lower, upper = total.limits[0]
        out = []
        for term in Add.make_args(total.function):
            factor = [d for d in Mul.make_args(term) if isinstance(d, KroneckerDelta) and index in d.args]
            if factor:  # δ_ij times the rest: keep the rest as written
                (other,) = [x for x in factor[0].args if x != index]
                out.append(term.xreplace({factor[0]: S.One}).xreplace({index: other}))  # (a lone δ: 1, not int 1)
                continue
            centring = [a for a in Mul.make_args(term) if isinstance(a, Add) and _centring(a, index)]
            if len(centring) == 1 and list(Mul.make_args(term)).count(centring[0]) == 1:
                # Σ_i (δ_ij − c) f_i with c a number (1/n from a mean): f_j − c Σ_i f_i, not expanded
                rest = Mul(*[a for a in Mul.make_args(term) if a is not centring[0]])
                for part in Add.make_args(centring[0]):
                    if isinstance(part, KroneckerDelta):
                        (other,) = [x for x in part.args if x != index]
                        out.append(rest.xreplace({index: other}))
                    else:
                        out.append(Sum(part * rest, total.limits[0]))
                continue
            for part in Add.make_args(expand(term)):
                deltas = [d for d in part.atoms(KroneckerDelta) if index in d.args]
                if not deltas:
                    out.append(Sum(part, total.limits[0]))
                    continue
                (other,) = [x for x in deltas[0].args if x != index]
                out.append(part.xreplace({deltas[0]: S.One}).xreplace({index: other}))
        return Add(*out)

    return expr.replace(lambda e: isinstance(e, Sum) and e.has(KroneckerDelta), collapse)


def linearize_sums(expr: Basic) -> Basic:
    """Σ_i (c·u_i + d) → c Σ_i u_i + n d: constants out of every sum, one sum per term."""
    def linear(total: Sum) -> Basic:
        index, lower, upper = total.limits[0]
        out = []
        for term in Add.make_args(expand(total.function)):
            outside, inside = term.as_independent(index, as_Add=False)
            out.append(outside * (upper - lower + 1) if inside == 1 else outside * Sum(inside, total.limits[0]))
        return Add(*out)

    return expr.replace(lambda e: isinstance(e, Sum), linear)


def replace_sum(expr: Basic, pattern: Sum, value: Basic) -> Basic:
    """Replace every sum equal to ``pattern`` up to the name of its bound index."""
    def same(total) -> bool:
        if not isinstance(total, Sum) or len(total.limits) != 1 or len(pattern.limits) != 1:
            return False
        (index, lower, upper), (p_index, p_lower, p_upper) = total.limits[0], pattern.limits[0]
        return (lower, upper) == (p_lower, p_upper) and \
            total.function.xreplace({index: p_index}) == pattern.function
    return expr.replace(same, lambda e: value)


def collapse_kronecker(expr: Basic, indices=None) -> Basic:
    """Σ_s Σ_i f · δ_st → Σ_i f|_{s=t}, for every bound index (or only those in ``indices``)
    that a Kronecker delta multiplying the whole term ties to another index of the same range.

    Works on multi-index sums (Σ_s Σ_i) and keeps an unevaluated product's factors as written,
    so the reader still sees −Y_is/(m A_is) · A_is(δ_ij − A_js) before anything cancels."""
    def delta_of(factor, index):
        for f in Mul.make_args(factor):
            if isinstance(f, KroneckerDelta) and index in f.args:
                return f
        return None

    def collapse_term(term, limits):
        limits = list(limits)
        for limit in list(limits):
            index = limit[0]
            if indices is not None and index not in indices:
                continue
            factors = Mul.make_args(term)
            deltas = [d for d in (delta_of(f, index) for f in factors) if d is not None]
            if not deltas:
                continue
            (other,) = [x for x in deltas[0].args if x != index] or [index]
            term = Mul(*[f.xreplace({deltas[0]: S.One}).xreplace({index: other}) for f in factors], evaluate=False)
            limits.remove(limit)
        return Sum(term, *limits) if limits else term

    def collapse(total: Sum) -> Basic:
        term = total.function
        if isinstance(term, Add):
            return Add(*[collapse_term(t, total.limits) for t in Add.make_args(expand(term))])
        return collapse_term(term, total.limits)

    return expr.replace(lambda e: isinstance(e, Sum) and e.has(KroneckerDelta), collapse)


def replace_sum_for_every(expr: Basic, pattern: Sum, value: Basic, free) -> Basic:
    """Replace every sum equal to ``pattern`` up to the name of its bound index and the value of
    the pattern's free indices (Σ_i Y_is = 1 for every s matches Σ_i Y_it)."""
    from sympy import Wild

    wilds = {x: Wild(f"{x.name}_w") for x in free}

    def match(total):
        if not isinstance(total, Sum) or len(total.limits) != len(pattern.limits):
            return None
        mapping = {p[0]: t[0] for p, t in zip(pattern.limits, total.limits)}
        if any(p[1:] != t[1:] for p, t in zip(pattern.limits, total.limits)):
            return None
        found = total.function.match(pattern.function.xreplace(mapping).xreplace(wilds))
        if found is None or set(found) != set(wilds.values()):
            return None
        return value.xreplace({x: found[w] for x, w in wilds.items()})

    return expr.replace(lambda e: match(e) is not None, match)
