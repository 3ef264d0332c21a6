"""Limits checked before any work starts (so refusing is instant: no SymPy import here), and
the default time budgets.

Measured on 2 cores (shared): softmax-cross-entropy n = 128 in 11 s, n = 256 in about 45 s, n = 1000 in
7 min and 6.9 GB, n = 4096 a MemoryError after 94 s; softmax-layer n = n_prev = m = 16 in 69 s
(107 MB), n = 64 with n_prev = m = 2 in 28 s.

With template matrices (the n × n Jacobian one object, every step proven in index form, every
entry screened with numpy; 2026-12-04, 2 cores at a load of 10–15): softmax-cross-entropy at
n = 1024 takes about 5–8 s of CPU and 400 MB, its certificate 160 KB; so MAX_N is 1024 (the
issue's target). --expr derivations of vectors go through the same checker
(binary_cross_entropy(sigmoid(z), y) at n = 1024: 7.8 s of CPU, 350 MB).

Over matrices (cross_entropy(softmax(W @ X + b), Y) / m by W with colsum(Y) == 1; derive,
check, render json and text; idle machine, 2026-11-30): n, p, m = 10, 10, 10: 7 s; 16, 16, 16:
17 s; 16, 64, 16: 23 s; 2, 2, 128: 16 s; 32, 2, 2: 4 s; 64, 1, 2: 52 s; 64, 1, 4: 114 s;
128, 1, 2: 204 s. The time follows t ≈ 0.0065 n²m + 0.0005 n m² seconds (n the classes, the
softmax's length; m the other sizes; p costs little), so the work score is n²m + n m²/12 with m
the largest other size, capped at MAX_MATRIX_WORK (about a minute). softmax-layer is the same
engine on the same question (by W, b and A_prev at once: 16, 16, 16 in 25 s), so it has the
same cap; a symbolic size counts as 3, the largest size its instances are checked at. (A first
measurement on a loaded machine, 8, 8, 8 in 21.5 s, had set a cap 20 times too strict.)
"""

from __future__ import annotations

import re

from symgrad.errors import UsageError

EXTRA_SIZES = {"softmax-layer": ("n_prev", "m")}  # sizes a derivation takes besides n
MAX_N = 1024  # fixed sizes beyond this: past the 10 s / 1 GB targets (see the module docstring)
MAX_MATRIX_WORK = 9500  # over matrices: n²m + n m²/12 (64, 1, 2 is 8213: about 50 s)
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
    """A UsageError if a fixed-size derivation is too large to finish (softmax-layer: the cap of
    any --expr over matrices)."""
    if name not in EXTRA_SIZES:
        return
    values = {"n": size, **{key: extra.get(key, 2) for key in EXTRA_SIZES[name]}}
    refuse_too_much_matrix_work(values, f"{name} with")


VARS_EXAMPLE = "e.g. z=n,y=n,T=scalar, or W=n x p,X=p x m,b=n with --sizes n=3,p=2,m=2"


def parse_variables(text: str) -> dict:
    """``"W=n x p,b=n,T=scalar"`` → {"W": "n x p", "b": "n", "T": "scalar"}: each variable's
    shape as in identity files: "scalar", a size name ("n", "m": a vector), a positive integer
    (a vector of length n) or "ROWS x COLS" with two size names (a matrix); "n x 1" is the
    column vector n, as papers write its shape."""
    variables = {name: _shape(name, length)
                 for name, length in _assignments(text, "--vars", "NAME=SHAPE", VARS_EXAMPLE, "variable", "declared")}
    if not variables:
        raise UsageError(f"--vars declares no variable ({VARS_EXAMPLE})")
    return variables


def _shape(name: str, text: str) -> int | str:
    words = text.split()
    if "x" in words or len(words) > 1:  # a matrix: ROWS x COLS
        if len(words) != 3 or words[1] != "x":
            what = "has two sizes" if words.count("x") > 1 else "is written ROWS x COLS"
            raise UsageError(f"--vars: {name}={text}: a matrix {what} (e.g. {name}=n x p), with spaces around the x")
        rows, cols = words[0], words[2]
        if cols == "1" and not rows.isdigit():  # a column vector, as papers write its shape
            _check_size_name(name, text, rows)
            return rows
        if rows == "1" and not cols.isdigit():
            raise UsageError(f"--vars: {name}={text}: a row vector; declare the column vector ({name}={cols}) "
                             f"and write transpose({name}) where the row is meant")
        if rows.isdigit() or cols.isdigit():
            raise UsageError(f"--vars: {name}={text}: name the sizes ({name}=n x p) and give their values "
                             f"with --sizes (e.g. --sizes n=3,p=2); a vector is written {name}=n")
        for size in (rows, cols):
            _check_size_name(name, text, size)
        return f"{rows} x {cols}"
    if text in ("scalar", "function"):  # function: an abstract g applied entry by entry (g(W @ X + b))
        return text
    if text.isdigit():
        if int(text) < 1:
            raise UsageError(f"--vars: the length of {name!r} must be at least 1, not {text}")
        return int(text)
    _check_size_name(name, text, text)
    return text


