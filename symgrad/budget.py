"""Time budgets: a deadline for a block of pure-Python work (SymPy), so that no check or
derivation can run for ever.

    with deadline(60):
        result = check_at_size(identity, size)     # raises TimeLimitReached after 60 s

The deadline is a ``signal.setitimer(ITIMER_REAL)`` alarm whose handler raises
``TimeLimitReached`` in the main thread; SymPy is pure Python, so the exception arrives within
a bytecode or so. ``TimeLimitReached`` derives from ``BaseException``, so the ``except Exception``
blocks inside SymPy cannot swallow it; and should anything swallow it all the same, the alarm
fires again every ``RETRY`` seconds, and leaving the block after the deadline raises it anyway:
a result computed while the deadline fired is never returned as if nothing had happened.

Deadlines nest (an overall budget around per-item budgets): the inner one never outlives the
outer one, and the outer alarm is re-armed on leaving. Outside the main thread, or on a platform
without ``setitimer``, a deadline does nothing (the work is then unbounded, as before).
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

RETRY = 0.5  # seconds between repeated alarms once the deadline has passed


class TimeLimitReached(BaseException):
    """The time budget of a check or derivation ran out."""

    def __init__(self, seconds: float):
        super().__init__(f"time limit reached after {format_seconds(seconds)} s")
        self.seconds = seconds


def format_seconds(seconds: float) -> str:
    return f"{seconds:g}" if seconds >= 1 else f"{seconds:.2g}"


_active: list[dict] = []  # the stack of deadlines: {"end": monotonic time, "seconds": budget, "fired": bool}


def _usable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _arm(frame: dict) -> None:
    remaining = frame["end"] - time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001), RETRY)


def _on_alarm(signum, stack) -> None:
    if not _active:
        return
    # the innermost deadline that has passed (an outer one may end first)
    now = time.monotonic()
    for frame in reversed(_active):
        if now >= frame["end"] - 0.001:
            frame["fired"] = True
            raise TimeLimitReached(frame["seconds"])
    _arm(min(_active, key=lambda f: f["end"]))  # woken early: sleep again until the nearest end


@contextmanager
def deadline(seconds: float | None):
    """Raise ``TimeLimitReached`` in this block once ``seconds`` have passed (None: no limit)."""
    if seconds is None or not _usable():
        yield
        return
    frame = {"end": time.monotonic() + seconds, "seconds": seconds, "fired": False}
    if _active:
        frame["end"] = min(frame["end"], min(f["end"] for f in _active))
        outer = [f for f in _active if f["end"] <= frame["end"]]
        if outer:  # an outer deadline ends first: report that one's budget
            frame["seconds"] = outer[-1]["seconds"]
    outermost = not _active
    if outermost:  # someone else's alarm (pytest-timeout, say) is put back afterwards
        previous = signal.getsignal(signal.SIGALRM)
        previous_timer = signal.getitimer(signal.ITIMER_REAL)
        started = time.monotonic()
        signal.signal(signal.SIGALRM, _on_alarm)
    _active.append(frame)
    _arm(frame)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _active.remove(frame)
        if _active:
            _arm(min(_active, key=lambda f: f["end"]))
        else:
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
            if previous_timer[0] > 0:
                remaining = previous_timer[0] - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001), previous_timer[1])
    if frame["fired"]:  # the alarm fired but something swallowed it: the result is not to be trusted
        raise TimeLimitReached(frame["seconds"])
