"""The certificate's whole vector/matrix sides (``lhs_matrix``/``rhs_matrix``), read with plain
SymPy and cross-checked entry by entry against the entry templates (``lhs``/``rhs``) of the same
step: two independent spellings of one side must agree at every entry.

The checker (``mismatches`` and what it calls) imports nothing from symgrad: it sympifies the
JSON text and reads every MatrixSymbol X as the matrix of the Indexed entries X[r, c] of the base
named X elsewhere in the file (not through the file's own ``matrix_symbols``, which a separate test
compares with the same reading). symgrad only makes the certificates.
"""

import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sympy import (
    Derivative,
    Function,
    ImmutableMatrix,
    Indexed,
    IndexedBase,
    MatAdd,
    MatMul,
    Matrix,
    MatrixSymbol,
    Rational,
    Symbol,
    Transpose,
    sympify,
)
from sympy.core.function import AppliedUndef
from sympy.matrices.expressions import MatrixExpr

from symgrad import derive, render

# -- the checker: plain SymPy only ------------------------------------------------------------------

HELD = Function("held")  # Derivative(f, x) held as an opaque value: doit would make ∂L/∂w_1 zero


def _hold(expr):
    return expr.replace(lambda e: isinstance(e, Derivative), lambda e: HELD(e.expr, *e.variables))


def _sizes(cert):
    """Each symbolic size as the symbol the texts use, for a value: (n ↦ 3)."""
    return {Symbol(name, integer=True, positive=True): value for name, value in cert.get("at", {}).items()}


def _read(cert, text):
    """A text of the certificate: sympified, derivatives held, symbolic sizes at their values."""
    return _hold(sympify(text)).xreplace(_sizes(cert))


_BASES: dict[int, tuple] = {}  # id(cert) → (cert, kept alive so the id stays its own, its bases)


def bases(cert):
    """Every IndexedBase the certificate's templates and definitions mention, by name, with the
    number of indices its entries take (read once per certificate: sympifying every text is most
    of a check)."""
    if id(cert) not in _BASES or _BASES[id(cert)][0] is not cert:
        _BASES[id(cert)] = (cert, _read_bases(cert))
    return _BASES[id(cert)][1]


def _read_bases(cert):
    texts = [t for step in cert["steps"] for t in (step["lhs"], step["rhs"])]
    texts += [t for pair in cert["definitions"].items() for t in pair] + cert.get("base_variables", [])
    texts += [t["lhs"] for t in cert.get("definition_templates", [])]
    found = {}
    for text in texts:
        for entry in sympify(text).atoms(Indexed):
            found[str(entry.base)] = (entry.base, len(entry.indices))
    return found


def symbol_matrix(cert, symbol):
    """A MatrixSymbol X as the explicit matrix of X[r, c] (X[r] for a vector), 1-based."""
    base, count = bases(cert)[symbol.name]
    rows, cols = (int(d) for d in symbol.shape)
    if count == 1:
        assert cols == 1, symbol
        return ImmutableMatrix(rows, 1, lambda r, c: base[r + 1])
    return ImmutableMatrix(rows, cols, lambda r, c: base[r + 1, c + 1])


def whole(cert, text):
    """A matrix field as an explicit matrix (a scalar as 1 × 1), every Sum unrolled."""
    expr = _read(cert, text)
    if not getattr(expr, "is_Matrix", False):
        return Matrix([[expr.doit()]])
    expr = expr.xreplace({m: symbol_matrix(cert, m) for m in expr.atoms(MatrixSymbol)})
    return expr.as_explicit().applyfunc(lambda e: e.doit())


def stated(cert, step, side):
    """What ``lhs``/``rhs`` say at every entry: the template at row_index = r + 1 and col_index
    = c + 1 over the matrix record's shape, or the explicit side of a step without indices."""
    expr = _read(cert, step[side])
    if not step["free_indices"]:
        if isinstance(expr, MatrixExpr) or getattr(expr, "is_Matrix", False):
            return expr.doit().as_explicit().applyfunc(lambda e: e.doit())
        return Matrix([[expr.doit()]])
    record = step["matrix"]  # a step with indices and matrix fields must say where they go
    rows, cols = (int(sympify(d).subs(cert.get("at", {}))) for d in record["shape"])
    for name, size in ((record["row_index"], record["shape"][0]), (record["col_index"], record["shape"][1])):
        assert name is None or step["index_ranges"][name] == [1, size], step["title"]
    by_name = {str(x): x for x in expr.free_symbols}

    def instance(r, c):
        at = {by_name[name]: value + 1 for name, value in ((record["row_index"], r), (record["col_index"], c))
              if name is not None and name in by_name}
        return expr.xreplace(at).doit()
    return Matrix(rows, cols, instance)


