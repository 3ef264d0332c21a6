"""Stage 1 of 4 — the shared vocabulary of the built-in derivations: the names of their symbols
and assumptions. Their models are built from the expression language by ``lowering.py`` (the
engine's definitions); what is *derived* from them lives in ``symgrad.derivation``.
"""

from __future__ import annotations

from sympy import IndexedBase, Symbol

from symgrad.notation import index_symbol

# The vocabulary shared by derivations and renderers. Entries are 1-based: z[1] … z[n].
z = IndexedBase("z", real=True)  # logits
y = IndexedBase("y", real=True)  # labels
a = IndexedBase("a", positive=True)  # softmax activations
L = Symbol("L", real=True)  # loss
i, j, k = index_symbol("i"), index_symbol("j"), index_symbol("k")
N = Symbol("n", integer=True, positive=True)  # the symbolic number of classes

NORMALIZED_LABELS = "normalized labels"  # softmax + cross-entropy: the labels sum to 1
COLUMNS_NORMALIZED = "normalized labels"  # the layer: every column of Y sums to 1
