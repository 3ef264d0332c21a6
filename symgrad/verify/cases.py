"""Deciding identities with kinks by cases: one smooth identity per region between the kinks.

relu, |·|, sign, max/min, clip, Huber and Heaviside are smooth except where an argument (a
*kink*) is 0: ``Max(0, x)`` at x = 0, ``Max(a, b)`` at a = b, a case boundary of a
``Piecewise`` where its two sides meet. Fix the sign of every kink argument (g > 0 or g < 0)
and each of these functions is one smooth expression: ``Heaviside(g) → 1``, ``|g| → g``,
``Max(a, b) → a``. ``regions`` splits an expression that way, innermost kinks first, into
(conditions, smooth value) leaves; the points where some g = 0 — a set of measure zero unless g
is identically 0, which SymPy then evaluates itself — are exactly the ones no leaf covers. An
identity proven zero on every leaf therefore holds *almost everywhere* (everywhere but at the
kinks), the sense in which a derivative by cases holds.

A leaf that is not identically zero still proves nothing false unless its region is not empty:
``relu(x) - relu(-x) = x`` has the leaf "x > 0 and −x > 0" on which the sides differ, but no
point lies there. ``linear_witness`` decides a region cut out by kinks linear in the variables
exactly (Fourier–Motzkin elimination over the rationals, strict inequalities) and, when it is
not empty, returns a rational point inside it; ``search_witness`` looks for a point in a region
with non-linear kinks (the hinge's 1 − y z) and may fail, which leaves the entry undecided.
A point inside a region where the leaf is not zero is a counterexample no matter how far away
it lies: ``relu(x - 1000) = 0`` is refuted at x = 1001, a point random sampling in [−2, 2] never
reaches.
"""

from __future__ import annotations

import random
from fractions import Fraction
from functools import lru_cache

from sympy import (Abs, Add, Basic, DiracDelta, Eq, Heaviside, Max, Min, Mul, Ne, Piecewise, Poly, Rational, S, Symbol,
                   expand, sign)
from sympy.core.relational import Relational

KINKED = (Heaviside, DiracDelta, Max, Min, Abs, sign, Piecewise)  # DiracDelta(g): 0 wherever g ≠ 0
MAX_REGIONS = 256  # leaves of one case split; past it the entry is left undecided


class TooManyRegions(Exception):
    """More regions than ``MAX_REGIONS``: not decided by cases."""


def has_kinks(expr: Basic) -> bool:
    return isinstance(expr, Basic) and expr.has(*KINKED)


def _relations(condition: Basic) -> list[Relational]:
    return [r for r in condition.atoms(Relational) if not isinstance(r, (Eq, Ne))]


def _kinks_of(node: Basic) -> list[Basic]:
    """The kink arguments of one node (its g's)."""
    if isinstance(node, (Heaviside, DiracDelta, Abs, sign)):
        return [node.args[0]]
    if isinstance(node, (Max, Min)):
        args = node.args
        return [args[a] - args[b] for a in range(len(args)) for b in range(a)]
    if isinstance(node, Piecewise):
        return [r.lhs - r.rhs for _, condition in node.args for r in _relations(condition)]
    return []


def kink_arguments(expr: Basic) -> list[Basic]:
    """Kink arguments with no kink inside them (their sign is what a region fixes), in a
    deterministic order."""
    found = []
    for node in expr.atoms(*KINKED):
        for g in _canonical_kinks(node):
            if g not in found:
                found.append(g)
    return sorted(found, key=_kink_order)


@lru_cache(maxsize=65536)
def _kink_order(g: Basic) -> tuple:
    """Simplest first, then by text: kept, since printing a kink is slow and the steps of one
    derivation ask about the same kinks again and again."""
    return g.count_ops(), str(g)


@lru_cache(maxsize=65536)
def _canonical_kinks(node: Basic) -> tuple:
    out = []
    for g in _kinks_of(node):
        g = sign_part(g)
        g = min(expand(g), expand(-g), key=str)  # x − 1 and 1 − x are one kink
        if g.free_symbols and not has_kinks(g):
            out.append(g)
    return tuple(out)


@lru_cache(maxsize=65536)
def sign_part(h: Basic) -> Basic:
    """h without its factors SymPy knows to be non-negative (|x|⁻¹, a norm): they change the
    sign of h nowhere except where they vanish, a set of measure zero (their own kink), so
    h and its sign part are one kink: x·x2/(|x| |x2|) and x·x2."""
    from sympy import Mul, factor_terms

    factors = Mul.make_args(factor_terms(h))
    kept = [f for f in factors if not (f.free_symbols and _nonnegative(f))]
    return Mul(*kept) if len(kept) < len(factors) and kept else h