def _value(expr, values, rng):
    """``expr`` at random rationals in (0, 1) for every entry, held derivative and scalar."""
    atoms = expr.atoms(AppliedUndef) | expr.atoms(Indexed) | {s for s in expr.free_symbols if isinstance(s, Symbol)}
    for atom in sorted(atoms, key=str):
        values.setdefault(atom, Rational(rng.randint(1, 99), 100))
    return expr.xreplace({a: values[a] for a in atoms if isinstance(a, AppliedUndef)}).xreplace(values)


def mismatches(cert, points=2, seed=0):
    """(step title, side, entry) wherever lhs_matrix/rhs_matrix differ from lhs/rhs, compared
    numerically (30 digits) at ``points`` random points; a shape disagreement is one mismatch."""
    rng = random.Random(seed)
    wrong = []
    for step in cert["steps"]:
        for side in ("lhs", "rhs"):
            if f"{side}_matrix" not in step:
                continue
            matrix, template = whole(cert, step[f"{side}_matrix"]), stated(cert, step, side)
            if matrix.shape != template.shape:
                wrong.append((step["title"], side, matrix.shape))
                continue
            for (r, c), (left, right) in zip(((r, c) for r in range(matrix.rows) for c in range(matrix.cols)),
                                              zip(matrix, template)):
                for _ in range(points):
                    values = {}
                    difference = (_value(left, values, rng) - _value(right, values, rng)).evalf(30)
                    scale = 1 + abs(_value(right, values, rng).evalf(30))
                    if not abs(difference) < 1e-20 * scale:
                        wrong.append((step["title"], side, (r, c)))
                        break
    return wrong


def matrix_steps(cert):
    return [step for step in cert["steps"] if "lhs_matrix" in step or "rhs_matrix" in step]


# -- the derivations ------------------------------------------------------------------------------

BCE = {"expr": "binary_cross_entropy(sigmoid(X @ w), y)", "wrt": "w", "vars": "X=n x p,w=p,y=n"}
MLP = {"expr": "cross_entropy(softmax(W2 @ tanh(W1 @ x + b1) + b2), y)", "wrt": "W1",
       "vars": "W1=h x p,x=p,b1=h,W2=n x h,b2=n,y=n", "assume": "sum(y) == 1"}
MSE = {"expr": "mse(sigmoid(z), y)", "wrt": "z", "vars": "z=n,y=n"}
CASES = {
    "bce": lambda: derive(**BCE, sizes="n=2,p=2", check=False),
    "mse n=3": lambda: derive(**MSE, n=3, check=False),
    "mse n=1": lambda: derive(**MSE, n=1, check=False),
    "two-layer softmax by W1": lambda: derive(**MLP, sizes="n=2,h=2,p=2", check=False),
    "softmax-layer 3,2,2": lambda: derive("softmax-layer", n=3, n_prev=2, m=2, check=False),
    "softmax-cross-entropy n=3": lambda: derive(n=3, check=False),
    "network tanh/softmax": lambda: derive("network", hidden=["tanh"], sizes="n0=2,n1=2,n2=2,m=2", check=False),
    # 1 × 1 sides with 𝟙[Z > 0] entry by entry (SymPy's ElementwiseApplyFunction refuses Heaviside there)
    "network relu/sigmoid 1x1": lambda: derive("network", hidden=["relu"], output_layer="sigmoid",
                                               sizes="n0=2,n1=1,n2=1,m=1", check=False),
    "network g/identity": lambda: derive("network", hidden=["g"], output_layer="identity",
                                         sizes="n0=2,n1=2,n2=1,m=2", check=False),
}
SYMBOLIC = {  # at symbolic sizes, re-checked at these values
    "mse symbolic": (lambda: derive(**MSE, n="symbolic", check=False), [{"n": 3}, {"n": 1}]),
    "softmax-layer symbolic": (lambda: derive("softmax-layer", n="symbolic", n_prev="symbolic", m="symbolic",
                                              check=False), [{"n": 3, "n_prev": 2, "m": 2}]),
}


