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

import ast
import json
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from typing import TYPE_CHECKING

from symgrad.errors import UsageError

if TYPE_CHECKING:  # the language (and SymPy under it) is imported only when a file is parsed:
    from symgrad.language import LanguageError  # a file served from the cache needs neither

MAX_FILE_BYTES = 1_000_000
MAX_IDENTITIES = 1000  # per file
MAX_VARIABLES = 64  # declared per identity
VALIDATION_SECONDS = 10  # evaluating the expressions once when the file is read
REQUIRED = {"name": str, "vars": dict, "lhs": str, "rhs": str}
OPTIONAL = {"description": str, "assume": list, "n": (list, int), "sizes": list}
SIZE_NAME = "n"
SYMBOLIC = "symbolic"  # in n = [...]: also a proof for every n, where the engine has one


class IdentityFileError(UsageError):
    """A user's mistake in an identity file: reported on one line, exit code 2. ``path`` is the
    file, ``identity`` the name of the identity concerned (if known)."""

    def __init__(self, message: str, path: Path | None = None, identity: str | None = None):
        super().__init__(message)
        self.path = path
        self.identity = identity


class SizeTable(str):
    """One assignment of several size names (``{ n = 3, p = 2, m = 2 }``) for an identity over
    matrices. It *is* its label ("n = 3, p = 2, m = 2"), so reports print and serialise it like
    a plain size; ``values`` holds the numbers."""

    values: dict

    def __new__(cls, values: dict):
        table = super().__new__(cls, ", ".join(f"{k} = {v}" for k, v in values.items()))
        table.values = dict(values)
        return table

    def __reduce__(self):  # pickled by its values (verify -j sends sizes to worker processes)
        return SizeTable, (self.values,)


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
    start: int = 0  # offset of this identity's [[identity]] table in ``text``

    def where(self, expression: str, column: int | None = None) -> str:
        """``file:line:column`` of an expression inside the file (best effort): the quoted
        string in this identity's table, else the first place the text appears."""
        offset = -1
        for quoted, skip in ((json.dumps(expression, ensure_ascii=False), 1), (f"'{expression}'", 1),
                             (f'"""{expression}"""', 3), (expression, 0)):
            if not expression.strip() and not skip:
                break
            found = self.text.find(quoted, self.start)
            if found < 0:
                found = self.text.find(quoted)
            if found >= 0:
                offset = found + skip
                break
        if offset < 0:
            return str(self.path)
        line = self.text.count("\n", 0, offset) + 1
        start = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return f"{self.path}:{line}:{start + (column or 1) - 1}"


def all_symbolic(size) -> bool:
    """An all-symbolic size table ({ n = "symbolic", p = "symbolic" })."""
    return isinstance(size, SizeTable) and all(v == SYMBOLIC for v in size.values.values())


def is_symbolic(size) -> bool:
    """"symbolic", or an all-symbolic size table: a size proven for every value, of which the
    fixed sizes listed beside it are instances."""
    return size == SYMBOLIC or all_symbolic(size)


def general_table(identity: Identity, table) -> SizeTable | None:
    """The all-symbolic size table the identity lists with the same names as ``table``, an
    all-numbers table; else None."""
    if not isinstance(table, SizeTable) or any(v == SYMBOLIC for v in table.values.values()):
        return None
    return next((s for s in identity.sizes if all_symbolic(s) and set(s.values) == set(table.values)), None)


def shared_proof_groups(identity: Identity, positions: list[int]) -> list[list[int]]:
    """``positions`` (indices into ``identity.sizes``) in the order to check them: an
    all-symbolic size table first, with the fixed tables that are its instances after it, and
    likewise "symbolic" first, with the listed n after it (one group: one process, so they find
    its proof kept); every other size in a group of its own. The results are reported in the
    listed order whatever the order of checking."""
    general_of = {k: _general_position(identity, k) for k in positions}
    groups: list[list[int]] = []
    placed: set[int] = set()
    for k in positions:
        if k in placed:
            continue
        general = general_of[k]
        members = [j for j in positions if j not in placed and general is not None and general_of[j] == general]
        members = sorted(members or [k], key=lambda j: (j != general, j))
        groups.append(members)
        placed.update(members)
    return groups


def _general_position(identity: Identity, k: int) -> int | None:
    """Where the size that size k is an instance of stands in ``identity.sizes`` (k itself for an
    all-symbolic table or "symbolic"), or None."""
    size = identity.sizes[k]
    if is_symbolic(size):
        return k
    if isinstance(size, SizeTable):
        general = general_table(identity, size)
        return None if general is None else next(j for j, s in enumerate(identity.sizes) if s is general)
    return identity.sizes.index(SYMBOLIC) if SYMBOLIC in identity.sizes else None


