"""Stage 3 — check an identity file's claims with the same checker as derivations.

At each size, both sides are built by the expression language (``grad`` and ``jacobian`` by
SymPy's ``diff``), wrapped in a one-step derivation over a model whose base variables are the
identity's entries, and handed to ``StepChecker``: exact (expand, then rational fall-backs) and,
independently, numeric at random points in 50 digits — which also yields the counterexample
when an identity is false.
"""

from __future__ import annotations

import time

from sympy import Add, Eq, ImmutableMatrix, IndexedBase, Integer, Symbol, exp, preorder_traversal

from symgrad.errors import UsageError
from symgrad.memo import remember
from symgrad.identity_file import (SIZE_NAME, SYMBOLIC, Identity, IdentityFileError, SizeTable, all_symbolic,
                                   general_table, shared_proof_groups)
from symgrad.language import LanguageError, TooMuchWork, Variable, evaluate, shape_of
from symgrad.model import Assumption, Definition, Model
from symgrad.steps import Rule, Step
from symgrad.verdicts import IdentityResult, SizeResult  # noqa: F401 (re-exported: the results of check_identity)
from symgrad.verify.concrete import Contradictory


def check_identity(identity: Identity) -> IdentityResult:
    """The verdict at every size, reported in the listed order, checked in ``shared_proof_groups``
    order (an all-symbolic table before the fixed tables that are its instances)."""
    everywhere = list(range(len(identity.sizes)))
    results = {k: check_at_size(identity, identity.sizes[k])
               for group in shared_proof_groups(identity, everywhere) for k in group}
    return IdentityResult(identity, tuple(results[k] for k in everywhere))


def build_at_size(identity: Identity, size: int):
    """(lhs, rhs, model) of an identity at one size; shape errors are the user's."""
    variables = {name: Variable(name, None if length == "scalar" else size if length == SIZE_NAME else length)
                 for name, length in identity.variables.items()}
    constants = {SIZE_NAME: Integer(size)}

    def value(text: str, equation: bool = False):
        try:
            return evaluate(text, variables, allow_equation=equation, constants=constants)
        except LanguageError as error:
            kind = _TooLarge if isinstance(error, TooMuchWork) else IdentityFileError
            raise kind(f"{identity.where(text, error.column)}: identity "
                       f"{identity.name!r} at n = {size}: {error}") from None

    lhs, rhs = value(identity.lhs), value(identity.rhs)
    lhs_shape = lhs.shape if isinstance(lhs, ImmutableMatrix) else None
    rhs_shape = rhs.shape if isinstance(rhs, ImmutableMatrix) else None
    if lhs_shape != rhs_shape:
        raise IdentityFileError(f"{identity.path}: identity {identity.name!r}: the sides have different "
                                f"shapes at n = {size}: {shape_of(lhs)} and {shape_of(rhs)}")
    assumptions = {}
    for text in identity.assume:
        equation = value(text, equation=True)
        assumptions[text] = Assumption(text, equation, text)
    (lhs, rhs), definitions = _abbreviate_sums_of_exponentials([lhs, rhs])
    model = Model(
        name=identity.name,
        sizes={SIZE_NAME: size},
        shapes={IndexedBase(v.name, real=True): (Integer(v.length),)
                for v in variables.values() if v.length is not None},
        scalars=tuple(Symbol(v.name, real=True) for v in variables.values() if v.length is None),
        definitions=definitions,
        assumptions=assumptions,
    )
    return lhs, rhs, model


def _abbreviate_sums_of_exponentials(sides: list) -> tuple[list, tuple]:
    """Name every sum of exponentials Σ_k e^{g(z_k)} (softmax, logsumexp) S_1, S_2, … with the
    definition S = Sum(e^{g(z_K)}, (K, 1, n)), as derivations keep Σ_k e^{z_k} as one symbol: the
    exact check then works with S opaque (an identity true for every S is true for the real one)
    and unfolds it only if it must; the numeric check evaluates S from its definition.

    S is declared positive only when every exponent g(z_k) is real for every real z (then each
    e^{g} is positive): SymPy uses the declaration at once (√(S²) becomes S), so a declaration
    that is false for some value — Σ e^{√(9z)} is complex for z < 0 — would prove false claims."""
    found: dict = {}
    for side in sides:
        for node in preorder_traversal(side):
            if node not in found and isinstance(node, Add) and len(node.args) > 1:
                as_sum = _as_indexed_sum(node)
                if as_sum is not None:
                    real = all(term.args[0].is_extended_real for term in node.args)
                    found[node] = (Symbol(f"S_{len(found) + 1}", positive=True) if real
                                   else Symbol(f"S_{len(found) + 1}"), as_sum)
    if not found:
        return sides, ()
    renamed = [side.xreplace({total: symbol for total, (symbol, _) in found.items()}) for side in sides]
    definitions = tuple(Definition(symbol, (), as_sum, "a sum of exponentials") for symbol, as_sum in found.values())
    return renamed, definitions


