"""The size of SymPy's cache in symgrad's own processes (the command line, and the ``verify -j``
workers it forks). The library never sets it: a notebook or a test keeps SymPy's default.

SymPy keeps the results of its constructors and of many of its operations (``Mul``, ``Add``,
``expand``'s hints …) in LRU caches of ``SYMPY_CACHE_SIZE`` entries each, 1,000 by default, and
sizes them once, when SymPy is imported. The steps of a derivation rebuild the same products
and sums again and again, and a thousand entries forget them between steps. Measured on the
2-core machine, a cold ``verify derivations/`` (35 identities): 4.80–5.17 s with 1,000,
4.47–4.76 s with 10,000, 4.39–4.64 s with 30,000; peak memory +3 MB in the catalog's
processes, none for ``derive --n 1024`` (465 MB against 474 MB).
"""

from __future__ import annotations

import os
import sys

CACHE_SIZE = 30_000
VARIABLE = "SYMPY_CACHE_SIZE"


def for_a_command() -> None:
    """At the start of a symgrad process, before SymPy is imported: a larger cache, unless the
    user set ``SYMPY_CACHE_SIZE`` (theirs wins) or SymPy is already imported (too late)."""
    if "sympy" not in sys.modules:
        os.environ.setdefault(VARIABLE, str(CACHE_SIZE))