def _nonnegative(factor: Basic) -> bool:
    """Non-negative wherever defined: (x₁² + x₂²)^(−1/2) is, though SymPy cannot say so of it at 0."""
    if factor.is_nonnegative:
        return True
    return bool(factor.is_Pow and factor.base.is_nonnegative and factor.exp.is_extended_real)


def _sign_against(h: Basic, g: Basic, s: int) -> int | None:
    """The sign of h where g has sign s, if h is a non-zero constant multiple of g (up to
    factors that are non-negative: a kink of theirs is a kink of its own)."""
    h = sign_part(h)
    if h.free_symbols != g.free_symbols:
        return None
    ratio = _ratio(h, g)
    if ratio is None:
        return None
    return s if ratio > 0 else -s


@lru_cache(maxsize=65536)
def _ratio(h: Basic, g: Basic):
    """c with h = c·g for a real number c ≠ 0, or None: c is read off one term of g and
    confirmed by expanding h − c·g (cheaper than cancelling h/g)."""
    h, g = expand(h), expand(g)
    if h == g:
        return 1
    if h == -g:
        return -1
    g_terms, h_terms = g.as_coefficients_dict(), h.as_coefficients_dict()
    for term, coefficient in g_terms.items():
        if term in h_terms and coefficient != 0:
            c = h_terms[term] / coefficient
            if c.is_number and c.is_extended_real and c.is_nonzero and expand(h - c * g) == 0:
                return c
            return None
    return None


def resolve(expr: Basic, g: Basic, s: int) -> Basic:
    """``expr`` where the kink argument g has sign s (> 0 for 1, < 0 for −1)."""
    def settle(node: Basic) -> Basic:
        if isinstance(node, Heaviside):
            t = _sign_against(node.args[0], g, s)
            return node if t is None else S.One if t > 0 else S.Zero
        if isinstance(node, DiracDelta):
            t = _sign_against(node.args[0], g, s)
            return node if t is None else S.Zero
        if isinstance(node, Abs):
            t = _sign_against(node.args[0], g, s)
            return node if t is None else t * node.args[0]
        if isinstance(node, sign):
            t = _sign_against(node.args[0], g, s)
            return node if t is None else S(t)
        if isinstance(node, (Max, Min)):
            args = list(node.args)
            beaten = set()
            for a in range(len(args)):
                for b in range(len(args)):
                    if a != b and a not in beaten and b not in beaten:
                        t = _sign_against(args[a] - args[b], g, s)
                        if t is not None:  # args[a] > args[b] when t > 0
                            loser = b if (t > 0) == isinstance(node, Max) else a
                            beaten.add(loser)
            if not beaten:
                return node
            return node.func(*(x for k, x in enumerate(args) if k not in beaten))
        if isinstance(node, Relational) and not isinstance(node, (Eq, Ne)):
            t = _sign_against(node.lhs - node.rhs, g, s)
            if t is None:
                return node
            return S.true if (t > 0) == (node.rel_op in (">", ">=")) else S.false
        return node

    settles = (*KINKED, Relational)

    def rebuild(node: Basic) -> Basic:
        """Bottom-up like ``Basic.replace``, but a max or min whose arguments changed is rebuilt
        unevaluated: SymPy's evaluation of Max/Min compares its arguments pairwise through the
        assumptions system (1.5 ms a node, most of a case split's time on clip and Huber), and
        the kink settled here usually removes the node; one it leaves is evaluated then."""
        if not node.args:
            return node
        args = tuple(rebuild(a) for a in node.args)
        if args == node.args:
            return settle(node) if isinstance(node, settles) else node
        if not isinstance(node, (Max, Min)):
            node = node.func(*args)
            return settle(node) if isinstance(node, settles) else node
        settled = settle(node.func(*args, evaluate=False))
        # not settled by this kink: evaluated after all (Max(x, x) → x, Min(−1/2, 1/2) → −1/2)
        return settled.func(*settled.args) if isinstance(settled, (Max, Min)) else settled

    return rebuild(expr)


