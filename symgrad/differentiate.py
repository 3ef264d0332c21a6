"""∂f/∂x with SymPy's own rules, one small rule per node type, without SymPy's bookkeeping.

``f.diff(x)`` builds a ``Derivative`` at every node of ``f`` and asks each node's result
``is_zero`` — an assumptions query that walks the result again — only to return early when it
is. For the sums of products the index prover differentiates (Σ_i y_i log a_i unfolded to the
base variables), those queries were most of the time spent in ``diff``. The rules here are
SymPy's ``_eval_derivative`` methods for Add, Mul, Pow, functions of one or more arguments,
Sum, Indexed and symbols, transcribed: they give the same expression, node for node (a property
test compares them on random expressions). Anything else — a Piecewise, Abs, a Derivative, an
undefined function, a matrix — is handed to SymPy's ``diff``.
"""

from __future__ import annotations

from functools import reduce

from sympy import Add, Basic, Derivative, Expr, Function, Indexed, KroneckerDelta, Mul, Pow, S, Sum, Symbol, log
from sympy.core.function import AppliedUndef, ArgumentIndexError


def differentiate(expr: Basic, x: Basic) -> Basic:
    """``expr.diff(x)`` for a Symbol or an entry x[j] (the same expression SymPy returns)."""
    if not isinstance(x, (Symbol, Indexed)) or not isinstance(expr, Expr) or expr.has(Derivative):
        # SymPy also rewrites every Derivative node of its result in canonical form (∂²/∂y∂x as
        # ∂²/∂x∂y), even one it did not differentiate: such expressions are SymPy's to take
        return expr.diff(x)
    return _derivative(expr, x)


def _derivative(expr: Basic, x: Basic) -> Basic:
    # SymPy's quick exit: an expression without x (or, for x[j], without x[j] and j) is constant
    if x not in expr.free_symbols if isinstance(x, Symbol) else not expr.free_symbols & x.free_symbols:
        return S.Zero
    rule = _RULES.get(type(expr)) or _rule_by_class(expr)
    return rule(expr, x) if rule is not None else expr.diff(x)


def _atom(expr: Basic, x: Basic) -> Basic:
    return S.One if expr == x else S.Zero


def _add(expr: Add, x: Basic) -> Basic:
    return Add(*[_derivative(arg, x) for arg in expr.args])


def _mul(expr: Mul, x: Basic) -> Basic:
    args = list(expr.args)
    if isinstance(x, Symbol):
        # SymPy's general Leibniz rule (``Mul._eval_derivative_n_times``) at order 1: one
        # product of all the factors per factor differentiated, each built at once
        terms = []
        for k in range(len(args)):
            d = _derivative(args[k], x)
            terms.append(S.One * Mul(*(args[:k] + [d] + args[k + 1:])))
        return Add(*terms)
    terms = []
    for k in range(len(args)):
        d = _derivative(args[k], x)
        if d:
            # ``Mul._eval_derivative``: one product at a time (Mul cannot mix subtypes at once)
            terms.append(reduce(lambda p, q: p * q, (args[:k] + [d] + args[k + 1:]), S.One))
    return Add.fromiter(terms)


def _pow(expr: Pow, x: Basic) -> Basic:
    dbase = _derivative(expr.base, x)
    dexp = _derivative(expr.exp, x)
    return expr * (dexp * log(expr.base) + dbase * expr.exp / expr.base)


def _function(expr: Function, x: Basic) -> Basic:
    terms = []
    for position, arg in enumerate(expr.args, start=1):
        da = _derivative(arg, x)
        if da.is_zero:
            continue
        try:
            df = expr.fdiff(position)
        except ArgumentIndexError:
            df = Function.fdiff(expr, position)
        terms.append(df * da)
    return Add(*terms)


def _indexed(expr: Indexed, x: Basic) -> Basic:
    if isinstance(x, Indexed) and x.base == expr.base and len(expr.indices) == len(x.indices):
        result = S.One
        for mine, theirs in zip(expr.indices, x.indices):
            result *= KroneckerDelta(mine, theirs)
        return result
    return expr.diff(x)  # another base (0), or SymPy's own message for a mismatch


def _sum(expr: Sum, x: Basic) -> Basic:
    function, limits = expr.function, list(expr.limits)
    limit = limits.pop(-1)
    if limits:
        function = expr.func(function, *limits)
    _, lower, upper = limit
    if x in lower.free_symbols or x in upper.free_symbols:
        return expr.diff(x)  # SymPy leaves it unevaluated
    return expr.func(_derivative(function, x), limit)


_RULES = {Add: _add, Mul: _mul, Pow: _pow, Sum: _sum, Indexed: _indexed}


def _rule_by_class(expr: Basic):
    """The rule for a node whose exact type has none: a symbol of any kind (Dummy), a function
    that differentiates by SymPy's generic chain rule (exp, log, tanh); else None (SymPy)."""
    if isinstance(expr, Symbol):
        return _atom
    if isinstance(expr, AppliedUndef) or not isinstance(expr, Function) \
            or type(expr)._eval_derivative is not Function._eval_derivative:
        return None
    return _function
