"""``symgrad.verify_identity``: one identity checked from Python — in a notebook, or in one's own
pytest file — by the very code ``symgrad verify FILE.toml`` runs on one identity of a file.

    >>> import symgrad
    >>> verdict = symgrad.verify_identity("sum(softmax(z))", "1", vars="z=n")
    >>> verdict.holds, verdict.scope
    (True, 'n = 1, 2, 3, 5, 8')
    >>> assert verdict                          # a Verdict is true only when the identity holds

The arguments become one ``[[identity]]`` table, read by the identity-file reader (the same
validation and messages, each placed in the argument it concerns: "lhs, column 5: …"), and
checked at each size by ``symgrad.api.check_identity``, as ``symgrad verify`` and the pytest
plugin check it: exactly and numerically, functions with kinks region by region, each size
within ``time_limit`` seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from symgrad.errors import UsageError

Status = Literal["holds", "refuted", "undecided"]
Shapes = Mapping[str, "int | str"] | str
SizeTable = Mapping[str, "int | str"]

DEFAULT_SIZES = (1, 2, 3, 5, 8)  # as the catalog checks vector identities
SOURCE = "<verify_identity>"  # what the identity's "file" is called in messages
FIXED = "every n (no variable has length n)"  # the scope when nothing depends on n


@dataclass(frozen=True)
class SizeVerdict:
    """The outcome at one size: ``size`` as written ("3", "symbolic", "n = 3, p = 2, m = 2")."""

    size: str
    status: Status
    method: str
    detail: str
    seconds: float


@dataclass(frozen=True)
class Verdict:
    """Whether ``lhs == rhs`` holds: ``status`` "holds" (proven at every size checked, which
    ``scope`` says: "all n", "n = 1, 2, 3, 5, 8", "n = 3, p = 2, m = 2"), "refuted" (false at
    the size in ``scope``; ``counterexample`` says where, with both sides' values) or
    "undecided" (neither; ``detail`` says why). ``sizes`` holds every size's own verdict.

    ``bool(verdict)`` is ``verdict.holds``: ``assert symgrad.verify_identity(...)`` fails unless
    the identity holds, and pytest's report then shows the verdict, counterexample included.
    """

    lhs: str
    rhs: str
    status: Status
    scope: str
    detail: str
    counterexample: str | None
    sizes: tuple[SizeVerdict, ...]

    @property
    def holds(self) -> bool:
        return self.status == "holds"

    @property
    def refuted(self) -> bool:
        return self.status == "refuted"

    @property
    def undecided(self) -> bool:
        return self.status == "undecided"

    def __bool__(self) -> bool:
        return self.holds

    def __str__(self) -> str:
        return f"{self.lhs} == {self.rhs}: {self.status} ({self.scope}): {self.detail}"

    def __repr__(self) -> str:
        return f"<Verdict {self}>"


def verify_identity(lhs: str, rhs: str, *, vars: Shapes, n: int | str | Iterable[int | str] | None = None,
                    sizes: SizeTable | str | Sequence[SizeTable] | None = None,
                    assume: str | Sequence[str] = (), time_limit: float | None = 60.0,
                    cache: bool = False) -> Verdict:
    """Check ``lhs == rhs`` in the expression language (``symgrad verify``'s, e.g.
    ``"grad(cross_entropy(softmax(z), y), z)"``) and return a ``Verdict``.

    ``vars``: each variable's shape, a dict (``{"z": "n", "T": "scalar"}``) or the CLI's string
    ("z=n,T=scalar"; matrices "W=n x p,X=p x m"). ``n``: the sizes to check vectors at, one or
    several integers, and "symbolic" for a proof for every n (a ``grad``/``jacobian`` identity:
    derived in index notation); by default 1, 2, 3, 5, 8 (just 1 when nothing has length n).
    ``sizes``: for matrices, each size name's value, one table or several
    (``{"n": 3, "p": 2, "m": 2}``, "n=3,p=2,m=2"). ``assume``: one equation or several
    ("sum(y) == 1"). ``time_limit``: seconds for each size (None or 0: no limit); past it that
    size is undecided. ``cache``: keep and reuse verdicts in ``.symgrad_cache/`` in the current
    directory, as ``symgrad verify`` does.

    Raises ``UsageError`` (an ``IdentityFileError``) for a mistake in the identity: an unknown
    name, a shape error, a bad size.
    """
    from symgrad.api import _equations, _shapes, _sizes, check_identity, load_text
    from symgrad.identity_file import IdentityFileError

    for what, text in (("lhs", lhs), ("rhs", rhs)):
        if not isinstance(text, str):
            raise UsageError(f"{what} must be a string in the expression language, not {type(text).__name__}")
    shapes = _shapes(vars)
    equations = _equations(assume)
    matrices = any(isinstance(shape, str) and " x " in shape for shape in shapes.values())
    fixed = False
    lines = ["[[identity]]", f"name = {_toml(f'{lhs} == {rhs}')}",
             "vars = { " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in shapes.items()) + " }"]
    if matrices or sizes is not None:
        if n is not None:
            raise UsageError("give the sizes either as n= (vectors of length n) or as sizes= (size names, "
                             "for matrices), not both")
        if sizes is None:
            raise UsageError('matrices need sizes=, each size name\'s value (e.g. sizes={"n": 3, "p": 2, "m": 2})')
        tables = [sizes] if isinstance(sizes, (str, Mapping)) else list(sizes)
        values = [_sizes(table) for table in tables]
        lines.append("sizes = [" + ", ".join("{ " + ", ".join(f"{_toml(k)} = {_toml(v)}"
                                                                for k, v in (table or {}).items()) + " }"
                                             for table in values) + "]")
    else:
        listed = _vector_sizes(n, shapes, (lhs, rhs, *equations))
        lines.append(f"n = [{', '.join(_toml(size) for size in listed)}]")
        fixed = n is None and listed == [1]  # nothing has length n: one check covers every n
    # each expression on a line of its own: a message's line says which argument, its column where
    places: dict[int, str] = {}  # line → the argument on it
    starts: dict[int, int] = {}  # line → the characters before the expression (and its quote)

    def place(what: str, prefix: str, text: str, end: str = "") -> None:
        places[len(lines) + 1], starts[len(lines) + 1] = what, len(prefix) + 1
        lines.append(prefix + _toml(text) + end)

    lines.append("assume = [")
    for equation in equations:
        place(f"assumption {_toml(equation)}", "  ", equation, ",")
    lines.append("]")
    place("lhs", "lhs = ", lhs)
    place("rhs", "rhs = ", rhs)
    try:
        (identity,) = load_text(("\n".join(lines) + "\n").encode("utf-8"), SOURCE)
        from symgrad.budget import TimeLimitReached

        try:
            result = check_identity(identity, time_limit=time_limit, cache=_cache() if cache else None)
        except TimeLimitReached as reached:  # (check_identity makes each size undecided; this is a guard)
            raise UsageError(str(reached)) from None
    except IdentityFileError as error:
        raise IdentityFileError(_placed(str(error), places, starts), error.path, error.identity) from None
    except UnicodeEncodeError as error:
        raise UsageError(f"the identity is not valid text: {error}") from None
    verdict = _verdict(lhs, rhs, result)
    if fixed:
        return replace(verdict, scope=FIXED, detail=verdict.detail.replace("n = 1", FIXED, 1),
                       counterexample=verdict.counterexample and verdict.counterexample.replace("n = 1", FIXED, 1))
    return verdict


def _toml(value: Any) -> str:
    """A TOML string or integer (JSON's string escapes are TOML's, but for DEL)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def _vector_sizes(n: int | str | Iterable[int | str] | None, shapes: Mapping[str, int | str],
                  texts: Iterable[str]) -> list[int | str]:
    """The sizes to check at: ``n`` as given, or 1, 2, 3, 5, 8 (only 1 when nothing depends on n)."""
    if n is None:
        uses_n = "n" in shapes.values() or any(re.search(r"\bn\b", text) for text in texts)
        return list(DEFAULT_SIZES) if uses_n else [1]
    values = [n] if isinstance(n, (int, str)) else list(n)
    out: list[int | str] = []
    for value in values:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not (isinstance(value, int) or value == "symbolic") or isinstance(value, bool):
            raise UsageError(f'n: each size must be a positive integer or "symbolic", not {value!r}')
        out.append(value)
    return out


def _placed(message: str, places: dict[int, str], starts: dict[int, int]) -> str:
    """An identity-file message's ``<verify_identity>:LINE:COLUMN:`` as the argument concerned
    ("lhs, column 5:"); a place in no argument is left out."""
    found = re.match(re.escape(SOURCE) + r":(\d+):(\d+): ", message)
    if not found:
        return message.replace(f"{SOURCE}: ", "", 1)
    line, column = int(found.group(1)), int(found.group(2))
    rest = message[found.end():]
    if line in places:
        return f"{places[line]}, column {max(column - starts.get(line, 0), 1)}: {rest}"
    return rest


def _cache() -> Any:
    from symgrad.cache import ResultCache

    return ResultCache(warn=lambda message: None)


def _size_label(size: object) -> str:
    return str(size)


def _scope(sizes: Sequence[object]) -> str:
    """The sizes as a reader says them: "all n", "n = 1..8", "n = 1, 2, 3, 5, 8", "n = 3, p = 2"."""
    labels = []
    numbers = [s for s in sizes if isinstance(s, int)]
    if any(s == "symbolic" for s in sizes):
        return "all n"
    tables = [str(s) for s in sizes if not isinstance(s, int)]
    if numbers:
        if len(numbers) >= 3 and numbers == list(range(numbers[0], numbers[-1] + 1)):
            labels.append(f"n = {numbers[0]}..{numbers[-1]}")
        else:
            labels.append("n = " + ", ".join(map(str, numbers)))
    for table in tables:
        values = [part.split(" = ") for part in table.split(", ")]
        if values and all(len(v) == 2 and v[1] == "symbolic" for v in values):
            labels.append("all " + ", ".join(v[0] for v in values))
        else:
            labels.append(table)
    return "; ".join(labels)


def _verdict(lhs: str, rhs: str, result: Any) -> Verdict:
    """A Verdict from ``symgrad.verify.identity.IdentityResult`` (its ``holds`` decides)."""
    def status(holds: bool | None) -> Status:
        return "holds" if holds is True else "refuted" if holds is False else "undecided"

    sizes = tuple(SizeVerdict(_size_label(r.size), status(r.holds), r.method, r.detail, r.seconds)
                  for r in result.results)
    overall = status(result.holds)
    checked = [r.size for r in result.results]
    if overall == "refuted":
        first = next(r for r in result.results if r.holds is False)
        scope = _scope([first.size])
        detail = counterexample = f"at {scope}: {first.detail}"
        return Verdict(lhs, rhs, overall, scope, detail, counterexample, sizes)
    if overall == "holds":
        methods = list(dict.fromkeys(r.method for r in result.results))
        detail = f"proven at {_scope(checked)} ({'; '.join(methods)})"
        symbolic = [r for r in result.results if r.size == "symbolic"]
        if symbolic:
            detail += f"; {symbolic[0].detail}"
        return Verdict(lhs, rhs, overall, _scope(checked), detail, None, sizes)
    open_sizes = [r for r in result.results if r.holds is not True]
    detail = "; ".join(f"at {_scope([r.size])}: {r.detail}" for r in open_sizes) or "nothing was checked"
    return Verdict(lhs, rhs, overall, _scope(checked), detail, None, sizes)
