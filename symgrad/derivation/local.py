"""Local derivatives by named rules: one small function per kind of node.

Each rule takes the intermediate being differentiated (``parent``, e.g. a = softmax(u)) and the
input it is differentiated by (``child``, e.g. u) and returns a ``Local``: the index template
∂a_i/∂u_j (or ∂L/∂u_i for the scalar loss), the rule that justifies it, a title, and what the
chain rule needs to know about its shape (diagonal, or with a Kronecker delta in a sum). The
step built from it is checked like every other step, so a rule can only make a derivation
unprovable, never wrong.

Rules get their indices from ``indices``: (i,) and (j,) for vectors, (i, s) and (j, t) for an
n × m matrix over an n × m matrix, so one rule serves both (an elementwise function's
Jacobian is δ_ij, or δ_ij δ_st, times f').

Adding a function (softplus, say) means: its template in ``lowering.py`` and one rule here,
registered with ``@rule("softplus")``. A rule may also return a case split (``cases``), which
is what derivatives defined by cases (relu, abs, Huber) will need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sympy import (Derivative, Dummy, Expr, Indexed, KroneckerDelta, Piecewise, S, Sum,
                   factor_terms)
from symgrad.differentiate import differentiate
from symgrad.delta_sums import delta_summation
from sympy.core.relational import Relational
from sympy.matrices.expressions import DiagMatrix, Identity, MatAdd, MatrixExpr, OneMatrix

from symgrad.derivation import rules
from symgrad.functions import ELEMENTWISE, elementwise
from symgrad.lowering import Lowering, Named
from symgrad.notation import Vec, bold_markup, entry_markup, math_markup, name_markup
from symgrad.steps import Rule
from symgrad.language import LanguageError
from symgrad.tree import MATRIX, Apply, Arith, Negate, Node, Var, depends_on


def indices(ctx: Context, parent: Node, child: Node) -> tuple[tuple, tuple]:
    """The parent's entry indices I and the child's J (distinct from I): (i,), (j,) for
    vectors; (i, s), (j, t) for an n × m matrix over an n × m matrix."""
    outer = ctx.outer(parent)
    return outer, ctx.outer(child, avoid=outer)


def sub(index: tuple) -> str:
    """Indices as a subscript: ``is`` for (i, s)."""
    return "".join(str(x) for x in index)


def deltas_text(value: Expr, inner: tuple) -> str:
    """The index equalities a local derivative's Kronecker deltas impose (i = j, s = t)."""
    found = sorted(((d.args[0], d.args[1]) for d in value.atoms(KroneckerDelta)
                    if any(x in inner for x in d.args) and not (value / d).has(d)), key=str)
    return " and ".join(f"${a} = {b}$" for a, b in found)


@dataclass(frozen=True)
class Local:
    """∂(parent)/∂(child) as an index template, with the rule that gives it."""

    lhs: Expr
    value: Expr
    rule: Rule
    title: str
    free: tuple
    diagonal: bool = False  # value = f · δ_ij: the chain-rule sum collapses to its i = j term
    cases: Piecewise | None = None  # the two cases i = j and i ≠ j, shown as a step of their own
    matrix: MatrixExpr | None = None  # the whole Jacobian in matrix notation (fixed n)
    matrix_title: str = ""
    collapse_title: str = ""  # why the chain rule's Kronecker deltas keep only some terms
    # steps stated before this one about the same lhs: (title, rule, value); a function by cases
    # states its derivative by cases (no value at a kink) before the convention it takes there
    preface: tuple = ()


Context = Lowering
RULES: dict[str, Callable[[Context, Named, Node], Local]] = {}


def rule(*names: str):
    """Register a local-derivative rule for the functions ``names``."""
    def register(function):
        for name in names:
            RULES[name] = function
        return function
    return register


# Names in titles are tokens each printer writes in its notation (``notation.py``): a name, a
# whole vector or matrix (bold), an entry (a_j, A_prev[p, t]; indices a tuple or "ij").
tex, bold, entry = name_markup, bold_markup, entry_markup