def derivation_family(identity: Identity) -> tuple | None:
    """What the derivation of a gradient identity for every size is built from: the function
    differentiated, the variables, assumptions and sizes, without the variable it is
    differentiated by. Identities of one family (a layer's dW, db and dA_prev) derive over one
    model and share their proofs when checked in one process; None for any other identity."""
    import ast

    from symgrad.language import LanguageError, parse_tree

    if not any(is_symbolic(size) for size in identity.sizes):
        return None
    try:
        body = parse_tree(identity.lhs, matrices=True).body
    except (LanguageError, RecursionError):
        return None
    if not (isinstance(body, ast.Call) and isinstance(body.func, ast.Name)
            and body.func.id in ("grad", "jacobian") and body.args):
        return None
    return (body.func.id, ast.dump(body.args[0]), repr(sorted(identity.variables.items())), identity.assume,
            tuple(str(size) for size in identity.sizes if is_symbolic(size)))


def find_files(paths: list[Path]) -> tuple[list[Path], list[IdentityFileError]]:
    """The identity files named, and ``*.toml`` files under directories (recursively), with a
    problem for each path that is neither."""
    files: list[Path] = []
    problems: list[IdentityFileError] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.toml") if p.is_file())
        elif path.is_file():
            files.append(path)
        elif path.exists():
            problems.append(IdentityFileError(f"{path}: not a regular file", path))
        else:
            problems.append(IdentityFileError(f"{path}: no such file or directory", path))
    if not files and not problems:
        raise IdentityFileError("no identity files (*.toml) found in " + ", ".join(map(str, paths)))
    return list(dict.fromkeys(files)), problems


def load_paths(paths: list[Path]) -> list[Identity]:
    """Every identity in the given files and, recursively, in ``*.toml`` files under directories;
    the first problem is raised."""
    files, problems = find_files(paths)
    if problems:
        raise problems[0]
    identities = []
    for file in files:
        identities += load_file(file)
    return identities


def load_file(path: Path, cache=None) -> list[Identity]:
    """The identities of one file, each validated (every key, every expression with the language
    itself), or an ``IdentityFileError`` naming the file, and where possible line and column:
    the file's first problem, whether with the file or with one of its identities."""
    identities, problems = load_file_parts(path, cache)
    if problems:
        raise problems[0]
    return identities


def load_file_parts(path: Path, cache=None) -> tuple[list[Identity], list[IdentityFileError]]:
    """The identities of one file that are well formed, and a problem (``IdentityFileError``, its
    ``identity`` the name) for each that is not: a typo in one identity must not hide the others
    from ``verify``. A problem with the file as a whole (not TOML, no [[identity]]) is raised.
    ``cache`` (a ``symgrad.cache.ResultCache``): a file read before, byte for byte the same, by
    the same checker, is served from it without parsing (a file with a problem is never kept)."""
    path = Path(path)
    raw, text = _read_text(path)
    kept = cache.identities(path, raw, _well_formed) if cache is not None else None
    if kept is not None:
        return [_from_data(path, text, data) for data in kept], []
    identities, problems = _parse_file(path, text)
    if cache is not None and not problems:
        cache.keep_identities(path, raw, [_to_data(identity) for identity in identities])
    return identities, problems


def _to_data(identity: Identity) -> dict:
    """An identity as JSON-ready data (the cache keeps what reading the file found)."""
    return {"name": identity.name, "description": identity.description,
            "vars": [[name, shape] for name, shape in identity.variables.items()],
            "sizes": [{"table": size.values} if isinstance(size, SizeTable) else size for size in identity.sizes],
            "assume": list(identity.assume), "lhs": identity.lhs, "rhs": identity.rhs, "start": identity.start}


_RECORD = {"name": str, "description": str, "vars": list, "sizes": list, "assume": list, "lhs": str, "rhs": str,
           "start": int}  # the keys ``_to_data`` writes, and their types


def _well_formed(kept) -> bool:
    """Whether ``kept`` (from the cache) has the shape ``_to_data`` writes: a list of records."""
    return isinstance(kept, list) and all(
        isinstance(record, dict) and set(record) == set(_RECORD)
        and all(isinstance(record[key], kind) for key, kind in _RECORD.items())
        and all(isinstance(pair, list) and len(pair) == 2 for pair in record["vars"])
        and all(isinstance(size, (int, str)) or (isinstance(size, dict) and isinstance(size.get("table"), dict))
                for size in record["sizes"])
        for record in kept)


