"""pytest plugin (entry point ``pytest11``): identity files become test items, so
``pytest derivations/`` checks them in a user's repository like any other test.

A ``*.toml`` file is collected only if it holds ``[[identity]]`` tables, so ``pyproject.toml``
and friends are left alone. Each identity is one item; it fails with the same counterexample
text ``symgrad verify`` prints.
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
        from symgrad.identity_file import load_file

        for identity in load_file(self.path):
            yield IdentityItem.from_parent(self, name=identity.name, identity=identity)


class IdentityItem(pytest.Item):
    def __init__(self, *, identity, **kwargs):
        super().__init__(**kwargs)
        self.identity = identity

    def runtest(self):
        from symgrad.verify.identity import check_identity

        result = check_identity(self.identity)
        if not result.holds:
            raise IdentityDoesNotHold(result)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, IdentityDoesNotHold):
            from symgrad.output.report import failure_lines

            return "\n".join(failure_lines([excinfo.value.result]))
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"identity: {self.name}"


class IdentityDoesNotHold(AssertionError):
    def __init__(self, result):
        super().__init__(result.identity.name)
        self.result = result
