"""Exact (symbolic) checking of explicit entries.

An entry ``lhs = rhs`` is proven when ``lhs − rhs`` — derivatives evaluated by the chain rule,
abbreviations unfolded, assumptions substituted — expands to exactly 0. Where a claim about the
same quantity was already proven (``lhs = r_prev``), the new claim is reduced to
``r_prev = rhs``: equal by transitivity, and usually equal structurally, which costs nothing.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from functools import lru_cache

import mpmath
from sympy import (Add, Mul, Poly, S, PolynomialError, Basic, Derivative, Dummy, Eq, Indexed, Piecewise, Rational, Sum, Symbol, cancel, cosh, exp,
                   expand, expand_log, log, sinh, tanh, together)

from symgrad.notation import SumExcluding
from symgrad.smooth_algebra import expands_to_zero
from symgrad.verify.cases import (MAX_REGIONS, NotIndicatorForm, TooManyRegions, describe, distinct_kinks, has_kinks,
                                  kink_arguments, kink_skeleton, linear_witness, multilinear_parts, regions,
                                  search_witness, with_indicators)
from symgrad.verify.concrete import ConcreteModel
from symgrad.verify.numeric import arithmetic_closure

# Past this many operations the fall-back rational simplification is not attempted: the
# entry is reported as undecided rather than allowed to run for minutes.
MAX_OPS_FOR_CANCEL = 1000


class ExactProver:
    """Proves entries and remembers, per left-hand side, the latest proven right-hand side."""

    def __init__(self, concrete: ConcreteModel):
        self.concrete = concrete
        self.proven: dict[Basic, Basic] = {}
        self.templates: list[tuple[Basic, Basic, frozenset, bool, tuple, frozenset]] = []
        self._conditional: dict[tuple, Basic] = {}  # (lhs, assumptions) → value proven under them
        self.case_notes: list[str] = []  # what each proof by cases established (almost everywhere)
        self._prepared_memo: dict[tuple, tuple] = {}  # ``_prepared``'s answers

    def remember_template(self, lhs: Basic, rhs: Basic, free, assumptions=frozenset()) -> None:
        """Record ``lhs = rhs`` proven for every value of the free indices (by the index prover),
        so that a later entry such as ∂a_3/∂z_5 can start from its instance. A template proven
        under assumptions serves only checks made under (at least) the same assumptions."""
        free, assumptions = frozenset(free), frozenset(assumptions)
        split = _equal_case_split(rhs, free)
        if split is None:
            self.templates.append((lhs, rhs, free, rhs.has(Sum, SumExcluding), (), assumptions))
            return
        # a Piecewise on i = j: one template per case, so an instance needs no Piecewise
        # evaluation (the i ≠ j one applies only where the bound values differ)
        (p, q), equal, apart = split
        self.templates.append((lhs, apart, free, apart.has(Sum, SumExcluding), ((p, q),), assumptions))
        equal_lhs = lhs.xreplace({q: p})
        self.templates.append((equal_lhs, equal, free - {q}, equal.has(Sum, SumExcluding), (), assumptions))

    def _known(self, lhs: Basic, assumptions: frozenset = frozenset()) -> Basic:
        """The latest proven right-hand side for ``lhs`` (under at most ``assumptions``), or
        ``lhs`` itself."""
        if lhs in self.proven:
            return self.proven[lhs]
        key = (lhs, assumptions)
        if key in self._conditional:
            return self._conditional[key]
        for template, value, free, has_sums, distinct, needs in reversed(self.templates):
            if not needs <= assumptions:
                continue
            binding = _bind(template, lhs, free, {})
            if binding is not None and all(binding[p] != binding[q] for p, q in distinct):
                known = value.xreplace(binding)
                if has_sums:
                    known = self.concrete.explicit(known)
                if needs:
                    self._conditional[key] = known
                else:
                    self.proven[lhs] = known
                return known
        return lhs

    def _use_known_derivatives(self, expr: Basic, assumptions: frozenset) -> Basic:
        """Replace derivatives already proven equal to something (∂L/∂a_k = −y_k/a_k) by it:
        a proven fact, and often what makes both sides structurally equal at once."""
        mapping = {}
        for node in expr.atoms(Derivative):
            known = self._known(node, assumptions)
            if known is not node:
                mapping[node] = known
        return expr.xreplace(mapping) if mapping else expr

    def prove(self, lhs: Basic, rhs: Basic, elimination: dict, assumptions: frozenset = frozenset()) -> bool:
        """True if lhs = rhs is proven (under the named assumptions, whose solved form is
        ``elimination``); False only if it was not (the numeric check decides whether it is
        *refuted*)."""
        reference = self._known(lhs, assumptions)
        if reference == rhs or self._is_zero(reference - rhs, elimination, assumptions):
            if not elimination:
                self.proven[lhs] = rhs
            return True
        if reference is not lhs and self._is_zero(lhs - rhs, elimination, assumptions):
            return True
        return False

    def _is_zero(self, difference: Basic, elimination: dict, assumptions: frozenset = frozenset()) -> bool:
        cm = self.concrete
        value = self._use_known_derivatives(difference, assumptions)
        if value == 0:
            return True
        value = cm.evaluate_derivatives(value)
        if value == 0:
            return True
        unfolded = cm.unfold(value, keep_sums=True)
        substituted = unfolded.xreplace(elimination) if elimination else unfolded
        if expands_to_zero(substituted) or expand(substituted) == 0:
            return True
        if has_kinks(unfolded):
            return self._zero_by_cases(unfolded, elimination)
        # Fall-backs for rational identities that expanding does not show, e.g.
        # (a³ − y³)/(a² + a y + y²) = a − y: clear denominators while the sums are still opaque
        # and only then apply the assumptions (applying them first can multiply the size
        # a hundredfold); then, for small entries, unfold everything.
        if unfolded.count_ops() <= MAX_OPS_FOR_CANCEL:
            numerator = together(unfolded).as_numer_denom()[0]
            if expand(numerator.xreplace(elimination) if elimination else numerator) == 0:
                return True
        value = cm.unfold(unfolded, keep_sums=False)
        if elimination:
            value = value.xreplace(elimination)
        if value.count_ops() > MAX_OPS_FOR_CANCEL:
            return False
        if cancel(expand(value)) == 0:
            return True
        if has_kinks(value):  # kinks that were inside a closed sum (sum(relu(z)))
            return self._zero_by_cases(value, {})
        if not value.has(exp, log, tanh, sinh, cosh):
            return False
        try:
            return cancel(together(exp_log_normal_form(value))) == 0 or zero_through_exp(value)
        except (TypeError, ValueError, KeyError, NotImplementedError, PolynomialError):
            return False  # "not proven": the numeric and exact-evaluation checks still run


    # -- functions with kinks: one smooth identity per region (verify/cases.py) -------------
    def _prepared(self, difference: Basic, elimination: dict, assumptions: frozenset = frozenset()) -> Basic:
        """The difference in the base variables: known derivatives, derivatives evaluated,
        every abbreviation unfolded (sums too: a kink's sign depends on their values)."""
        key = (difference, id(elimination), assumptions)
        kept = self._prepared_memo.get(key)
        if kept is not None and kept[0] is elimination:  # asked twice: does it unfold to kinks, and where
            return kept[1]
        cm = self.concrete
        value = cm.evaluate_derivatives(self._use_known_derivatives(difference, assumptions))
        value = cm.unfold(value, keep_sums=False)
        value = value.xreplace(elimination) if elimination else value
        if len(self._prepared_memo) > 256:  # the repeats come back to back: a small memory suffices
            self._prepared_memo.clear()
        self._prepared_memo[key] = (elimination, value)  # (the elimination kept alive: its id is in the key)
        return value

    def _zero_by_cases(self, unfolded: Basic, elimination: dict) -> bool:
        """Zero on every region between the kinks (an empty region needs nothing): zero
        almost everywhere. Records what was proven in ``case_notes``."""
        value = self.concrete.unfold(unfolded, keep_sums=False)
        if elimination:
            value = value.xreplace(elimination)
        note = zero_by_cases(value)
        if note is None:
            return False
        self.case_notes.append(note)
        return True

    def case_witnesses(self, lhs: Basic, rhs: Basic, elimination: dict,
                       assumptions: frozenset = frozenset(), every_region: bool = False) -> list[tuple[str, dict]]:
        """Points strictly inside each region where lhs − rhs is not identically 0 (or inside
        every region), with the region described: where a counterexample must be looked for,
        however far away."""
        value = self._prepared(lhs - rhs, elimination, assumptions)
        if not has_kinks(value):
            return []
        if every_region:
            try:
                return list(_in_every_region(kink_skeleton(value)))
            except TooManyRegions:
                pass  # the skeleton's finer split may pass the limit where the value's own does not
        try:
            patterns = _sign_patterns(value)
            if every_region and patterns is not None:  # each sign pattern is a region: no leaf needed
                return _witnesses(patterns)
            leaves = regions(value)
        except TooManyRegions:
            return []
        if not every_region:
            leaves = [(conditions, leaf) for conditions, leaf in leaves if not _smooth_zero(leaf)]
        return _witnesses([conditions for conditions, _ in leaves])


@lru_cache(maxsize=1024)
def _in_every_region(skeleton: Basic) -> tuple[tuple[str, dict], ...]:
    """(description, point) inside every region of a ``kink_skeleton``; kept, since the steps
    of one derivation and their entries come back to the same kinks (Huber's |x| and δ)."""
    patterns = _sign_patterns(skeleton)
    conditions = patterns if patterns is not None else [c for c, _ in regions(skeleton)]
    return tuple(_witnesses(conditions))


def _witnesses(conditions_of_regions: list[tuple]) -> list[tuple[str, dict]]:
    """(description, point) for each region a point was found in."""
    found = []
    for conditions in conditions_of_regions:
        point = _witness(conditions)
        if point is not None:
            found.append((describe(conditions), point))
    return found


@lru_cache(maxsize=8192)
def _witness(conditions: tuple) -> dict | None:
    """A point strictly inside the region (exactly, for linear kinks; by a search seeded by the
    region itself otherwise), or None. Kept: the steps of one network ask about the same
    regions again and again (a 4 ms description and a search of 120 points each time)."""
    decided, point = linear_witness(conditions)
    if not decided:
        point = search_witness(conditions, _exact_at, describe(conditions))
    return point


def _sign_patterns(value: Basic) -> list[tuple] | None:
    """Every sign pattern of the kinks of ``value`` as region conditions ((g, ±1), …), when no
    kink lies inside another (then each pattern is one region, and listing them needs no
    rewriting of ``value``); kinks that are multiples of one another are one kink. None where
    kinks nest; TooManyRegions past ``MAX_REGIONS`` patterns, at once (``regions`` would build
    that many leaves before saying so)."""
    try:
        with_indicators(value)
    except NotIndicatorForm:
        return None
    kinks = distinct_kinks(value)
    if 2 ** len(kinks) > MAX_REGIONS:
        raise TooManyRegions(f"more than {MAX_REGIONS} regions")
    return [tuple(zip(kinks, signs)) for signs in itertools.product((1, -1), repeat=len(kinks))]


def zero_by_cases(value: Basic) -> str | None:
    """What proves ``value`` = 0 almost everywhere — zero on every region between its kinks, an
    empty region (decided exactly, for linear kinks) needing nothing — or None. Entries of
    vectors (z[i], z[j]) are independent variables here: a claim for all of their values holds
    in particular where two of them are one entry."""
    at_once = _zero_on_every_region_at_once(value)
    if at_once is not None:
        return at_once
    try:
        _sign_patterns(value)  # too many regions: said at once
        leaves = regions(value)
    except TooManyRegions:
        return None
    if not all(_not_identically_zero(g) for conditions, _ in leaves for g, _ in conditions):
        return None
    empty = 0
    for conditions, leaf in leaves:
        if _smooth_zero(leaf):
            continue
        decided, point = linear_witness(conditions)
        if decided and point is None:
            empty += 1
            continue
        return None
    return (f"by cases: equal on every region between the kinks ({len(leaves)} sign patterns"
            + (f", {empty} of them empty" if empty else "") + "), so almost everywhere (not at a kink)")


def _zero_on_every_region_at_once(value: Basic) -> str | None:
    """``value`` = 0 on every region between its kinks, shown once for all 2^k of them: with each
    kink's indicator an independent 0/1 variable (``cases.with_indicators``), the numerator is 0
    in each monomial of the indicators (h² = h). None where this does not settle it (the regions
    are then taken one by one)."""
    try:
        rewritten, indicators = with_indicators(value)
    except NotIndicatorForm:
        return None
    kinks = kink_arguments(value)
    if not indicators or not all(_not_identically_zero(g) for g in kinks):
        return None
    numerator = together(rewritten).as_numer_denom()[0]
    parts = multilinear_parts(numerator, indicators)
    if not all(_smooth_zero(coefficient) for coefficient in parts.values()):
        return None
    return (f"by cases: equal on every region between the kinks ({len(kinks)} kink"
            f"{'' if len(kinks) == 1 else 's'}, every sign pattern at once: each kink's indicator "
            "[g > 0] taken as a 0/1 variable), so almost everywhere (not at a kink)")


def zero_by_cases_in_sums(value: Basic) -> str | None:
    """``zero_by_cases`` for an expression with index sums (a symbolic size): terms that are a
    multiple of a sum over the same limits are one sum of the difference of their terms, and
    each such summand is proven zero almost everywhere for every value of its index, a sum
    inside a kink (Σ_p W_jp X_ps in relu(Z_js)) taken as one opaque real number. A sum of terms
    each zero almost everywhere is zero almost everywhere."""
    groups: dict = {}
    rest = []
    for term in Add.make_args(expand(value)):
        sums = [f for f in Mul.make_args(term) if isinstance(f, Sum)]
        if len(sums) != 1:
            rest.append(term)
            continue
        (total,) = sums
        coefficient = term / total
        bound = {limit[0] for limit in total.limits}
        if coefficient.free_symbols & bound:
            return None
        groups[total.limits] = groups.get(total.limits, S.Zero) + coefficient * total.function
    notes = []
    for summand in [*groups.values(), Add(*rest)]:
        inner = {total: Symbol(f"κ_{k}", real=True) for k, total in enumerate(sorted(summand.atoms(Sum), key=str))}
        opaque = summand.xreplace(inner) if inner else summand
        if opaque.has(Sum):
            return None
        if _smooth_zero(opaque):
            continue
        note = zero_by_cases(opaque)
        if note is None:
            return None
        notes.append(note)
    return notes[0].replace("between the kinks", "between the kinks, term by term") if notes else None


def _exact_at(g: Basic, point: dict):
    """g at a rational point: exactly when rational, else to 30 digits (a norm's square root);
    only the sign is used, and a value within 10⁻¹⁰ of 0 is refused (too near the kink)."""
    terms = _rational_polynomial(g)
    if terms is not None:  # the usual kink (Σ_d W_jd X_ds + b_j): exact in Fractions, no SymPy
        total = Fraction(0)
        for coefficient, powers in terms:
            for variable, exponent in powers:
                coefficient *= point[variable] ** exponent
            total += coefficient
        return total
    compiled = _mpmath_closure(g)
    if compiled is not None:  # tanh(Σ_d W_jd X_ds + b_j): mpmath at 30 digits, no SymPy per point
        with mpmath.workdps(30):
            try:
                approximate = compiled(point)
            except (ZeroDivisionError, ValueError, OverflowError) as error:
                raise ValueError(f"not a real number here: {error}") from None
            if not isinstance(approximate, mpmath.mpf) or not mpmath.isfinite(approximate) \
                    or abs(approximate) < 1e-10:
                raise ValueError("not a real number away from 0")
            return approximate
    value = g.xreplace({v: Rational(x.numerator, x.denominator) for v, x in point.items()})
    if value.is_Rational:
        return Fraction(int(value.p), int(value.q))
    approximate = value.evalf(30)
    if not approximate.is_real or abs(approximate) < 1e-10:
        raise ValueError("not a real number away from 0")
    return approximate


_MPMATH_FUNCTIONS = {exp: mpmath.exp, log: mpmath.log, tanh: mpmath.tanh, sinh: mpmath.sinh, cosh: mpmath.cosh}


class _NotCompiled(Exception):
    """A node ``_mpmath_closure`` does not evaluate."""


@lru_cache(maxsize=4096)
def _mpmath_closure(g: Basic):
    """g as a function of a point (variable → Fraction) evaluated in mpmath at the working
    precision, or None where g holds a node other than +, ×, powers, numbers, exp, log, tanh,
    sinh, cosh: a region search evaluates each kink at hundreds of points, and SymPy's
    ``xreplace`` + ``evalf`` took 4 ms a point (most of a tanh-then-ReLU network's check)."""
    def build(e: Basic):
        if e.is_Rational:
            p, q = int(e.p), int(e.q)
            return lambda point: mpmath.mpf(p) / q
        if e.is_number:
            digits = str(e.evalf(60))
            return lambda point: mpmath.mpf(digits)
        if isinstance(e, (Symbol, Indexed)):
            return lambda point: mpmath.mpf(point[e].numerator) / point[e].denominator
        parts = [build(a) for a in e.args]
        arithmetic = arithmetic_closure(e, parts)
        if arithmetic is not None:
            return arithmetic
        if type(e) in _MPMATH_FUNCTIONS:
            function, (argument,) = _MPMATH_FUNCTIONS[type(e)], parts
            return lambda point: function(argument(point))
        raise _NotCompiled(type(e).__name__)

    try:
        return build(g)
    except _NotCompiled:
        return None


@lru_cache(maxsize=4096)
def _rational_polynomial(g: Basic) -> tuple | None:
    """g as its terms (coefficient, ((variable, exponent), …)) when it is a polynomial with
    rational coefficients, else None: what a search for a point in a region evaluates hundreds
    of times, compiled once."""
    variables = sorted(g.free_symbols, key=str)
    if not variables:
        return None
    try:
        polynomial = Poly(g, *variables)
    except (PolynomialError, TypeError, ValueError):
        return None
    if not (polynomial.domain.is_ZZ or polynomial.domain.is_QQ):
        return None
    return tuple((Fraction(int(c.p), int(c.q)), tuple((v, e) for v, e in zip(variables, monomial) if e))
                 for monomial, c in polynomial.terms())


@lru_cache(maxsize=65536)
def _not_identically_zero(g: Basic) -> bool:
    """A kink argument that is not 0 at some point: its zero set (the kink) then has measure
    zero (g is analytic), so "every region" is "almost everywhere"."""
    rng = random.Random(str(g))
    for _ in range(4):
        point = {v: Rational(rng.randint(-97, 97), rng.randint(1, 13)) for v in g.free_symbols}
        try:
            value = g.xreplace(point).evalf(30)
        except (TypeError, ValueError, ArithmeticError):
            continue
        if value.is_number and value.is_real and abs(value) > 1e-20:
            return True
    return False


def _smooth_zero(value: Basic) -> bool:
    """The smooth routes of ``ExactProver._is_zero`` for one fully unfolded expression."""
    if value == 0 or expand(value) == 0:
        return True
    if value.count_ops() > MAX_OPS_FOR_CANCEL:
        return False
    try:
        if cancel(expand(value)) == 0:
            return True
        if value.has(exp, log, tanh, sinh, cosh):
            return cancel(together(exp_log_normal_form(value))) == 0 or zero_through_exp(value)
    except (TypeError, ValueError, KeyError, NotImplementedError, PolynomialError):
        return False
    return False


def zero_through_exp(value: Basic) -> bool:
    """D = 0 from e^D = 1, for a real D: e^x is one-to-one on the reals. D = Σ c·log a + rest
    (rational c, every a positive) gives e^D = Π a^c · e^{rest}, a rational function of the
    t_z = e^{z} once ``exp_log_normal_form`` has written it so, and ``cancel`` decides whether
    it is 1. log(1 + e^z) − log(1 + e^{−z}) − z: e^D = (1 + t)/(1 + 1/t) · 1/t = 1.
    Only for D that SymPy knows to be real (every log of a positive argument, every variable
    real); anything else is left undecided."""
    logs = value.atoms(log)
    if not logs or not all(term.args[0].is_positive for term in logs) or value.is_extended_real is not True:
        return False
    factor, rest = S.One, []
    for term in Add.make_args(expand(value)):
        coefficient, rest_of_term = term.as_coeff_Mul()
        if isinstance(rest_of_term, log) and isinstance(coefficient, Rational):
            factor *= rest_of_term.args[0] ** coefficient
        elif term.has(log):
            return False  # a log times something else: e^D is not a product of powers
        else:
            rest.append(term)
    if value.count_ops() > MAX_OPS_FOR_CANCEL:
        return False
    normal = exp_log_normal_form(factor * exp(Add(*rest)))
    if normal.has(log):
        return False
    return cancel(together(normal - 1)) == 0


def _bind(template: Basic, entry: Basic, free: frozenset, binding: dict) -> dict | None:
    """The index values that make ``template`` (with free index symbols) equal ``entry``."""
    if template in free:
        if not entry.is_Integer or binding.setdefault(template, entry) != entry:
            return None
        return binding
    if not template.args or not entry.args:  # (not is_Atom: SymPy counts Indexed as an atom)
        return binding if template == entry else None
    if template.func != entry.func or len(template.args) != len(entry.args):
        return None
    for t, e in zip(template.args, entry.args):
        if _bind(t, e, free, binding) is None:
            return None
    return binding


def _equal_case_split(rhs: Basic, free: frozenset):
    """``Piecewise((f, Eq(i, j)), (g, True))`` with free i, j → ((i, j), f at j = i, g); else None."""
    if not isinstance(rhs, Piecewise) or len(rhs.args) != 2 or rhs.args[1][1] != True:  # noqa: E712
        return None
    (equal, condition), (apart, _) = rhs.args
    if not isinstance(condition, Eq) or not set(condition.args) <= free:
        return None
    p, q = condition.args
    return (p, q), equal.xreplace({q: p}), apart


def exp_log_normal_form(expr: Basic) -> Basic:
    """The exp–log family as a rational function, so that ``cancel`` decides identities in it.

    Every rewrite is an identity for real variables, so a normal form equal to 0 proves the
    original equal to 0: tanh, sinh, cosh in exponentials; e^{c·z + r} = t_z^c · e^{r} for a
    real base variable z and rational c, with t_z a *positive* symbol (e^{z} > 0 because z is
    real — the only assumption attached, and one that holds for every value); logs of products
    of positive factors split (SymPy's ``expand_log`` without ``force`` splits only those); then
    log t_z = z. The t_z and z are treated as independent variables: an identity in independent
    variables holds in particular when t_z = e^{z}."""
    expr = expr.replace(lambda e: isinstance(e, (tanh, sinh, cosh)), lambda e: e.rewrite(exp))
    symbols: dict = {}

    def power_form(node):
        factor, rest = 1, []
        for term in Add.make_args(expand(node.args[0])):
            coefficient, variable = term.as_coeff_Mul()
            if (isinstance(variable, (Indexed, Symbol)) and variable.is_extended_real
                    and isinstance(coefficient, Rational)):
                if variable not in symbols:
                    symbols[variable] = Dummy(f"t_{variable}", positive=True)
                factor *= symbols[variable] ** coefficient
            else:
                rest.append(term)
        return factor * exp(Add(*rest))

    expr = expr.replace(lambda e: isinstance(e, exp), power_form)
    if not symbols:
        return expr
    expr = expand_log(expr, force=False)
    return expr.xreplace({log(t): variable for variable, t in symbols.items()})
