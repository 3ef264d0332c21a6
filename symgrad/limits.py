"""Limits checked before any work starts (so refusing is instant: no SymPy import here), and
the default time budgets.

Measured on 2 cores: softmax-cross-entropy n = 128 in 11 s, n = 256 in about 45 s, n = 1000 in
7 min and 6.9 GB, n = 4096 a MemoryError after 94 s; softmax-layer n = n_prev = m = 16 in 69 s
(107 MB), n = 64 with n_prev = m = 2 in 28 s.
"""

from __future__ import annotations

from symgrad.errors import UsageError

EXTRA_SIZES = {"softmax-layer": ("n_prev", "m")}  # sizes a derivation takes besides n
MAX_N = 256  # fixed sizes beyond this cannot finish in reasonable time and memory
MAX_WORK = {"softmax-layer": 16 * 16 * 16}  # n · n_prev · m
DEFAULT_TIME_LIMIT = 60.0  # seconds per identity and size (verify, export, the pytest plugin)
DEFAULT_DERIVE_TIME_LIMIT = 300.0  # seconds for a whole derivation


def parse_size(value: str | int, name: str = "n") -> int | str:
    """A size as the user gave it: a positive integer, or "symbolic"."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        if text.lower() == "symbolic":
            return "symbolic"
        try:
            number = int(text)
        except ValueError:
            raise UsageError(f"--{name} must be a positive integer or 'symbolic', not {text!r}") from None
    if number < 1:
        raise UsageError(f"--{name} must be at least 1, not {number}")
    if number > MAX_N:
        raise UsageError(f"--{name} {number} is too large to derive with written-out entries (at most "
                         f"{MAX_N}: larger sizes take too long and too much memory); --n symbolic "
                         "derives it once for every n")
    return number


def parse_time_limit(value: float | None) -> float | None:
    """A time limit in seconds: None or 0 for none."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--time-limit must be a number of seconds, not {value!r}") from None
    if seconds != seconds or seconds < 0:
        raise UsageError(f"--time-limit must be a positive number of seconds (0: no limit), not {value!r}")
    return None if seconds == 0 or seconds > 10**7 else seconds


def refuse_too_much_work(name: str, size, extra: dict) -> None:
    """A UsageError if a fixed-size derivation is too large to finish."""
    if name not in MAX_WORK:
        return
    values = [size, *(extra.get(key, 2) for key in EXTRA_SIZES[name])]
    if "symbolic" in values:
        return
    work = 1
    for value in values:
        work *= value
    if work > MAX_WORK[name]:
        shown = " · ".join(f"{k} = {v}" for k, v in zip(("n", *EXTRA_SIZES[name]), values))
        raise UsageError(f"{name} with {shown} is too large to derive with written-out entries "
                         f"(n · n_prev · m at most {MAX_WORK[name]}); --n symbolic derives it once for every size")
