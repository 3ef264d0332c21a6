"""Matrix notation for entry formulas and for expression trees — the printer's half of the
matrix engine: ``Σ_s (A_js − Y_js) X_qs / m`` reads as ``(A − Y) Xᵀ / m``.

``read_matrix`` turns a component formula in free indices (j, q) into a matrix expression of
``MatVar``/``Vec``/``MatMul``/``Transpose``/``OneMatrix``, or None when a term is not a
multiple of one entry, a sum of entries, or a sum over an inner index (a matrix product). It
also says *why* each sum is a product, for the step's title. ``tree_matrix`` writes an
expression of the language (an identity's rhs) in the same notation. Both are notation only:
the step that states the matrix form is checked entry by entry like every other.
"""

from __future__ import annotations

from sympy import Add, Basic, Expr, Function, Indexed, Integer, Lambda, Mul, Pow, Rational, Sum, Symbol, Transpose
from sympy.matrices.expressions import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixExpr, OneMatrix

from symgrad.derivation.local import bold, tex
from symgrad.notation import Entrywise, MatVar, Vec, math_markup
from symgrad.tree import Apply, Arith, MatProduct, Negate, Node, Number, Size, Var


def read_matrix(expr: Expr, free: tuple, ranges: dict, reasons: list[str] | None = None) -> MatrixExpr | None:
    """``expr`` (free indices ``free``: (row,) or (row, col)) as a matrix expression, or None.
    ``ranges``: each index → its upper bound. ``reasons`` collects what turned sums into
    products (LaTeX fragments)."""
    reasons = [] if reasons is None else reasons
    row, col = (free + (None,))[:2]
    try:
        return _read(expr, row, col, ranges, reasons)
    except _Unreadable:
        return None


class _Unreadable(ValueError):
    pass


def _read(expr: Basic, row, col, ranges: dict, reasons: list[str]) -> MatrixExpr:
    wanted = [x for x in (row, col) if x is not None]
    if not expr.has(*wanted):  # a constant term (the 1 in 1 − s): that number in every entry
        ones = _ones(row, col, ranges)
        if expr.has(Sum):  # a number that is itself a product of vectors: (aᵀ V w) in every entry
            if expr.could_extract_minus_sign():
                return -_read(-expr, row, col, ranges, reasons)
            number = _scalar(expr, ranges, reasons)
            if number is not None:
                return MatMul(ones, number)
        return ones if expr == 1 else MatMul(expr, ones)
    if col is not None and not expr.has(row):  # the same in every row: 1 (…)ᵀ
        return MatMul(OneMatrix(ranges[row], 1), Transpose(_read(expr, col, None, ranges, reasons)))
    if col is not None and not expr.has(col):  # the same in every column: (…) 1ᵀ
        return MatMul(_read(expr, row, None, ranges, reasons), OneMatrix(1, ranges[col]))
    if isinstance(expr, Add):
        return MatAdd(*[_read(t, row, col, ranges, reasons) for t in expr.args])
    if isinstance(expr, Mul):
        outside, inside = expr.as_independent(*wanted, as_Add=False)
        inner = _product(inside, row, col, ranges, reasons)
        return inner if outside == 1 else -inner if outside == -1 else MatMul(outside, inner)
    if isinstance(expr, Pow) and expr.exp.is_Integer and expr.exp not in (0, 1):  # s ⊙ s, 1 ⊘ u
        return HadamardPower(_read(expr.base, row, col, ranges, reasons), expr.exp)
    if isinstance(expr, Function) and expr.args and not any(a.has(*wanted) for a in expr.args[1:]):
        # e^z, tanh(Z), the step 𝟙[Z > 0] (Heaviside(Z, 0)): a function entry by entry
        x = Symbol("x", real=True)
        return Entrywise(Lambda(x, expr.func(x, *expr.args[1:])),
                                        _read(expr.args[0], row, col, ranges, reasons))
    if isinstance(expr, Indexed):
        return _entry(expr, row, col, ranges)
    if isinstance(expr, Sum) and len(expr.limits) == 1:
        return _sum(expr, row, col, ranges, reasons)
    if isinstance(expr, Sum) and len(expr.limits) == 2:  # Σ_i Σ_p W_iw M_ip X_jp: Wᵀ M Xᵀ
        separated = _separated(expr)
        if separated is not None:  # Σ_i Σ_d W_ip X_jd = (Σ_i W_ip)(Σ_d X_jd): an outer product
            return _read(separated, row, col, ranges, reasons)
        for outer, inner in (expr.limits, expr.limits[::-1]):
            factors = Mul.make_args(expr.function)
            held = Mul(*[f for f in factors if f.has(inner[0])])
            rest = Mul(*[f for f in factors if not f.has(inner[0])])
            tried = list(reasons)
            try:
                result = _sum(Sum(rest * Sum(held, inner), outer), row, col, ranges, tried)
            except _Unreadable:
                continue
            reasons[:] = tried
            return result
    raise _Unreadable(f"{type(expr).__name__}")


