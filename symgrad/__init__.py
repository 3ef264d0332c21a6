"""symgrad — symbolic, step-by-step, checked derivations of ML gradients.

Flow: ``build`` (expressions) → ``derive`` (steps) → ``verify`` (checks) → ``render`` (LaTeX,
text, Markdown, JSON) → ``cli``. ``derive`` and ``render`` are the public entry points; they are
imported lazily so that ``symgrad --help`` does not pay for importing SymPy.
"""

__all__ = ["__version__", "derive", "render", "UsageError", "Check", "Derivation", "Rule", "Step"]

_HOMES = {"derive": "symgrad.api", "render": "symgrad.api", "UsageError": "symgrad.errors",
          "Check": "symgrad.steps", "Derivation": "symgrad.steps", "Rule": "symgrad.steps",
          "Step": "symgrad.steps"}


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
            return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


def __getattr__(name):
    if name == "__version__":
        return _version()
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