def _check_size_name(name: str, text: str, size: str) -> None:
    if not size.isidentifier() or size == "scalar":
        raise UsageError(f"--vars: the length of {name!r} must be scalar, a size name (n), a positive "
                         f"integer or ROWS x COLS (n x p), not {text!r}")


def _assignments(text: str, option: str, form: str, example: str, what: str, verb: str) -> list[tuple[str, str]]:
    """``a=1,b=2`` → [("a", "1"), ("b", "2")], each name a valid identifier given once."""
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = (x.strip() for x in part.partition("="))
        if not sep or not name or not value:
            raise UsageError(f"{option}: {part!r} is not {form} ({example})")
        if not name.isidentifier():
            raise UsageError(f"{option}: {name!r} is not a valid {what} name")
        if name in pairs:
            raise UsageError(f"{option}: {name!r} is {verb} twice")
        pairs[name] = value
    return list(pairs.items())


def parse_sizes(text: str) -> dict:
    """``"n=3,p=2,m=symbolic"`` → {"n": 3, "p": 2, "m": "symbolic"}: the value of each size name."""
    sizes = {}
    for name, value in _assignments(text, "--sizes", "NAME=VALUE", "e.g. --sizes n=3,p=2,m=2", "size", "given"):
        if value.lower() == "symbolic":
            sizes[name] = "symbolic"
            continue
        if not re.fullmatch(r"[+]?\d+", value) or int(value) < 1:
            raise UsageError(f"--sizes: {name} must be a positive integer or 'symbolic', not {value!r}")
        if int(value) > MAX_N:
            raise UsageError(f"--sizes: {name} = {int(value)} is too large to derive with written-out entries "
                             f"(at most {MAX_N})")
        sizes[name] = int(value)
    if not sizes:
        raise UsageError("--sizes gives no size (e.g. --sizes n=3,p=2,m=2)")
    return sizes


def expression_sizes(variables: dict, sizes: dict | None, n: int | str | None, text: str = "") -> tuple:
    """(n, sizes) for an --expr derivation over ``variables`` (as ``parse_variables`` returns):
    n from ``sizes`` or ``n`` (default 3); every other size name a variable uses must be in
    ``sizes``, and every name in ``sizes`` must be used (by a variable, or in ``text``: the
    expression and assumptions, where a size may divide). A UsageError for anything missing,
    unused or contradictory, or for a matrix problem too large to finish."""
    sizes = dict(sizes or {})
    if "n" in sizes and n is not None and sizes["n"] != n:
        raise UsageError(f"n is given twice: --n {n} and --sizes n={sizes['n']}")
    n = sizes.get("n", 3 if n is None else n)
    used = list(dict.fromkeys(d for shape in variables.values() if isinstance(shape, str)
                              and shape not in ("scalar", "function") for d in shape.split(" x ")))
    for name, shape in variables.items():
        if isinstance(shape, int) and n != "symbolic" and shape != n:
            raise UsageError(f"--vars: {name} has length {shape}, but n = {n}: declare it with length n")
        for size in shape.split(" x ") if isinstance(shape, str) and shape not in ("scalar", "function") else ():
            if size != "n" and size not in sizes:
                hint = " (a matrix is written ROWS x COLS, with spaces)" if "x" in size[1:-1] else ""
                raise UsageError(f"--vars: {name}={shape}: size {size} has no value: give it with --sizes "
                                 f"(e.g. --sizes {size}=2){hint}")
    for size in sizes:
        if size not in used and size != "n" and not re.search(rf"\b{re.escape(size)}\b", text):
            raise UsageError(f"--sizes: {size} is not a size of any variable in --vars, nor used in the expression")
    if any(" x " in str(shape) for shape in variables.values()):
        values = {size: sizes.get(size, n) for size in used}
        refuse_too_much_matrix_work(values)
    return n, (sizes or None)


def matrix_work(values: dict) -> float:
    """The work score of a derivation over matrices: n²m + n m²/12, n the size named n (the
    softmax's length; else the largest) and m the largest other size. A symbolic size counts as 3."""
    counted = {k: 3 if v == "symbolic" else v for k, v in values.items()}
    classes = counted.pop("n", None) if "n" in counted else counted.pop(max(counted, key=counted.get))
    other = max(counted.values(), default=1)
    return classes ** 2 * other + classes * other ** 2 / 12


def refuse_too_much_matrix_work(values: dict, what: str = "--expr with") -> None:
    """A UsageError, before any work, if a derivation over matrices would take more than about a
    minute (``matrix_work`` above MAX_MATRIX_WORK, measured in the module docstring)."""
    if not values or all(v == "symbolic" for v in values.values()):
        return
    work = matrix_work(values)
    if work > MAX_MATRIX_WORK:
        shown = ", ".join(f"{k} = {v}" for k, v in values.items())
        raise UsageError(f"{what} {shown} is too large to derive with written-out entries (its work, "
                         f"n²m + nm²/12, is {work:,.0f}, at most {MAX_MATRIX_WORK:,}, e.g. 16, 16, 16 or n = 64 "
                         "with m = 2): use smaller sizes, or 'symbolic' ones, which prove it once for every size")
