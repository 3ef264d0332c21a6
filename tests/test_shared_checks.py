"""Derivations over one model share their proofs and instance evaluations within a process (a
layer's weight, bias and input gradients), and what is shared is exactly what would have been
computed afresh: the verdicts and their text do not depend on what was checked before."""

from pathlib import Path

import pytest

from symgrad.identity_file import load_file
from symgrad.verify import symbolic
from symgrad.verify.identity import _checked_derivation
from symgrad.verify.index_form import IndexProver

LAYER = Path(__file__).resolve().parent.parent / "derivations" / "layer.toml"


def _symbolic_table(identity):
    return next(size for size in identity.sizes if "symbolic" in str(size))


def _forget(monkeypatch):
    monkeypatch.setattr(symbolic, "_PROVERS", {})
    monkeypatch.setattr(symbolic, "_NUMERIC_INSTANCE_CHECKS", {})
    from symgrad.verify import identity as identity_stage

    monkeypatch.setattr(identity_stage, "_DERIVATIONS", {})


def _report(derivation):
    return [(step.title, step.check.exact, step.check.numeric, step.check.detail) for step in derivation.steps]


@pytest.fixture(scope="module")
def layer():
    weight, bias, _ = load_file(LAYER)
    return weight, bias


def test_a_second_gradient_of_the_same_layer_proves_only_its_own_steps(layer, monkeypatch):
    weight, bias = layer
    _forget(monkeypatch)
    proofs: list = []
    real = IndexProver._prove
    monkeypatch.setattr(IndexProver, "_prove", lambda self, *args: proofs.append(args) or real(self, *args))
    first = _checked_derivation(weight, _symbolic_table(weight))
    after_first = len(proofs)
    second = _checked_derivation(bias, _symbolic_table(bias))
    assert first.proven and second.proven
    shared = sum(1 for a, b in zip(first.steps, second.steps) if (a.lhs, a.rhs) == (b.lhs, b.rhs))
    assert shared >= 10  # the loss, the softmax, dZ = A − Y …
    assert len(proofs) - after_first <= len(second.steps) - shared, "a shared step was proven again"


def test_what_is_shared_is_what_would_be_computed_afresh(layer, monkeypatch):
    """The bias gradient checked alone, and after the weight gradient (sharing its steps), gives
    the same checks, step by step, text included."""
    weight, bias = layer
    _forget(monkeypatch)
    alone = _report(_checked_derivation(bias, _symbolic_table(bias)))
    _forget(monkeypatch)
    _checked_derivation(weight, _symbolic_table(weight))
    after = _report(_checked_derivation(bias, _symbolic_table(bias)))
    assert after == alone


def test_the_gradients_of_one_layer_are_one_unit_of_work_for_the_workers():
    """verify -j N hands a layer's dW, db and dA_prev (their symbolic tables, each with its fixed
    instances) to one worker, where they share their proofs; identities of other models and
    sizes without a symbolic sibling stay units of their own."""
    from symgrad.batch import _units
    from symgrad.identity_file import load_paths

    catalog = Path(__file__).resolve().parent.parent / "derivations"
    identities = load_paths([catalog])
    pending = [(i, k) for i, identity in enumerate(identities) for k in range(len(identity.sizes))]
    units = _units(identities, pending)
    assert sorted(k for unit in units for i, group in unit for k in [(i, x) for x in group]) == sorted(pending)
    layer = [unit for unit in units if any(identities[i].path.name == "layer.toml" for i, _ in unit)]
    assert len(layer) == 1 and {identities[i].name for i, _ in layer[0]} == {
        "softmax layer weight gradient", "softmax layer bias gradient", "softmax layer input gradient"}
    assert all(len(unit) == 1 for unit in units if unit is not layer[0])
