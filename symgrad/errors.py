"""Errors a user can cause (exit 2) as opposed to internal failures (exit 3)."""


class UsageError(ValueError):
    """Bad input from the user: a bad size, an unknown name, an unwritable path."""
