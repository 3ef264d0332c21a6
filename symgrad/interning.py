"""One object per indexed entry: ``Indexed(A, 3, 5)`` built twice is the same object.

Why: the checker writes entries out by substitution (``term.xreplace({i: 3})`` for every term of
every sum), and SymPy builds each ``Indexed`` afresh: it copies its base's assumptions and
deduces all their consequences again (``StdFactKB``, ~45 µs), and every equality test of two
distinct entry objects re-reads those assumptions (``Indexed._hashable_content``). On the
softmax layer at 16, 16, 16 that was 57,000 constructions and a quarter of its time
(``bench/bench_speed.py``). SymPy already shares objects this way for most of its classes
(``cacheit`` on ``Add``, ``Mul``, ``Pow``, functions), just not for ``Indexed``.

An ``Indexed`` is immutable and its value depends only on its arguments (the base, with its
assumptions, and the indices), so sharing one object between equal constructions changes no
result: only how often the work is done. Constructions with keyword arguments or unhashable
arguments go to SymPy unchanged. ``install`` is idempotent; it is called when the model module
is imported, before any checking starts.
"""

from __future__ import annotations

from functools import lru_cache

from sympy.tensor.indexed import Indexed

CAPACITY = 1 << 16  # entries kept: every entry of a 256 × 256 matrix, a few MB

_sympy_new = Indexed.__new__


@lru_cache(maxsize=CAPACITY)
def _interned(cls, base, *indices):
    return _sympy_new(cls, base, *indices)


def _new(cls, base, *indices, **options):
    if options:
        return _sympy_new(cls, base, *indices, **options)
    try:
        return _interned(cls, base, *indices)
    except TypeError:  # an unhashable argument (a list of indices): SymPy decides what it means
        return _sympy_new(cls, base, *indices)


def install() -> None:
    """Make ``Indexed(...)`` return the shared object for equal arguments."""
    Indexed.__new__ = _new  # type: ignore[method-assign]


def installed() -> bool:
    return Indexed.__new__ is _new
