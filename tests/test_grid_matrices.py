"""The float screen on matrices (issue 17: the layer at 16, 16, 16), the numeric check's exact
zeros, and shared ``Indexed`` objects.

The screen's derivative tables are compared with central differences of the layer written
directly in numpy; its evaluation of every step of the layer with the same tables; a
corrupted step must show a disagreement exactly at the corrupted entry. None of it reads the
derivation's own right-hand sides as the truth: the true steps agree with *both* sides
evaluated independently, and a wrong one must not."""

from __future__ import annotations

import random
from functools import cache

import mpmath
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy import Derivative, Indexed, IndexedBase, Integer, KroneckerDelta, Symbol
from test_layer import (  # J written directly in numpy; central differences
    _cost,
    _finite_differences,
)

from symgrad import derive, interning
from symgrad.derivation.softmax_layer import derive_softmax_layer
from symgrad.verify import StepChecker, check_derivation
from symgrad.verify import grid as grid_module
from symgrad.verify.concrete import ConcreteModel
from symgrad.verify.grid import GridModel, Unsupported, base_arrays, disagreements
from symgrad.verify.index_form import IndexProver
from symgrad.verify.numeric import NumericProgram

SIZES = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))


@cache
def _unchecked_layer(n: int, n_prev: int, m: int):
    """The layer's steps as derived, not yet checked (the screen is what is under test)."""
    return derive_softmax_layer(n, n_prev=n_prev, m=m)


def _point(model, seed: int):
    """Random base values in model order, and the same values as numpy arrays by name."""
    rng = np.random.default_rng(seed)
    values = list(rng.uniform(-2, 2, len(model.base_entries())))
    arrays = base_arrays(model, values)
    by_name = {str(base): array[1:, 1:] if array.ndim == 2 else array[1:]
               for base, array in arrays.items() if hasattr(base, "label")}
    return values, arrays, by_name


def _base(model, name):
    return next(b for b in [*model.shapes, *model.abbreviation_shapes] if str(b) == name)


@settings(max_examples=20, deadline=None)
@given(sizes=SIZES, seed=st.integers(0, 10**6))
def test_the_screen_differentiates_a_matrix_layer_as_numpy_finite_differences_do(sizes, seed):
    model = _unchecked_layer(*sizes).model
    _, arrays, v = _point(model, seed)
    screen = GridModel(model, arrays)
    J = next(d.head for d in model.definitions if not d.index)
    expected = {
        "W": _finite_differences(lambda W: _cost(W, v["A_prev"], v["b"], v["Y"])[0], v["W"]),
        "A_prev": _finite_differences(lambda P: _cost(v["W"], P, v["b"], v["Y"])[0], v["A_prev"]),
        "b": _finite_differences(lambda b: _cost(v["W"], v["A_prev"], b, v["Y"])[0], v["b"]),
    }
    for name, want in expected.items():
        table = screen.derivative(J, _base(model, name))
        got = table[1:, 1:] if table.ndim == 2 else table[1:]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        assert not table[0].any()  # the unused 0th entry stays 0


@settings(max_examples=12, deadline=None)
@given(sizes=st.tuples(st.integers(2, 4), st.integers(2, 4), st.integers(2, 4)), seed=st.integers(0, 10**6))
def test_the_screen_finds_every_layer_step_true_and_a_corrupted_entry_where_it_is(sizes, seed):
    derivation = _unchecked_layer(*sizes)
    model = derivation.model
    _, arrays, _ = _point(model, seed)
    labels = arrays[_base(model, "Y")]
    labels[1:, 1:] = np.abs(labels[1:, 1:]) + 0.1
    labels[1:, 1:] /= labels[1:, 1:].sum(axis=0)  # every column sums to 1: the steps' assumption
    screen = GridModel(model, arrays)
    prover = IndexProver(model)
    screened = 0
    for step in derivation.steps:
        lhs, rhs, free = prover.index_form(step)
        if not free:
            continue
        ranges = [model.range_of(x) for x in free]
        try:
            with np.errstate(all="ignore"):
                left, right = screen.grid(lhs, free, ranges), screen.grid(rhs, free, ranges)
        except Unsupported:
            continue
        assert not len(disagreements(left, right)), (step.title, lhs, rhs)
        # one entry made wrong by a thousandth of itself plus one: found there, and only there
        where = [int(r) for r in ranges]
        mark = 1
        for index, last in zip(free, where):
            mark = mark * KroneckerDelta(index, Integer(last))
        with np.errstate(all="ignore"):
            wrong = screen.grid(rhs * (1 + mark / 1000) + mark / 1000, free, ranges)
        assert [tuple(p) for p in disagreements(left, wrong)] == [tuple(r - 1 for r in where)], step.title
        screened += 1
    assert screened >= 30


