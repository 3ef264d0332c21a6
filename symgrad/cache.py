"""The result cache: ``verify``, ``export`` and the pytest plugin keep each identity's verdict at
each size in ``.symgrad_cache/`` (in the current directory), as mypy and ruff keep theirs, so an
unchanged catalog re-verifies in well under a second.

Why it can be trusted:

* **The key is everything the verdict depends on**: the identity's name and file (both appear
  in the verdict's text and seed its random points), variables, assumptions, lhs, rhs, its whole
  list of sizes and the size at hand, plus a *fingerprint* of the checker: symgrad's version, a
  hash of every source file of the symgrad package that is running (so editing the code during
  development never serves a verdict the old code reached), and the versions of Python, SymPy
  and mpmath. The description is left out: nothing checks it.
* **Only definite verdicts are kept** (held, or failed with its counterexample). Undecided
  results, time limits and errors are checked again every time. The time limit is therefore not
  part of the key: a verdict reached within some limit is the same verdict under any other.
* **One file per entry, written atomically** (``files.write_atomically``: a temporary file
  beside it, then ``os.replace``), so concurrent runs (pytest-xdist workers, two terminals) at
  worst write the same content twice, and a reader sees a whole file or none. Entries are not
  forced to disk (no fsync): a power cut may leave one empty or cut short, which the next point
  catches.
* **Nothing read is trusted blindly**: an entry holds the key's full input, and is used only if
  it parses, has this format, and its input is exactly the one asked for. A corrupted or foreign
  entry is ignored with a one-line warning and the identity is checked again (and the entry
  rewritten).

``--no-cache`` (or the environment variable ``SYMGRAD_NO_CACHE=1``) turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

DIRECTORY = ".symgrad_cache"
FORMAT = "symgrad-cache 1"
NO_CACHE_VARIABLE = "SYMGRAD_NO_CACHE"
_ABOUT = {"CACHEDIR.TAG": "Signature: 8a477f597d28d172789f06886806bc55\n"
                          "# This directory is symgrad's result cache (https://bford.info/cachedir/).\n",
          ".gitignore": "# created by symgrad: the result cache is never committed\n*\n"}


def disabled_by_environment() -> bool:
    """``SYMGRAD_NO_CACHE`` set to anything but "", "0", "false" or "no" turns the cache off."""
    return os.environ.get(NO_CACHE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def _stderr_warning(message: str) -> None:
    sys.stderr.write(f"symgrad: warning: {message}\n")
    sys.stderr.flush()


@lru_cache(maxsize=1)
def fingerprint() -> str:
    """symgrad's version, a hash of its running source, and the versions of what checks."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from symgrad import _version

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0")
        digest.update(source.read_bytes() + b"\0")
    versions = []
    for name in ("sympy", "mpmath"):
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} ?")
    return (f"symgrad {_version()} source {digest.hexdigest()[:32]}; python {platform.python_version()}; "
            + "; ".join(versions))


def entry_input(identity, size) -> dict:
    """What a verdict at ``size`` depends on, as JSON-ready data (its hash is the entry's name)."""
    return {
        "checker": fingerprint(),
        "file": str(identity.path),
        "name": identity.name,
        "vars": [[name, shape] for name, shape in identity.variables.items()],
        "assume": list(identity.assume),
        "lhs": identity.lhs,
        "rhs": identity.rhs,
        "sizes": [_size_data(s) for s in identity.sizes],
        "size": _size_data(size),
    }


def _size_data(size):
    values = getattr(size, "values", None)  # identity_file.SizeTable: a str that carries its values
    return {"table": dict(values)} if isinstance(values, dict) else size


