"""Stage 4 — the JSON certificate: everything needed to re-check the derivation with SymPy
alone.

A step written as an index template (∂a_i/∂z_j = a_i(δ_ij − a_j)) is exported as written, with
``free_indices`` and their ``index_ranges``: re-check it at every index value. Any other side is
an explicit object: a Matrix for a vector/matrix side, or an unevaluated product of explicit
matrices where the step writes a product. Sums stay SymPy ``Sum`` objects over concrete ranges,
so the file grows with the number of entries, not entries · n. ``definitions`` give each
abbreviation in the base variables, ``direct_definitions`` one level down (what ∂L/∂a_i
differentiates).

A step whose side is a vector or matrix also has that side whole, as the step writes it
(``lhs_matrix``/``rhs_matrix``: ∂L/∂w = Xᵀ(s − y)), in SymPy's own matrix classes: each whole
variable a ``MatrixSymbol`` (``matrix_symbols`` gives its entries), each derivative ∂L/∂W or
Jacobian ∂a/∂z a ``FunctionMatrix`` of its entries. They are the step's own lhs/rhs in other
classes, not a second derivation: entry (r, c) of each is the template's instance.
"""

from __future__ import annotations

import json

from sympy import (
    Basic,
    FunctionMatrix,
    ImmutableMatrix,
    Lambda,
    MatrixSymbol,
    Symbol,
    preorder_traversal,
    srepr,
)
from sympy.matrices.expressions import MatrixExpr
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.printing.repr import ReprPrinter

from symgrad.model import TemplateMatrix
from symgrad.notation import (
    Entrywise,
    GradientMatrix,
    MatVar,
    PartialD,
    Vec,
    index_symbols,
    plain_sympy,
)
from symgrad.output.latex import PaperLatexPrinter, step_lines
from symgrad.steps import Derivation
from symgrad.verify.concrete import KEEP, ConcreteModel
from symgrad.verify.index_form import IndexProver, NotGeneric, readable

FORMAT_VERSION = 1
DERIVATIVES = ("∂f/∂x for a base variable x: f written in the base variables (definitions), then "
               "differentiated. For an abbreviation x (a_i, Z_js): f as a function of x's whole "
               "family, i.e. abbreviations of other families unfolded by direct_definitions until "
               "only x's family and base variables remain, then differentiated.")


