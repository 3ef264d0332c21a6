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


# -- the output layer over a batch: Z = W A_prev + b, A = softmax(Z) by columns, J = −(1/m) ΣΣ Y log A
W = IndexedBase("W", real=True)  # weights, n × n_prev
A_prev = IndexedBase("A_prev", real=True)  # previous layer's activations, n_prev × m
b = IndexedBase("b", real=True)  # bias, n (broadcast over the m columns)
Y = IndexedBase("Y", real=True)  # labels, n × m (one column per example)
Z = IndexedBase("Z", real=True)  # pre-activations, n × m
A = IndexedBase("A", positive=True)  # softmax of each column of Z
Lex = IndexedBase("L", real=True)  # loss of one example (a column)
J = Symbol("J", real=True)  # cost over the batch
p, q = index_symbol("p"), index_symbol("q")  # units of the previous layer, 1..n_prev
s, t = index_symbol("s"), index_symbol("t")  # examples, 1..m
COLUMNS_NORMALIZED = "normalized labels"  # every column of Y sums to 1


def softmax_layer(n: int, n_prev: int, m: int) -> Model:
    """The output layer over a batch of m examples, at concrete sizes."""
    size, size_prev, batch = Integer(n), Integer(n_prev), Integer(m)
    pre_activation = Definition(Z, (i, s), Sum(W[i, q] * A_prev[q, s], (q, 1, size_prev)) + b[i],
                                "pre-activations Z = W A_prev + b (b broadcast over columns)")
    activation = Definition(A, (i, s), exp(Z[i, s]) / Sum(exp(Z[k, s]), (k, 1, size)),
                            "softmax of each column of Z")
    example_loss = Definition(Lex, (s,), -Sum(Y[i, s] * log(A[i, s]), (i, 1, size)),
                             "cross-entropy loss of example s")
    cost = Definition(J, (), Sum(Lex[s], (s, 1, batch)) / batch, "the loss averaged over the batch")
    labels = Assumption(COLUMNS_NORMALIZED, Eq(Sum(Y[i, s], (i, 1, size)), 1),
                        "every column of Y sums to one (one-hot or probability labels), for each example s")
    return Model(
        name="softmax-layer",
        sizes={"n": n, "n_prev": n_prev, "m": m},
        shapes={W: (size, size_prev), A_prev: (size_prev, batch), b: (size,), Y: (size, batch)},
        definitions=(pre_activation, activation, example_loss, cost),
        abbreviation_shapes={Z: (size, batch), A: (size, batch), Lex: (batch,)},
        assumptions={labels.name: labels},
        index_ranges={p: size_prev, q: size_prev, s: batch, t: batch},
    )
