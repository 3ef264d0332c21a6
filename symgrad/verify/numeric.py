"""Numeric checking in high precision, independent of the symbolic machinery.

Values of abbreviations come from evaluating their definitions; a Derivative node is evaluated
by mpmath's numerical differentiation of the *function* (perturb the variable, re-evaluate what
depends on it) — never from the symbolic derivative it is meant to check.

Expressions are compiled once into closures over integer slots: looking SymPy ``Indexed``
objects up in dictionaries at every evaluation cost 20 s at n = 32 (their ``__eq__`` is slow).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import mpmath
from sympy import (S, Abs, Add, And, Basic, Derivative, Float, Heaviside, Indexed, KroneckerDelta, Max, Min, Mul, Not,
                   Or, Piecewise, Pow, Rational, Symbol, erf, exp, im, log, re, sign, tanh)
from sympy.core.relational import Relational
from sympy.logic.boolalg import BooleanFalse, BooleanTrue

from symgrad.functions import AbstractFunction, concrete_interpretation
from symgrad.verify.concrete import ConcreteModel

DIGITS = 50
# Agreement demanded: 35 of the 50 digits (numerical differentiation keeps well over that).
TOLERANCE_DIGITS = 35
# A disagreement at 50 digits is re-evaluated at these precisions before it may refute anything:
# cancellation ((T + 10⁶⁰)² − 10¹²⁰ − 2·10⁶⁰T) loses every one of 50 digits but none of 200.
CONFIRM_DIGITS = (100, 200, 400, 800)
STABLE_DIGITS = 20  # a difference is "stable" when two precisions agree on this many digits of it


class NumericError(ValueError):
    """An expression the numeric evaluator does not know how to evaluate."""


# A point this close to a kink (the argument of relu, |·|, sign, a tie of max/min, a boundary of
# a case) says nothing: a function is not differentiable there, and numerical differentiation
# would straddle it. Such points are skipped exactly like a division by zero.
KINK_GAP = mpmath.mpf(10) ** -20


class AtKink(ZeroDivisionError):
    """The point lies (within ``KINK_GAP``) on a kink, or outside every case of a Piecewise."""


def _off_kink(value):
    if abs(value) <= KINK_GAP:
        raise AtKink("at a kink")
    return value


def _compare(kind, difference) -> bool:
    """lhs − rhs compared with 0 for a relation of class ``kind``, never decided at the boundary."""
    if kind in ("==", "!="):
        equal = difference == 0
        return equal if kind == "==" else not equal
    _off_kink(difference)
    return {">": difference > 0, ">=": difference > 0, "<": difference < 0, "<=": difference < 0}[kind]


class State:
    """Slot values at one point (``None`` = not yet computed) and a cache of derivative values."""

    def __init__(self, values: list, derivative_cache: dict | None = None, variant: int = 0):
        self.values = values
        self.derivative_cache = derivative_cache if derivative_cache is not None else {}
        # which concrete function stands for a declared g (functions.concrete_interpretation):
        # points alternate between two, so a step wrong for some g is caught by one of them
        self.variant = variant


Compiled = Callable[[State], "mpmath.mpf"]


class NumericProgram:
    """Compiles explicit expressions of a concrete model into mpmath closures."""

    def __init__(self, concrete: ConcreteModel):
        self.concrete = concrete
        self.base = concrete.model.base_entries()
        self.slots: dict[Basic, int] = {atom: k for k, atom in enumerate(self.base)}
        self.definitions: list[Compiled | None] = [None] * len(self.base)
        self.depends: list[frozenset] = [frozenset({k}) for k in range(len(self.base))]
        self._dependents_of: dict[int, tuple[tuple[int, ...], int]] = {}  # slot → (dependents, slots scanned)
        self._compiled: dict[Basic, Compiled] = {}
        self._term_depends: dict[Basic, list] = {}  # a sum → (term, the slots its value depends on)
        self._points: dict[tuple, State] = {}

    # -- slots ------------------------------------------------------------------------------
    def slot(self, atom: Basic) -> int:
        if atom not in self.slots:
            if not self.concrete.is_abbreviation(atom):
                raise NumericError(f"no value for {atom}")
            body = self.concrete.unfold_once(atom)
            compiled = self.compile(body)
            dependencies = self._slots_read(body)
            k = len(self.definitions)
            self.slots[atom] = k
            self.definitions.append(compiled)
            self.depends.append(dependencies | {k})
        return self.slots[atom]

    def _slots_read(self, expr: Basic) -> frozenset:
        """Every slot whose value ``expr``'s value depends on (through the slots it reads)."""
        return frozenset().union(*[self.depends[self.slot(a)] for a in self._atoms(expr)])

    def _atoms(self, expr: Basic) -> list[Basic]:
        return [a for a in expr.free_symbols
                if a in self.slots or self.concrete.is_abbreviation(a)]

    def get(self, state: State, k: int):
        if k >= len(state.values):  # a slot compiled after this point was drawn
            state.values.extend([None] * (len(self.definitions) - len(state.values)))
        value = state.values[k]
        if value is None:
            value = state.values[k] = self.definitions[k](state)
        return value

    # -- points -----------------------------------------------------------------------------
    def state_at(self, base_values: list, variant: int = 0) -> State:
        return State(list(base_values) + [None] * (len(self.definitions) - len(self.base)), variant=variant)

    def point(self, number: int, elimination: dict) -> State:
        """Random point ``number`` (0, 1, …) of this model, the same for every step checked with
        the same assumptions: values and numerical derivatives computed for one step (∂a_k/∂z_j
        in the chain rule) are then reused by the next."""
        key = (number, tuple(sorted(elimination.items(), key=str)))
        if key not in self._points:
            rng = random.Random(f"{self.concrete.model.name}:{sorted(self.concrete.model.sizes.items())}:{number}")
            self._points[key] = self.random_state(rng, elimination, variant=number % 2)
        return self._points[key]

    def random_state(self, rng: random.Random, elimination: dict, variant: int = 0) -> State:
        """Random values in [-2, 2] (exact binary fractions, so the point is reproducible) for
        every base variable, then the eliminated variable computed from its assumption."""
        values = [mpmath.mpf(rng.randint(-2**20, 2**20)) / 2**19 for _ in self.base]
        return self.state_from(values, elimination, variant)

    def state_from(self, base_values: list, elimination: dict, variant: int = 0) -> State:
        """A fresh state at the working precision: base values as given (exact binary
        fractions), eliminated variables computed from their solutions, nothing cached."""
        state = self.state_at(base_values, variant)
        for variable, solution in elimination.items():
            state.values[self.slots[variable]] = self.compile(solution)(state)
        return state

    def confirm(self, left: Compiled, right: Compiled, state: State, elimination: dict):
        """Re-evaluate a disagreement at the same point in ever higher precision.

        Returns ("agree", digits) when the sides agree at some precision (the disagreement was
        rounding), ("differ", (lv, rv)) when the difference is the same to ``STABLE_DIGITS``
        digits at two consecutive precisions (not cancellation noise, which changes with the
        precision), and ("unstable", digits) when neither happened up to the last precision."""
        base = list(state.values[:len(self.base)])
        eliminated = {self.slots[v] for v in elimination}
        base = [None if k in eliminated else value for k, value in enumerate(base)]
        previous = None
        for digits in CONFIRM_DIGITS:
            with mpmath.workdps(digits):
                try:
                    fresh = self.state_from([mpmath.mpf(v) if v is not None else None for v in base], elimination,
                                            state.variant)
                    lv, rv = left(fresh), right(fresh)
                except ZeroDivisionError:
                    return "unstable", digits
                if not (is_finite(lv) and is_finite(rv)):
                    return "unstable", digits
                if agree(lv, rv):
                    return "agree", digits
                difference = lv - rv
                if previous is not None and abs(difference - previous) <= abs(difference) * mpmath.mpf(10) ** -STABLE_DIGITS:
                    return "differ", (lv, rv, digits)
                previous = difference
        return "unstable", CONFIRM_DIGITS[-1]

    def perturbed(self, state: State, k: int, value) -> State:
        """The same point with slot ``k`` set to ``value`` and everything depending on it cleared."""
        values = list(state.values) + [None] * (len(self.definitions) - len(state.values))
        for m in self._dependents(k):
            values[m] = None
        values[k] = value
        return State(values, variant=state.variant)

    def _dependents(self, k: int) -> tuple[int, ...]:
        """The slots whose value depends on slot ``k``, kept per slot (a numerical derivative
        perturbs one slot many times; scanning every slot each time was most of the 50-digit
        check of a 16 × 16 layer). Slots added since are scanned once more."""
        known, scanned = self._dependents_of.get(k, ((), len(self.base)))
        if scanned < len(self.definitions):
            known += tuple(m for m in range(scanned, len(self.definitions)) if k in self.depends[m])
            self._dependents_of[k] = (known, len(self.definitions))
        return known

    # -- compilation ------------------------------------------------------------------------
    def compile(self, expr: Basic) -> Compiled:
        if expr not in self._compiled:
            self._compiled[expr] = self._compile(expr)
        return self._compiled[expr]

    def _compile(self, expr: Basic) -> Compiled:
        if isinstance(expr, (Indexed, Symbol)):
            return self._reader(self.slot(expr))
        if expr.is_Integer or isinstance(expr, Rational):
            return _rational_constant(int(expr.p), int(expr.q))
        if isinstance(expr, Float):
            constant = mpmath.mpf(expr)
            return lambda state: constant
        if expr is S.Pi:  # erf' = 2 e^{−x²}/√π; mpmath's π follows the working precision
            return lambda state: +mpmath.pi
        parts = [self.compile(arg) for arg in expr.args] if not isinstance(expr, (Piecewise, Derivative)) else []
        if isinstance(expr, Mul) and _STRUCTURAL_ZERO in parts:
            return _STRUCTURAL_ZERO  # ∂J/∂Z_is · 0: the other factors need no evaluation
        if isinstance(expr, Add) and _STRUCTURAL_ZERO in parts:
            parts = [p for p in parts if p is not _STRUCTURAL_ZERO]
            if not parts:
                return _STRUCTURAL_ZERO
        if isinstance(expr, Pow) and expr.exp.is_Integer and expr.exp < 0 and isinstance(expr.base, (Indexed, Symbol)):
            power = int(expr.exp)  # 1/σ_s, shared by the n entries A_is = e^{Z_is}/σ_s of a column
            return self._cached_node(expr, lambda value: value ** power, parts[0])
        arithmetic = arithmetic_closure(expr, parts)
        if arithmetic is not None:
            return arithmetic
        if isinstance(expr, (exp, log)):
            return self._cached_node(expr, mpmath.exp if isinstance(expr, exp) else mpmath.log, parts[0])
        if isinstance(expr, tanh):
            return lambda state: mpmath.tanh(parts[0](state))
        if isinstance(expr, Abs):  # (x²)^½ is built as |x|: must be evaluated, not refused
            return lambda state: abs(_off_kink(parts[0](state)))
        if isinstance(expr, sign):
            return lambda state: mpmath.sign(_off_kink(parts[0](state)))
        if isinstance(expr, erf):
            return lambda state: mpmath.erf(parts[0](state))
        if isinstance(expr, AbstractFunction):  # a declared g, g′: a concrete smooth function per point
            variants = [concrete_interpretation(type(expr), v) for v in (0, 1)]
            return lambda state: variants[state.variant % 2](parts[0](state))
        if isinstance(expr, Heaviside):  # never evaluated at the kink, so H(0) is not needed
            return lambda state: mpmath.mpf(1 if _off_kink(parts[0](state)) > 0 else 0)
        if isinstance(expr, (Max, Min)):
            pick = max if isinstance(expr, Max) else min

            def extreme(state):
                values = [p(state) for p in parts]
                for a in range(len(values)):
                    for b in range(a):
                        _off_kink(values[a] - values[b])
                return pick(values)
            return extreme
        if isinstance(expr, Relational):
            difference = self.compile(expr.lhs - expr.rhs)
            kind = expr.rel_op
            return lambda state: _compare(kind, difference(state))
        if isinstance(expr, (And, Or, Not)):
            combine = {And: all, Or: any, Not: lambda values: not next(iter(values))}[type(expr)]
            return lambda state: combine(p(state) for p in parts)
        if isinstance(expr, (BooleanTrue, BooleanFalse)):
            truth = bool(expr)
            return lambda state: truth
        if isinstance(expr, (re, im)):
            take = mpmath.re if isinstance(expr, re) else mpmath.im
            return lambda state: take(parts[0](state))
        if isinstance(expr, KroneckerDelta):
            return lambda state: mpmath.mpf(1 if parts[0](state) == parts[1](state) else 0)
        if isinstance(expr, Piecewise):
            cases = [(self.compile(piece), self.compile(condition)) for piece, condition in expr.args]

            def by_cases(state):
                for piece, condition in cases:
                    if condition(state):
                        return piece(state)
                raise AtKink("outside every case")  # a Piecewise with no value here (at a kink)
            return by_cases
        if isinstance(expr, Derivative):
            return self._compile_derivative(expr)
        raise NumericError(f"cannot evaluate {type(expr).__name__} numerically")

    def _cached_node(self, expr: Basic, function, argument: Compiled) -> Compiled:
        """Give exp(·)/log(·) (and 1/σ) a slot of its own, so perturbing z_j re-evaluates
        e^{z_j} alone rather than every e^{z_k} inside Σ_k e^{z_k}."""
        k = len(self.definitions)
        self.definitions.append(lambda state: function(argument(state)))
        self.depends.append(self._slots_read(expr) | {k})
        return self._reader(k)

    def _reader(self, k: int) -> Compiled:
        """Slot ``k``'s value: read directly once computed, computed by ``get`` the first time
        (every value a closure needs is a slot read: one Python call fewer per read was a
        tenth of the 50-digit check of a 16 × 16 layer)."""
        get = self.get

        def read(state: State):
            values = state.values
            if k < len(values):
                value = values[k]
                if value is not None:
                    return value
            return get(state, k)
        return read

    def _terms_holding(self, expr: Basic, k: int) -> Basic:
        """``expr`` (an abbreviation unfolded once) with only the terms of its sum whose value
        depends on slot ``k``: the others have derivative 0 by x_k, so the numerical derivative
        is the same, and each evaluation adds a few terms rather than all of them (∂L/∂A_is of
        a loss over a 16 × 16 batch: 1 term of 256)."""
        coefficient, rest = S.One, expr
        for _ in range(4):  # L := −σ/m, σ := Σ_{i,s} Y_is log A_is (a closed sum abbreviated)
            if not self.concrete.is_abbreviation(rest) or self.slots.get(rest) == k:
                break  # (unfolding the variable itself, ∂L/∂u_1 with L = σ = u_1, would lose it)
            factor, rest = self.concrete.unfold_once(rest).as_coeff_Mul()
            coefficient *= factor
        if not isinstance(rest, Add):
            return expr
        if rest not in self._term_depends:  # each term's slots, once per sum
            self._term_depends[rest] = [(t, self._slots_read(t)) for t in rest.args]
        return coefficient * Add(*[t for t, depends in self._term_depends[rest] if k in depends])

    def _compile_derivative(self, node: Derivative) -> Compiled:
        """∂F/∂x by numerical differentiation of F as a function of x alone."""
        if len(node.variables) != 1:
            raise NumericError("only first derivatives are supported")
        k = self.slot(node.variables[0])
        held = self._terms_holding(node.expr, k)
        if k not in self._slots_read(held):
            # F does not depend on x at all (∂A_is/∂Z_jt with s ≠ t): its derivative is 0
            # exactly, with no numerical differentiation (most terms of a chain-rule sum)
            return _STRUCTURAL_ZERO
        function = self.compile(held)

        def derivative(state: State):
            key = id(function), k
            if key not in state.derivative_cache:
                at = self.get(state, k)
                state.derivative_cache[key] = mpmath.diff(
                    lambda t: function(self.perturbed(state, k, t)), at)
            return state.derivative_cache[key]
        return derivative


