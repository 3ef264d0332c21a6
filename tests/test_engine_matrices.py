"""The general engine over matrices: the softmax output layer over a batch derived from its
expression (dW, db, dX at two sets of sizes), every step checked, and the final result compared
with finite differences of the cost written here with plain loops (no symgrad code involved);
a corrupted step is rejected; shape mistakes are clean errors."""

import random
import tomllib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import mpmath
import pytest
from sympy import lambdify, preorder_traversal
from sympy.matrices.expressions import OneMatrix

from symgrad.derivation.engine import Problem, derive_problem, problem_from_identity
from symgrad.errors import UsageError
from symgrad.notation import GradientMatrix, MatVar, Vec
from symgrad.steps import Rule
from symgrad.verify import StepChecker, check_derivation
from symgrad.verify.concrete import ConcreteModel

LAYER_FILE = Path(__file__).resolve().parent.parent / "derivations" / "layer.toml"
LAYER = [SimpleNamespace(name=t["name"], variables=t["vars"], assume=t.get("assume", []), lhs=t["lhs"],
                         rhs=t["rhs"], sizes=t["sizes"])
         for t in tomllib.loads(LAYER_FILE.read_text())["identity"]]
# the concrete size tables (the symbolic one is proven in test_symbolic_matrices and by verify)
CASES = [(identity, sizes) for identity in LAYER for sizes in identity.sizes
         if all(isinstance(v, int) for v in sizes.values())]


def _id(case):
    identity, sizes = case
    return f"{identity.name}-" + "-".join(f"{k}{v}" for k, v in sizes.items())


@lru_cache(maxsize=None)
def _checked(index: int):
    identity, sizes = CASES[index]
    return check_derivation(derive_problem(problem_from_identity(identity, dict(sizes))))


# -- an independent cost: plain loops over entries ---------------------------------------------
def _cost(W, X, b, Y):
    """J = −(1/m) Σ_s Σ_i Y_is log softmax(W X + b)_is, with lists of lists and mpmath."""
    n, p, m = len(W), len(X), len(X[0])
    total = mpmath.mpf(0)
    for s in range(m):
        z = [mpmath.fsum(W[i][q] * X[q][s] for q in range(p)) + b[i] for i in range(n)]
        norm = mpmath.fsum(mpmath.exp(v) for v in z)
        total += mpmath.fsum(Y[i][s] * mpmath.log(mpmath.exp(z[i]) / norm) for i in range(n))
    return -total / m


def _point(rng, n, p, m):
    W = [[mpmath.mpf(rng.uniform(-2, 2)) for _ in range(p)] for _ in range(n)]
    X = [[mpmath.mpf(rng.uniform(-2, 2)) for _ in range(m)] for _ in range(p)]
    b = [mpmath.mpf(rng.uniform(-1, 1)) for _ in range(n)]
    columns = [[mpmath.mpf(rng.uniform(0.05, 1)) for _ in range(n)] for _ in range(m)]
    Y = [[columns[s][i] / mpmath.fsum(columns[s]) for s in range(m)] for i in range(n)]  # colsum(Y) = 1
    return {"W": W, "X": X, "b": b, "Y": Y}


def _finite_differences(values, wrt):
    """∂J/∂(every entry of wrt), by mpmath's numerical differentiation of ``_cost``."""
    def at(position):
        def along(t):
            moved = {k: [list(r) if isinstance(r, list) else r for r in v] for k, v in values.items()}
            if isinstance(moved[wrt][0], list):
                moved[wrt][position[0]][position[1]] = t
            else:
                moved[wrt][position[0]] = t
            return _cost(moved["W"], moved["X"], moved["b"], moved["Y"])
        start = values[wrt][position[0]][position[1]] if len(position) == 2 else values[wrt][position[0]]
        return mpmath.diff(along, start)
    table = values[wrt]
    if isinstance(table[0], list):
        return [[at((r, c)) for c in range(len(table[0]))] for r in range(len(table))]
    return [[at((r,))] for r in range(len(table))]


