"""Stage 2 of 4 — derivations by name. Each entry builds its model and returns unchecked steps."""

from __future__ import annotations

from symgrad.derivation.softmax_ce import derive_softmax_cross_entropy
from symgrad.derivation.softmax_layer import derive_softmax_layer


def derive_default_network(n: int | str = 2, normalized_labels: bool = True):
    """``network`` by name: one tanh hidden layer and a softmax output of n classes (the CLI's
    ``derive network`` takes --hidden, --output-layer and --sizes for any other)."""
    from symgrad.derivation.network import derive_network

    return derive_network(["tanh"], "softmax", {"n2": n})

DERIVATIONS = {
    "softmax-cross-entropy": derive_softmax_cross_entropy,
    "softmax-layer": derive_softmax_layer,
    "network": derive_default_network,
}