def arithmetic_closure(expr: Basic, parts: list):
    """The mpmath closure of a sum, product or power from its arguments' closures (each a
    function of one argument: a point, a state), or None for any other node."""
    # Specialised by arity (most sums and products have two or three arguments), with the
    # same roundings as the general form: fsum of two terms and 1·x·y are correctly rounded
    # x + y and x·y, so values are bit for bit those of ``fsum``/``mpf(1) *= …``.
    if isinstance(expr, Add):
        if len(parts) == 2:
            first, second = parts
            return lambda at: first(at) + second(at)
        return lambda at: mpmath.fsum([p(at) for p in parts])
    if isinstance(expr, Mul):
        if len(parts) == 2:
            first, second = parts
            return lambda at: +first(at) * second(at)
        head, rest = parts[0], parts[1:]

        def product(at):
            result = +head(at)
            for p in rest:
                result *= p(at)
            return result
        return product
    if isinstance(expr, Pow):
        base, exponent = parts
        if expr.args[1].is_Integer:
            power = int(expr.args[1])
            return lambda at: base(at) ** power
        return lambda at: mpmath.power(base(at), exponent(at))
    return None


def _structural_zero(state) -> mpmath.mpf:
    return mpmath.mpf(0)


# The value of a derivative whose function does not depend on its variable, and of every
# product with such a factor: 0 whatever the point, so sums drop it and products are 0 without
# evaluating their other factors (as SymPy's 0·x = 0).
_STRUCTURAL_ZERO: Compiled = _structural_zero


def _rational_constant(p: int, q: int) -> Compiled:
    """p/q at the precision in force when evaluated (10¹²⁰ rounded once at 50 digits would stay
    rounded when a disagreement is re-evaluated at 200)."""
    cache: dict[int, mpmath.mpf] = {}

    def constant(state):
        prec = mpmath.mp.prec
        if prec not in cache:
            cache[prec] = mpmath.mpf(p) / q
        return cache[prec]
    return constant


def is_finite(value) -> bool:
    """False for ±∞ and NaN, in either part of a complex value."""
    return bool(mpmath.isfinite(value))


def agree(left, right, digits: int = TOLERANCE_DIGITS) -> bool:
    """Equal to ``digits`` digits relative to the larger side (absolute below 1). Values may be
    complex (mpc): (Σ e^{√(9z)})² has a complex value for z < 0."""
    scale = max(mpmath.mpf(1), abs(left), abs(right))
    return abs(left - right) <= scale * mpmath.mpf(10) ** (-digits)
