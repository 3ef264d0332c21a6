"""Checking many identities at once: verdicts from the cache first, the rest in worker processes,
every result in input order — so ``verify -j 2`` prints byte for byte what ``-j 1`` prints.

The unit of work is one identity at one size — or, for an identity with a symbolic size (an
all-symbolic table, or "symbolic"), that size followed by the fixed sizes that are its
instances, which then reuse its proof in the same process; identities whose derivations share a
model (a layer's dW, db and dA_prev) go in one unit too, and share their proofs. Each size is bounded by ``--time-limit`` in the worker's main
thread, where ``budget.deadline`` (SIGALRM) applies as it does in one process. The parent
alone reads and writes the cache. Ctrl-C reaches the whole process group: workers ignore
SIGINT, and the parent, whose handler raises ``Interrupted``, stops them before ``cli.main``
prints ``symgrad: interrupted`` and exits 130. A worker that dies (killed, out of memory)
leaves the sizes of its unit of work undecided (those it had already finished too), never a
traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

WORKER_DIED = ("not checked: a worker process stopped unexpectedly (killed, or out of memory); "
               "try -j 1 or a smaller size")


def default_jobs() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else all)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def check_size(identity, size, time_limit: float | None):
    """The verdict at one size within the time limit: a size that runs out of time, memory or
    stack is undecided (the other sizes still run). Raises IdentityFileError for a mistake in
    the identity that shows only at this size."""
    from symgrad.budget import TimeLimitReached, deadline, format_seconds
    from symgrad.verify.identity import SizeResult, check_at_size

    started = time.perf_counter()
    try:
        with deadline(time_limit):
            return check_at_size(identity, size)
    except TimeLimitReached as reached:
        detail = f"time limit reached after {format_seconds(reached.seconds)} s (raise it with --time-limit)"
    except MemoryError:
        detail = "ran out of memory"
    except RecursionError:
        detail = "could not check: the expressions are nested too deeply"
    return SizeResult(size, None, "—", detail, time.perf_counter() - started)


def check_identities(identities: list, *, time_limit: float | None, jobs: int = 1, cache=None,
                     progress: Callable[[int, int, str], None] | None = None) -> tuple[list, list]:
    """(results, problems) for ``identities``, both in input order: an ``IdentityResult`` per
    identity checked at every size, an ``IdentityFileError`` (with ``path`` and ``identity``)
    per identity with a mistake that shows only at some size (the first such size's)."""
    from symgrad.identity_file import IdentityFileError, shared_proof_groups
    from symgrad.verdicts import IdentityResult

    verdicts: dict[tuple[int, int], object] = {}
    if cache is not None:
        for i, identity in enumerate(identities):
            for group in shared_proof_groups(identity, list(range(len(identity.sizes)))):
                cached = cache.get_group(identity, [identity.sizes[k] for k in group])
                if cached is not None:
                    verdicts.update(((i, k), result) for k, result in zip(group, cached))
    pending = [(i, k) for i, identity in enumerate(identities) for k in range(len(identity.sizes))
               if (i, k) not in verdicts]
    units = _units(identities, pending)
    checked_now = set(pending)
    tracker = _Tracker(identities, pending, progress)
    if jobs > 1 and len(units) > 1:
        _in_workers(identities, units, time_limit, min(jobs, len(units)), verdicts, tracker)
    else:
        _in_this_process(identities, units, time_limit, verdicts, tracker)
    tracker.finish()

    results, problems = [], []
    for i, identity in enumerate(identities):
        outcome = [verdicts.get((i, k)) for k in range(len(identity.sizes))]
        problem = next((v for v in outcome if isinstance(v, IdentityFileError)), None)
        if problem is not None:
            problem.path = problem.path or identity.path
            problem.identity = problem.identity or identity.name
            problems.append(problem)
            continue
        if cache is not None:
            for k, size in enumerate(identity.sizes):
                if (i, k) in checked_now:
                    cache.put(identity, size, outcome[k])
        results.append(IdentityResult(identity, tuple(outcome)))
    return results, problems


class _Tracker:
    """Progress by identity: ``progress(done, total, what)`` as sizes are checked."""

    def __init__(self, identities, pending, progress):
        self.identities, self.progress = identities, progress
        self.left = {}
        for i, _ in pending:
            self.left[i] = self.left.get(i, 0) + 1
        self.done = len(identities) - len(self.left)

    def starting(self, i: int, k: int) -> None:
        if self.progress:
            identity = self.identities[i]
            self.progress(self.done, len(self.identities), f"{identity.name} (n = {identity.sizes[k]})")

    def finished(self, i: int) -> None:
        self.left[i] -= 1
        if not self.left[i]:
            self.done += 1
            if self.progress:
                self.progress(self.done, len(self.identities), self.identities[i].name)

    def finish(self) -> None:
        if self.progress:
            self.progress(len(self.identities), len(self.identities), "done")


def _units(identities, pending: list[tuple[int, int]]) -> list[list[tuple[int, list[int]]]]:
    """The pending sizes as units of work, each a list of (identity, its size positions in
    checking order), checked in one process: an all-symbolic size table (or "symbolic") with the
    fixed sizes that are its instances after it, so they reuse its proof; the symbolic sizes of
    identities whose derivations share a model (a layer's dW, db, dA_prev:
    ``derivation_family``), so they share their proofs; every other size on its own."""
    from symgrad.identity_file import derivation_family, is_symbolic, shared_proof_groups

    positions: dict[int, list[int]] = {}
    for i, k in pending:
        positions.setdefault(i, []).append(k)
    units: list[list[tuple[int, list[int]]]] = []
    families: dict[tuple, list] = {}
    for i, ks in positions.items():
        family = derivation_family(identities[i])
        for group in shared_proof_groups(identities[i], ks):
            if family is None or not is_symbolic(identities[i].sizes[group[0]]):
                units.append([(i, group)])
            elif family in families:
                families[family].append((i, group))
            else:
                families[family] = [(i, group)]
                units.append(families[family])
    return units


def _in_this_process(identities, units, time_limit, verdicts, tracker) -> None:
    """One unit of work after another; an identity with a mistake is not checked at its later
    sizes (in this unit or the next)."""
    from symgrad.identity_file import IdentityFileError

    failed: set[int] = set()
    for unit in units:
        for i, group in unit:
            outcomes = [] if i in failed else _check_sizes(
                identities[i], [identities[i].sizes[k] for k in group], time_limit,
                starting=lambda position, i=i, group=group: tracker.starting(i, group[position]))
            if any(isinstance(outcome, IdentityFileError) for outcome in outcomes):
                failed.add(i)
            _record(i, group, outcomes, verdicts, tracker)


def _record(i: int, group: list[int], outcomes: list, verdicts, tracker) -> None:
    """A unit's outcomes as the verdicts of its sizes; after a mistake (an ``IdentityFileError``,
    the last outcome) the later sizes were not checked and have none."""
    for position, k in enumerate(group):
        if position < len(outcomes):
            verdicts[i, k] = outcomes[position]
        tracker.finished(i)


def _in_workers(identities, units, time_limit, workers: int, verdicts, tracker) -> None:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from symgrad.verdicts import SizeResult

    for stream in (sys.stdout, sys.stderr):  # a forked worker must not write our buffers again
        stream.flush()
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_worker_started)
    try:
        # the longest units first, so that no worker is left with one at the end while the others idle
        order = sorted(range(len(units)), key=lambda number: -sum(_expected_cost(identities, i, group)
                                                                   for i, group in units[number]))
        futures = {executor.submit(_check_unit, [(identities[i], [identities[i].sizes[k] for k in group])
                                                 for i, group in units[number]], time_limit): number
                   for number in order}
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=futures.get):
                unit = units[futures[future]]
                try:
                    outcomes = future.result()
                except BrokenProcessPool:
                    outcomes = [[SizeResult(identities[i].sizes[k], None, "—", WORKER_DIED, 0.0) for k in group]
                                for i, group in unit]
                for (i, group), its_outcomes in zip(unit, outcomes):
                    _record(i, group, its_outcomes, verdicts, tracker)
    except BaseException:  # an interrupt or a bug: do not wait for the checks still running
        _stop(executor)
        raise
    executor.shutdown()