def certificate(derivation: Derivation) -> dict:
    model = derivation.model
    printer = PaperLatexPrinter()
    latex_lines = [line for _, line in step_lines(derivation, printer)]
    srepr_memo = _MemoReprPrinter()
    if model.symbolic:
        from symgrad.verify.symbolic import symbolic_certificate_parts

        definitions, direct, assumptions, sides = symbolic_certificate_parts(derivation)
        sides = [(*side, _matrix_record(step, side[2])) for step, side in zip(derivation.steps, sides)]
        base = []
        templates = None
    else:
        concrete = ConcreteModel(model)
        entries = model.abbreviation_entries()
        unfolder = IndexProver(model)
        if len(entries) <= MAX_LISTED_DEFINITIONS:
            definitions = {srepr(e): srepr(concrete.explicit(readable(unfolder.base_form(e)), sums=KEEP))
                           for e in entries}
            direct = {srepr(e): srepr(concrete.explicit(model.definition_for(e), sums=KEEP))
                      for e in entries}
        else:  # n entries of n-term sums: the templates below say the same in O(1)
            definitions, direct = {}, {}
        templates = [{"lhs": srepr(d.template_lhs()), "rhs": srepr(concrete.explicit(d.body, sums=KEEP)),
                      "free_indices": [str(x) for x in d.index],
                      "index_ranges": {str(x): [1, _size_text(model.range_of(x))] for x in d.index}}
                     for d in model.definitions]
        assumptions = {name: srepr(concrete.explicit(a.equation, sums=KEEP))
                       for name, a in model.assumptions.items()}
        sides = []
        for step in derivation.steps:
            matrix = None
            if step.free_indices:  # a template: exported as written, with its index ranges
                lhs, rhs = (srepr_memo.doprint(plain_sympy(side)) for side in (step.lhs, step.rhs))
                free = step.free_indices
            elif (template := _matrix_template(unfolder, step)) is not None:
                # a matrix whose every entry follows one rule (the n × n Jacobian, a product of
                # such matrices): its entry (row, col) as a template over the index ranges
                lhs, rhs, free, matrix = template
                lhs, rhs = srepr_memo.doprint(lhs), srepr_memo.doprint(rhs)
            else:
                lhs, rhs = (_side(concrete.side_instances(side, (), KEEP), srepr_memo)
                            for side in (step.lhs, step.rhs))
                free = ()
            sides.append((lhs, rhs, free, matrix))
        base = [srepr(e) for e in model.base_entries()]
    steps = []
    matrix_symbols: dict[MatrixSymbol, FunctionMatrix] = {}  # filled by _whole_sides
    for step, (lhs, rhs, free, matrix), latex in zip(derivation.steps, sides, latex_lines):
        check = step.check
        steps.append({
            "title": _markup(step.title),
            "rule": step.rule.value,
            "lhs": lhs,
            "rhs": rhs,
            "free_indices": [str(i) for i in free],
            "index_ranges": {str(i): [1, _size_text(model.range_of(i))] for i in free},
            **({"matrix": matrix} if matrix else {}),
            **_whole_sides(step, srepr_memo, matrix_symbols),
            "latex": latex,
            "assumptions": list(step.assumptions),
            "check": {"exact": check.exact if check else None,
                      "numeric": check.numeric if check else None,
                      "scope": check.scope if check else "",
                      "detail": check.detail if check else "not checked"},
        })
    return {
        "format": "symgrad-certificate",
        "version": FORMAT_VERSION,
        "derivation": derivation.name,
        "n": "symbolic" if model.symbolic else model.sizes.get("n"),
        "sizes": {k: (v if isinstance(v, int) else "symbolic") for k, v in model.sizes.items()},
        "convention": _markup(derivation.convention),
        "base_variables": base,
        "definitions": definitions,
        "direct_definitions": direct,
        **({"definition_templates": templates, "reading": READING} if templates is not None else {}),
        "assumptions": assumptions,
        "assumption_index_ranges": {
            name: {str(x): [1, _size_text(model.range_of(x))] for x in index_symbols(a.equation)
                   if x not in model.parameters}
            for name, a in model.assumptions.items()},
        # one fixed, unknown value each (K of y = e_K), the same in every step: proven for every value
        **({"parameters": {str(x): [1, _size_text(bound)] for x, bound in model.parameters.items()}}
           if model.parameters else {}),
        "derivatives": DERIVATIVES,
        # each MatrixSymbol of lhs_matrix/rhs_matrix (key: its srepr) as the matrix of its entries
        "matrix_symbols": dict(sorted((srepr_memo.doprint(symbol), srepr_memo.doprint(entries))
                                      for symbol, entries in matrix_symbols.items())),
        "matrix_reading": MATRIX_READING,
        "steps": steps,
        "proven": derivation.proven,
        "results": _results(derivation, steps),
        "notes": [_markup(note) for note in derivation.notes],
    }


def _results(derivation: Derivation, steps: list[dict]) -> list[dict]:
    """The derivation's results (the ``result:`` lines of the terminal: dW, db, dA_prev of a
    layer, or the gradient), each as its step says it, whole where the step has whole sides:
    a reader that wants the answer need not know that ``steps[-1]["rhs"]`` may be an entry
    template while ``rhs_matrix`` holds the vector. ``step`` is its number (from 1)."""
    from symgrad.output.status import result_steps

    numbers = [next(k for k, s in enumerate(derivation.steps) if s is step) for step in result_steps(derivation)]
    results = []
    for k in numbers:
        record, check = steps[k], derivation.steps[k].check
        whole = "lhs_matrix" in record
        results.append({
            "step": k + 1,
            "lhs": record["lhs_matrix"] if whole else record["lhs"],
            "rhs": record["rhs_matrix"] if whole else record["rhs"],
            "free_indices": [] if whole else record["free_indices"],
            "index_ranges": {} if whole else record["index_ranges"],
            "latex": record["latex"],
            "proven": bool(check and check.proven),
        })
    return results


