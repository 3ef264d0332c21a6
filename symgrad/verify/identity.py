"""Stage 3 — check an identity file's claims with the same checker as derivations.

At each size, both sides are built by the expression language (``grad`` and ``jacobian`` by
SymPy's ``diff``), wrapped in a one-step derivation over a model whose base variables are the
identity's entries, and handed to ``StepChecker``: exact (expand, then rational fall-backs) and,
independently, numeric at random points in 50 digits — which also yields the counterexample
when an identity is false.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sympy import Eq, ImmutableMatrix, IndexedBase, Integer, Symbol

from symgrad.identity_file import SIZE_NAME, Identity, IdentityFileError
from symgrad.language import LanguageError, Variable, evaluate, shape_of
from symgrad.model import Assumption, Model
from symgrad.steps import Rule, Step


@dataclass(frozen=True)
class SizeResult:
    """The outcome at one size: ``holds`` True (proven), False (refuted) or None (undecided)."""

    size: int
    holds: bool | None
    method: str
    detail: str
    seconds: float


@dataclass(frozen=True)
class IdentityResult:
    identity: Identity
    results: tuple[SizeResult, ...]

    @property
    def holds(self) -> bool | None:
        if any(r.holds is False for r in self.results):
            return False
        return True if all(r.holds for r in self.results) else None

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)


def check_identity(identity: Identity) -> IdentityResult:
    return IdentityResult(identity, tuple(check_at_size(identity, size) for size in identity.sizes))


def build_at_size(identity: Identity, size: int):
    """(lhs, rhs, model) of an identity at one size; shape errors are the user's."""
    variables = {name: Variable(name, None if length == "scalar" else size if length == SIZE_NAME else length)
                 for name, length in identity.variables.items()}
    constants = {SIZE_NAME: Integer(size)}

    def value(text: str, equation: bool = False):
        try:
            return evaluate(text, variables, allow_equation=equation, constants=constants)
        except LanguageError as error:
            raise IdentityFileError(f"{identity.where(text, error.column)}: identity "
                                    f"{identity.name!r} at n = {size}: {error}") from None

    lhs, rhs = value(identity.lhs), value(identity.rhs)
    lhs_shape = lhs.shape if isinstance(lhs, ImmutableMatrix) else None
    rhs_shape = rhs.shape if isinstance(rhs, ImmutableMatrix) else None
    if lhs_shape != rhs_shape:
        raise IdentityFileError(f"{identity.path}: identity {identity.name!r}: the sides have different "
                                f"shapes at n = {size}: {shape_of(lhs)} and {shape_of(rhs)}")
    assumptions = {}
    for k, text in enumerate(identity.assume, start=1):
        equation = value(text, equation=True)
        assumptions[text] = Assumption(text, equation, text)
    model = Model(
        name=identity.name,
        sizes={SIZE_NAME: size},
        shapes={IndexedBase(v.name, real=True): (Integer(v.length),)
                for v in variables.values() if v.length is not None},
        scalars=tuple(Symbol(v.name, real=True) for v in variables.values() if v.length is None),
        assumptions=assumptions,
    )
    return lhs, rhs, model


def check_at_size(identity: Identity, size: int) -> SizeResult:
    from symgrad.verify import StepChecker

    started = time.perf_counter()
    lhs, rhs, model = build_at_size(identity, size)
    if isinstance(lhs, Eq) or isinstance(rhs, Eq):
        raise IdentityFileError(f"{identity.path}: identity {identity.name!r}: lhs and rhs must be expressions")
    step = Step(identity.name, Rule.SUBSTITUTE, lhs, rhs, assumptions=tuple(model.assumptions))
    try:
        check = StepChecker(model, index_proofs=False).check(step, f"{identity.name}:{size}")
    except ValueError as error:  # e.g. an assumption that fixes no variable linearly
        return SizeResult(size, None, "—", f"could not check: {error}", time.perf_counter() - started)
    if check.exact is False or check.numeric is False:
        holds = False
    elif check.exact and check.numeric:
        holds = True
    else:
        holds = None
    method = " + ".join(m for m, ok in (("exact", check.exact), ("numeric", check.numeric)) if ok) or "—"
    return SizeResult(size, holds, method, check.detail, time.perf_counter() - started)