def child_head(ctx: Context, child: Node):
    if child in ctx.named:
        return ctx.named[child].head
    return ctx.bases[child.name]


def jacobian_of(ctx: Context, parent: Named, child: Node) -> Local:
    """∂parent_i/∂child_j by the rule registered for the parent's function (arithmetic:
    differentiate the template)."""
    key = parent.node.function if isinstance(parent.node, Apply) else "arithmetic"
    if key not in RULES and isinstance(parent.node, Apply) and elementwise(key) is not None:
        return _elementwise(ctx, parent, child)  # a declared function (g=function): the same rule
    return RULES.get(key, _differentiate_template)(ctx, parent, child)


# -- vector intermediates ------------------------------------------------------------------------
@rule("softmax")
def _softmax(ctx: Context, parent: Named, child: Node) -> Local:
    if parent.node.kind == MATRIX:
        return _softmax_columns(ctx, parent, child)
    (i,), (j,) = indices(ctx, parent.node, child)
    a, c = parent.head, child_head(ctx, child)
    value = rules.quotient_rule(c[i], c[j], a[i], a[j], i, j)
    n = ctx.size_of(parent.node.shape[0])
    return Local(Derivative(a[i], c[j]), value, Rule.QUOTIENT_RULE,
                 rf"Softmax Jacobian by the quotient rule, with $\partial (\sum_k e^{{{entry(c, 'k')}}}) / "
                 rf"\partial {entry(c, 'j')} = e^{{{entry(c, 'j')}}}$", (i, j),
                 cases=rules.split_kronecker_cases(value, i, j),
                 matrix=_diag_minus_outer(Vec(a, n)),
                 matrix_title=rf"As a matrix: $\operatorname{{diag}}({bold(a)}) - {bold(a)} {bold(a)}^\top$")


def _diag_minus_outer(vector: Vec) -> MatrixExpr:
    """diag(a) − a aᵀ, the expression ``DiagMatrix(a) - a * a.T`` builds, without its
    ``DiagMatrix.doit()``: that asks ``Q.diagonal(a)`` (SymPy's assumption system, imported on
    first use: about a tenth of a second of a cold ``derive``, used nowhere else) only to
    return a 1 × 1 vector itself; for any other length it leaves diag(a) as it is."""
    if vector.length == 1:
        return DiagMatrix(vector) - vector * vector.T
    return MatAdd(DiagMatrix(vector), -(vector * vector.T)).doit(deep=False)


def _softmax_columns(ctx: Context, parent: Named, child: Node) -> Local:
    """Softmax of each column: within column s the vector rule a_i(δ_ij − a_j), and nothing
    across columns (δ_st)."""
    (i, s), (j, t) = indices(ctx, parent.node, child)
    a, c = parent.head, child_head(ctx, child)
    within = rules.quotient_rule(c[i, s], c[j, s], a[i, s], a[j, s], i, j)
    value = KroneckerDelta(s, t) * within
    return Local(Derivative(a[i, s], c[j, t]), value, Rule.QUOTIENT_RULE,
                 rf"Within column ${s}$, the softmax Jacobian by the quotient rule; a column of ${bold(a)}$ "
                 rf"does not depend on another column of ${bold(c)}$, hence $\delta_{{{s}{t}}}$", (i, s, j, t),
                 cases=rules.split_kronecker_cases(value, i, j),
                 collapse_title=rf"Column ${t}$ of ${bold(c)}$ reaches column ${t}$ of ${bold(a)}$ only: "
                                rf"$\delta_{{{s}{t}}}$ keeps the terms $s = t$")


