"""Errors a user can cause (exit 2) as opposed to internal failures (exit 3), how any message is
made one printable line, and the crash report an internal failure leaves: the user reads a few
lines, the maintainer gets the traceback, the command line and the versions in one file."""

import os
import re
import tempfile
from pathlib import Path


class UsageError(ValueError):
    """Bad input from the user: a bad size, an unknown name, an unwritable path."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: the command stops, cleans up, and exits 130."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name


# characters a terminal acts on (C0 and C1 controls, DEL) and lone surrogates (undecodable file names)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def one_line(text) -> str:
    """Text safe to print as one terminal line: control characters (newline, ESC, NUL, …) are
    written as escapes (\\n, \\x1b, …), so a name cannot break the line or drive the terminal."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape", "backslashreplace").decode("ascii"),
                        str(text))


# -- internal errors: a short message for the user, the whole story in a file ------------------
MESSAGE_LIMIT = 200  # characters of an exception's message shown on the terminal


def short_message(exc: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """``Type: message`` on one line, cut to ``limit`` characters with a visible mark: a
    RecursionError or a SymPy error can carry a message of many kilobytes."""
    message = " ".join(str(exc).split())
    text = one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def where_it_failed(exc: BaseException) -> str | None:
    """The innermost frame of the traceback inside the symgrad package ("symgrad/lowering.py:120
    in resolve"), the line a maintainer looks at first; None if no frame is symgrad's."""
    import traceback

    package = Path(__file__).resolve().parent
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename).resolve()
        if package in path.parents:
            found = f"{path.relative_to(package.parent)}:{frame.lineno} in {frame.name}"
    return found


def crash_directory() -> Path:
    """Where crash reports go: per user and outside the project, $XDG_CACHE_HOME/symgrad, else
    ~/.cache/symgrad (the XDG default); the temporary folder when there is no home."""
    cache = os.environ.get("XDG_CACHE_HOME")
    if cache and os.path.isabs(cache):  # the XDG spec: a relative value is to be ignored
        return Path(cache) / "symgrad"
    try:
        return Path.home() / ".cache" / "symgrad"
    except RuntimeError:  # no home directory can be determined
        return Path(tempfile.gettempdir())


def crash_report(exc: BaseException, argv: list[str], version: str) -> str:
    """The text of a crash report: the command line, the versions that matter, the traceback."""
    import platform
    import shlex
    import sys
    import traceback
    from datetime import datetime, timezone
    from importlib.metadata import PackageNotFoundError, version as installed

    def version_of(package: str) -> str:
        try:
            return installed(package)
        except PackageNotFoundError:
            return "not installed"

    lines = [f"symgrad crash report, {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
             f"command: {shlex.join(['symgrad', *argv])}",
             f"symgrad: {version}",
             f"python: {sys.version.split()[0]} ({platform.python_implementation()}, {platform.platform()})",
             *(f"{package}: {version_of(package)}" for package in ("sympy", "mpmath", "typer", "click", "rich")),
             "", "traceback:", "".join(traceback.format_exception(exc)).rstrip(), ""]
    return "\n".join(lines)


def write_crash_report(text: str, directory: Path | None = None) -> Path:
    """Write ``text`` to a new crash-<UTC time>-<pid>.txt, readable by its owner only (the
    command line may name private files), atomically: a report is whole or absent. Raises
    OSError when it cannot be written (not even to the temporary folder)."""
    import time

    name = f"crash-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.txt"
    candidates = [Path(directory)] if directory is not None else [crash_directory(), Path(tempfile.gettempdir())]
    for k, folder in enumerate(candidates):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".crash-", suffix=".tmp", dir=folder)  # mode 0600
        except OSError:
            if k == len(candidates) - 1:
                raise
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
                handle.write(text)
            os.replace(temporary, folder / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return folder / name
    raise OSError("no folder to write a crash report to")
