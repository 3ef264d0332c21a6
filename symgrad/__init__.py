"""symgrad — symbolic, step-by-step, checked derivations of ML gradients.

Flow: ``build`` (expressions) → ``derive`` (steps) → ``verify`` (checks) → ``render`` (LaTeX,
text, Markdown, JSON) → ``cli``. The public names (README, "Python API"):

- ``derive(...)`` → a ``Derivation`` (``.steps``, ``.result``, ``.to_latex()``, ``.check()`` …);
- ``verify_identity(lhs, rhs, vars=...)`` → a ``Verdict`` (``.holds``, ``.counterexample`` …);
- ``render(derivation, fmt)``; ``UsageError`` for bad input; ``Step``, ``Check``, ``Rule``.

They are imported lazily so that ``symgrad --help`` does not pay for importing SymPy.
"""

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "derive", "verify_identity", "render", "Derivation", "Verdict", "UsageError",
           "Check", "Rule", "Step"]

_HOMES = {"derive": "symgrad.api", "render": "symgrad.api", "UsageError": "symgrad.errors",
          "Check": "symgrad.steps", "Derivation": "symgrad.steps", "Rule": "symgrad.steps",
          "Step": "symgrad.steps", "verify_identity": "symgrad.verdict", "Verdict": "symgrad.verdict"}

if TYPE_CHECKING:  # what type checkers see; at run time, module __getattr__ below imports on use
    from symgrad.api import derive, render
    from symgrad.errors import UsageError
    from symgrad.steps import Check, Derivation, Rule, Step
    from symgrad.verdict import Verdict, verify_identity

    __version__: str


def _version() -> str:
    """The installed version, from the package metadata (the one copy of the number is in
    pyproject.toml); from a checkout that is not installed, read from that pyproject.toml."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("symgrad")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
