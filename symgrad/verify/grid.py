"""A float screen of every entry of a step at once: both sides of an index template evaluated
over the whole index grid with numpy, at the same random points as the high-precision check.

This is the numeric check that scales: at n = 1024 the Jacobian has 1,048,576 entries, far
too many for mpmath at 50 digits (the field notes: 21 s at n = 64), but a few milliseconds as
numpy arrays. It is independent of the symbolic machinery in the same way ``numeric.py`` is:

- abbreviations (a_i, L) are evaluated from their definitions;
- a ``Derivative`` node is evaluated by complex-step differentiation of the *function* — every
  entry of the variable's family perturbed by i·h at once (a batch of n evaluations of the
  model), never from the symbolic derivative the step is meant to check. Complex step has no
  subtractive cancellation, so its derivatives are accurate to rounding.

It handles models of scalars, vectors and matrices whose functions are analytic (exp, log,
powers, sums, Kronecker deltas, cases on index equalities); anything else, or an intermediate
array larger than ``MAX_CELLS``, raises ``Unsupported`` and the caller keeps its
entry-by-entry check. A disagreement found here is only a candidate: the
caller confirms it at the same point exactly or at rising precision before it refutes.
"""

from __future__ import annotations

import numpy as np
from sympy import (
    Add,
    Derivative,
    Eq,
    Indexed,
    IndexedBase,
    KroneckerDelta,
    Mul,
    Ne,
    Piecewise,
    Pow,
    Sum,
    Symbol,
    exp,
    log,
)
from sympy.logic.boolalg import And, BooleanFalse, BooleanTrue, Or

from symgrad.notation import plain_sympy

STEP = 1e-30  # the complex step: far below rounding, and no cancellation
RELATIVE = 1e-7  # agreement asked of two float64 evaluations of one entry
ABSOLUTE = 1e-13
MAX_CELLS = 1 << 24  # the largest array one operation may make (256 MB of complex numbers)


class Unsupported(ValueError):
    """The expression or model is outside what the grid evaluator handles."""


def supports(model) -> bool:
    """Whether the screen can evaluate this model's steps: scalars, vectors and matrices."""
    return all(1 <= len(shape) <= 2 for shape in model.shapes.values()) and \
        all(len(shape) <= 2 for shape in model.abbreviation_shapes.values())


def _padded(shape) -> tuple:
    """The array shape of a family's entries, 1-based: one more along every axis (entry 0 unused)."""
    return tuple(int(d) + 1 for d in shape)


