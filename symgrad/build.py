"""Stage 1 of 4 — build the expressions a derivation is about, for a fixed or a symbolic n.

Only definitions live here (softmax, cross-entropy and their variables); what is *derived*
from them lives in ``symgrad.derivation``.
"""

from __future__ import annotations

from sympy import Eq, IndexedBase, Integer, Sum, Symbol, exp, log

from symgrad.model import Assumption, Definition, Model
from symgrad.notation import index_symbol

# The vocabulary shared by derivations and renderers. Entries are 1-based: z[1] … z[n].
z = IndexedBase("z", real=True)  # logits
y = IndexedBase("y", real=True)  # labels
a = IndexedBase("a", positive=True)  # softmax activations
L = Symbol("L", real=True)  # loss
i, j, k = index_symbol("i"), index_symbol("j"), index_symbol("k")
N = Symbol("n", integer=True, positive=True)  # the symbolic number of classes

NORMALIZED_LABELS = "normalized labels"


def size_symbol_or_int(n: int | str):
    """``n`` as SymPy sees it: an Integer for a fixed size, the positive-integer symbol n otherwise."""
    return N if n == "symbolic" else Integer(n)


def softmax_cross_entropy(n: int | str) -> Model:
    """Softmax a_i = e^{z_i} / Σ_k e^{z_k} and cross-entropy L = −Σ_i y_i log a_i over n classes."""
    size = size_symbol_or_int(n)
    softmax = Definition(a, (i,), exp(z[i]) / Sum(exp(z[k]), (k, 1, size)),
                         "softmax of the logits")
    loss = Definition(L, (), -Sum(y[i] * log(a[i]), (i, 1, size)), "cross-entropy loss")
    labels = Assumption(NORMALIZED_LABELS, Eq(Sum(y[i], (i, 1, size)), 1),
                        "the labels sum to one (one-hot or probability labels)")
    return Model(
        name="softmax-cross-entropy",
        sizes={"n": n if n == "symbolic" else int(n)},
        shapes={z: (size,), y: (size,)},
        definitions=(softmax, loss),
        abbreviation_shapes={a: (size,)},
        assumptions={labels.name: labels},
    )


COLUMNS_NORMALIZED = "normalized labels"  # the layer: every column of Y sums to 1