MAX_LISTED_DEFINITIONS = 32  # abbreviation entries listed one by one in definitions / direct_definitions
# (each of n entries is an n-term sum: beyond this the templates say the same in O(1))
READING = (
    "To re-check from this file alone (SymPy and numpy, no symgrad): sympify every srepr text. "
    "definition_templates give each abbreviation's definition one level down, as a template over "
    "its index ranges (a_i := e^{z_i}/Σ_k e^{z_k} for i = 1..n); definitions (base variables) and "
    "direct_definitions (one level) list the same per entry at small sizes. A step with "
    "free_indices states lhs = rhs at every value of its indices over index_ranges; a step with "
    "'matrix' is a matrix side read at its entry (row_index, col_index), e.g. the n × n Jacobian as "
    "one template. Expand each template at every index value, unroll each Sum over its concrete "
    "range, evaluate derivatives as 'derivatives' says, substitute the assumptions, and compare "
    "(exactly, or numerically at random points). 'check' says how symgrad checked the step: "
    "'in index form' means proven once for every index value in the range. The names in "
    "free_indices, index_ranges, row_index and col_index are those of the srepr texts' index "
    "symbols, which are positive integers (Symbol('i', integer=True, positive=True)): substitute "
    "values for those, since a bare Symbol('i') is another symbol. A step whose side is "
    "a vector or matrix also states it whole in lhs_matrix and rhs_matrix: see matrix_reading.")
MATRIX_TEMPLATE = ("a matrix side written by one rule: lhs and rhs are its entry (row, col) as "
                   "templates in free_indices; the matrix is every instance over index_ranges, row "
                   "index down, column index across (a dimension of size 1 has no index); "
                   "lhs_matrix and rhs_matrix are the same sides whole (see matrix_reading)")
MATRIX_READING = (
    "lhs_matrix and rhs_matrix (in every step whose side is a vector or matrix) are the step's "
    "sides whole, as it writes them (∂L/∂w = Xᵀ(s − y)), in SymPy's own matrix classes: srepr "
    "text that sympify reads. Each MatrixSymbol X stands for the matrix of X's Indexed entries: "
    "matrix_symbols gives it (the key is the MatrixSymbol's srepr) as a FunctionMatrix, whose "
    "entry (row, col) counts from 0 as SymPy does, X[row + 1, col + 1] (X[row + 1] for a "
    "vector). A derivative is the FunctionMatrix of its entries: ∂L/∂W shaped like W, entry "
    "(row, col) Derivative(L, W[row + 1, col + 1]); ∂a/∂z in numerator layout, entry (row, col) "
    "Derivative(a[row + 1], z[col + 1]); f applied entry by entry, f(M[row, col]). To re-check, "
    "replace every MatrixSymbol by its matrix and make the side explicit: its entry (r, c) is "
    "the step's lhs (rhs) at row_index = r + 1 and col_index = c + 1 of the 'matrix' record, or "
    "entry (r, c) of the explicit lhs (rhs) of a step without free indices (a 1 × 1 side: its "
    "one entry). Hold each Derivative as it is while doing so (SymPy's doit would make "
    "Derivative(L, w[1]) of the bare symbol L zero); it means what 'derivatives' says.")


def _matrix_template(prover: IndexProver, step):
    """(lhs, rhs, free, description) of a matrix-level step (no free indices, a side an n × m
    matrix) read at a generic entry, when every entry of both sides follows one rule (matrix
    notation, templates and their products); None when a side holds written-out entries."""
    if _matrix_shape(step) in (None, (1, 1)):
        return None
    try:
        lhs, rhs, free = prover.index_form(step)
    except (NotGeneric, TypeError, ValueError):
        return None
    return plain_sympy(lhs), plain_sympy(rhs), free, _matrix_record(step, free)


def _matrix_shape(step) -> tuple | None:
    """The shape of a step's vector or matrix side; None when both sides are scalars."""
    sides = [side for side in (step.lhs, step.rhs) if isinstance(side, MatrixExpr)]
    return tuple(sides[0].shape) if sides else None


def _matrix_record(step, free) -> dict | None:
    """The 'matrix' record of a step whose matrix side (not 1 × 1) is read at its entry (row,
    col) in the free indices ``free``, row index first; None for any other step."""
    shape = _matrix_shape(step)
    if shape is None or shape == (1, 1) or not free:
        return None
    rows, cols = (_size_text(d) for d in shape)
    names = iter(str(x) for x in free)
    return {"shape": [rows, cols],
            "row_index": next(names) if rows != 1 else None,
            "col_index": next(names) if cols != 1 else None,
            "reading": MATRIX_TEMPLATE}


# the entry (row, col) of a FunctionMatrix, 0-based as SymPy counts (entry templates are 1-based)
ROW, COL = Symbol("row", integer=True, nonnegative=True), Symbol("col", integer=True, nonnegative=True)
_NOTATION = (Vec, MatVar, TemplateMatrix, Entrywise, GradientMatrix, PartialD)


