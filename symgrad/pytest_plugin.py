"""pytest plugin (entry point ``pytest11``): identity files become test items, so
``pytest derivations/`` checks them in a user's repository like any other test.

A ``*.toml`` file is collected only if it holds ``[[identity]]`` tables, so ``pyproject.toml``
and friends are left alone. Each identity is one item; it fails with the same counterexample
text ``symgrad verify`` prints, and within the same time budget per size (``symgrad.api``). A
file that cannot be read, or an identity with a mistake, is one failing item whose report is the
one-line message ``symgrad verify`` prints (``file:line:column: message``), not a traceback.

Verdicts are kept in ``.symgrad_cache/`` in the current directory, as ``symgrad verify`` keeps
them (``symgrad.cache``; the two share it): ``--symgrad-no-cache`` or ``SYMGRAD_NO_CACHE=1``
turns that off, and a cache entry that cannot be trusted is a pytest warning. Items are
independent, so pytest-xdist (``pytest -n auto``) spreads them over worker processes, and
several machines can each take a share of the catalog (``--dist`` per machine, one shard each).
"""

from __future__ import annotations

import warnings

import pytest

_CACHE = pytest.StashKey()


class SymgradCacheWarning(UserWarning):
    """A cache entry or directory symgrad could not use (the identity is checked again)."""


def pytest_addoption(parser):
    parser.getgroup("symgrad").addoption(
        "--symgrad-no-cache", action="store_true", default=False,
        help="check every identity again, without reading or writing .symgrad_cache/")


def _cache(config):
    """The session's result cache (created on first use), or None when it is turned off."""
    if _CACHE not in config.stash:
        from symgrad.cache import ResultCache, disabled_by_environment

        off = config.getoption("symgrad_no_cache", False) or disabled_by_environment()
        config.stash[_CACHE] = None if off else ResultCache(
            warn=lambda message: warnings.warn(message, SymgradCacheWarning, stacklevel=2))
    return config.stash[_CACHE]


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
        from symgrad.identity_file import IdentityFileError, load_file_parts

        try:
            identities, problems = load_file_parts(self.path, _cache(self.config))
        except IdentityFileError as error:
            yield BadIdentityFile.from_parent(self, name="(identity file)", problem=error)
            return
        for k, problem in enumerate(problems, start=1):  # each bad identity fails on its own
            yield BadIdentityFile.from_parent(self, name=problem.identity or f"(identity with a mistake {k})",
                                              problem=problem)
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
            result = check_identity(self.identity, cache=_cache(self.config))
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
