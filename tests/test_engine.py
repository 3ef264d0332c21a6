"""The general engine: every catalog identity derived step by step, each step checked, and the
final result compared with finite differences of the loss as the expression language builds it
(an independent route: no step, rule or name of the engine is involved)."""

import random
from dataclasses import replace
from pathlib import Path

import mpmath
import pytest
from hypothesis import example, given, settings, strategies as st
from sympy import IndexedBase, Integer, Symbol, lambdify
from sympy.matrices.expressions import DiagMatrix

from symgrad.derivation import DERIVATIONS
from symgrad.derivation.engine import Problem, derive_problem, problem_from_identity
from symgrad.errors import UsageError
from symgrad.functions import ELEMENTWISE as ELEMENTWISE_FUNCTIONS
from symgrad.identity_file import load_paths
from symgrad.language import Variable, evaluate
from symgrad.steps import Rule
from symgrad.verify import check_derivation
from symgrad.verify.concrete import ConcreteModel

CATALOG = Path(__file__).resolve().parent.parent / "derivations"
DERIVABLE = [identity for identity in load_paths([CATALOG])  # over vectors (matrices: test_engine_matrices)
             if identity.lhs.startswith(("grad(", "jacobian(")) and "symbolic" in identity.sizes]


def _point(rng, names, kinds, n, normalized):
    """Random values; a vector named in ``normalized`` is scaled to sum to 1."""
    values = {}
    for name in names:
        if kinds[name] == "scalar":
            values[name] = mpmath.mpf(rng.uniform(0.5, 2.0))
        else:
            entries = [mpmath.mpf(rng.uniform(0.05, 1.0) if name in normalized else rng.uniform(-2, 2))
                       for _ in range(n)]
            if name in normalized:
                total = mpmath.fsum(entries)
                entries = [v / total for v in entries]
            values[name] = entries
    return values


def _symbols(kinds, n):
    out = []
    for name, kind in kinds.items():
        out += [Symbol(name, real=True)] if kind == "scalar" else [IndexedBase(name, real=True)[k + 1] for k in range(n)]
    return out


def _flat(values, kinds):
    out = []
    for name in kinds:
        out += [values[name]] if kinds[name] == "scalar" else values[name]
    return out


def _final_in_base_variables(derivation):
    """The last step's rhs, entry by entry, with every named intermediate unfolded."""
    concrete = ConcreteModel(derivation.model)
    final = derivation.steps[-1]
    if final.free_indices:
        (j,) = final.free_indices
        entries = [final.rhs.xreplace({j: Integer(k + 1)}) for k in range(int(derivation.model.sizes["n"]))]
    else:
        entries = list(concrete.explicit(final.rhs))
    return [concrete.base_form(concrete.explicit(e)) for e in entries]


def _gradient_by_finite_differences(loss_text, kinds, values, n, wrt):
    variables = {name: Variable(name, None if kind == "scalar" else n) for name, kind in kinds.items()}
    loss = evaluate(loss_text, variables, constants={"n": Integer(n)})
    function = lambdify(_symbols(kinds, n), loss, modules="mpmath")
    gradient = []
    for k in range(n):
        def along(t, k=k):
            moved = dict(values)
            moved[wrt] = list(values[wrt])
            moved[wrt][k] = t
            return function(*_flat(moved, kinds))
        gradient.append(mpmath.diff(along, values[wrt][k]))
    return gradient


def _assert_matches_finite_differences(problem, derivation, seed):
    inner = problem.expression[len("grad("):-1]
    loss_text, wrt = inner.rsplit(",", 1)
    wrt = wrt.strip()
    kinds = {name: ("scalar" if length == "scalar" else "vector") for name, length in problem.variables.items()}
    n = int(derivation.model.sizes["n"])
    normalized = {text.split("(")[1].split(")")[0] for text in problem.assume}
    values = _point(random.Random(seed), list(kinds), kinds, n, normalized)
    final = _final_in_base_variables(derivation)
    with mpmath.workdps(30):
        derived = [lambdify(_symbols(kinds, n), entry, modules="mpmath")(*_flat(values, kinds)) for entry in final]
        expected = _gradient_by_finite_differences(loss_text, kinds, values, n, wrt)
    for d, e in zip(derived, expected):
        assert abs(d - e) < mpmath.mpf("1e-15") * max(1, abs(e)), (problem.name, derived, expected)


