"""Stage 1 — derivatives and expansions of explicit smooth expressions, by SymEngine where it
may serve.

The expression language's ``grad`` and ``jacobian`` at a fixed size differentiate explicit
expressions (every entry written out, n = 8: Σ of eight exponentials). SymPy's ``diff`` spends
most of that time asking whether each intermediate result is zero (``Derivative.__new__``
queries ``is_zero`` at every node, through the assumptions system): 0.13 s for the gradient of a
softmax loss at n = 8, against 0.02 s in SymEngine (C++), conversions included.

SymEngine is used only for expressions built from +, ×, rational powers, exp, log, tanh, erf,
integers, rationals, π and variables — where its derivative is the same function as SymPy's —
and only where its automatic rewriting is true on the real line. Its variables are complex and
it writes (1/u)^(1/2) as u^(−1/2), equal only for u ≥ 0 (a review found false identities proven
through it, such as √(1/x)·√x = 1): so a power with an exponent that is not an integer is handed
over only if SymPy knows its base is nonnegative (u² + 1, exp(u)). Anything else goes to SymPy's
``diff``, which knows the real line: |x|, max, min, sign, a function by cases (SymEngine leaves
d|x|/dx unevaluated), a float (SymEngine's are doubles), a fractional power of a base of either
sign, a declared function. Without SymEngine installed, SymPy does everything.

Either way the result is a SymPy expression over the same variables (each mapped straight back
to its own atom, assumptions and all). The numeric check evaluates that result against the
other side; it does not differentiate again, so a wrong derivative here would be caught only
when the two sides disagree — hence the guard above, and ``tests/test_smooth_algebra.py``,
which compares SymEngine's derivatives with SymPy's at random real points for random programs
of the language and keeps the false identities the review found as regressions.

``expands_to_zero`` is the exact checker's first test, expansion to 0, likewise: with the same
guard, SymEngine's expansion is an identity for every real value of the variables, so 0 there is
0 over the reals; anything else is left to SymPy's expand and the fall-backs after it, exactly as
without SymEngine. Only expansions of at most ``MAX_EXPANDED_TERMS`` terms are handed over:
SymEngine runs in C++, where ``--time-limit`` (a signal, handled between Python bytecodes)
cannot stop it, and (Σ z)⁵⁰ has hundreds of millions of terms; SymPy's expand of such a thing
is stopped by the time limit.
"""

from __future__ import annotations

from functools import reduce
from operator import mul

from sympy import Add, Basic, E, Indexed, Mul, Pow, Symbol, erf, exp, log, pi, tanh

from symgrad.differentiate import differentiate

_FUNCTIONS = {exp: "exp", log: "log", tanh: "tanh", erf: "erf"}
MAX_EXPANDED_TERMS = 10_000


def derivative(f: Basic, x: Basic) -> Basic:
    """∂f/∂x for an explicit SymPy expression f and a variable x (a Symbol or an entry z[i])."""
    engine = _symengine()
    if engine is None or not _smooth(f):
        return differentiate(f, x)
    names: dict = {x: engine.Symbol(_name(0))}
    converted = _to_symengine(f, names, engine)
    result = converted.diff(names[x])
    atoms = {symbol: atom for atom, symbol in names.items()}
    try:
        return _to_sympy(result, atoms, engine, {})
    except _Unfamiliar:  # a node this module does not map back: SymPy does the whole job
        return differentiate(f, x)


def expands_to_zero(expr: Basic) -> bool:
    """True if SymEngine expands a smooth ``expr`` to 0; False means "not shown here" (not
    smooth, no SymEngine, or not 0 once expanded) and the caller goes on with SymPy."""
    engine = _symengine()
    if engine is None or not _smooth(expr) or _expanded_terms(expr) > MAX_EXPANDED_TERMS:
        return False
    return engine.expand(_to_symengine(expr, {}, engine)) == 0