def kink_skeleton(expr: Basic) -> Basic:
    """The outermost kinked nodes of ``expr`` (each whole, with the kinks inside it), as a
    tuple without the smooth rest. It has the kink arguments of ``expr``, nested the same way,
    and settling a kink settles each node as it does inside ``expr``; nothing in a tuple can
    cancel (in a sum, Max(x + |y|, |y|) − Max(x + |y|, |y|)-like terms would, and |y|'s regions
    would be lost), so its regions refine those of ``expr``: a point inside each of its regions
    is a point inside each region of ``expr``. Many entries and steps share one skeleton,
    while their values all differ."""
    from sympy import Tuple, default_sort_key

    found: set = set()

    def walk(node: Basic) -> None:
        if isinstance(node, KINKED):
            found.add(node)
            return
        for argument in node.args:
            walk(argument)

    walk(expr)
    return Tuple(*sorted(found, key=default_sort_key))


def regions(expr: Basic, max_regions: int = MAX_REGIONS) -> list[tuple[tuple, Basic]]:
    """(conditions, smooth value) for every sign pattern of the kink arguments; a condition
    (g, s) says g > 0 (s = 1) or g < 0 (s = −1). Raises TooManyRegions."""
    leaves, stack = [], [((), expr)]
    while stack:
        conditions, value = stack.pop()
        kinks = kink_arguments(value) if has_kinks(value) else []
        if not kinks:
            leaves.append((conditions, value))
            if len(leaves) > max_regions:
                raise TooManyRegions(f"more than {max_regions} regions")
            continue
        g = kinks[0]
        for s in (1, -1):
            settled = resolve(value, g, s)
            if settled == value:  # nothing depended on this kink after all (cannot happen)
                raise TooManyRegions(f"could not settle the kink {g}")
            stack.append(((*conditions, (g, s)), settled))
        if len(stack) + len(leaves) > 4 * max_regions:
            raise TooManyRegions(f"more than {max_regions} regions")
    return leaves


# -- every region at once: one 0/1 indicator per kink ------------------------------------------------
class NotIndicatorForm(ValueError):
    """The expression has a kink this rewriting does not cover (a kink inside a kink argument,
    a max of three arguments, a compound case condition): the regions must be taken one by one."""


def with_indicators(expr: Basic) -> tuple[Basic, list[Basic]]:
    """``expr`` with every kinked function written through one symbol h_g per kink argument g,
    standing for the indicator [g > 0]: H(g) → h, |g| → g(2h − 1), sign(g) → 2h − 1,
    max(a, b) → b + (a − b)·h_{a−b}, a case of a Piecewise → its indicator times its value,
    DiracDelta(g) → 0. In every region between the kinks each h_g *is* 0 or 1 and the result
    equals ``expr`` there; so an identity that holds for every 0/1 value of the h's — as it does
    when it holds with the h's as free variables, up to h² = h — holds on every region at once,
    without enumerating the 2^k regions. Raises NotIndicatorForm where that reading does not apply."""
    found = _indicator_form(expr)
    if isinstance(found, str):
        raise NotIndicatorForm(found)
    rewritten, symbols = found
    return rewritten, list(symbols)


@lru_cache(maxsize=256)
def _indicator_form(expr: Basic) -> tuple[Basic, tuple[Basic, ...]] | str:
    """``with_indicators``'s answer, or why it does not apply; kept, since a case split asks
    first whether the reading applies and then proves with it."""
    try:
        return _rewritten_with_indicators(expr)
    except NotIndicatorForm as reason:
        return str(reason)


def _rewritten_with_indicators(expr: Basic) -> tuple[Basic, tuple[Basic, ...]]:
    kinks = kink_arguments(expr)
    symbols = {g: Symbol(f"_h{k}", real=True) for k, g in enumerate(kinks)}

    def indicator(argument: Basic) -> Basic:  # [argument > 0]
        for g, h in symbols.items():
            t = _sign_against(argument, g, 1)
            if t is not None:
                return h if t > 0 else 1 - h
        raise NotIndicatorForm(f"no kink matches {argument}")

    def condition(c: Basic) -> Basic:
        if c is S.true:
            return S.One
        if isinstance(c, Relational) and not isinstance(c, (Eq, Ne)):
            above = indicator(c.lhs - c.rhs)
            return above if c.rel_op in (">", ">=") else 1 - above
        raise NotIndicatorForm(f"the case condition {c}")

    def rewrite(node: Basic) -> Basic:
        if isinstance(node, Heaviside):
            return indicator(node.args[0])
        if isinstance(node, DiracDelta):
            return S.Zero
        if isinstance(node, Abs):
            return node.args[0] * (2 * indicator(node.args[0]) - 1)
        if isinstance(node, sign):
            return 2 * indicator(node.args[0]) - 1
        if isinstance(node, (Max, Min)) and len(node.args) == 2:
            a, b = node.args
            first_wins = indicator(a - b) if isinstance(node, Max) else 1 - indicator(a - b)
            return b + (a - b) * first_wins
        if isinstance(node, Piecewise):
            value, rest = S.Zero, S.One  # rest: the indicator that no earlier case applied
            for piece, c in node.args:
                applies = condition(c)
                value += rest * applies * piece
                rest = rest * (1 - applies)
            if node.args[-1][1] is not S.true:
                raise NotIndicatorForm("a Piecewise without an otherwise case")
            return value
        raise NotIndicatorForm(f"{type(node).__name__}")

    if not kinks:
        return expr, ()
    if any(has_kinks(a) for node in expr.atoms(*KINKED) for a in node.args):
        raise NotIndicatorForm("a kink inside a kink")  # its regions are not all sign patterns
    return expr.replace(lambda e: isinstance(e, KINKED), rewrite), tuple(symbols.values())


