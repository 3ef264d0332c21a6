"""A network as a course writes it — Z[l] = W[l] A[l−1] + b[l], A[l] = g[l](Z[l]) for the hidden
layers, an output layer and its loss over a batch of m examples — derived by every weight and
bias at once: a named entry of the general engine, like ``softmax_layer``.

The recipe only writes the question: the cost J as an expression of the language, the shapes
(X is n0 × m, W[l] is n[l] × n[l−1]), the names of the intermediates (Z1, A1, …, the course's
Z[1], A[1]) and the labels' assumption. ``engine.derive_problem`` derives it like any loss a user
writes, sharing the levels above each variable (dZ[2] once for dW[2], db[2] and everything
below), and reads every gradient back as a matrix or vector with ⊙ — dZ[1] = W[2]ᵀ dZ[2] ⊙ g′(Z[1]).
"""

from __future__ import annotations

from dataclasses import dataclass

from symgrad.errors import UsageError
from symgrad.functions import ELEMENTWISE

DEFAULT_HIDDEN_SIZE = 2
DEFAULT_SIZES = {"input": 2, "output": 2, "m": 2}


@dataclass(frozen=True)
class Output:
    """An output layer: its activation applied to Z (``{z}``) and its cost J over the batch."""

    activation: str  # "{z}" for the identity
    cost: str  # in the language, with {a} the output activations
    assume: str | None
    description: str


OUTPUTS = {
    "softmax": Output("softmax({z})", "cross_entropy({a}, Y) / m", "colsum(Y) == 1",
                      "softmax with cross-entropy"),
    "sigmoid": Output("sigmoid({z})", "binary_cross_entropy({a}, Y) / m", None,
                      "sigmoid with binary cross-entropy"),
    "identity": Output("{z}", "sum(({a} - Y) ** 2) / m / 2", None, "the identity with squared error (1/2m)"),
}


@dataclass(frozen=True)
class NetworkQuestion:
    """What the engine is asked: the cost, the variables' shapes, the sizes, the variables to
    differentiate by (output layer first, as backprop runs), names and the assumption."""

    cost: str
    variables: dict
    sizes: dict
    wrt: tuple[str, ...]
    names: dict  # sub-expression → the course's name (Z1, A1, …)
    assume: tuple[str, ...]
    title: str


# the functions of one argument: each can be a layer's activation as it stands
ACTIVATIONS = tuple(name for name, f in ELEMENTWISE.items() if f.arity == 1)
GENERIC = "g"  # --hidden g (or --generic): an abstract activation g[l], declared per layer as g1, g2, …


def network_question(hidden: list[str], output: str = "softmax", sizes: dict | None = None) -> NetworkQuestion:
    """The question for hidden activations ``hidden`` (any elementwise function of the table, or
    ``g``: an abstract activation g[l], a declared function g1, g2, … of its layer), ``output``
    (softmax, sigmoid, identity) and ``sizes`` (n0 … nL and m; each an int or "symbolic";
    missing ones small and fixed)."""
    unknown = [g for g in hidden if g not in ACTIVATIONS and g != GENERIC]
    if unknown and unknown[0] in ELEMENTWISE:  # maximum(x, c), clip(x, lo, hi): parameters to give
        g = unknown[0]
        raise UsageError(f"{g} takes {ELEMENTWISE[g].arity} arguments, so it is not a --hidden activation; "
                         f"write the network as a loss with --expr, where {g}(…) takes them")
    if unknown:
        raise UsageError(f"unknown activation {unknown[0]!r} for --hidden (known: {', '.join(ACTIVATIONS)}, "
                         f"and {GENERIC} for an abstract activation g[l])")
    if output not in OUTPUTS:
        raise UsageError(f"unknown output {output!r} for --output-layer (known: {', '.join(OUTPUTS)})")
    layers = len(hidden) + 1
    names_of_sizes = [f"n{l}" for l in range(layers + 1)] + ["m"]
    given = dict(sizes or {})
    extra = sorted(set(given) - set(names_of_sizes))
    if extra:
        raise UsageError(f"--sizes {extra[0]}: a network with {len(hidden)} hidden layer(s) has sizes "
                         f"{', '.join(names_of_sizes)}")
    values = {name: given.get(name, DEFAULT_SIZES["input"] if name == "n0" else DEFAULT_SIZES["m"] if name == "m"
                               else DEFAULT_SIZES["output"] if name == f"n{layers}" else DEFAULT_HIDDEN_SIZE)
              for name in names_of_sizes}
    variables = {f"g{layer}": "function" for layer in range(1, layers) if hidden[layer - 1] == GENERIC}
    variables["X"] = "n0 x m"
    names: dict[str, str] = {}
    activation = "X"
    for layer in range(1, layers + 1):
        variables[f"W{layer}"] = f"n{layer} x n{layer - 1}"
        variables[f"b{layer}"] = f"n{layer}"
        z = f"W{layer} @ {activation} + b{layer}"
        names[z] = f"Z{layer}"
        function = f"g{layer}" if layer < layers and hidden[layer - 1] == GENERIC else \
            hidden[layer - 1] if layer < layers else None
        activation = f"{function}({z})" if function else OUTPUTS[output].activation.format(z=z)
        if activation != z:
            names[activation] = f"A{layer}"
    variables["Y"] = f"n{layers} x m"
    out = OUTPUTS[output]
    cost = out.cost.format(a=activation)
    wrt = tuple(name for layer in range(layers, 0, -1) for name in (f"W{layer}", f"b{layer}"))
    shown = [f"g{k + 1}" if h == GENERIC else h for k, h in enumerate(hidden)]
    generic = " (g[l]: any differentiable activation)" if GENERIC in hidden else ""
    title = (f"A network with {len(hidden)} hidden layer{'s' if len(hidden) != 1 else ''} "
             f"({', '.join(shown) or 'none'}{generic}) and {out.description}")
    return NetworkQuestion(cost, variables, values, wrt, names, (out.assume,) if out.assume else (), title)


def derive_network(hidden: list[str], output: str = "softmax", sizes: dict | None = None):
    """The unchecked derivation of the network's gradients by every W[l] and b[l]."""
    from symgrad.build import COLUMNS_NORMALIZED
    from symgrad.derivation.engine import Problem, derive_problem

    question = network_question(hidden, output, sizes)
    problem = Problem(question.cost, question.variables, wrt=question.wrt[0], also=question.wrt[1:],
                      assume=question.assume, sizes=question.sizes, name="network", title=question.title,
                      loss_name="J", names=question.names,
                      assumption_names={a: (COLUMNS_NORMALIZED, "one-hot or probability labels")
                                        for a in question.assume})
    return derive_problem(problem)