@pytest.mark.parametrize("identity", DERIVABLE, ids=lambda i: i.name)
@pytest.mark.parametrize("size", [2, 3, "symbolic"])
def test_every_catalog_derivative_is_derived_and_proven(identity, size):
    derivation = check_derivation(derive_problem(problem_from_identity(identity, size)))
    unproven = [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    assert not unproven
    assert derivation.steps[-1].rule is Rule.IDENTITY
    assert derivation.steps[0].rule is Rule.DEFINITION
    # the identity's rhs in the file's own terms, never in a shorthand the derivation made up
    # (label smoothing's (1 − ε)y + ε/n is its t, which the result was already written without)
    shorthands = {str(step.lhs.base) for step in derivation.steps
                  if step.title.startswith("Shorthand") and hasattr(step.lhs, "base")}
    rhs = derivation.steps[-1].rhs
    names = {str(x) for x in rhs.atoms(Symbol)} | {str(b.label) for b in rhs.atoms(IndexedBase)}
    assert not shorthands & names, (shorthands & names, rhs)


@pytest.mark.parametrize("identity", [i for i in DERIVABLE if i.lhs.startswith("grad(")], ids=lambda i: i.name)
def test_catalog_gradients_match_finite_differences(identity):
    problem = problem_from_identity(identity, 3)
    _assert_matches_finite_differences(problem, derive_problem(problem), seed=identity.name)


def test_softmax_cross_entropy_is_an_instance_of_the_engine():
    """The derivation users knew: δ_ij cases, diag(a) − aaᵀ, split at i = j, Σ y = 1, a − y."""
    derivation = check_derivation(DERIVATIONS["softmax-cross-entropy"](3))
    assert derivation.proven
    rules = [s.rule for s in derivation.steps]
    for wanted in (Rule.QUOTIENT_RULE, Rule.CASE_SPLIT, Rule.MATRIX_FORM, Rule.SPLIT_SUM, Rule.CANCEL,
                   Rule.COLLECT, Rule.ASSUMPTION, Rule.VECTOR_FORM):
        assert wanted in rules
    assert any(s.rhs.has(DiagMatrix) for s in derivation.steps if s.rule is Rule.MATRIX_FORM)
    from symgrad.build import a, y
    concrete = ConcreteModel(derivation.model)
    result = concrete.explicit(derivation.result)
    assert [(result[k] - (a[k + 1] - y[k + 1])).expand() for k in range(3)] == [0, 0, 0]


def test_without_the_assumption_the_derivation_stops_and_says_why():
    problem = Problem("cross_entropy(softmax(z), y)", {"z": "n", "y": "n"}, wrt="z", size=3)
    derivation = check_derivation(derive_problem(problem))
    assert derivation.proven
    assert Rule.ASSUMPTION not in [s.rule for s in derivation.steps]
    assert derivation.notes and "sum(y) == 1" in derivation.notes[0]


def test_a_corrupted_engine_step_is_rejected():
    problem = Problem("grad(binary_cross_entropy(sigmoid(z), y), z)", {"z": "n", "y": "n"}, size=3)
    derivation = derive_problem(problem)
    steps = list(derivation.steps)
    for k, step in enumerate(steps):
        if step.rule in (Rule.DEFINITION, Rule.MATRIX_FORM, Rule.CHAIN_RULE):
            continue
        bad = derivation.with_steps(steps[:k] + [replace(step, rhs=step.rhs * 2)] + steps[k + 1:])
        checked = check_derivation(bad)
        assert checked.steps[k].check.exact is not True, step.title
        assert checked.steps[k].check.numeric is False, step.title


@pytest.mark.parametrize("expression, variables, message", [
    ("grad(sum(z), y)", {"z": "n", "y": "n"}, "does not depend"),
    ("grad(softmax(z), z)", {"z": "n"}, "scalar"),
    ("sum(z)", {"z": "n", "T": "scalar"}, "--wrt"),
    ("grad(sum(q), z)", {"z": "n"}, "unknown name"),
    ("grad(sum(i), i)", {"i": "n"}, "cannot be a variable name"),
])
def test_engine_usage_errors_are_clean(expression, variables, message):
    with pytest.raises(UsageError, match=message):
        derive_problem(Problem(expression, variables, size=3))


def test_non_derivative_identity_is_refused_with_a_reason():
    shift = next(i for i in load_paths([CATALOG]) if i.name == "softmax shift invariance")
    with pytest.raises(UsageError, match="not a derivative"):
        problem_from_identity(shift, 3)


# -- any composition the language can write ------------------------------------------------------
INNER = st.recursive(
    st.sampled_from(["z"]),
    lambda inner: st.one_of(
        st.builds(lambda x: f"sigmoid({x})", inner),
        st.builds(lambda x: f"tanh({x})", inner),
        st.builds(lambda x: f"softmax({x})", inner),
        st.builds(lambda x: f"({x}) / T", inner),
        st.builds(lambda x: f"2 * ({x}) + y", inner),
        st.builds(lambda x: f"({x}) ** 2", inner),
    ),
    max_leaves=3,
)
LOSSES = ["cross_entropy(softmax({x}), y)", "binary_cross_entropy(sigmoid({x}), y)", "mse({x}, y)",
          "sum(({x}) * y)", "logsumexp({x})", "-dot(y, log_softmax({x}))"]


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(inner=INNER, loss=st.sampled_from(LOSSES), seed=st.integers(0, 10**6))
@example(inner="softmax(softmax(z))", loss="-dot(y, log_softmax({x}))", seed=749)  # Σ_{i≠j} captured i
def test_any_composition_is_derived_proven_and_matches_finite_differences(inner, loss, seed):
    """Property: for generated losses, every step is proven and the result is the gradient."""
    from hypothesis import reject

    from symgrad.budget import TimeLimitReached, deadline

    expression = "grad(" + loss.format(x=inner) + ", z)"
    problem = Problem(expression, {"z": "n", "y": "n", "T": "scalar"}, size=2, name="generated")
    try:
        with deadline(60):  # a composition the checker needs minutes for is not this test's subject
            derivation = check_derivation(derive_problem(problem))
    except TimeLimitReached:
        reject()
    unproven = [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    assert not unproven, expression
    _assert_matches_finite_differences(problem, derivation, seed)



@pytest.mark.parametrize("rhs, holds", [("softmax(z) - y", True), ("softmax(z) - 2 * y", None),
                                        ("y - softmax(z)", None)])
def test_verify_proves_for_every_n_through_the_engine_and_never_a_false_identity(tmp_path, rhs, holds):
    from symgrad.identity_file import load_file
    from symgrad.verify.identity import check_at_size

    path = tmp_path / "ids.toml"
    path.write_text('[[identity]]\nname = "ce"\nvars = { z = "n", y = "n" }\nn = ["symbolic"]\n'
                    f'assume = ["sum(y) == 1"]\nlhs = "grad(cross_entropy(softmax(z), y), z)"\nrhs = "{rhs}"\n',
                    encoding="utf-8")
    (identity,) = load_file(path)
    assert check_at_size(identity, "symbolic").holds is holds


@pytest.mark.parametrize("name", sorted(name for name, f in ELEMENTWISE_FUNCTIONS.items()
                                         if f.arity == 1 and not f.by_cases))  # by cases: test_piecewise.py
def test_every_elementwise_function_of_the_table_derives_checks_and_matches_finite_differences(name):
    """One entry of functions.py is all a smooth elementwise function needs: mse(f(z), y) by z
    derives with its rule, every step proven, the result equal to finite differences of the
    language's own value; the same derivation with the rule's derivative doubled is refuted.
    (log takes exp(z) so its argument is positive.)"""
    argument = "exp(z)" if ELEMENTWISE_FUNCTIONS[name].needs_positive_argument else "z"
    problem = Problem(f"grad(mse({name}({argument}), y), z)", {"z": "n", "y": "n"}, size=3)
    derivation = check_derivation(derive_problem(problem))
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    _assert_matches_finite_differences(problem, derivation, seed=name)
    steps = list(derivation.steps)
    (k,) = [k for k, s in enumerate(steps) if s.rule is Rule.ELEMENTWISE and ELEMENTWISE_FUNCTIONS[name].fact in s.title]
    wrong = derivation.with_steps(steps[:k] + [replace(steps[k], rhs=steps[k].rhs * 2, check=None)] + steps[k + 1:])
    assert check_derivation(wrong).steps[k].check.numeric is False