@rule("log_softmax")
def _log_softmax(ctx: Context, parent: Named, child: Node) -> Local:
    (i,), (j,) = indices(ctx, parent.node, child)
    o, c = parent.head, child_head(ctx, child)
    a = ctx.name(Apply("softmax", (child,))).head  # ∂ log Σ e^{c_k} / ∂c_j is the softmax
    value = KroneckerDelta(i, j) - a[j]
    n = ctx.size_of(parent.node.shape[0])
    return Local(Derivative(o[i], c[j]), value, Rule.LOG_RULE,
                 rf"Log-softmax Jacobian: ${entry(o, 'i')} = {entry(c, 'i')} - \log \sum_k e^{{{entry(c, 'k')}}}$, "
                 rf"and the derivative of the log-sum is the softmax ${entry(a, 'j')}$", (i, j),
                 cases=rules.split_kronecker_cases(value, i, j),
                 matrix=Identity(n) - OneMatrix(n, 1) * Vec(a, n).T,
                 matrix_title=rf"As a matrix: $I - \mathbf{{1}} {bold(a)}^\top$")


@rule(*ELEMENTWISE)  # functions.py: f'(x) written through f's own value where that is the usual form
def _elementwise(ctx: Context, parent: Named, child: Node) -> Local:
    I, J = indices(ctx, parent.node, child)  # noqa: E741 - (i,) or (i, s)
    out, c = parent.head, child_head(ctx, child)
    function = elementwise(parent.node.function)
    args = parent.node.args
    positions = [k for k, arg in enumerate(args) if arg == child]
    if not positions or any(arg != child and depends_on(arg, _name_of(child)) and arg not in ctx.named
                            for arg in args):
        return _differentiate_template(ctx, parent, child)  # the child also hides inside an argument
    entries = [ctx.at(arg, I[:len(arg.shape)]) for arg in args]  # a scalar argument broadcasts
    value = S.Zero
    for k in positions:
        partial = function.partial(k)
        if partial is None:
            raise LanguageError(f"{function.name} is differentiated by its first argument only: argument {k + 1} "
                                f"must not depend on the variable")
        value += partial(out[I], *entries)
    delta = S.One
    for a, b in zip(I, J):
        delta = delta * KroneckerDelta(a, b)
    value = value * delta
    what = parent.definition.description
    what = what[0].upper() + what[1:]
    which = "" if function.arity == 1 else f" (by argument {positions[0] + 1})" if len(positions) == 1 else ""
    collapse = (rf"Entry by entry: only the term {sub(J)} of the sum holds ${entry(c, J)}$" if len(I) > 1 else "")
    if function.by_cases and len(positions) == 1:
        cases = function.cases_of(positions[0])(*entries) * delta
        where = " and ".join(f"${math_markup(equation)}$" for equation in function.kinks(*entries))
        return Local(Derivative(out[I], c[J]), value, Rule.KINK_CONVENTION,
                     rf"Convention at the kink {where}, where {function.name} is not differentiable: take "
                     rf"{function.convention}; the step holds wherever it is differentiable (almost everywhere)",
                     I + J, diagonal=True, collapse_title=collapse,
                     preface=((rf"{what} acts entry by entry{which}: a diagonal Jacobian, with {function.fact}, "
                               rf"by cases (no value at the kink)", Rule.BY_CASES, cases),))
    return Local(Derivative(out[I], c[J]), value, Rule.ELEMENTWISE,
                 rf"{what} acts entry by entry{which}: a diagonal Jacobian, with {function.fact}", I + J,
                 diagonal=True, collapse_title=collapse)


def _name_of(node: Node) -> str:
    return node.name if isinstance(node, Var) else ""