def _as_indexed_sum(total: Add):
    """e^{g(z_1)} + … + e^{g(z_n)} as Sum(e^{g(z_K)}, (K, 1, n)), or None if it is not one."""
    from sympy import Indexed, Sum

    terms = sorted(total.args, key=lambda t: sorted((str(x.base), [int(i) for i in x.indices if i.is_Integer])
                                                    for x in t.atoms(Indexed)))
    if not all(isinstance(t, exp) for t in terms):
        return None
    first = terms[0].atoms(Indexed)
    if not first or any(x.indices != (1,) for x in first):
        return None
    K = Symbol("K", integer=True, positive=True)
    template = terms[0].xreplace({x: x.base[K] for x in first})
    if any(term != template.xreplace({K: Integer(k)}) for k, term in enumerate(terms, start=1)):
        return None
    return Sum(template, (K, 1, len(terms)))


def check_at_size(identity: Identity, size: int | str) -> SizeResult:
    """The verdict at one size. Never an exception for an identity the file layer accepted: an
    assumption the checker cannot use, contradictory assumptions or an error inside SymPy give
    "undecided" with the reason (the exception named, so a real bug stays visible)."""
    started = time.perf_counter()

    def undecided(detail: str) -> SizeResult:  # (the report says "undecided" before the detail)
        return SizeResult(size, None, "—", detail, time.perf_counter() - started)

    try:
        if isinstance(size, SizeTable):
            return _through_the_derivation(identity, size, started)
        if size == SYMBOLIC:
            return _for_every_n(identity, started)
        general = _proven_for_every_size(identity, size)
        if general is not None:
            instance = _as_an_instance(general, size, started)
            if instance is not None:
                return instance
        try:
            return _check_concrete(identity, size, started)
        except _TooLarge:
            if not _is_derivative(identity):
                raise
            # too large to expand: the engine derives it at this n step by step instead
            return _through_the_derivation(identity, size, started)
    except UsageError:
        raise  # the user's file: reported as such by the caller
    except Contradictory as error:
        return undecided(str(error))
    except ValueError as error:  # e.g. an assumption that fixes no variable linearly
        return undecided(f"could not check: {error}")
    except RecursionError:
        return undecided("the expression is too deeply nested to check")
    except Exception as error:  # noqa: BLE001 - SymPy/SymEngine internals (KeyError, TypeError …); named, not hidden
        return undecided(f"the checker failed inside its computer algebra, SymPy or SymEngine "
                         f"({type(error).__name__}: {error})")


def _check_concrete(identity: Identity, size: int, started: float) -> SizeResult:
    from symgrad.verify import StepChecker

    lhs, rhs, model = build_at_size(identity, size)
    if isinstance(lhs, Eq) or isinstance(rhs, Eq):
        raise IdentityFileError(f"{identity.path}: identity {identity.name!r}: lhs and rhs must be expressions")
    step = Step(identity.name, Rule.SUBSTITUTE, lhs, rhs, assumptions=tuple(model.assumptions))
    checker = StepChecker(model, index_proofs=False)
    check = checker.check(step, f"{identity.name}:{size}")
    if check.exact is False or check.numeric is False:
        holds = False
    elif check.exact and check.numeric:
        holds = True
    else:
        holds = None
    cases = _proven_by_cases(check)
    if holds is False:
        method = "exact evaluation" if check.detail.startswith("refuted exactly") else \
            "by cases + numeric" if check.detail.startswith("refuted by cases") else "numeric"
    else:
        method = " + ".join(m for m, ok in (("exact, by cases (almost everywhere)" if cases else "exact", check.exact),
                                            ("numeric", check.numeric)) if ok) or "—"
    detail = check.detail
    vacuous = sorted(checker.concrete.vacuous)
    if vacuous:
        detail += "; " + ", ".join(f"assumption {name!r} is always true (vacuous)" for name in vacuous)
    return SizeResult(size, holds, method, detail, time.perf_counter() - started)


