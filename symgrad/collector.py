"""How symgrad's own processes (the command line and ``verify -j`` workers) run Python's cyclic
garbage collector. The library never calls this: a notebook or a test keeps its own settings.

SymPy builds many small, short-lived objects that are almost never in reference cycles, and
keeps long-lived ones (its caches, the modules' objects) that every full collection scans
again. Measured on the 2-core machine (``bench/bench_speed.py``): CPython's defaults cost about
8 % of a cold ``verify derivations/``, and the collection at interpreter shutdown 0.09 s of a
0.65 s ``derive --n 3``.
"""

from __future__ import annotations

import gc

# A young-generation collection every 2,000 allocations, not 700. The older generations count
# young collections, so they run rarer too: at 5,000 the peak memory of derive --n 1024 rose
# from 471 MB to 562 MB (a review); at 2,000 it stays 471 MB, and the time is the same.
YOUNG_THRESHOLD = 2_000


def for_a_command() -> None:
    """At the start of a symgrad process: collect the young generation less often."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def before_exit() -> None:
    """Just before a symgrad process exits: move every object to the permanent generation, so
    the interpreter's final collection does not scan them (their memory goes back to the OS
    with the process; the objects are not needed any more, and nothing is lost)."""
    gc.freeze()


def in_a_worker() -> None:
    """In a ``verify -j`` worker, forked with the parent's objects (SymPy, the identities): those
    are never collected by the worker, so no collection scans them (nor touches their pages,
    which fork shares with the parent until written)."""
    for_a_command()
    gc.freeze()
