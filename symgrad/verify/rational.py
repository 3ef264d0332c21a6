"""Exact evaluation at points where every exponential is rational: a refutation no rounding can hide.

A 50-digit comparison cannot tell ((z + 1)⁶⁴)⁶⁴ from ((z + 1)⁶⁴)⁶⁴ + 1 (the values have 2,000
digits), nor a numeric disagreement from cancellation. Here both sides are evaluated exactly:
a base variable that appears inside an exponential gets the value z = log r (r > 0 rational),
so e^{z} = r and softmax, sigmoid and tanh (via e^{2z}) are rational; every other variable gets
a rational value. Values are ``Fraction``s or ``LogForm``s q + Σ c·log r (a log of a rational,
times a rational); anything else (√2, e^{1/2}, a product of two logs) is ``NotExact`` and the
caller falls back to another method. Sizes are capped (``MAX_BITS``): past it, ``NotExact``.

Zero test of a LogForm, which is what makes "lhs − rhs ≠ 0" a proof: Σ c·log r = log Π r^c.
If q ≠ 0 the form is not 0 (else e^{−q} = Π r^c would be rational, but e^{q} is transcendental
for rational q ≠ 0, Lindemann); if q = 0 it is 0 exactly when Π r^{cL} = 1 (L clearing the
denominators of the c).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction

from sympy import (Abs, Add, And, Basic, Heaviside, Indexed, KroneckerDelta, Max, Min, Mul, Not, Or, Piecewise,
                   Pow, Rational, Symbol, exp, integer_nthroot, log, preorder_traversal, sign, tanh)
from sympy.core.relational import Relational
from sympy.logic.boolalg import BooleanFalse, BooleanTrue

MAX_BITS = 65_536  # numerator + denominator bits of any intermediate value ((z + 1)^4096 needs ~30,000)


class NotExact(Exception):
    """The value at this point is not a rational nor a rational combination of logs."""


class Undefined(Exception):
    """Division by zero or log 0 at this point: the point says nothing either way."""


@dataclass(frozen=True)
class LogForm:
    """q + Σ c·log r over distinct rationals r > 0, r ≠ 1, with every c ≠ 0."""

    q: Fraction
    logs: tuple[tuple[Fraction, Fraction], ...]

    def __str__(self) -> str:
        parts = [] if self.q == 0 else [str(self.q)]
        for r, c in self.logs:
            factor = "" if c == 1 else "−" if c == -1 else f"{c}·"
            parts.append(f"{factor}log({r})")
        return " + ".join(parts).replace("+ −", "− ")


Value = Fraction | LogForm


def _checked(value: Fraction) -> Fraction:
    if value.numerator.bit_length() + value.denominator.bit_length() > MAX_BITS:
        raise NotExact(f"exact values past {MAX_BITS} bits")
    return value


def _make(q: Fraction, logs: dict) -> Value:
    logs = {r: c for r, c in logs.items() if c != 0 and r != 1}
    if not logs:
        return _checked(q)
    return LogForm(_checked(q), tuple(sorted(logs.items())))


def _parts(value: Value) -> tuple[Fraction, dict]:
    return (value, {}) if isinstance(value, Fraction) else (value.q, dict(value.logs))


def add(a: Value, b: Value) -> Value:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return _checked(a + b)
    (qa, la), (qb, lb) = _parts(a), _parts(b)
    for r, c in lb.items():
        la[r] = la.get(r, 0) + c
    return _make(qa + qb, la)


def mul(a: Value, b: Value) -> Value:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return _checked(a * b)
    if isinstance(b, Fraction):
        a, b = b, a
    if not isinstance(a, Fraction):
        raise NotExact("a product of two logarithms")
    q, logs = _parts(b)
    return _make(a * q, {r: a * c for r, c in logs.items()})


def power(base: Value, exponent: Value) -> Value:
    if not isinstance(exponent, Fraction):
        raise NotExact("an exponent that is a logarithm")
    if exponent == 0:
        return Fraction(1)
    if exponent == 1:
        return base
    if not isinstance(base, Fraction):
        raise NotExact("a power of a logarithm")
    if base == 0:
        if exponent < 0:
            raise Undefined("division by zero")
        return Fraction(0)
    p, q = exponent.numerator, exponent.denominator
    if q != 1:
        if base < 0:
            raise NotExact("a fractional power of a negative number (complex)")
        roots = [integer_nthroot(part, q) for part in (base.numerator, base.denominator)]
        if not all(exact for _, exact in roots):
            raise NotExact("an irrational root")
        base = Fraction(int(roots[0][0]), int(roots[1][0]))
    bits = base.numerator.bit_length() + base.denominator.bit_length()
    if bits * abs(p) > MAX_BITS:
        raise NotExact(f"exact values past {MAX_BITS} bits")
    return _checked(base ** p)


def exponential(value: Value) -> Value:
    q, logs = _parts(value)
    if q != 0:
        raise NotExact("e to a non-zero rational power")
    result = Fraction(1)
    for r, c in logs.items():
        result = mul(result, power(r, c))
    return result


def logarithm(value: Value) -> Value:
    if not isinstance(value, Fraction):
        raise NotExact("the log of a logarithm")
    if value == 0:
        raise Undefined("log 0")
    if value < 0:
        raise NotExact("the log of a negative number (complex)")
    return _make(Fraction(0), {value: Fraction(1)})


def is_zero(value: Value) -> bool:
    """Exactly decided (see the module docstring); NotExact only if the test is too large."""
    if isinstance(value, Fraction):
        return value == 0
    if value.q != 0:
        return False
    scale = math.lcm(*(c.denominator for _, c in value.logs))
    product = Fraction(1)
    for r, c in value.logs:
        product = mul(product, power(r, c * scale))
    return product == 1


def to_fraction(value) -> Fraction:
    """An mpmath binary fraction (a numeric sampling point) as an exact Fraction."""
    negative, man, exp2, _ = value._mpf_  # (mpf.man_exp drops the sign)
    man = -int(man) if negative else int(man)
    return Fraction(man * 2 ** int(exp2)) if exp2 >= 0 else Fraction(man, 2 ** -int(exp2))


def shown(value: Value) -> str:
    text = str(value)
    if len(text) <= 60:
        return text
    import mpmath

    if isinstance(value, Fraction):
        approx = mpmath.mpf(value.numerator) / value.denominator
        return f"≈ {mpmath.nstr(approx, 8)} (exact, {len(str(value.denominator))}-digit denominator)"
    return text[:57] + "…"


class ExactEvaluator:
    """Evaluates explicit expressions of a concrete model at one exact point; abbreviations
    (softmax entries, sums of exponentials) are evaluated from their definitions, once each."""

    def __init__(self, concrete):
        self.concrete = concrete

    def value(self, expr: Basic, point: dict, memo: dict) -> Value:
        if expr in memo:
            return memo[expr]
        result = self._value(expr, point, memo)
        memo[expr] = result
        return result

    def _value(self, expr: Basic, point: dict, memo: dict) -> Value:
        if isinstance(expr, (Indexed, Symbol)):
            if expr in point:
                return point[expr]
            if self.concrete.is_abbreviation(expr):
                return self.value(self.concrete.unfold_once(expr), point, memo)
            raise NotExact(f"no exact value for {expr}")
        if isinstance(expr, Rational):  # Integers too
            return Fraction(int(expr.p), int(expr.q))
        if isinstance(expr, Add):
            total: Value = Fraction(0)
            for arg in expr.args:
                total = add(total, self.value(arg, point, memo))
            return total
        if isinstance(expr, Mul):
            product: Value = Fraction(1)
            for arg in expr.args:
                product = mul(product, self.value(arg, point, memo))
            return product
        if isinstance(expr, Pow):
            return power(self.value(expr.base, point, memo), self.value(expr.exp, point, memo))
        if isinstance(expr, exp):
            return exponential(self.value(expr.args[0], point, memo))
        if isinstance(expr, log) and len(expr.args) == 1:
            return logarithm(self.value(expr.args[0], point, memo))
        if isinstance(expr, tanh):  # (e^{2x} − 1)/(e^{2x} + 1)
            e2 = exponential(mul(Fraction(2), self.value(expr.args[0], point, memo)))
            return mul(add(e2, Fraction(-1)), power(add(e2, Fraction(1)), Fraction(-1)))
        if isinstance(expr, (Abs, sign)):
            inner = self.value(expr.args[0], point, memo)
            if not isinstance(inner, Fraction):
                raise NotExact("the sign of a logarithm")
            return abs(inner) if isinstance(expr, Abs) else Fraction((inner > 0) - (inner < 0))
        if isinstance(expr, KroneckerDelta):
            a, b = (self.value(arg, point, memo) for arg in expr.args)
            return Fraction(1 if a == b else 0)
        if isinstance(expr, Piecewise):  # the cases in order, each condition decided exactly
            for piece, condition in expr.args:
                if self.truth(condition, point, memo):
                    return self.value(piece, point, memo)
            raise Undefined("outside every case of a Piecewise (at a kink)")
        if isinstance(expr, Heaviside):  # H(g, h0): h0 at g = 0 (SymPy's default h0 is 1/2)
            g = self._rational(expr.args[0], point, memo)
            if g == 0:
                if len(expr.args) < 2:
                    raise NotExact("Heaviside at 0 without a value there")
                return self._rational(expr.args[1], point, memo)
            return Fraction(1 if g > 0 else 0)
        if isinstance(expr, (Max, Min)):
            values = [self._rational(arg, point, memo) for arg in expr.args]
            return max(values) if isinstance(expr, Max) else min(values)
        raise NotExact(f"no exact evaluation of {type(expr).__name__}")

    def _rational(self, expr: Basic, point: dict, memo: dict) -> Fraction:
        value = self.value(expr, point, memo)
        if not isinstance(value, Fraction):
            raise NotExact("comparing a logarithm")
        return value

    def truth(self, condition: Basic, point: dict, memo: dict) -> bool:
        """A condition of a Piecewise (relations, and/or/not), decided exactly at the point."""
        if isinstance(condition, (BooleanTrue, BooleanFalse)):
            return bool(condition)
        if isinstance(condition, And):
            return all(self.truth(c, point, memo) for c in condition.args)
        if isinstance(condition, Or):
            return any(self.truth(c, point, memo) for c in condition.args)
        if isinstance(condition, Not):
            return not self.truth(condition.args[0], point, memo)
        if isinstance(condition, Relational):
            d = self._rational(condition.lhs - condition.rhs, point, memo)
            return {"==": d == 0, "!=": d != 0, ">": d > 0, ">=": d >= 0, "<": d < 0, "<=": d <= 0}[condition.rel_op]
        raise NotExact(f"a condition {type(condition).__name__}")

    # -- points -----------------------------------------------------------------------------
    def exponential_variables(self, exprs) -> frozenset:
        """Base variables that occur inside an exponential (directly or through an
        abbreviation): they get values log r, the others rational values."""
        found: set = set()
        seen: set = set()

        def visit(expr: Basic, inside: bool) -> None:
            for node in preorder_traversal(expr):
                if isinstance(node, (exp, tanh)) and not inside:
                    visit(node.args[0], True)
                elif isinstance(node, (Indexed, Symbol)):
                    if self.concrete.is_abbreviation(node):
                        if (node, inside) not in seen:
                            seen.add((node, inside))
                            visit(self.concrete.unfold_once(node), inside)
                    elif inside:
                        found.add(node)
        for expr in exprs:
            visit(expr, False)
        return frozenset(found)

    def point(self, rng: random.Random, exponential_vars: frozenset, elimination: dict) -> tuple[dict, dict]:
        """(values, how each is shown): random small rationals, log r for exponential variables,
        eliminated variables computed exactly from their solutions."""
        values: dict = {}
        shown_as: dict = {}
        for atom in self.concrete.model.base_entries():
            if atom in elimination:
                continue
            if atom in exponential_vars:
                r = Fraction(rng.randint(1, 12), rng.randint(1, 6))
                values[atom] = _make(Fraction(0), {r: Fraction(1)})
                shown_as[atom] = f"log({r})"
            else:
                values[atom] = Fraction(rng.randint(-12, 12), rng.randint(1, 6))
                shown_as[atom] = str(values[atom])
        for atom, solution in elimination.items():
            values[atom] = self.value(solution, values, {})
            shown_as[atom] = str(values[atom])
        return values, shown_as

    def difference(self, left: Basic, right: Basic, point: dict, memo: dict) -> Value:
        return add(self.value(left, point, memo), mul(Fraction(-1), self.value(right, point, memo)))
