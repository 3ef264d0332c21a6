"""symgrad — symbolic, step-by-step, checked derivations of ML gradients.

Flow: ``build`` (expressions) → ``derive`` (steps) → ``verify`` (checks) → ``render`` (LaTeX,
text, Markdown, JSON) → ``cli``. ``derive`` and ``render`` are the public entry points; they are
imported lazily so that ``symgrad --help`` does not pay for importing SymPy.
"""

__version__ = "0.1.0"
__all__ = ["derive", "render", "UsageError", "Check", "Derivation", "Rule", "Step"]

_HOMES = {"derive": "symgrad.api", "render": "symgrad.api", "UsageError": "symgrad.errors",
          "Check": "symgrad.steps", "Derivation": "symgrad.steps", "Rule": "symgrad.steps",
          "Step": "symgrad.steps"}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
