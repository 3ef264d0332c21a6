"""Errors a user can cause (exit 2) as opposed to internal failures (exit 3), and how any message
is made one printable line."""

import re


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