# a size's checking time, roughly, in units of one fixed n: a proof for every size costs about
# what n = 12 does (the catalog: 0.2–0.9 s for "symbolic", 0.03 s + 0.03 s per n for fixed n)
_SYMBOLIC_COST = 12


def _expected_cost(identities: list, i: int, group: list[int]) -> int:
    """The expected checking time of identity i's sizes ``group`` (a unit of work), for the
    order of submission (largest first): a guess, which changes no result — only how evenly the
    workers finish."""
    from symgrad.identity_file import SizeTable

    def cost(size) -> int:
        values = size.values.values() if isinstance(size, SizeTable) else [size]
        return sum(value if isinstance(value, int) else _SYMBOLIC_COST for value in values)
    return sum(cost(identities[i].sizes[k]) for k in group)


def _check_unit(unit: list[tuple], time_limit: float | None) -> list[list]:
    """A worker's task: each (identity, sizes) of a unit of work in turn (``_check_sizes``)."""
    return [_check_sizes(identity, sizes, time_limit) for identity, sizes in unit]


def _check_sizes(identity, sizes: list, time_limit: float | None,
                 starting: Callable[[int], None] | None = None) -> list:
    """A unit of work (a worker's task): sizes of one identity one after another (one size, or a
    shared-proof group), each within its own time limit; ``starting(position)`` before each.
    Up to an ``IdentityFileError``, which is that size's outcome and ends the list: the later
    sizes of an identity with a mistake are not checked."""
    from symgrad.identity_file import IdentityFileError

    outcomes: list = []
    for position, size in enumerate(sizes):
        if starting:
            starting(position)
        try:
            outcomes.append(check_size(identity, size, time_limit))
        except IdentityFileError as problem:
            outcomes.append(problem)
            break
    return outcomes


def _context():
    """fork where it is safe (one thread: workers start at once, with SymPy already imported),
    else spawn (a fresh interpreter per worker)."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _worker_started() -> None:
    """Ctrl-C is the parent's to handle (it stops the workers); SIGTERM ends a worker at once.
    The garbage collector as in a symgrad command, and blind to what the worker inherited."""
    from symgrad import collector

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    collector.in_a_worker()


def _stop(executor) -> None:
    """Shut the pool down without waiting for the checks still running: the workers are
    terminated. Python < 3.14 has no public call for that."""
    terminate = getattr(executor, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join()