def _scalar(expr: Expr, ranges: dict, reasons: list[str]) -> MatrixExpr | None:
    """Σ_k u_k g_k as the 1 × 1 product uᵀ g (g itself maybe Σ_q V_kq w_q: uᵀ V w), or None."""
    outside, total = expr.as_independent(Sum, as_Add=False)
    if not isinstance(total, Sum) or len(total.limits) != 1 or total.limits[0][1] != 1:
        return None
    index, _, upper = total.limits[0]
    factors = [f for f in Mul.make_args(total.function)]
    if len(factors) < 2 or not all(f.has(index) for f in factors):
        return None
    inner = {**ranges, index: upper}
    try:
        first = _read(factors[0], index, None, inner, reasons)
        rest = _read(Mul(*factors[1:]), index, None, inner, reasons)
    except _Unreadable:
        return None
    product = MatMul(Transpose(first), rest)
    return product if outside == 1 else MatMul(outside, product)


def _ones(row, col, ranges: dict) -> MatrixExpr:
    return OneMatrix(ranges[row], 1 if col is None else ranges[col])


def _product(inside: Expr, row, col, ranges: dict, reasons: list[str]) -> MatrixExpr:
    """A product of entry formulas: one factor is read alone; factors over the same entry are
    an elementwise (Hadamard) product, s ⊙ (1 − s); factors over the row alone times factors
    over the column alone are an outer product, (W₂ᵀ(v − y) ⊙ s) xᵀ."""
    factors = list(Mul.make_args(inside))
    if len(factors) == 1:
        return _read(factors[0], row, col, ranges, reasons)
    if col is None:
        return _hadamard([_read(f, row, None, ranges, reasons) for f in factors], reasons)
    both = [f for f in factors if f.has(row) and f.has(col)]
    rows = [f for f in factors if f.has(row) and not f.has(col)]
    cols = [f for f in factors if f.has(col) and not f.has(row)]
    if both and (rows or cols):
        # r_x Σ_p F_xp G_ip: the row factor goes inside the sum, (r 1ᵀ ⊙ F) Gᵀ, as a course writes
        # (W₂ᵀ1 ⊙ (1 − H²)) Xᵀ; otherwise it is broadcast along the row, (r 1ᵀ) ⊙ F
        others = Mul(*rows, *cols)
        if len(both) == 1 and isinstance(both[0], Sum) and len(both[0].limits) == 1 \
                and not others.has(both[0].limits[0][0]):
            return _read(Sum(others * both[0].function, both[0].limits[0]), row, col, ranges, reasons)
        return _hadamard([_read(f, row, col, ranges, reasons) for f in factors], reasons)
    if both:
        return _hadamard([_read(f, row, col, ranges, reasons) for f in both], reasons)
    left = _hadamard([_read(f, row, None, ranges, reasons) for f in rows], reasons)
    right = _hadamard([_read(f, col, None, ranges, reasons) for f in cols], reasons)
    reasons.append(r"a product of a factor over the row and one over the column is an outer product")
    return MatMul(left, Transpose(right))