def _differentiate_template(ctx: Context, parent: Named, child: Node) -> Local:
    """An arithmetic intermediate (u = z / T, Z = W @ X + b): differentiate its template by the
    child's entry."""
    if parent.node.kind == MATRIX or child.kind == MATRIX or ctx.several_sizes:
        # several sizes: a child's index may share its name with a sum's bound index in the
        # template (v_i = Σ_c W_ic s_c by s_c), so differentiate by fresh indices
        return _differentiate_matrix_template(ctx, parent, child)
    (i,), (j,) = indices(ctx, parent.node, child)
    u, c = parent.head, child_head(ctx, child)
    value = differentiate(parent.definition.body, c[j])
    # Σ_k δ_jk (from a sum of the child inside the template, x_i − Σ_k x_k / n) is 1: j is in 1..n
    value = value.replace(lambda e: isinstance(e, Sum) and e.has(KroneckerDelta) and j not in e.variables,
                          lambda e: delta_summation(e.function, e.limits[0]))
    value = factor_terms(value.replace(lambda e: isinstance(e, Piecewise), lambda p: _in_range(p, j, ctx.size)))
    diagonal = _is_diagonal(value, i, j)
    title = (rf"${tex(u)}$ is computed entry by entry from ${bold(c)}$: a diagonal Jacobian" if diagonal
             else rf"Differentiate ${entry(u, 'i')}$ by ${entry(c, 'j')}$")
    return Local(Derivative(u[i], c[j]), value, Rule.ELEMENTWISE if diagonal else Rule.DIFFERENTIATE,
                 title, (i, j), diagonal=diagonal)


def _differentiate_matrix_template(ctx: Context, parent: Named, child: Node) -> Local:
    """Z = W @ X + b and the like: ∂Z_is/∂W_jq = δ_ij X_qs. A matrix product is a sum over its
    inner index; differentiating it leaves a Kronecker delta in that sum, which is taken."""
    I, J = indices(ctx, parent.node, child)  # noqa: E741
    u, c = parent.head, child_head(ctx, child)
    value = entry_derivative(parent.definition.body, c, J)
    where = deltas_text(value, J)
    linear = not value.has(c)
    what = rf"${bold(u)}$ is linear in ${bold(c)}$" if linear else rf"Differentiate ${entry(u, I)}$"
    if where:
        what += rf": ${entry(c, J)}$ enters only the entries with {where}"
    if child.kind != MATRIX and parent.node.kind == MATRIX:
        what += " (it is added to every column)"
    return Local(Derivative(u[I], c[J]), value, Rule.DIFFERENTIATE, what, I + J,
                 collapse_title=(rf"Only the entries with {where} hold ${entry(c, J)}$: the Kronecker "
                                 "delta keeps those terms of the sum") if where else "")


def entry_derivative(body: Expr, base, index: tuple) -> Expr:
    """∂body/∂base_index for an entry with several indices (W_jq): differentiate by fresh
    indices (a sum's own bound index would be captured), then take every sum over a Kronecker
    delta — each index runs over the range of the dimension it stands for."""
    fresh = tuple(Dummy(f"d{k}", integer=True, positive=True) for k in range(len(index)))
    value = rules.collapse_kronecker(differentiate(body, base[fresh]))
    value = rules.rebind(rules.evaluated(value), set(index))
    return factor_terms(value.xreplace(dict(zip(fresh, index))))


def _is_diagonal(value: Expr, i, j) -> bool:
    delta = KroneckerDelta(i, j)
    return value.has(delta) and not (value / delta).has(delta) and value.is_Mul


# -- the scalar loss -----------------------------------------------------------------------------
LOSS_TITLES = {
    "cross_entropy": (Rule.LOG_RULE, "Loss by one entry: only the $i$-th term of the sum holds ${c}_i$"),
    "binary_cross_entropy": (Rule.LOG_RULE, "Loss by one entry: only the $i$-th term of the sum holds ${c}_i$"),
    "mse": (Rule.POWER_RULE, "Only the $i$-th term of the mean holds ${c}_i$: the power rule"),
    "dot": (Rule.DIFFERENTIATE, "Linear in ${C}$: only the $i$-th term of the sum holds ${c}_i$"),
    "sum": (Rule.DIFFERENTIATE, "Only the $i$-th term of the sum holds ${c}_i$"),
}