def distinct_kinks(expr: Basic) -> list[Basic]:
    """``kink_arguments``, those that are constant multiples of one another (x and 2x) once."""
    kept: list[Basic] = []
    for g in kink_arguments(expr):
        if not any(_sign_against(g, other, 1) is not None for other in kept):
            kept.append(g)
    return kept


def multilinear_parts(polynomial: Basic, indicators: list[Basic]) -> dict[frozenset, Basic]:
    """The expanded ``polynomial`` grouped by its monomial in the indicators, each power h^k
    read as h (h² = h for h in {0, 1}): {frozenset of h's: coefficient}. The coefficients may
    still hold an h inside a function; they are equal to the original's wherever each h is 0 or 1."""
    wanted = set(indicators)
    groups: dict[frozenset, Basic] = {}
    for term in Add.make_args(expand(polynomial)):
        coefficient, monomial = S.One, set()
        for factor in Mul.make_args(term):
            base, exponent = factor.as_base_exp()
            if base in wanted and exponent.is_Integer and exponent > 0:
                monomial.add(base)
            else:
                coefficient *= factor
        key = frozenset(monomial)
        groups[key] = groups.get(key, S.Zero) + coefficient
    return groups


# -- points inside a region ----------------------------------------------------------------------
def _linear(g: Basic, variables: list) -> tuple[dict, Fraction] | None:
    """g = Σ c_v v + b with rational c and b, or None."""
    try:
        poly = Poly(g, *variables)
    except Exception:  # noqa: BLE001 - not a polynomial in them (exp, a σ …)
        return None
    if poly.total_degree() > 1:
        return None
    coefficients, constant = {}, Fraction(0)
    for monomial, c in poly.terms():
        if not c.is_Rational:
            return None
        c = Fraction(int(c.p), int(c.q))
        if sum(monomial) == 0:
            constant = c
        else:
            coefficients[variables[monomial.index(1)]] = c
    return coefficients, constant


def linear_witness(conditions: tuple) -> tuple[bool, dict | None]:
    """(decided, point): for kinks linear in the variables, decided is True and point is a
    rational point strictly inside the region, or None when the region is empty; (False, None)
    when some kink is not linear."""
    variables = sorted({v for g, _ in conditions for v in g.free_symbols}, key=str)
    rows = []  # each: (coefficients, constant) meaning Σ c v + b > 0
    for g, s in conditions:
        linear = _linear(g, variables)
        if linear is None:
            return False, None
        coefficients, constant = linear
        rows.append(({v: s * c for v, c in coefficients.items()}, s * constant))
    stages = []
    for v in variables:  # Fourier–Motzkin: eliminate v
        stages.append((v, rows))
        positive = [r for r in rows if r[0].get(v, 0) > 0]
        negative = [r for r in rows if r[0].get(v, 0) < 0]
        rest = [r for r in rows if r[0].get(v, 0) == 0]
        for p_coefficients, p_constant in positive:
            for n_coefficients, n_constant in negative:
                a, b = p_coefficients[v], -n_coefficients[v]
                combined = {u: p_coefficients.get(u, 0) / a + n_coefficients.get(u, 0) / b
                            for u in set(p_coefficients) | set(n_coefficients) if u != v}
                rest.append(({u: c for u, c in combined.items() if c != 0}, p_constant / a + n_constant / b))
        rows = rest
        if len(rows) > 5000:
            return False, None
    if any(constant <= 0 for coefficients, constant in rows if not coefficients):
        return True, None
    point: dict = {}
    for v, stage_rows in reversed(stages):  # back-substitute: an interval for v at a time
        low, high = None, None
        for coefficients, constant in stage_rows:
            c = coefficients.get(v, 0)
            if c == 0:
                continue
            rest = constant + sum(coefficient * point[u] for u, coefficient in coefficients.items() if u != v)
            bound = -rest / c  # c v + rest > 0
            if c > 0:
                low = bound if low is None else max(low, bound)
            else:
                high = bound if high is None else min(high, bound)
        point[v] = _inside(low, high)
    return True, point