def _hadamard(parts: list, reasons: list[str]) -> MatrixExpr:
    if len(parts) == 1:
        return parts[0]
    # the gradient arriving from above first (Wᵀ g ⊙ s ⊙ (1 − s)), as a course writes dA ⊙ g′(Z)
    parts = sorted(parts, key=lambda part: (0 if isinstance(part, MatMul) else 1 if isinstance(part, (Vec, MatVar))
                                             else 2 if isinstance(part, HadamardPower) and part.exp > 0 else
                                             4 if isinstance(part, HadamardPower) else 3))
    reasons.append(r"a product of entries at the same place is the elementwise product $\odot$")
    return HadamardProduct(*parts)


def _entry(entry: Indexed, row, col, ranges: dict) -> MatrixExpr:
    base, indices = entry.base, entry.indices
    if col is None and indices == (row,):
        return Vec(base, ranges[row])
    if col is not None and indices == (row, col):
        return MatVar(base, ranges[row], ranges[col])
    if col is not None and indices == (col, row):
        return Transpose(MatVar(base, ranges[col], ranges[row]))
    if col is not None and indices == (row,):  # a vector added to every column: b 1ᵀ
        return MatMul(Vec(base, ranges[row]), OneMatrix(1, ranges[col]))
    raise _Unreadable(f"{entry} is not an entry at ({row}, {col})")


def _separated(total: Sum) -> Expr | None:
    """A double sum whose every factor holds at most one of its two indices, as the product of
    two single sums (and the factors holding neither); None when a factor holds both, or when
    one index's limits mention the other."""
    (first, *first_bounds), (second, *second_bounds) = total.limits
    if any(b.has(first) for b in second_bounds) or any(b.has(second) for b in first_bounds):
        return None
    factors = Mul.make_args(total.function)
    if any(f.has(first) and f.has(second) for f in factors):
        return None
    over_first = Mul(*[f for f in factors if f.has(first)])
    over_second = Mul(*[f for f in factors if f.has(second)])
    rest = Mul(*[f for f in factors if not f.has(first) and not f.has(second)])
    if over_first == 1 or over_second == 1:
        return None
    return rest * Sum(over_first, (first, *first_bounds)) * Sum(over_second, (second, *second_bounds))


def _sum(total: Sum, row, col, ranges: dict, reasons: list[str]) -> MatrixExpr:
    index, lower, upper = total.limits[0]
    if lower != 1:
        raise _Unreadable("a sum not from 1")
    ranges = {**ranges, index: upper}
    wanted = [x for x in (row, col) if x is not None]
    # factors that do not depend on the summation index come out of the sum: a number, or an
    # elementwise factor of the result (Σ_i W_ic g_i, times s_c)
    outside, term = total.function.as_independent(index, as_Add=False)
    scalar, elementwise = outside.as_independent(*wanted, as_Add=False)
    if col is not None and elementwise != 1 and not elementwise.has(col) and term.has(row):
        # r_d Σ_s F_ds G_qs = Σ_s (r_d F_ds) G_qs: the row factor joins the row side of the
        # product, (r 1ᵀ ⊙ F) Gᵀ, as a course writes dZ Xᵀ, rather than ⊙ the whole product
        term, elementwise = elementwise * term, Integer(1)
    left = Mul(*[f for f in Mul.make_args(term) if f.has(row)])
    right = Mul(*[f for f in Mul.make_args(term) if not f.has(row)])
    if col is None and right == 1:  # Σ_s M_js: the row sums, M times a column of ones
        inner = _read(left, row, index, ranges, reasons)
        reasons.append(rf"the sum over ${index}$ adds up each row: a product with ${bold('1')}_{{{math_markup(upper)}}}$, "
                       rf"the column of ${math_markup(upper)}$ ones")
        result = MatMul(inner, OneMatrix(upper, 1))
    else:  # Σ_s F_js G_sq (or G_s for a vector): a matrix product over the inner index s
        if right.has(row) or (col is not None and (not right.has(col) or left.has(col))) or left == 1:
            raise _Unreadable("not a product of a row factor and a column factor")
        first, second = _read(left, row, index, ranges, reasons), _read(right, index, col, ranges, reasons)
        transposed = [m.arg.base for m in (first, second) if isinstance(m, Transpose) and isinstance(m.arg, MatVar)]
        reasons.append(rf"the sum over ${index}$ is a matrix product" + "".join(
            rf", with ${{{bold(b)}}}^\top$ since ${bold(b)}$ is summed over its {'row' if m is first else 'column'} index"
            for b, m in zip(transposed, [x for x in (first, second) if isinstance(x, Transpose)])))
        result = MatMul(first, second)
    if elementwise != 1:
        result = _hadamard([_read(elementwise, row, col, ranges, reasons), result], reasons)
    return result if scalar == 1 else MatMul(scalar, result)