class _TooLarge(IdentityFileError):
    """An identity too large to expand at one size (``language.TooMuchWork``)."""


def _is_derivative(identity: Identity) -> bool:
    return identity.lhs.lstrip().startswith(("grad(", "jacobian("))


def _through_the_derivation(identity: Identity, table: SizeTable | int, started: float) -> SizeResult:
    """An identity over matrices at one size table, or a vector identity too large to expand at
    one n: the engine derives its lhs and ends at its rhs; every step is checked (exact and
    numeric). All proven: it holds. The last step (lhs = rhs) refuted: it fails, with the
    counterexample. Anything else: undecided. A fixed size table of an identity also proven for
    every size is an instance of that proof: its steps are evaluated there, not proven again."""

    def verdict(holds, method, detail):
        return SizeResult(table, holds, method, detail, time.perf_counter() - started)

    general = _proven_for_every_size(identity, table)
    if general is not None:
        instance = _as_an_instance(general, table, started)
        if instance is not None:
            return instance
    try:
        derivation = _checked_derivation(identity, table)
    except UsageError as error:
        what = ("identities over matrices are checked through their derivation" if isinstance(table, SizeTable)
                else f"at n = {table} the identity is too large to expand and is checked through its derivation")
        return verdict(None, "—", f"{what}: {error}")
    if derivation.proven:
        symbolic = [k for k, v in getattr(table, "values", {}).items() if v == SYMBOLIC]
        every = f" for every {', '.join(symbolic)} (index notation)" if symbolic else ""
        method = "derivation (exact + numeric)" if not symbolic else "derivation, index notation"
        return verdict(True, _by_cases_method(derivation, method),
                       f"every one of {len(derivation.steps)} derived steps proven{every}"
                       f"{_almost_everywhere(derivation)}, the last one lhs = rhs")
    last = derivation.steps[-1].check
    earlier = [k for k, step in enumerate(derivation.steps[:-1], start=1) if not step.check.proven]
    if not earlier and (last.exact is False or last.numeric is False):
        return verdict(False, "derivation + numeric", f"the derived gradient differs from the rhs: {last.detail}")
    return verdict(None, "—", f"the derivation did not prove step(s) {', '.join(map(str, earlier or [len(derivation.steps)]))}")


# checked derivations of the identities this process checks, by identity and size table: an
# identity's fixed size tables are instances of its symbolic one (``_proven_for_every_size``)
_DERIVATIONS: dict = {}
_KEPT_DERIVATIONS = 8


def _engine_size(table: SizeTable | int | str) -> dict | int | str:
    """A size as ``problem_from_identity`` takes it: a table's values, an n, "symbolic"."""
    return dict(table.values) if isinstance(table, SizeTable) else table


def _derivation_key(identity: Identity, table) -> tuple:
    """Everything the derivation of an identity at a size depends on."""
    return (identity.path, identity.name, identity.lhs, identity.rhs, repr(identity.variables), identity.assume,
            repr(_engine_size(table)))


def _checked_derivation(identity: Identity, table: SizeTable | int | str):
    """The engine's derivation of the identity at ``table`` (a size table, an n, "symbolic"),
    every step checked. At an all-symbolic table it is kept for the process: the fixed tables
    that are its instances reuse its proof. Raises UsageError as ``problem_from_identity`` does."""
    from symgrad.derivation.engine import derive_problem, problem_from_identity
    from symgrad.verify import check_derivation

    key = _derivation_key(identity, table)
    kept = _DERIVATIONS.get(key)
    if kept is not None:
        return kept
    derivation = check_derivation(derive_problem(problem_from_identity(identity, _engine_size(table))))
    if all_symbolic(table):
        remember(_DERIVATIONS, key, derivation, _KEPT_DERIVATIONS)
    return derivation


def _proven_for_every_size(identity: Identity, table: SizeTable | int):
    """The identity's derivation for every size, when ``table`` is an instance of it and this
    process has already derived and checked it — within that size's own time limit, never this
    one's (``shared_proof_groups`` checks it first) — and every step is proven, with no
    parameter such as K in 1..n; else None. ``table`` is an all-numbers table (its instance:
    the all-symbolic table with the same names) or an n no larger than the sizes at which the
    proof's steps were already evaluated (``PROVEN_INSTANCE_SIZE``, its instance: "symbolic";
    a larger n is checked on its own, entry by entry)."""
    from symgrad.verify.symbolic import PROVEN_INSTANCE_SIZE

    if isinstance(table, SizeTable):
        general = general_table(identity, table)
    else:
        general = SYMBOLIC if SYMBOLIC in identity.sizes and 1 <= table <= PROVEN_INSTANCE_SIZE else None
    if general is None:
        return None
    derivation = _DERIVATIONS.get(_derivation_key(identity, general))
    if derivation is None or not derivation.proven or derivation.model.parameters:
        return None
    return derivation