def _derived(derivation, values):
    """The last step's rhs (the identity's rhs in matrix notation), entry by entry, in the base
    variables, evaluated at ``values``."""
    concrete = ConcreteModel(derivation.model)
    matrix = concrete.explicit(derivation.steps[-1].rhs)
    base = derivation.model.base_entries()
    numbers = []
    for entry in base:
        table = values[str(entry.base)]
        numbers.append(table[int(entry.indices[0]) - 1][int(entry.indices[1]) - 1] if len(entry.indices) == 2
                       else table[int(entry.indices[0]) - 1])
    out = []
    for r in range(matrix.shape[0]):
        row = []
        for c in range(matrix.shape[1]):
            function = lambdify(base, concrete.base_form(matrix[r, c]), modules="mpmath")
            row.append(function(*numbers))
        out.append(row)
    return out


@pytest.mark.parametrize("index", range(len(CASES)), ids=[_id(c) for c in CASES])
def test_layer_identity_is_derived_every_step_proven(index):
    derivation = _checked(index)
    unproven = [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    assert not unproven
    rules = [s.rule for s in derivation.steps]
    assert rules[0] is Rule.DEFINITION and rules[-1] is Rule.IDENTITY
    for wanted in (Rule.QUOTIENT_RULE, Rule.CHAIN_RULE, Rule.DELTA_SUM, Rule.SPLIT_SUM, Rule.CANCEL,
                   Rule.COLLECT, Rule.ASSUMPTION):
        assert wanted in rules
    final = derivation.steps[-1]
    identity, sizes = CASES[index]
    wrt = identity.lhs.rsplit(",", 1)[1].strip(" )")
    assert isinstance(final.lhs, GradientMatrix) and final.lhs.x.base.name == wrt
    expected_shape = {"W": (sizes["n"], sizes["p"]), "X": (sizes["p"], sizes["m"]), "b": (sizes["n"], 1)}[wrt]
    assert tuple(int(d) for d in final.lhs.shape) == expected_shape


@pytest.mark.parametrize("index", range(len(CASES)), ids=[_id(c) for c in CASES])
def test_layer_result_matches_finite_differences_of_an_independent_cost(index):
    derivation = _checked(index)
    identity, sizes = CASES[index]
    wrt = identity.lhs.rsplit(",", 1)[1].strip(" )")
    with mpmath.workdps(30):
        values = _point(random.Random(f"{identity.name}{sizes}"), sizes["n"], sizes["p"], sizes["m"])
        derived = _derived(derivation, values)
        expected = _finite_differences(values, wrt)
    for d_row, e_row in zip(derived, expected, strict=True):
        for d, e in zip(d_row, e_row, strict=True):
            assert abs(d - e) < mpmath.mpf("1e-15") * max(1, abs(e)), (identity.name, derived, expected)


def test_the_dz_step_reads_as_a_minus_y_over_m():
    """∂L/∂Z is shown as a matrix, (A − Y)/m, before W's level, as in the hand-written layer."""
    derivation = _checked(0)
    forms = [s for s in derivation.steps if s.rule is Rule.MATRIX_FORM and isinstance(s.lhs, GradientMatrix)
             and s.lhs.x.base.name == "Z"]
    assert forms
    concrete = ConcreteModel(derivation.model)
    A, Y = (next(b for b in derivation.model.abbreviation_shapes if b.name == "A"),
            next(b for b in derivation.model.shapes if b.name == "Y"))
    explicit = concrete.explicit(forms[0].rhs)
    m = derivation.model.sizes["m"]
    for r in range(explicit.shape[0]):
        for c in range(explicit.shape[1]):
            assert (explicit[r, c] - (A[r + 1, c + 1] - Y[r + 1, c + 1]) / m).expand() == 0


def test_a_corrupted_matrix_step_is_rejected():
    """Each kind of step the matrix engine makes, doubled, is refuted (exactly and numerically);
    the true steps around it still prove."""
    derivation = derive_problem(problem_from_identity(LAYER[0], {"n": 3, "p": 2, "m": 2}))
    targets = {Rule.QUOTIENT_RULE, Rule.COLLECT, Rule.ASSUMPTION, Rule.DELTA_SUM, Rule.MATRIX_FORM, Rule.IDENTITY,
               Rule.LOG_RULE, Rule.DIFFERENTIATE, Rule.SPLIT_SUM}
    checker = StepChecker(derivation.model)
    corrupted = set()
    for k, step in enumerate(derivation.steps):
        seed = f"corrupt:{k}"
        if step.rule in targets:
            check = checker.check(replace(step, rhs=step.rhs * 2), seed)
            assert check.exact is not True and check.numeric is False, step.title
            corrupted.add(step.rule)
        assert checker.check(step, seed).proven, step.title
    assert corrupted == targets


@pytest.mark.parametrize("expression, variables, assume, sizes", [
    # a vector over another size name, with its own assumption
    ("grad(cross_entropy(softmax(z), y), z)", {"z": "m", "y": "m"}, ("sum(y) == 1",), {"m": 3}),
    # colsum, an elementwise function of a vector, a size used as a number
    ("grad(sum(exp(colsum(W @ X))) / p, X)", {"W": "n x p", "X": "p x m"}, (), {"n": 2, "p": 2, "m": 3}),
    # matrix times vector, sigmoid, elementwise product with a vector
    ("grad(sum(sigmoid(W @ x) * y), W)", {"W": "n x p", "x": "p", "y": "n"}, (), {"n": 2, "p": 3}),
    # a transpose inside the softmax's argument
    ("grad(cross_entropy(softmax(transpose(W) @ V), Y), V)", {"W": "n x p", "V": "n x m", "Y": "p x m"},
     ("colsum(Y) == 1",), {"n": 2, "p": 3, "m": 2}),
    # sum of every entry of a matrix, sizes as numbers
    ("grad(sum(W @ X) / (n * m), X)", {"W": "n x p", "X": "p x m"}, (), {"n": 2, "p": 3, "m": 2}),
    # rowsum of an elementwise function of a matrix, times a vector
    ("grad(dot(rowsum(exp(W)), b), W)", {"W": "n x p", "b": "n"}, (), {"n": 3, "p": 2}),
    # W reaches the loss along two paths; tanh and a power of a matrix
    ("grad(sum(tanh(W @ X) ** 2) + sum(W * W), W)", {"W": "n x p", "X": "p x m"}, (), {"n": 2, "p": 2, "m": 2}),
])
def test_other_matrix_compositions_are_derived_and_proven(expression, variables, assume, sizes):
    """The engine's entry rules, not a layer recipe: other compositions over matrices prove too."""
    derivation = check_derivation(derive_problem(Problem(expression, variables, assume=assume, sizes=sizes)))
    assert derivation.proven, [(s.title, s.check.detail) for s in derivation.steps if not s.check.proven]
    assert (Rule.ASSUMPTION in [s.rule for s in derivation.steps]) == bool(assume)


@pytest.mark.parametrize("expression, variables, message", [
    ("grad(sum(X @ W), W)", {"W": "n x p", "X": "p x m"}, "inner sizes m and n differ"),
    ("grad(sum(W + X), W)", {"W": "n x p", "X": "p x m"}, "sizes do not agree"),
    ("grad(sum(W @ X + c), W)", {"W": "n x p", "X": "p x m", "c": "p"}, "added to each column"),
    ("grad(sum(colsum(b)), b)", {"b": "n"}, "colsum takes one matrix"),
    ("grad(sum(W @ X), W)", {"W": "n by p", "X": "p x m"}, "cannot read the shape"),
    ("grad(cross_entropy(softmax(W @ X), Y), W)", {"W": "n x p", "X": "p x m", "Y": "m x n"}, "one shape"),
    ("grad(sum(W @ X), m)", {"W": "n x p", "X": "p x m", "m": "scalar"}, "cannot be a variable name"),
    ("grad(W @ X, W)", {"W": "n x p", "X": "p x m"}, "scalar"),
])
def test_shape_errors_are_clean(expression, variables, message):
    with pytest.raises(UsageError, match=message):
        derive_problem(Problem(expression, variables, sizes={"n": 2, "p": 2, "m": 2}))


def test_an_assumption_between_a_matrix_and_a_number_is_refused():
    with pytest.raises(UsageError, match="vector with a number"):
        derive_problem(Problem("grad(cross_entropy(softmax(W @ X), Y), W)",
                               {"W": "n x p", "X": "p x m", "Y": "n x m"}, assume=("Y == 1",),
                               sizes={"n": 2, "p": 2, "m": 2}))


def test_without_the_assumption_the_layer_stops_and_says_why():
    problem = Problem("grad(cross_entropy(softmax(W @ X + b), Y) / m, b)",
                      {"W": "n x p", "X": "p x m", "b": "n", "Y": "n x m"}, sizes={"n": 2, "p": 1, "m": 2})
    derivation = check_derivation(derive_problem(problem))
    assert derivation.proven
    assert Rule.ASSUMPTION not in [s.rule for s in derivation.steps]
    assert derivation.notes and "colsum(Y) == 1" in derivation.notes[0]


def test_matrix_notation_of_the_result():
    """dW reads (A − Y) Xᵀ / m: a product with a transpose, not entries."""
    derivation = _checked(0)
    form = [s for s in derivation.steps if s.rule is Rule.MATRIX_FORM][-1]
    assert isinstance(form.lhs.x, MatVar) and form.lhs.x.base.name == "W"
    from sympy import Transpose

    assert any(isinstance(t, Transpose) and getattr(t.arg, "base", None) is not None
               and t.arg.base.name == "X" for t in form.rhs.atoms(Transpose))
    bias = _checked(2)
    vector = [s for s in bias.steps if s.rule is Rule.VECTOR_FORM][-1]
    assert isinstance(vector.lhs.x, Vec)
    assert any(isinstance(part, OneMatrix) for part in preorder_traversal(vector.rhs))


# -- identity files over matrices: loaded, verified through their derivation, exported ----------
MATRIX_IDENTITY = """[[identity]]
name = "layer"
vars = {{ W = "n x p", X = "p x m", b = "n", Y = "n x m" }}
sizes = [{sizes}]
assume = ["colsum(Y) == 1"]
lhs = "grad(cross_entropy(softmax(W @ X + b), Y) / m, W)"
rhs = "{rhs}"
"""


@pytest.mark.parametrize("table", ["{ n = 2, p = 2, m = 2 }", '{ n = "symbolic", p = "symbolic", m = "symbolic" }',
                                   '{ n = "symbolic", p = 2, m = 3 }'])
@pytest.mark.parametrize("rhs, holds", [("(softmax(W @ X + b) - Y) @ transpose(X) / m", True),
                                        ("(softmax(W @ X + b) - Y) @ transpose(X)", False)])
def test_matrix_identity_files_verify_through_their_derivation(tmp_path, rhs, holds, table):
    """At fixed sizes, and for every size (symbolic, or mixed) in index notation: the true dW
    holds, the one without its 1/m fails."""
    from symgrad.identity_file import load_file
    from symgrad.verify.identity import check_identity

    path = tmp_path / "layer.toml"
    path.write_text(MATRIX_IDENTITY.format(sizes=table, rhs=rhs), encoding="utf-8")
    (identity,) = load_file(path)
    assert check_identity(identity).holds is holds


@pytest.mark.parametrize("sizes, message", [("{ n = 2, p = 2 }", "gives no value to m"),
                                            ("{ n = 2, p = 2, m = 0 }", "integer 1.."),
                                            ("", "lists no sizes")])
def test_matrix_identity_file_mistakes_are_one_line(tmp_path, sizes, message):
    from support import run

    path = tmp_path / "bad.toml"
    path.write_text(MATRIX_IDENTITY.format(sizes=sizes, rhs="Y"), encoding="utf-8")
    result = run("verify", str(path))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_matrix_shape_mistake_in_an_identity_file_is_located(tmp_path):
    from support import run

    path = tmp_path / "bad.toml"
    path.write_text(MATRIX_IDENTITY.format(sizes="{ n = 2, p = 3, m = 2 }", rhs="W @ Y"), encoding="utf-8")
    result = run("verify", str(path))
    assert result.returncode == 2 and "bad.toml:7:" in result.stderr, result.stderr


FIXED_AND_SYMBOLIC = '{ n = 3, p = 2, m = 2 }, { n = "symbolic", p = "symbolic", m = "symbolic" }'


@pytest.mark.parametrize("rhs, holds", [("(softmax(W @ X + b) - Y) @ transpose(X) / m", True),
                                        ("(softmax(W @ X + b) - Y) @ transpose(X)", False)])
def test_a_fixed_size_table_is_an_instance_of_the_proof_for_every_size(tmp_path, rhs, holds):
    """Listed beside the symbolic table, a fixed table takes its exact part from the proof for
    every size and evaluates each step there; a false rhs has no such proof and fails at the
    fixed size through its own derivation, with a counterexample."""
    from symgrad.identity_file import load_file
    from symgrad.verify.identity import check_identity

    path = tmp_path / "layer.toml"
    path.write_text(MATRIX_IDENTITY.format(sizes=FIXED_AND_SYMBOLIC, rhs=rhs), encoding="utf-8")
    (identity,) = load_file(path)
    fixed, general = check_identity(identity).results
    assert fixed.holds is holds and general.holds is holds
    assert ("an instance" in fixed.method) is holds, fixed.method
    if not holds:
        assert "differs from the rhs" in fixed.detail, fixed.detail


def test_an_instance_check_refutes_a_wrong_step_the_proof_let_through(tmp_path, monkeypatch):
    """The numbers at the fixed size are a real check, not a formality: a proof for every size
    whose next-to-last step is wrong (doubled) though marked proven, as a bug in the index
    prover would leave it, is refuted at the instance, and the fixed size is then decided by
    its own full check (this identity is true: it holds there, but not as an instance)."""
    from symgrad.identity_file import load_file
    from symgrad.verify import identity as identity_stage
    from symgrad.verify.identity import check_at_size

    path = tmp_path / "layer.toml"
    path.write_text(MATRIX_IDENTITY.format(sizes=FIXED_AND_SYMBOLIC, rhs="(softmax(W @ X + b) - Y) @ transpose(X) / m"),
                    encoding="utf-8")
    (identity,) = load_file(path)
    fixed, general = identity.sizes
    honest = check_at_size(identity, general)  # derived, checked and kept for its instances
    assert honest.holds is True
    assert "an instance" in check_at_size(identity, fixed).method
    key = identity_stage._derivation_key(identity, general)
    derivation = identity_stage._DERIVATIONS[key]
    last = derivation.steps[-2]
    wrong = derivation.with_steps([*derivation.steps[:-2], replace(last, rhs=last.rhs * 2), derivation.steps[-1]])
    assert wrong.proven  # the check marks say proven: only the numbers can tell
    monkeypatch.setitem(identity_stage._DERIVATIONS, key, wrong)
    result = check_at_size(identity, fixed)
    assert "an instance" not in result.method and result.holds is True, result


def test_a_fixed_size_never_pays_for_the_proof_for_every_size(tmp_path):
    """Checked before its symbolic table (nothing kept yet), a fixed table takes its own full
    route at once: it never derives the symbolic one inside its own time limit. Grouped for
    checking, the symbolic table goes first."""
    from symgrad.identity_file import load_file
    from symgrad.verify import identity as identity_stage
    from symgrad.identity_file import shared_proof_groups
    from symgrad.verify.identity import check_at_size

    path = tmp_path / "layer.toml"
    path.write_text(MATRIX_IDENTITY.format(sizes=FIXED_AND_SYMBOLIC + ", { n = 2, p = 3, m = 1 }",
                                           rhs="(softmax(W @ X + b) - Y) @ transpose(X) / m"), encoding="utf-8")
    (identity,) = load_file(path)
    identity_stage._DERIVATIONS.clear()
    result = check_at_size(identity, identity.sizes[0])
    assert result.holds is True and "an instance" not in result.method
    assert not identity_stage._DERIVATIONS  # the symbolic proof was not derived for it
    assert shared_proof_groups(identity, [0, 1, 2]) == [[1, 0, 2]]
