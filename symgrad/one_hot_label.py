"""``--one-hot K`` read before any work starts (no SymPy here, so a bad class is refused at once)."""

from __future__ import annotations

from symgrad.errors import UsageError

SYMBOLIC_CLASS = "K"  # --one-hot K at a symbolic n: the class is a parameter 1 ≤ K ≤ n


def parse_class(value, n) -> int | str:
    """The class K of ``--one-hot K`` for the size ``n`` (an int or "symbolic"): a number in
    1..n at a fixed n, the letter K (a symbolic class) at a symbolic n. UsageError otherwise."""
    text = str(value).strip()
    if n == "symbolic":
        if text == SYMBOLIC_CLASS:
            return SYMBOLIC_CLASS
        raise UsageError(f"--one-hot {text} with --n symbolic: give --one-hot K (the class, a symbol with "
                         "1 ≤ K ≤ n, proven for every K), or a number with a fixed --n")
    if text == SYMBOLIC_CLASS:
        raise UsageError(f"--one-hot K (a symbolic class) needs --n symbolic; at n = {n} give the class "
                         f"as a number 1 … {n}")
    if not (text.isdigit() or text.startswith("-") and text[1:].isdigit()):
        raise UsageError(f"--one-hot must be a class number 1 … n (or K with --n symbolic), not {text!r}")
    number = int(text)
    if not 1 <= number <= int(n):
        raise UsageError(f"--one-hot {number}: the class K must be one of 1 … n = {n}")
    return number