def _inside(low, high) -> Fraction:
    """A simple rational strictly between low and high (either may be None: unbounded)."""
    if low is None and high is None:
        return Fraction(1, 2)
    if low is None:
        return Fraction(int(high) - 1) if int(high) - 1 < high else high - 1
    if high is None:
        return Fraction(int(low) + 1) if int(low) + 1 > low else low + 1
    middle = (low + high) / 2
    for denominator in (1, 2, 4, 8, 16, 1024):  # a short binary fraction if one fits
        candidate = Fraction(round(middle * denominator), denominator)
        if low < candidate < high:
            return candidate
    return middle


def search_witness(conditions: tuple, evaluate, seed: str, tries: int = 120) -> dict | None:
    """A point satisfying every condition, searched at random at growing scales (non-linear
    kinks); ``evaluate(g, point)`` gives g's exact value or raises. None if none was found."""
    variables = sorted({v for g, _ in conditions for v in g.free_symbols}, key=str)
    constants = [abs(Fraction(int(c.p), int(c.q))) for g, _ in conditions for c in g.atoms(Rational)]
    largest = max([Fraction(1)] + constants)
    rng = random.Random(seed)
    for attempt in range(tries):
        scale = Fraction(2) ** (attempt % 24) * largest / 4
        point = {v: Fraction(rng.randint(-2 ** 10, 2 ** 10), 2 ** 10) * scale for v in variables}
        try:
            if all((evaluate(g, point) > 0) == (s > 0) for g, s in conditions):
                return point
        except Exception:  # noqa: BLE001 - a point where g is undefined or not exact: try another
            continue
    return None


def _indicator(condition: Basic) -> Basic | None:
    """1 where ``condition`` holds, 0 elsewhere, as step functions (exactly, boundary included):
    [g > 0] = H(g, 0), [g ≥ 0] = H(g, 1); None for a condition it does not know."""
    from sympy import And, Not, Or
    from sympy.logic.boolalg import BooleanFalse, BooleanTrue

    if isinstance(condition, BooleanTrue):
        return S.One
    if isinstance(condition, BooleanFalse):
        return S.Zero
    if isinstance(condition, Not):
        inner = _indicator(condition.args[0])
        return None if inner is None else 1 - inner
    if isinstance(condition, (And, Or)):
        parts = [_indicator(c) if isinstance(condition, And) else _indicator(Not(c)) for c in condition.args]
        if any(p is None for p in parts):
            return None
        product = S.One
        for part in parts:
            product *= part
        return product if isinstance(condition, And) else 1 - product
    if isinstance(condition, Relational) and not isinstance(condition, (Eq, Ne)):
        g = condition.lhs - condition.rhs
        if condition.rel_op in ("<", "<="):
            g = -g
        return Heaviside(g, 0 if condition.rel_op in (">", "<") else 1)
    return None


def piecewise_as_steps(expr: Basic) -> Basic:
    """Every Piecewise with a last case ``True`` (a function defined everywhere) written with
    step functions: Piecewise((a, c), (b, True)) = a·[c] + b·(1 − [c]), the same value at every
    point. SymPy's Sum folds a Piecewise out of an inner Sum and leaves the inner sum's bound
    index free in its condition (an unsound rewrite); step functions are plain factors."""
    def convert(piecewise: Piecewise) -> Basic:
        if piecewise.args[-1][1] != S.true:
            return piecewise
        total, rest = S.Zero, S.One  # rest: none of the earlier conditions held
        for value, condition in piecewise.args:
            holds = _indicator(condition)
            if holds is None:
                return piecewise
            total += value * rest * holds
            rest = rest * (1 - holds)
        return total
    return expr.replace(lambda e: isinstance(e, Piecewise), convert)


@lru_cache(maxsize=8192)
def describe(conditions: tuple) -> str:
    """A region in words (and the seed of its point search): "x - 1 > 0 and y < 0"."""
    return " and ".join(f"{g} {'>' if s > 0 else '<'} 0" for g, s in conditions) or "everywhere"


__all__ = ["has_kinks", "regions", "resolve", "kink_arguments", "linear_witness", "search_witness", "describe",
           "TooManyRegions"]