def _as_an_instance(general, table: SizeTable | int, started: float) -> SizeResult | None:
    """The verdict at a fixed size table (or n) from the identity's proof for every size: each
    step is evaluated numerically at these sizes (``check_instance``; at n = 1, 2, 3 the proof's
    own check already did, and its evaluations are kept), not proven again. Only "holds", when
    every step agrees there; anything else — a step the numbers cannot decide, an error, or a
    step refuted, which would contradict the proof itself — leaves the size to the full check
    (None), so the verdict is never weaker than checking the size on its own."""
    from symgrad.verify.symbolic import check_instance

    symbols = list(general.model.size_symbols())
    if isinstance(table, SizeTable):
        values = {name: int(value) for name, value in table.values.items()}
    elif len(symbols) == 1:
        values = {symbols[0]: int(table)}
    else:
        return None
    try:
        checks = check_instance(general, values)
    except Exception:  # noqa: BLE001 - SymPy internals at this size: the full check says what it is
        return None
    if len(checks) < len(general.steps) or not all(c.numeric is True for c in checks):
        return None
    every = ", ".join(symbols)
    at = table if isinstance(table, SizeTable) else f"{symbols[0]} = {table}"
    return SizeResult(table, True, _by_cases_method(general, "index notation (an instance)") + " + numeric",
                      f"every one of {len(general.steps)} derived steps proven for every {every} (index notation"
                      f"{_almost_everywhere(general, inside=True)}) and evaluated numerically at {at}, the last one "
                      "lhs = rhs", time.perf_counter() - started)


def _proven_by_cases(check) -> bool:
    """Proven region by region between kinks (Huber, ReLU against sign): almost everywhere, not
    at the kinks."""
    return "by cases: " in check.detail


def _by_cases(derivation) -> bool:
    """Whether a step was proven by cases: then the derivation holds almost everywhere, and its
    verdict says so."""
    return any(_proven_by_cases(step.check) for step in derivation.steps)


def _by_cases_method(derivation, method: str) -> str:
    return f"{method}, almost everywhere" if _by_cases(derivation) else method


def _almost_everywhere(derivation, inside: bool = False) -> str:
    if not _by_cases(derivation):
        return ""
    return "; by cases, so almost everywhere: not at a kink" if inside else \
        " (by cases, so almost everywhere: not at a kink)"


def _for_every_n(identity: Identity, started: float) -> SizeResult:
    """A proof for every n: the general engine derives the identity's ``grad(…)``/``jacobian(…)``
    at a symbolic n (the derivation stage, below this one) and every step is checked here in
    index notation; the last step is the identity's rhs, so a proven derivation proves it."""
    from symgrad.derivation.engine import derive_problem, problem_from_identity
    from symgrad.verify import check_derivation

    def verdict(holds, detail, method="index notation"):
        return SizeResult(SYMBOLIC, holds, method if holds else "—", detail, time.perf_counter() - started)

    try:
        problem = problem_from_identity(identity, SYMBOLIC)
        derivation = check_derivation(derive_problem(problem))
    except UsageError as error:
        return verdict(None, f"no proof for every n: {error} (it is checked at the listed sizes only)")
    # kept for the n = 1, 2, 3 listed beside it: its instances
    remember(_DERIVATIONS, _derivation_key(identity, SYMBOLIC), derivation, _KEPT_DERIVATIONS)
    command = f"`symgrad derive {identity.path} --identity {identity.name!r} --n symbolic`"
    if derivation.proven:
        return verdict(True, f"proven for every n by {command} ({len(derivation.steps)} steps in index notation"
                             f"{_almost_everywhere(derivation, inside=True)})",
                       _by_cases_method(derivation, "index notation"))
    failed = [k for k, step in enumerate(derivation.steps, start=1) if not step.check.proven]
    return verdict(None, f"{command} did not prove step(s) {', '.join(map(str, failed))}")
