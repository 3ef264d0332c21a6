"""pytest plugin (entry point ``pytest11``): identity files become test items, so
``pytest derivations/`` checks them in a user's repository like any other test.

A ``*.toml`` file is collected only if it holds ``[[identity]]`` tables, so ``pyproject.toml``
and friends are left alone. Each identity is one item; it fails with the same counterexample
text ``symgrad verify`` prints, and within the same time budget per size (``symgrad.api``). A
file that cannot be read, or an identity with a mistake, is one failing item whose report is the
one-line message ``symgrad verify`` prints (``file:line:column: message``), not a traceback.
"""

from __future__ import annotations

import pytest


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".toml" and file_path.name != "pyproject.toml":
        try:
            head = file_path.read_bytes()[:1_000_000]
        except OSError:
            return None
        if b"[[identity]]" in head:
            return IdentityFile.from_parent(parent, path=file_path)
    return None


class IdentityFile(pytest.File):
    def collect(self):
        from symgrad.identity_file import IdentityFileError, load_file

        try:
            identities = load_file(self.path)
        except IdentityFileError as error:
            yield BadIdentityFile.from_parent(self, name="(identity file)", problem=error)
            return
        for identity in identities:
            yield IdentityItem.from_parent(self, name=identity.name, identity=identity)


class BadIdentityFile(pytest.Item):
    """An identity file that cannot be read: one failing item, one line."""

    def __init__(self, *, problem, **kwargs):
        super().__init__(**kwargs)
        self.problem = problem

    def runtest(self):
        raise IdentityFileProblem(self.problem)

    def repr_failure(self, excinfo):
        return _one_line(excinfo.value)

    def reportinfo(self):
        return self.path, None, "identity file"


class IdentityItem(pytest.Item):
    def __init__(self, *, identity, **kwargs):
        super().__init__(**kwargs)
        self.identity = identity

    def runtest(self):
        from symgrad.api import check_identity
        from symgrad.identity_file import IdentityFileError

        try:
            result = check_identity(self.identity)
        except IdentityFileError as error:  # a mistake that shows only at some size
            raise IdentityFileProblem(error) from None
        if not result.holds:
            raise IdentityDoesNotHold(result)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, IdentityDoesNotHold):
            from symgrad.output.report import failure_lines

            return "\n".join(failure_lines([excinfo.value.result]))
        if isinstance(excinfo.value, IdentityFileProblem):
            return _one_line(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"identity: {self.name}"


class IdentityDoesNotHold(AssertionError):
    def __init__(self, result):
        super().__init__(result.identity.name)
        self.result = result


class IdentityFileProblem(Exception):
    """A mistake in an identity file, reported as its one line."""

    def __init__(self, problem):
        super().__init__(str(problem))
        self.problem = problem


def _one_line(error) -> str:
    from symgrad.errors import one_line

    return f"symgrad: error: {one_line(getattr(error, 'problem', error))}"