def certificate_of(derivation, at=None):
    cert = json.loads(render(derivation, "json"))
    if at:
        cert["at"] = at  # the checker's own note: the values of the symbolic sizes
    return cert


def _has_matrix_side(step):
    return any(isinstance(side, MatrixExpr) for side in (step.lhs, step.rhs))


@pytest.mark.parametrize("name", list(CASES))
def test_every_matrix_side_matches_its_templates_at_every_entry(name):
    derivation = CASES[name]()
    cert = certificate_of(derivation)
    # exactly the steps with a vector or matrix side have the fields, and there are some
    assert [("lhs_matrix" in s, "rhs_matrix" in s) for s in cert["steps"]] == \
        [(_has_matrix_side(s),) * 2 for s in derivation.steps]
    assert matrix_steps(cert)
    assert all("matrix" in s or not s["free_indices"] for s in matrix_steps(cert))
    assert mismatches(cert) == []


@pytest.mark.parametrize("name", list(SYMBOLIC))
def test_symbolic_matrix_sides_match_their_templates_at_sizes(name):
    build, values = SYMBOLIC[name]
    derivation = build()
    for at in values:
        cert = certificate_of(derivation, at)
        assert matrix_steps(cert) and all("matrix" in s for s in matrix_steps(cert))
        assert mismatches(cert) == [], at


@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(n=st.integers(1, 3), p=st.integers(1, 3))
@example(n=1, p=1)  # every side 1 × 1
@example(n=3, p=2)  # X not square
def test_bce_matrix_sides_at_drawn_sizes(n, p):
    cert = certificate_of(derive(**BCE, sizes=f"n={n},p={p}", check=False))
    final = cert["steps"][-1]
    X, s, y = MatrixSymbol("X", n, p), MatrixSymbol("s", n, 1), MatrixSymbol("y", n, 1)
    assert sympify(final["rhs_matrix"]) == MatMul(Transpose(X), MatAdd(s, MatMul(-1, y)))
    assert sympify(final["lhs_matrix"]).shape == (p, 1)
    assert mismatches(cert, points=1) == []