class _CacheDirectory:
    """One cache directory: entries are JSON files named by the hash of their input. Every
    problem with the directory itself (unreadable, unwritable, not a directory) is one warning,
    after which the run goes on without the cache; ``hits`` counts the entries served."""

    PAYLOAD = "payload"  # the entry's key holding what is kept (a JSON object)

    def __init__(self, directory: Path | str = DIRECTORY, warn: Callable[[str], None] = _stderr_warning):
        self.directory = Path(directory)
        self.warn = warn
        self.hits = 0
        self.broken = False

    def _path(self, data: dict) -> Path:
        key = hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        return self.directory / f"{key}.json"

    def _read(self, data: dict, key: str | None = None):
        """The entry's payload for exactly this input, or None (absent, unreadable, not trusted:
        a corrupted or foreign entry is reported and ignored)."""
        if self.broken:
            return None
        path = self._path(data)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            self._give_up(f"cannot read the cache {self.directory}/ ({error.strerror or error})")
            return None
        try:
            entry = json.loads(raw.decode("utf-8"))
            trusted = isinstance(entry, dict) and entry.get("format") == FORMAT and entry.get("input") == data
            payload = entry.get(key or self.PAYLOAD) if trusted else None
        except (ValueError, TypeError, RecursionError):
            payload = None
        if not isinstance(payload, dict):
            self.warn(f"ignoring a corrupted or foreign cache entry {path} (checking again)")
        return payload if isinstance(payload, dict) else None

    def _write(self, data: dict, payload: dict, key: str | None = None) -> None:
        if self.broken:
            return
        text = json.dumps({"format": FORMAT, "input": data, key or self.PAYLOAD: payload}, indent=1,
                          ensure_ascii=False) + "\n"
        from symgrad.errors import UsageError
        from symgrad.files import write_atomically

        try:
            self._prepare()
            write_atomically(self._path(data), text, durable=False)  # an entry is verified when read
        except (OSError, UsageError) as error:
            self._give_up(f"cannot write the cache {self.directory}/ "
                          f"({getattr(error, 'strerror', None) or error})")

    def _prepare(self) -> None:
        """Create the directory, tagged as a cache and ignored by git, on first use."""
        if self.directory.is_dir():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, text in _ABOUT.items():
            (self.directory / name).write_text(text, encoding="utf-8")

    def _give_up(self, message: str) -> None:
        self.broken = True
        self.warn(f"{message}; going on without it")


class ResultCache(_CacheDirectory):
    """Identities' verdicts at one size."""

    PAYLOAD = "verdict"

    def get(self, identity, size):
        """The cached ``SizeResult`` at ``size``, or None (not cached, unreadable or not trusted)."""
        result = self._verdict(identity, size)
        if result is not None:
            self.hits += 1
        return result

    def get_group(self, identity, sizes: list) -> list | None:
        """The cached verdicts of sizes checked together (a proof for every size, then its
        instances): all of them, or None when any is missing. A group is served whole or checked
        whole, so what a size reports (an instance of the proof, or its own check) never depends
        on what the cache happened to hold."""
        results = [self._verdict(identity, size) for size in sizes]
        if any(result is None for result in results):
            return None
        self.hits += len(results)
        return results

    def _verdict(self, identity, size):
        data = entry_input(identity, size)
        verdict = self._read(data)
        if verdict is None:
            return None
        holds, method, detail = verdict.get("holds"), verdict.get("method"), verdict.get("detail")
        if not isinstance(holds, bool) or not isinstance(method, str) or not isinstance(detail, str):
            self.warn(f"ignoring a corrupted or foreign cache entry {self._path(data)} (checking again)")
            return None
        from symgrad.verdicts import SizeResult

        return SizeResult(size, holds, method, detail, 0.0)

    def put(self, identity, size, result) -> None:
        """Keep a definite verdict (held or failed); anything else is not kept."""
        if result.holds in (True, False):
            self._write(entry_input(identity, size),
                        {"holds": result.holds, "method": result.method, "detail": result.detail})


    def identities(self, path, raw: bytes, well_formed: Callable[[object], bool]) -> list[dict] | None:
        """What reading the identity file ``path`` (exactly these bytes) found, or None. Only a
        file without problems is kept, so serving it skips nothing a user would be told.
        ``well_formed``: the reader's own test of the records' shape (the schema lives beside
        the code that writes and reads them, in ``identity_file``)."""
        data = _file_input(path, raw)
        payload = self._read(data, "read")
        kept = None if payload is None else payload.get("identities")
        if payload is not None and not well_formed(kept):
            self.warn(f"ignoring a corrupted or foreign cache entry {self._path(data)} (reading the file again)")
            return None
        if kept is not None:
            self.hits += 1
        return kept

    def keep_identities(self, path, raw: bytes, identities: list[dict]) -> None:
        self._write(_file_input(path, raw), {"identities": identities}, "read")


def _file_input(path, raw: bytes) -> dict:
    return {"checker": fingerprint(), "read": str(path), "sha256": hashlib.sha256(raw).hexdigest()}


class OutputCache(_CacheDirectory):
    """What ``derive`` printed for a derivation whose every step was proven, keyed by every option
    that shapes it and the bytes of any file it read: the same command again prints the same
    bytes without importing SymPy. Unproven derivations are never kept (they are derived again,
    and fail again, every time)."""

    PAYLOAD = "derived"

    def get(self, options: dict) -> str | None:
        payload = self._read(output_input(options))
        text = None if payload is None else payload.get("output")
        if payload is not None and not isinstance(text, str):
            self.warn("ignoring a corrupted or foreign cache entry (deriving again)")
            return None
        if text is not None:
            self.hits += 1
        return text

    def put(self, options: dict, text: str) -> None:
        self._write(output_input(options), {"output": text})


def output_input(options: dict) -> dict:
    """What a derivation's printed output depends on: the checker's fingerprint and the options."""
    return {"checker": fingerprint(), "command": "derive", "options": options}