def _whole_sides(step, printer: _MemoReprPrinter, matrix_symbols: dict) -> dict:
    """``lhs_matrix``/``rhs_matrix`` of a step with a vector or matrix side: its own lhs and rhs
    in SymPy's classes (``_sympy_matrix``); nothing for a step of scalars or templates."""
    if _matrix_shape(step) is None:
        return {}
    return {f"{name}_matrix": printer.doprint(_sympy_matrix(side, matrix_symbols))
            for name, side in (("lhs", step.lhs), ("rhs", step.rhs))}


def _sympy_matrix(expr: Basic, matrix_symbols: dict) -> Basic:
    """``expr`` with symgrad's matrix notation in SymPy's own classes, each object by the entries
    it defines: a whole variable (``Vec``, ``MatVar``) as a ``MatrixSymbol`` of its name, recorded
    in ``matrix_symbols`` with the ``FunctionMatrix`` of its entries; ∂L/∂W, ∂a/∂z, a template
    matrix and f applied entry by entry as the ``FunctionMatrix`` of their entries; Σ_{i≠j} as
    ``plain_sympy`` writes it. SymPy's own classes (MatMul, Transpose, HadamardProduct, OneMatrix
    …) stay as they are."""
    def entries(matrix: MatrixExpr, entry: Basic) -> FunctionMatrix:
        return FunctionMatrix(*matrix.shape, Lambda((ROW, COL), entry))

    def whole(e: MatrixExpr) -> MatrixExpr:
        if isinstance(e, (Vec, MatVar)):
            symbol = MatrixSymbol(str(e.base), *e.shape)
            matrix_symbols[symbol] = entries(e, e._entry(ROW, COL))
            return symbol
        if isinstance(e, TemplateMatrix):  # its template is 1-based
            return entries(e, e.entry_template(ROW + 1, COL + 1))
        if isinstance(e, Entrywise):  # f of the argument's entry: SymPy's ElementwiseApplyFunction
            # has no name sympify knows, and applies f to a 1 × 1 matrix itself (Heaviside raises)
            return entries(e, e._applied(MatrixElement(_sympy_matrix(e.expr, matrix_symbols), ROW, COL)))
        return entries(e, e._entry(ROW, COL))  # ∂L/∂W shaped like W, ∂a/∂z in numerator layout

    found = {}
    walk = preorder_traversal(expr)
    for e in walk:
        if isinstance(e, _NOTATION):
            found[e] = whole(e)
            walk.skip()  # what is inside is written by the whole
    return plain_sympy(expr.xreplace(found))


def _markup(markup: str) -> str:
    """A title or note with its names written in plain LaTeX ($\\partial L/\\partial a_{j}$)."""
    from symgrad.output.latex import PaperLatexPrinter, identifiers_as_math, names_as_latex

    return names_as_latex(identifiers_as_math(markup), PaperLatexPrinter())


def _size_text(bound) -> int | str:
    return int(bound) if bound.is_Integer else str(bound)


class _MemoReprPrinter(ReprPrinter):
    """SymPy's ``srepr``, remembering the text of every subexpression: an n × n Jacobian repeats
    a_1 … a_n and z_1 … z_n thousands of times, and consecutive steps share whole sides."""

    def __init__(self):
        super().__init__()
        self._memo: dict[Basic, str] = {}

    def _print(self, expr, **kwargs) -> str:
        if not isinstance(expr, Basic):
            return super()._print(expr, **kwargs)
        if expr not in self._memo:
            self._memo[expr] = super()._print(expr, **kwargs)
        return self._memo[expr]

    # two objects SymPy's srepr writes with names ``sympify`` does not know (Str, MatrixElement)
    def _print_MatrixSymbol(self, expr, **kwargs) -> str:
        return f"MatrixSymbol({expr.name!r}, {self._print(expr.rows)}, {self._print(expr.cols)})"

    def _print_MatrixElement(self, expr, **kwargs) -> str:
        return f"{self._print(expr.parent)}[{self._print(expr.i)}, {self._print(expr.j)}]"


def _side(value: Basic, printer: _MemoReprPrinter) -> str:
    """A 1 × 1 side is its single entry; anything else stays a Matrix (or a product of them)."""
    if isinstance(value, ImmutableMatrix) and value.shape == (1, 1):
        return printer.doprint(value[0, 0])
    return printer.doprint(value)


def render_json(derivation: Derivation) -> str:
    return json.dumps(certificate(derivation), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