def loss_gradient(ctx: Context, root: Node, body: Expr, loss, child: Node) -> Local:
    """∂L/∂c_i of the loss by one input c (a named intermediate or a variable): the template
    differentiated term by term, the Kronecker-delta sums collapsed."""
    if ctx.several_sizes:
        return _loss_gradient_entries(ctx, root, body, loss, child)
    i, c = ctx.i, child_head(ctx, child)
    outer = root.arg if isinstance(root, Negate) else root
    function = outer.function if isinstance(outer, Apply) else None
    if function == "logsumexp" and outer.args[0] == child:
        a = ctx.name(Apply("softmax", (child,))).head
        return Local(Derivative(loss, c[i]), a[i], Rule.LOG_RULE,
                     rf"The derivative of $\log \sum_k e^{{{entry(c, 'k')}}}$ is the softmax ${entry(a, 'i')}$",
                     (i,))
    value = differentiate_by_entry(body, c, i, ctx.size)
    rule_used, title = LOSS_TITLES.get(function, (Rule.DIFFERENTIATE,
                                                  "Differentiate term by term: only the $i$-th term of each sum holds ${c}_i$"))
    return Local(Derivative(loss, c[i]), value, rule_used,
                 title.replace("${c}", f"${tex(c)}").replace("${C}", f"${bold(c)}"), (i,))


def _loss_gradient_entries(ctx: Context, root: Node, body: Expr, loss, child: Node) -> Local:
    """∂L/∂A_is of a loss over matrices (or vectors of several sizes), a constant factor such as
    1/m kept outside."""
    I, c = ctx.outer(child), child_head(ctx, child)  # noqa: E741
    outer, scaled = root, False
    while isinstance(outer, (Negate, Arith)):
        if isinstance(outer, Negate):
            outer = outer.arg
        elif outer.op in "*/" and not outer.right.shape and not ctx.depends(outer.right):
            outer, scaled = outer.left, True
        elif outer.op == "*" and not outer.left.shape and not ctx.depends(outer.left):
            outer, scaled = outer.right, True
        else:
            break
    function = outer.function if isinstance(outer, Apply) else None
    value = entry_derivative(body, c, I)
    rule_used = LOSS_TITLES.get(function, (Rule.DIFFERENTIATE, ""))[0]
    where = ", ".join(map(str, I))
    title = (rf"Loss by one entry: only the term $({where})$ of the sum holds ${entry(c, I)}$"
             + ("; the constant factor stays" if scaled else ""))
    return Local(Derivative(loss, c[I]), value, rule_used, title, I)


def differentiate_by_entry(body: Expr, base, index, size) -> Expr:
    """∂body/∂base_index with every sum over a Kronecker delta collapsed. Differentiates by a
    fresh index first: using a sum's own bound index would capture it."""
    fresh = Dummy("d", integer=True, positive=True)
    value = differentiate(body, base[fresh])
    value = value.replace(lambda e: isinstance(e, Sum) and e.has(KroneckerDelta),
                          lambda e: delta_summation(e.function, e.limits[0]))
    value = value.replace(lambda e: isinstance(e, Piecewise), lambda p: _in_range(p, fresh, size))
    value = rules.rebind(value, {index})
    return factor_terms(value.xreplace({fresh: index}))


def _in_range(piecewise: Piecewise, index, size) -> Expr:
    """Piecewise((v, 1 <= d <= n), (0, True)) → v, since d is an index in 1..n by construction."""
    value, condition = piecewise.args[0]
    relations = condition.atoms(Relational)
    if relations and all(r.free_symbols <= {index} | set(getattr(size, "free_symbols", ())) for r in relations):
        if all(r.subs(index, 1) == S.true or r.xreplace({index: size}) == S.true or r.subs(index, size) == S.true
               for r in relations):
            return value
    return piecewise


def entry_of(ctx: Context, node: Node, index) -> Indexed:
    """The entry node_index as written in steps (a named intermediate's or a variable's)."""
    return child_head(ctx, node)[index] if (node in ctx.named or isinstance(node, Var)) else ctx.entry(node, index)