def test_the_checker_screens_every_entry_of_the_layers_matrix_steps():
    """W is 4 × 4: more entries than the 50-digit check evaluates one by one (12)."""
    derivation = derive("softmax-layer", 4, n_prev=4, m=2)
    assert derivation.proven
    by_w = [s for s in derivation.steps if s.free_indices and str(s.lhs).startswith("Derivative(J, W[")]
    assert by_w
    for step in by_w:
        assert "float screen: all 16 entries at 2 random points" in step.check.detail, step.check.detail
        assert "numeric: 4 of 16 entries" in step.check.detail, step.check.detail


def test_a_step_with_few_entries_has_every_entry_checked_at_50_digits_instead():
    derivation = derive("softmax-layer", 3, n_prev=2, m=2)
    by_w = [s for s in derivation.steps if s.free_indices and str(s.lhs).startswith("Derivative(J, W[")]
    assert by_w
    for step in by_w:
        assert "numeric: 6 of 6 entries" in step.check.detail and "float screen" not in step.check.detail


def test_a_derivative_too_large_for_the_screen_is_left_to_the_entry_by_entry_check(monkeypatch):
    monkeypatch.setattr(grid_module, "MAX_CELLS", 16)
    derivation = check_derivation(derive_softmax_layer(4, n_prev=4, m=2))
    assert derivation.proven
    assert not any("float screen" in s.check.detail for s in derivation.steps if str(s.lhs).startswith("Derivative(J, W["))


def test_a_corrupted_matrix_step_proven_nowhere_is_refuted_at_its_entry():
    """At 20 × 20 (over the size written out entry by entry) a step the index prover cannot
    prove is left to the screen, which must name the wrong entry."""
    derivation = derive_softmax_layer(20, n_prev=2, m=2)
    step = next(s for s in derivation.steps if s.free_indices and str(s.lhs).startswith("Derivative(A["))
    i, s, j, t = step.free_indices
    wrong = step.rhs + KroneckerDelta(i, 17) * KroneckerDelta(j, 3) * KroneckerDelta(s, 1) * KroneckerDelta(t, 1) / 1000
    checker = StepChecker(derivation.model)
    check = checker.check(type(step)(step.title, step.rule, step.lhs, wrong, step.free_indices, step.assumptions),
                          "corrupted")
    assert check.exact is False and check.numeric is False, check.detail
    assert "float screen" in check.detail and "= 17" in check.detail and "= 3" in check.detail


def test_a_derivative_of_an_entry_that_does_not_hold_the_variable_is_exactly_zero():
    model = derive_softmax_layer(3, n_prev=2, m=2).model
    program = NumericProgram(ConcreteModel(model))
    A, Z = _base(model, "A"), _base(model, "Z")
    state = program.random_state(random.Random(7), {})
    with mpmath.workdps(50):
        other_column = program.compile(Derivative(A[1, 1], Z[2, 2]))(state)
        same_column = program.compile(Derivative(A[1, 2], Z[2, 2]))(state)
        a12, a22 = (program.compile(x)(state) for x in (A[1, 2], A[2, 2]))
    assert other_column == 0
    assert mpmath.almosteq(same_column, -a12 * a22, rel_eps=mpmath.mpf(10) ** -10)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from("AWxyz"), indices=st.lists(st.integers(1, 40), min_size=1, max_size=3),
       assumption=st.sampled_from([{}, {"real": True}, {"positive": True}, {"integer": True}]))
def test_an_indexed_entry_is_one_shared_object_with_sympys_own_meaning(name, indices, assumption):
    assert interning.installed()
    base = IndexedBase(Symbol(name, **assumption)) if assumption else IndexedBase(name)
    first, second = base[tuple(indices)], Indexed(base, *indices)
    assert first is second
    fresh = interning._sympy_new(Indexed, base, *indices)  # SymPy's constructor, not shared
    assert first == fresh and hash(first) == hash(fresh)
    assert first.assumptions0 == fresh.assumptions0
    other = IndexedBase(Symbol(name, negative=True))[tuple(indices)]
    assert other is not first and other != first  # a base with other assumptions is another entry


def test_an_unhashable_or_keyword_construction_is_left_to_sympy():
    base = IndexedBase("q")
    assert Indexed(base, [1, 2]) == interning._sympy_new(Indexed, base, [1, 2])  # a list: not hashable
    assert Indexed(base, 1, 2) is Indexed(base, 1, 2)