def _from_data(path: Path, text: str, data: dict) -> Identity:
    sizes = tuple(SizeTable(size["table"]) if isinstance(size, dict) else size for size in data["sizes"])
    return Identity(data["name"], data["description"], {name: shape for name, shape in data["vars"]}, sizes,
                    tuple(data["assume"]), data["lhs"], data["rhs"], path, text, data["start"])


def _read_text(path: Path) -> tuple[bytes, str]:
    """The file's bytes and its text, or an ``IdentityFileError``."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise IdentityFileError(f"{path}: cannot read: {error.strerror or error}", path) from None
    if len(raw) > MAX_FILE_BYTES:
        raise IdentityFileError(f"{path}: larger than {MAX_FILE_BYTES // 1000} kB", path)
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark some editors write is not an error
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise IdentityFileError(f"{path}:{line}:{column}: not UTF-8 (byte {error.start})", path) from None
    return raw, text


def _parse_file(path: Path, text: str) -> tuple[list[Identity], list[IdentityFileError]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        line, column = (int(found.group(1)), int(found.group(2))) if found else (None, None)
        message = message[:found.start()] if found else message
        where = f"{path}:{line}:{column}" if line and column else str(path)
        raise IdentityFileError(f"{where}: not valid TOML: {message}", path) from None
    except (RecursionError, MemoryError):
        raise IdentityFileError(f"{path}: arrays or tables nested too deeply to read", path) from None
    unknown = set(data) - {"identity"}
    if unknown:
        raise IdentityFileError(f"{_key_place(path, text, 0, sorted(unknown)[0])}: unknown top-level "
                                f"key(s) {', '.join(sorted(map(repr, unknown)))}; identities go in "
                                "[[identity]] tables", path)
    tables = data.get("identity", [])
    if isinstance(tables, dict):
        raise IdentityFileError(f"{_key_place(path, text, 0, '[identity]')}: [identity] is a single "
                                "table; write [[identity]] (double brackets) before each identity", path)
    if not isinstance(tables, list) or not tables:
        raise IdentityFileError(f"{path}: no [[identity]] tables", path)
    if len(tables) > MAX_IDENTITIES:
        raise IdentityFileError(f"{path}: more than {MAX_IDENTITIES} identities in one file", path)
    if not all(isinstance(table, dict) for table in tables):
        raise IdentityFileError(f"{path}: 'identity' must be an array of tables: write [[identity]] "
                                "before each identity", path)
    identities, problems = [], []
    for k, table in enumerate(tables, start=1):
        try:
            identities.append(_identity(path, text, k, table))
        except IdentityFileError as problem:
            problems.append(problem)
    return identities, problems


def _table_start(text: str, number: int) -> int:
    """Offset of the ``number``-th [[identity]] header (0 if there is none)."""
    starts = [m.start() for m in re.finditer(r"^[ \t]*\[\[[ \t]*identity[ \t]*\]\]", text, re.M)]
    return starts[number - 1] if 0 < number <= len(starts) else 0


def _key_place(path: Path, text: str, number: int, key: str) -> str:
    """``file:line:column`` of ``key = …`` inside the ``number``-th [[identity]] table (0: the
    whole file), best effort; ``file`` alone if it cannot be found."""
    offset = _table_start(text, number) if number else 0
    if key.startswith("["):
        found = re.search(r"^[ \t]*" + re.escape(key), text[offset:], re.M)
    else:
        found = re.search(r"^[ \t]*[\"']?" + re.escape(key) + r"[\"']?[ \t]*=", text[offset:], re.M)
    if not found:
        return str(path)
    start = offset + found.start() + len(found.group(0)) - len(found.group(0).lstrip())
    line = text.count("\n", 0, start) + 1
    return f"{path}:{line}:{start - (text.rfind(chr(10), 0, start) + 1) + 1}"


def _identity(path: Path, text: str, number: int, table: dict) -> Identity:
    from symgrad.language import FUNCTIONS, MAX_SIZE, LanguageError, parse_tree

    name = table.get("name")
    label = f"identity {name!r}" if isinstance(name, str) else f"identity #{number}"

    def fail(key: str | None, message: str):
        where = _key_place(path, text, number, key) if key else f"{path}"
        return IdentityFileError(f"{where}: {label}: {message}", path, name if isinstance(name, str) else None)

    for key, value in table.items():
        kind = REQUIRED.get(key) or OPTIONAL.get(key)
        if kind is None:
            known = ", ".join([*REQUIRED, *OPTIONAL])
            raise fail(key, f"unknown key {key!r} (known: {known})")
    for key in REQUIRED:
        if key not in table:
            raise fail("[[identity]]", f"missing key {key!r}")
    if ("n" in table) == ("sizes" in table):
        raise fail("[[identity]]", "give the sizes to check at either as n = [...] (vectors of length n) "
                                   "or as sizes = [{ n = 3, p = 2 }, ...] (several size names, for matrices)")
    if "sizes" in table:
        return _matrix_identity(path, text, number, table, fail)
    for key, value in table.items():
        kind = REQUIRED.get(key) or OPTIONAL.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise fail(key, _wrong_type(key, value))
    if not name.strip():
        raise fail("name", "the name is empty")
    variables = {}
    if len(table["vars"]) > MAX_VARIABLES:
        raise fail("vars", f"{len(table['vars'])} variables declared; at most {MAX_VARIABLES}")
    for variable, length in table["vars"].items():
        if not variable.isidentifier() or variable == SIZE_NAME or variable in FUNCTIONS:
            raise fail("vars", f"{variable!r} cannot be a variable name")
        if length == "scalar" or length == SIZE_NAME:
            variables[variable] = length
        elif isinstance(length, int) and not isinstance(length, bool) and 1 <= length <= MAX_SIZE:
            variables[variable] = length
        else:
            raise fail("vars", f"the length of {variable!r} must be {SIZE_NAME!r}, "
                               f"an integer 1..{MAX_SIZE} or \"scalar\", not {length!r}")
    sizes = table["n"] if isinstance(table["n"], list) else [table["n"]]
    if not sizes:
        raise fail("n", "n = [] lists no sizes, so nothing would be checked; "
                        "list at least one, e.g. n = [2, 3]")
    for size in sizes:
        if size == SYMBOLIC:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_SIZE:
            raise fail("n", f"sizes in n must be integers 1..{MAX_SIZE} or \"symbolic\", not {size!r}")
    assume = table.get("assume", [])
    if not all(isinstance(a, str) for a in assume):
        raise fail("assume", "'assume' must be a list of strings such as [\"sum(y) == 1\"]")
    identity = Identity(name, table.get("description", ""), variables, tuple(dict.fromkeys(sizes)),
                        tuple(assume), table["lhs"], table["rhs"], path, text, _table_start(text, number))
    used = set()
    for expression, is_assumption in [(identity.lhs, False), (identity.rhs, False), *((a, True) for a in assume)]:
        try:
            tree = parse_tree(expression, allow_equation=is_assumption)
        except LanguageError as error:
            raise _expression_error(identity, expression, error) from None
        used |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    # only what the statement uses is built at each size (declared but unused: no work)
    identity = replace(identity, variables={k: v for k, v in variables.items() if k in used})
    _validate(identity, variables)
    return identity


def _wrong_type(key: str, value) -> str:
    kind = type(value).__name__
    if key == "n":
        return f"n must be a list of sizes such as n = [2, 3] (or one integer), not {_toml_type(value)} {value!r}"
    if key == "vars":
        return f"vars must be a table such as vars = {{ z = \"n\", y = \"n\" }}, not {_toml_type(value)}"
    if key == "assume":
        return f"assume must be a list of equations such as assume = [\"sum(y) == 1\"], not {_toml_type(value)}"
    if key in ("lhs", "rhs", "name", "description"):
        return f"{key} must be a string, not {_toml_type(value)}"
    return f"{key!r} has the wrong type ({kind})"


def _toml_type(value) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a float", list: "an array",
            dict: "a table"}.get(type(value), f"a {type(value).__name__}")


def _expression_error(identity: Identity, expression: str, error: LanguageError,
                      size: int | None = None) -> IdentityFileError:
    at = f" at n = {size}" if size is not None else ""
    return IdentityFileError(f"{identity.where(expression, error.column)}: identity {identity.name!r}{at}: "
                             f"{error}", identity.path, identity.name)


def _validate(identity: Identity, declared: dict) -> None:
    """Evaluate every expression once with the expression language, so that an unknown function,
    an undeclared name or a shape error is reported when the file is read (by ``verify``,
    ``export`` and the pytest plugin alike), without "at n = …" unless it depends on n.

    Vectors of length n get the smallest listed size (n = 1 when only "symbolic" is listed): a
    mistake there is a mistake, one that appears only at a larger size is reported by the check at
    that size. (Not n = 1 always: 1 / (1 − softmax(x)) is a division by zero at n = 1 only, and an
    identity listed from n = 2 is not read there.)"""
    from sympy import Integer

    from symgrad.budget import TimeLimitReached, deadline
    from symgrad.language import LanguageError, TooMuchWork, Variable, evaluate

    integers = sorted(s for s in identity.sizes if s != SYMBOLIC)
    first = integers[0] if integers else 1
    fixed = any(isinstance(length, int) for length in declared.values())

    def run(size: int, expression: str, equation: bool):
        variables = {k: Variable(k, None if v == "scalar" else size if v == SIZE_NAME else v)
                     for k, v in declared.items()}
        evaluate(expression, variables, allow_equation=equation, constants={SIZE_NAME: Integer(size)})

    expressions = [(identity.lhs, False), (identity.rhs, False), *((a, True) for a in identity.assume)]
    try:
        with deadline(VALIDATION_SECONDS):
            for expression, equation in expressions:
                try:
                    run(first, expression, equation)
                except TooMuchWork:  # too large to build here: the check may go through a derivation
                    return
                except LanguageError as error:
                    if fixed:
                        raise _located(identity, expression, equation, error, first, run, declared) from None
                    raise _expression_error(identity, expression, error) from None
    except TimeLimitReached:  # too slow to validate here: the check (with its own budget) decides
        return
    except (RecursionError, MemoryError):
        raise IdentityFileError(f"{identity.path}: identity {identity.name!r}: too large to evaluate",
                                identity.path, identity.name) from None


def _located(identity, expression, equation, error, size, run, declared) -> IdentityFileError:
    """The error, saying "at n = …" only if the same expression gives another error (or none) at
    another size."""
    from symgrad.language import LanguageError

    if SIZE_NAME in declared.values():
        try:
            run(size + 1, expression, equation)
        except LanguageError as other:
            if str(other) == str(error):
                return _expression_error(identity, expression, error)
        return _expression_error(identity, expression, error, size)
    return _expression_error(identity, expression, error)


def _matrix_identity(path: Path, text: str, number: int, table: dict, fail) -> Identity:
    from symgrad.language import FUNCTIONS, MAX_SIZE, LanguageError, parse_tree

    """An identity with several size names and matrix variables (``W = "n x p"``), checked
    through its derivation by the engine (``verify.identity``): its statement is parsed and
    shape-checked here by the engine's typed tree, for every size table."""
    from symgrad.tree import to_tree

    names = set()
    variables = {}
    for variable, shape in table["vars"].items():
        if not variable.isidentifier() or variable in FUNCTIONS:
            raise fail("vars", f"{variable!r} cannot be a variable name")
        if not isinstance(shape, str) or not all(part.strip().isidentifier() for part in shape.split(" x ")) \
                or shape.count(" x ") > 1:
            raise fail("vars", f"the shape of {variable!r} must be \"scalar\", a size name (\"n\") or "
                               f"\"rows x cols\" (\"n x p\"), not {shape!r}")
        variables[variable] = shape
        if shape != "scalar":
            names |= {part.strip() for part in shape.split(" x ")}
    tables = []
    for entry in table["sizes"]:
        if not isinstance(entry, dict) or not entry:
            raise fail("sizes", "sizes must be a list of tables such as { n = 3, p = 2, m = 2 }")
        for key, value in entry.items():
            if value == SYMBOLIC:  # a proof for every value of this size, through the derivation
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIZE:
                raise fail("sizes", f"size {key} must be an integer 1..{MAX_SIZE} or \"symbolic\", not {value!r}")
        missing = names - set(entry)
        if missing:
            raise fail("sizes", f"{entry} gives no value to {', '.join(sorted(missing))}")
        tables.append(SizeTable(dict(entry)))
    if not tables:
        raise fail("sizes", "sizes = [] lists no sizes, so nothing would be checked")
    assume = table.get("assume", [])
    if not all(isinstance(a, str) for a in assume):
        raise fail("assume", "'assume' must be a list of strings such as [\"colsum(Y) == 1\"]")
    identity = Identity(table["name"], table.get("description", ""), variables, tuple(dict.fromkeys(tables)),
                        tuple(assume), table["lhs"], table["rhs"], path, text, _table_start(text, number))
    shapes = {k: () if v == "scalar" else tuple(part.strip() for part in v.split(" x ")) for k, v in variables.items()}
    for expression, is_assumption in [(identity.lhs, False), (identity.rhs, False), *((a, True) for a in assume)]:
        try:
            tree = parse_tree(expression, allow_equation=is_assumption, matrices=True)
            for side in ([tree.body.left, tree.body.comparators[0]] if is_assumption else [tree.body]):
                to_tree(ast.Expression(side), shapes)
        except LanguageError as error:
            raise _expression_error(identity, expression, error) from None
    return identity