def _expanded_terms(expr: Basic) -> int:
    """An upper bound on the terms of ``expr`` expanded — and of every part of it expanded
    inside (a function's argument) —, or MAX_EXPANDED_TERMS + 1 as soon as one passes the limit."""
    over = MAX_EXPANDED_TERMS + 1
    if not expr.args:
        return 1
    inner = [_expanded_terms(arg) for arg in expr.args]
    if max(inner) >= over:
        return over
    if isinstance(expr, Add):
        total = sum(inner)
    elif isinstance(expr, Mul):
        total = reduce(mul, inner, 1)
    elif isinstance(expr, Pow) and expr.exp.is_Integer:
        total = inner[0] ** min(abs(int(expr.exp)), 64)  # (a + b)⁻² expands its denominator
    else:
        total = 1  # a function, or a fractional power: one term (its inside counted above)
    return min(total, over)


def _symengine():
    try:
        import symengine
    except ImportError:  # an optional speed-up: SymPy alone gives the same derivatives
        return None
    return symengine


def _smooth(expr: Basic) -> bool:
    """Built only from the nodes SymEngine differentiates as SymPy does (see the module)."""
    if isinstance(expr, (Symbol, Indexed)):
        return True
    if expr.is_Integer or expr.is_Rational or expr is pi or expr is E:
        return True
    if isinstance(expr, (Add, Mul, Pow)) or type(expr) in _FUNCTIONS:
        if type(expr) is log and len(expr.args) != 1:
            return False
        if isinstance(expr, Pow):
            if not expr.exp.is_Rational:
                return False  # u^g: SymEngine writes g·u^(g−1), SymPy g·u^g/u, the form the checks expect
            if not expr.exp.is_Integer and not expr.base.is_nonnegative:
                return False  # SymEngine writes (1/u)^(1/2) as u^(−1/2): false for u < 0
        return all(_smooth(arg) for arg in expr.args)
    return False


def _name(k: int) -> str:
    """Every atom gets a fresh name, so no user's name can clash with one."""
    return f"_v{k}"


def _to_symengine(expr: Basic, names: dict, engine):
    if isinstance(expr, (Symbol, Indexed)):
        if expr not in names:
            names[expr] = engine.Symbol(_name(len(names)))
        return names[expr]
    if expr.is_Integer:
        return engine.Integer(int(expr))
    if expr.is_Rational:
        return engine.Rational(int(expr.p), int(expr.q))
    if expr is pi:
        return engine.pi
    if expr is E:
        return engine.E
    args = [_to_symengine(arg, names, engine) for arg in expr.args]
    if isinstance(expr, Add):
        return engine.Add(*args)  # one n-ary node: folding with + would rebuild it n times
    if isinstance(expr, Mul):
        return engine.Mul(*args)
    if isinstance(expr, Pow):
        return args[0] ** args[1]
    return getattr(engine, _FUNCTIONS[type(expr)])(*args)


class _Unfamiliar(Exception):
    """SymEngine answered with a node that ``_to_sympy`` has no SymPy counterpart for."""


# SymEngine's node names back to SymPy's constructors: the functions of _FUNCTIONS by their own
# names (its exp(u) is a power of e, a Pow), and +, ×, powers
_BACK = {"Add": Add, "Mul": Mul, "Pow": Pow, **{name: function for function, name in _FUNCTIONS.items()}}


def _to_sympy(expr, atoms: dict, engine, done: dict) -> Basic:
    """SymEngine's answer as SymPy, each variable mapped straight back to its own atom, each
    shared node converted once.

    Why not SymEngine's ``_sympy_()``: it rebuilds on plain symbols (no assumptions), so SymPy
    cannot simplify as it builds; with the atoms put back afterwards, a tower of ten nested tanh
    took 10 s instead of 10 ms."""
    if expr in done:
        return done[expr]
    if isinstance(expr, engine.Symbol):
        result = atoms[expr]
    elif not expr.args:
        result = expr._sympy_()  # a number, π or e
    else:
        build = _BACK.get(type(expr).__name__)
        if build is None:
            raise _Unfamiliar(type(expr).__name__)
        result = build(*(_to_sympy(arg, atoms, engine, done) for arg in expr.args))
    done[expr] = result
    return result

