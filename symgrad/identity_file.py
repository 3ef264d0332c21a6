"""Stage 1 — identity files: TOML tables of claims such as "grad(cross_entropy(softmax(z), y), z)
equals softmax(z) - y when sum(y) == 1", read and validated before anything is checked.

    [[identity]]
    name = "softmax cross-entropy gradient"
    description = "the output layer of every classifier"     # optional
    vars = { z = "n", y = "n" }       # vector lengths: the size name "n", a number, or "scalar"
    n = [1, 2, 3, 5, 8, "symbolic"]   # sizes to check at; "symbolic": a proof for every n too
    assume = ["sum(y) == 1"]          # optional
    lhs = "grad(cross_entropy(softmax(z), y), z)"
    rhs = "softmax(z) - y"

Every problem (not UTF-8, not TOML, a missing or unknown key, a wrong type, a size out of range,
an expression that does not parse) is an ``IdentityFileError`` naming the file, the identity and,
for expressions, the line and column.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from symgrad.errors import UsageError
from symgrad.language import MAX_SIZE, LanguageError, parse_tree

MAX_FILE_BYTES = 1_000_000
REQUIRED = {"name": str, "vars": dict, "n": (list, int), "lhs": str, "rhs": str}
OPTIONAL = {"description": str, "assume": list}
SIZE_NAME = "n"
SYMBOLIC = "symbolic"  # in n = [...]: also a proof for every n, where the engine has one


class IdentityFileError(UsageError):
    """A user's mistake in an identity file: reported on one line, exit code 2."""


@dataclass(frozen=True)
class Identity:
    name: str
    description: str
    variables: dict  # name → "n" | int | "scalar"
    sizes: tuple[int | str, ...]  # integers, and possibly "symbolic"
    assume: tuple[str, ...]
    lhs: str
    rhs: str
    path: Path
    text: str  # the whole file, to locate expressions for error messages

    def where(self, expression: str, column: int | None = None) -> str:
        """``file:line:column`` of an expression inside the file (best effort)."""
        offset = self.text.find(expression)
        if offset < 0:
            return str(self.path)
        line = self.text.count("\n", 0, offset) + 1
        start = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return f"{self.path}:{line}:{start + (column or 1) - 1}"


def load_paths(paths: list[Path]) -> list[Identity]:
    """Every identity in the given files and, recursively, in ``*.toml`` files under directories."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.toml") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise IdentityFileError(f"{path}: no such file or directory")
    if not files:
        raise IdentityFileError("no identity files (*.toml) found in " + ", ".join(map(str, paths)))
    identities = []
    for file in files:
        identities += load_file(file)
    return identities


def load_file(path: Path) -> list[Identity]:
    raw = path.read_bytes()
    if len(raw) > MAX_FILE_BYTES:
        raise IdentityFileError(f"{path}: larger than {MAX_FILE_BYTES // 1000} kB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise IdentityFileError(f"{path}: not UTF-8 (byte {error.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise IdentityFileError(f"{path}: not valid TOML: {error}") from None
    unknown = set(data) - {"identity"}
    if unknown:
        raise IdentityFileError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                                "identities go in [[identity]] tables")
    tables = data.get("identity", [])
    if not isinstance(tables, list) or not tables:
        raise IdentityFileError(f"{path}: no [[identity]] tables")
    return [_identity(path, text, k, table) for k, table in enumerate(tables, start=1)]


def _identity(path: Path, text: str, number: int, table: dict) -> Identity:
    label = f"{path}: identity {table.get('name', number)!r}" if isinstance(table.get("name"), str) \
        else f"{path}: identity #{number}"
    for key, kind in REQUIRED.items():
        if key not in table:
            raise IdentityFileError(f"{label}: missing key {key!r}")
    for key, value in table.items():
        kind = REQUIRED.get(key) or OPTIONAL.get(key)
        if kind is None:
            known = ", ".join([*REQUIRED, *OPTIONAL])
            raise IdentityFileError(f"{label}: unknown key {key!r} (known: {known})")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise IdentityFileError(f"{label}: {key!r} has the wrong type ({type(value).__name__})")
    variables = {}
    for name, length in table["vars"].items():
        if not name.isidentifier() or name == SIZE_NAME:
            raise IdentityFileError(f"{label}: {name!r} cannot be a variable name")
        if length == "scalar" or length == SIZE_NAME:
            variables[name] = length
        elif isinstance(length, int) and not isinstance(length, bool) and 1 <= length <= MAX_SIZE:
            variables[name] = length
        else:
            raise IdentityFileError(f"{label}: the length of {name!r} must be {SIZE_NAME!r}, "
                                    f"an integer 1..{MAX_SIZE} or \"scalar\", not {length!r}")
    sizes = table["n"] if isinstance(table["n"], list) else [table["n"]]
    for size in sizes:
        if size == SYMBOLIC:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_SIZE:
            raise IdentityFileError(f"{label}: sizes in n must be integers 1..{MAX_SIZE} or "
                                    f"\"symbolic\", not {size!r}")
    assume = table.get("assume", [])
    if not all(isinstance(a, str) for a in assume):
        raise IdentityFileError(f"{label}: 'assume' must be a list of strings")
    identity = Identity(table["name"], table.get("description", ""), variables, tuple(dict.fromkeys(sizes)),
                        tuple(assume), table["lhs"], table["rhs"], path, text)
    for expression, is_assumption in [(identity.lhs, False), (identity.rhs, False), *((a, True) for a in assume)]:
        try:
            parse_tree(expression, allow_equation=is_assumption)
        except LanguageError as error:
            raise IdentityFileError(f"{identity.where(expression, error.column)}: identity "
                                    f"{identity.name!r}: {error}") from None
    return identity
