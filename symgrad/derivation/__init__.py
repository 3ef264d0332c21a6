"""Stage 2 of 4 — derivations by name. Each entry builds its model and returns unchecked steps."""

from __future__ import annotations

from symgrad.derivation.softmax_ce import derive_softmax_cross_entropy
from symgrad.derivation.softmax_layer import derive_softmax_layer

DERIVATIONS = {
    "softmax-cross-entropy": derive_softmax_cross_entropy,
    "softmax-layer": derive_softmax_layer,
}