def test_the_reported_command_ends_on_the_vector_form():
    """The user's command: the JSON's last step has ∂L/∂w = Xᵀ(s − y) as SymPy reads it."""
    result = subprocess.run([sys.executable, "-m", "symgrad", "derive", "--expr", BCE["expr"], "--wrt", "w",
                             "--vars", BCE["vars"], "--sizes", "n=2,p=2", "--no-cache", "--format", "json"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    cert = json.loads(result.stdout)
    final = cert["steps"][-1]
    X, s, y = MatrixSymbol("X", 2, 2), MatrixSymbol("s", 2, 1), MatrixSymbol("y", 2, 1)
    assert sympify(final["rhs_matrix"]) == MatMul(Transpose(X), MatAdd(s, MatMul(-1, y)))  # as written
    assert sympify(final["rhs_matrix"]).doit() == (X.T * (s - y)).doit()  # as SymPy writes Xᵀ(s − y)
    gradient = sympify(final["lhs_matrix"])
    L, w = Symbol("L", real=True), IndexedBase(Symbol("w", real=True))
    assert gradient.shape == (2, 1)
    assert list(gradient.as_explicit()) == [Derivative(L, w[1]), Derivative(L, w[2])]
    assert mismatches(cert) == []
    # the top-level results: the answer without knowing which field of which step holds it
    (result,) = cert["results"]
    assert result["step"] == len(cert["steps"]) and result["proven"] is True and result["free_indices"] == []
    assert sympify(result["rhs"]).doit() == (X.T * (s - y)).doit()


def test_the_results_of_a_layer_are_its_three_gradients_whole():
    """dW, db and dA_prev of the softmax layer at n = 3, n_prev = 2, m = 2: each shaped like its
    variable (3 × 2, 3 × 1, 2 × 2) and equal, entry by entry, to the matrix that derivation's
    own step states (the entry templates, read by ``stated``)."""
    cert = certificate_of(CASES["softmax-layer 3,2,2"]())
    results = cert["results"]
    assert [sympify(r["lhs"]).shape for r in results] == [(3, 2), (3, 1), (2, 2)]
    for result in results:
        step = cert["steps"][result["step"] - 1]
        assert whole(cert, result["rhs"]).shape == sympify(result["lhs"]).shape
        if step["free_indices"]:
            assert whole(cert, result["rhs"]) - stated(cert, step, "rhs") == Matrix.zeros(*whole(cert, result["rhs"]).shape)


# -- the checker rejects what is wrong --------------------------------------------------------------

@pytest.mark.parametrize("case, field, old, new", [
    # Xᵀ(s − y) → X(s − y): X is 2 × 2, so only the entries can tell
    ("bce", "rhs_matrix", "Transpose(MatrixSymbol('X', Integer(2), Integer(2)))",
     "MatrixSymbol('X', Integer(2), Integer(2))"),
    # s − y → s + y
    ("bce", "rhs_matrix", "MatMul(Integer(-1), MatrixSymbol('y'", "MatMul(Integer(1), MatrixSymbol('y'"),
    # ∂L/∂w → ∂L/∂u (the gradient of another variable)
    ("bce", "lhs_matrix", "IndexedBase(Symbol('w', real=True))", "IndexedBase(Symbol('u', real=True))"),
    # ∂J/∂W = (A − Y) A_prevᵀ / m → (A − Y) A_prev / m (A_prev is 2 × 2)
    ("softmax-layer 3,2,2", "rhs_matrix", "Transpose(MatrixSymbol('A_prev', Integer(2), Integer(2)))",
     "MatrixSymbol('A_prev', Integer(2), Integer(2))"),
])
def test_a_corrupted_matrix_field_is_a_mismatch(case, field, old, new):
    cert = certificate_of(CASES[case]())
    step = next(s for s in reversed(cert["steps"]) if old in s.get(field, ""))
    step[field] = step[field].replace(old, new, 1)
    wrong = mismatches(cert)
    assert wrong and all(title == step["title"] and side == field[:3] for title, side, _ in wrong)


def test_a_wrong_shape_is_a_mismatch():
    cert = certificate_of(CASES["bce"]())
    final = cert["steps"][-1]
    # (s − y)ᵀ X: the right entries, as a row
    final["rhs_matrix"] = ("MatMul(Transpose(MatAdd(MatrixSymbol('s', Integer(2), Integer(1)), MatMul(Integer(-1), "
                           "MatrixSymbol('y', Integer(2), Integer(1))))), MatrixSymbol('X', Integer(2), Integer(2)))")
    assert mismatches(cert) == [(final["title"], "rhs", (1, 2))]


# -- the table of matrix symbols ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bce", "softmax-layer 3,2,2", "network relu/sigmoid 1x1"])
def test_matrix_symbols_list_each_symbol_as_its_indexed_entries(name):
    cert = certificate_of(CASES[name]())
    used = {m for step in matrix_steps(cert) for side in ("lhs_matrix", "rhs_matrix")
            for m in sympify(step[side]).atoms(MatrixSymbol)}
    table = {sympify(key): sympify(value) for key, value in cert["matrix_symbols"].items()}
    assert set(table) == used
    for symbol, entries in table.items():
        assert entries.shape == symbol.shape
        assert entries.as_explicit() == symbol_matrix(cert, symbol)


# -- determinism ----------------------------------------------------------------------------------

def test_two_certificates_of_one_derivation_are_byte_identical():
    """Two processes with different hash seeds (set order, memory addresses): the same bytes."""
    command = [sys.executable, "-m", "symgrad", "derive", "--expr", MLP["expr"], "--wrt", "W1",
               "--vars", MLP["vars"], "--sizes", "n=2,h=2,p=2", "--assume", MLP["assume"], "--no-cache",
               "--format", "json"]
    outputs = []
    for seed in ("1", "2"):
        result = subprocess.run(command, capture_output=True, timeout=300, check=False,
                                env={**os.environ, "PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert b'"rhs_matrix"' in outputs[0]
    # and in one process, twice
    assert render(CASES["softmax-layer 3,2,2"](), "json") == render(CASES["softmax-layer 3,2,2"](), "json")