class GridModel:
    """The values of a concrete model at given points, held as numpy arrays: every base vector
    or matrix and abbreviation as an array of shape (batch, length + 1) or (batch, rows + 1,
    cols + 1) (1-based: entry 0 of each axis unused), every scalar as (batch,)."""

    def __init__(self, model, base_values: dict):
        """``base_values``: base IndexedBase or Symbol → 1-D array of its entries (1-based,
        entry 0 unused) or a float; one point."""
        self.model = model
        if not supports(model):
            raise Unsupported("matrices are not handled by the grid screen")
        self.dims = {base: tuple(int(d) for d in shape) for base, shape in model.shapes.items()}
        self.dims.update({head: tuple(int(d) for d in shape) for head, shape in model.abbreviation_shapes.items()
                          if shape})
        self.base = {key: np.asarray(value, dtype=float)[None] if np.ndim(value) else np.array([float(value)])
                     for key, value in base_values.items()}
        self.values = self._evaluate(self.base, {})
        for key, value in self.values.items():
            if not np.all(np.isfinite(value)) or np.iscomplexobj(value) and np.any(value.imag != 0):
                raise Unsupported(f"{key} is not a finite real number at the point")
        self._derivatives: dict = {}

    # -- the model at a batch of points ----------------------------------------------------------
    def _evaluate(self, base: dict, override: dict) -> dict:
        """Base values, then every definition in order (a family in ``override`` is taken as
        given instead: the function of that family)."""
        values = dict(base)
        values.update(override)
        batch = max(np.shape(v)[0] for v in values.values())
        for definition in self.model.definitions:
            head = definition.head
            if head in override:
                continue
            if definition.index:
                dims = self.dims[head]
                indices = list(definition.index)
                env = {index: np.arange(1, d + 1) for index, d in zip(indices, dims)}
                body = np.asarray(evaluate(definition.body, values, env, indices, batch))
                padded = np.zeros((batch, *_padded(dims)), dtype=body.dtype)
                padded[(slice(None), *[slice(1, None)] * len(dims))] = np.broadcast_to(body, (batch, *dims))
                values[head] = padded
            else:
                values[head] = np.broadcast_to(evaluate(definition.body, values, {}, [], batch), (batch,))
        return values

    def derivative(self, function, variable) -> np.ndarray:
        """∂F/∂X of a whole family F (an abbreviation or a scalar) by every entry of a family X
        (a base vector or matrix, or an abbreviation taken as free, the others unfolded): an
        array with F's padded axes, then X's (entry 0 of each unused); by complex step, every
        entry of X perturbed in its own member of one batch."""
        key = (function, variable)
        if key not in self._derivatives:
            dims = self.dims.get(variable)
            if dims is None:
                raise Unsupported(f"derivative by {variable}")
            size = int(np.prod(dims))
            cells = max(int(np.prod(np.shape(v)[1:])) for v in {**self.base, **self.values}.values())
            if size * cells > MAX_CELLS:
                raise Unsupported(f"a derivative by all {size} entries of {variable} at once")
            x0 = (self.values[variable] if variable in self.values else self.base[variable])[0]
            batch = np.repeat(x0[None].astype(complex), size, axis=0)
            positions = np.unravel_index(np.arange(size), dims)
            batch[(np.arange(size), *[p + 1 for p in positions])] += 1j * STEP
            base = {k: np.repeat(v, size, axis=0) for k, v in self.base.items() if k != variable}
            if variable in self.base:
                values = self._evaluate({**base, variable: batch}, {})
            else:
                values = self._evaluate(base, {variable: batch})
            value = np.imag(values[function]) / STEP  # (size, *F's padded axes)
            value = value.reshape(dims + value.shape[1:])
            value = np.moveaxis(value, list(range(len(dims))), list(range(value.ndim - len(dims), value.ndim)))
            out = np.zeros(value.shape[:value.ndim - len(dims)] + _padded(dims))
            out[(Ellipsis, *[slice(1, None)] * len(dims))] = value
            self._derivatives[key] = out
        return self._derivatives[key]

    # -- entries ---------------------------------------------------------------------------------
    def grid(self, expr, free: tuple, ranges: list) -> np.ndarray:
        """``expr`` at every value of its free indices: an array with one axis per index."""
        env = {index: np.arange(1, int(bound) + 1) for index, bound in zip(free, ranges)}
        value = evaluate(plain_sympy(expr), self.values, env, list(free), 1, self)
        value = np.broadcast_to(value, (1, *[int(b) for b in ranges]))[0]
        if np.iscomplexobj(value):
            value = value.real
        return value