def tree_matrix(node: Node, named: dict, sizes: dict) -> Basic | None:
    """An expression of the language in matrix notation (named intermediates by their names:
    ``softmax(W @ X + b) - Y`` → A − Y), a scalar as SymPy, or None for what has no matrix
    notation here (elementwise products of matrices, functions of matrices)."""
    def dims(shape):
        return tuple(sizes[d] for d in shape)

    def go(n: Node):
        if n in named:
            head = named[n].head
            return _whole(head, dims(n.shape))
        if isinstance(n, Var):
            from sympy import IndexedBase, Symbol
            return Symbol(n.name, real=True) if not n.shape else _whole(IndexedBase(n.name, real=True), dims(n.shape))
        if isinstance(n, Number):
            return Rational(n.value.numerator, n.value.denominator)
        if isinstance(n, Size):
            return sizes[n.name]
        if isinstance(n, Negate):
            inner = go(n.arg)
            return None if inner is None else -inner
        if isinstance(n, MatProduct):
            left, right = go(n.left), go(n.right)
            return None if left is None or right is None else MatMul(left, right)
        if isinstance(n, Apply) and n.function in ("transpose", "rowsum", "colsum"):
            inner = go(n.args[0])
            if inner is None:
                return None
            rows, cols = dims(n.args[0].shape)
            if n.function == "transpose":
                return Transpose(inner)
            if n.function == "rowsum":
                return MatMul(inner, OneMatrix(cols, 1))
            return MatMul(Transpose(inner), OneMatrix(rows, 1))
        if isinstance(n, Arith):
            left, right = go(n.left), go(n.right)
            if left is None or right is None:
                return None
            matrices = [isinstance(x, MatrixExpr) for x in (left, right)]
            if n.op in "+-":
                if not all(matrices):
                    return None
                left, right = _broadcast(left, n.left, n, sizes), _broadcast(right, n.right, n, sizes)
                return MatAdd(left, right if n.op == "+" else -right)
            if n.op == "*" and not all(matrices):
                return MatMul(left, right) if matrices[1] else MatMul(right, left)
            if n.op == "/" and matrices == [True, False]:
                return MatMul(1 / right, left)
            return None
        return None

    return go(node)


def _whole(head, dims: tuple) -> MatrixExpr:
    return Vec(head, dims[0]) if len(dims) == 1 else MatVar(head, *dims)


def _broadcast(value, node: Node, parent: Node, sizes: dict):
    """A vector added to a matrix is added to every column: b 1ᵀ."""
    if len(node.shape) == 1 and len(parent.shape) == 2:
        return MatMul(value, OneMatrix(1, sizes[parent.shape[1]]))
    return value