def evaluate(expr, values: dict, env: dict, axes: list, batch: int, grid: GridModel | None = None):
    """``expr`` as an array of shape (batch, *one axis per index in ``axes``) (or broadcastable
    to it). ``env``: index → its values (a 1-D array); the k-th index of ``axes`` varies along
    axis k + 1."""
    ndim = len(axes)

    def index_array(index):
        if index.is_Integer:
            return int(index)
        if index in env:
            shape = [1] * ndim
            shape[axes.index(index)] = len(env[index])
            return env[index].reshape(shape)
        raise Unsupported(f"index {index} has no range")

    def scalar(value):
        array = np.asarray(value)
        return array.reshape(array.shape[:1] + (1,) * ndim) if array.ndim else array

    def go(e):
        if e.is_Number:
            return float(e)
        if isinstance(e, Indexed):
            if e.base not in values or len(e.indices) != np.ndim(values[e.base]) - 1:
                raise Unsupported(f"entry {e}")
            return entries(values[e.base], e.indices)
        if isinstance(e, Symbol):
            if e in values:
                return scalar(values[e])
            raise Unsupported(f"symbol {e}")
        if isinstance(e, Add):
            out = 0.0
            for arg in e.args:
                out = combine(np.add, out, go(arg))
            return out
        if isinstance(e, Mul):
            out = 1.0
            for arg in e.args:
                out = combine(np.multiply, out, go(arg))
            return out
        if isinstance(e, Pow):
            base, power = go(e.base), e.exp
            if power.is_Integer:
                return base ** int(power)
            return base ** go(power)
        if isinstance(e, exp):
            return np.exp(go(e.args[0]))
        if isinstance(e, log):
            return np.log(go(e.args[0]))
        if isinstance(e, KroneckerDelta):
            left, right = (index_array(x) for x in e.args)
            return scalar(np.ones(batch)) * np.equal(left, right).astype(float)
        if isinstance(e, Piecewise):
            out, decided = 0.0, False
            remaining = True
            for value, condition in e.args:
                holds = condition_array(condition, index_array)
                taken = np.logical_and(remaining, holds)
                out = np.where(taken, go(value), out)
                remaining = np.logical_and(remaining, np.logical_not(holds))
                decided = True
            if not decided:
                raise Unsupported("empty Piecewise")
            return out
        if isinstance(e, Sum):
            inner = e.function
            limits = list(e.limits)
            index, lower, upper = limits[0]
            if not (lower.is_Integer and upper.is_Integer):
                raise Unsupported("a sum over a symbolic range")
            rest = Sum(inner, *limits[1:]) if len(limits) > 1 else inner
            if index in env:
                raise Unsupported("a sum index that shadows another")
            count = int(upper) - int(lower) + 1
            if count < 1:
                return 0.0
            sub_env = dict(env)
            sub_env[index] = np.arange(int(lower), int(upper) + 1)
            value = evaluate(rest, values, sub_env, axes + [index], batch, grid)
            value = np.broadcast_to(value, np.broadcast_shapes(np.shape(value), (1,) * (ndim + 1) + (count,)))
            return value.sum(axis=-1)
        if isinstance(e, Derivative):
            if grid is None or len(e.variables) != 1:
                raise Unsupported("derivative")
            (variable,) = e.variables
            function = e.expr
            if not isinstance(variable, Indexed):
                raise Unsupported("a derivative by a scalar")
            if isinstance(function, Indexed):
                table = grid.derivative(function.base, variable.base)
                return entries(table[None], (*function.indices, *variable.indices))
            if isinstance(function, Symbol):
                table = grid.derivative(function, variable.base)
                return entries(table[None], variable.indices)
            raise Unsupported(f"derivative of {function}")
        raise Unsupported(f"{type(e).__name__}")

    def entries(array, indices):
        """``array`` (batch first) at the given indices, each a number or an index of the grid."""
        if np.ndim(array) - 1 != len(indices):
            raise Unsupported(f"{len(indices)} indices into an array of {np.ndim(array) - 1} axes")
        positions = [index_array(x) for x in indices]
        if all(isinstance(p, int) for p in positions):
            return scalar(array[(slice(None), *positions)])
        return array[(slice(None), *positions)]

    def combine(operation, left, right):
        """One elementwise operation of two operands, refused before it makes an array larger
        than ``MAX_CELLS``."""
        shape = np.broadcast_shapes(np.shape(left), np.shape(right))
        if int(np.prod(shape)) > MAX_CELLS:
            raise Unsupported(f"an intermediate array of shape {shape}")
        return operation(left, right)

    return go(expr)


def condition_array(condition, index_array):
    if isinstance(condition, BooleanTrue) or condition is True:
        return np.True_
    if isinstance(condition, BooleanFalse) or condition is False:
        return np.False_
    if isinstance(condition, Eq):
        return np.equal(*(index_array(x) for x in condition.args))
    if isinstance(condition, Ne):
        return np.not_equal(*(index_array(x) for x in condition.args))
    if isinstance(condition, And):
        out = np.True_
        for arg in condition.args:
            out = np.logical_and(out, condition_array(arg, index_array))
        return out
    if isinstance(condition, Or):
        out = np.False_
        for arg in condition.args:
            out = np.logical_or(out, condition_array(arg, index_array))
        return out
    raise Unsupported(f"condition {condition}")


def disagreements(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Positions (as index tuples, 0-based) where two float evaluations of the same entries
    differ by more than rounding could explain (or where exactly one side is not finite)."""
    left, right = np.broadcast_arrays(np.asarray(left, dtype=float), np.asarray(right, dtype=float))
    both = np.isfinite(left) & np.isfinite(right)
    bad = both & (np.abs(left - right) > RELATIVE * (np.abs(left) + np.abs(right)) + ABSOLUTE)
    return np.argwhere(bad)


def base_arrays(model, values: list) -> dict:
    """The base entries' values (in ``model.base_entries()`` order) as 1-based numpy arrays."""
    arrays: dict = {}
    entries = model.base_entries()
    for base, shape in model.shapes.items():
        arrays[base] = np.zeros(_padded(shape))
    for scalar in model.scalars:
        arrays[scalar] = 0.0
    for atom, value in zip(entries, values):
        if isinstance(atom, Indexed):
            arrays[atom.base][tuple(int(x) for x in atom.indices)] = float(value)
        else:
            arrays[atom] = float(value)
    return arrays


__all__ = ["GridModel", "IndexedBase", "Unsupported", "base_arrays", "disagreements"]
