"""Stage 2 — the general engine: derive ``grad(f, x)`` of any loss written in the expression
language, step by step, the way a lecturer writes it.

1. Definitions: one named intermediate per layer of the composition (``lowering.py``).
2. Local derivatives by named rules (``local.py``), the softmax Jacobian with its two cases and,
   at a fixed n, as a matrix.
3. The chain rule as a vector–Jacobian product, layer by layer from the loss down to x, each
   simplified by named rules: a diagonal Jacobian collapses the sum; a Jacobian with a Kronecker
   delta is split at i = j, cancelled and collected.
4. Assumptions applied as steps of their own, where the expression holds what they speak of.
5. The result as a vector, and — for an identity — a final step that it is the identity's rhs.

Every right-hand side is computed from the previous one by a rule; nothing here checks anything:
``verify`` checks each step afterwards, so an engine mistake shows up as a failed step.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from sympy import (Add, Derivative, Expr, ImmutableMatrix, Indexed, Integer, Mul, Sum, Symbol,
                   Transpose, cancel, factor_terms, latex)
from sympy.matrices.expressions import MatAdd, MatMul

from symgrad.build import N
from symgrad.derivation import rules
from symgrad.derivation.local import (Local, bold, child_head, jacobian_of, loss_gradient, tex)
from symgrad.errors import UsageError
from symgrad.language import LanguageError, parse_tree
from symgrad.lowering import Lowering, Named
from symgrad.model import Assumption, Definition
from symgrad.notation import PartialD, Vec
from symgrad.steps import Derivation, Rule, Step
from symgrad.tree import (MATRIX, SCALAR, VECTOR, Apply, Arith, Derivative as DerivativeNode, Negate, Node,
                          Power, Var, depends_on, to_tree)

CONVENTION = (r"numerator layout: $\partial L/\partial \mathbf{x}$ is a $1 \times n$ row and "
              r"$\partial \mathbf{a}/\partial \mathbf{x}$ the $n \times n$ Jacobian with entry "
              r"$(i, j) = \partial a_i/\partial x_j$; the gradient $(\partial L/\partial \mathbf{x})^\top$ "
              r"is a column like $\mathbf{x}$")
LOSS_NAMES = {"cross_entropy": "Cross-entropy loss", "binary_cross_entropy": "Binary cross-entropy loss",
              "mse": "Mean squared error", "logsumexp": "Log-sum-exp", "dot": "A dot product",
              "sum": "A sum"}


@dataclass(frozen=True)
class Problem:
    """What to derive: ``expression`` is ``grad(f, x)`` (or ``f`` with ``wrt``), over the declared
    ``variables`` (name → "n", an integer length, or "scalar"), at ``size`` (an int or
    "symbolic"), under ``assume`` (equations in the language). ``rhs``: an identity's right-hand
    side, which the derivation must end by reaching."""

    expression: str
    variables: dict
    wrt: str | None = None
    assume: tuple[str, ...] = ()
    size: int | str = 3
    rhs: str | None = None
    name: str = "expression"
    title: str | None = None
    assumption_names: dict = field(default_factory=dict)  # text → (name, description)


def derive_problem(problem: Problem) -> Derivation:
    """The unchecked derivation of ``problem``; UsageError for anything the user got wrong."""
    try:
        return _Engine(problem).run()
    except LanguageError as error:
        where = f" (column {error.column})" if error.column else ""
        raise UsageError(f"{error}{where}") from None


class _Engine:
    def __init__(self, problem: Problem):
        self.problem = problem
        self.kinds = _kinds(problem.variables)
        self.size_value = problem.size if problem.size == "symbolic" else int(problem.size)
        self.fixed = self.size_value != "symbolic"
        size = N if not self.fixed else Integer(self.size_value)
        _check_lengths(problem.variables, self.size_value)
        tree = to_tree(parse_tree(problem.expression), self.kinds)
        self.jacobian = isinstance(tree, DerivativeNode) and tree.function == "jacobian"
        if isinstance(tree, DerivativeNode):
            self.function, self.wrt = tree.of, tree.wrt.name
        else:
            if problem.wrt is None:
                raise UsageError("say which variable to differentiate by (--wrt)")
            self.function, self.wrt = tree, problem.wrt
        if self.kinds.get(self.wrt) != VECTOR:
            raise UsageError(f"--wrt must name a vector variable, not {self.wrt!r}")
        if self.function.kind != (VECTOR if self.jacobian else SCALAR):
            raise UsageError("derive takes a scalar function (a loss) and derives its gradient, or "
                             "jacobian(f, x) of a vector function f")
        if not depends_on(self.function, self.wrt):
            raise UsageError(f"the expression does not depend on {self.wrt}: its gradient is 0")
        self.ctx = Lowering(self.kinds, size, self.wrt)
        self.ctx.prepare(self.function)
        if self.jacobian:
            if isinstance(self.function, Var):
                raise UsageError("the Jacobian of a variable by itself is the identity matrix: nothing to derive")
            self.ctx.name(self.function)
        self.path = self._path()
        self.loss = Symbol("J" if "L" in self.kinds else "L", real=True)
        self.steps: list[Step] = []
        self.notes: list[str] = []
        self.used: tuple[str, ...] = ()  # assumptions the current expression relies on
        self.x = self.ctx.bases[self.wrt]
        self.i, self.j = self.ctx.i, self.ctx.j

    # -- the graph of intermediates between the loss and x ----------------------------------
    def _path(self) -> list[Node]:
        """Named intermediates that depend on x, nearest the loss first, then x itself."""
        named = [n.node for n in reversed(self.ctx.order) if n.depends]
        return named + [Var(self.wrt, VECTOR)]

    def inputs(self, node: Node) -> list[Node]:
        """The named intermediates and variables that ``node``'s template reads directly and
        that depend on x."""
        found: list[Node] = []

        def visit(child: Node):
            if child in self.ctx.named or isinstance(child, Var):
                if depends_on(child, self.wrt) and child not in found:
                    found.append(child)
                return
            for grandchild in child.children:
                visit(grandchild)
        for child in node.children:
            visit(child)
        return found

    def reaches(self, node: Node, target: Node) -> bool:
        return node == target or any(self.reaches(c, target) for c in self.inputs(node))

    # -- the derivation ----------------------------------------------------------------------
    def run(self) -> Derivation:
        if self.jacobian:
            return self._run_jacobian()
        root_body = self.ctx.entry(self.function, None)
        parents = {node: [] for node in self.path}
        for node in [self.function, *self.path[:-1]]:
            for child in self.inputs(node):
                parents[child].append(node)
        locals_: dict[tuple[Node, Node], Local] = {}
        for node in [self.function, *self.path[:-1]]:
            for child in self.inputs(node):
                if node is self.function:
                    locals_[(node, child)] = loss_gradient(self.ctx, node, root_body, self.loss, child)
                else:
                    locals_[(node, child)] = jacobian_of(self.ctx, self.ctx.named[node], child)
        assumptions = self._assumptions()
        model = self.ctx.model(self.problem.name, assumptions, self.size_value,
                               Definition(self.loss, (), root_body, _loss_name(self.function)))
        self.model = model
        self._definitions(root_body)
        direct = {}
        for (parent, child), local in locals_.items():
            # a Derivative node means the total derivative: state ∂p/∂c alone only where c
            # reaches p by this edge alone
            direct[(parent, child)] = any(self.reaches(other, child) for other in self.inputs(parent)
                                          if other != child)
            if not direct[(parent, child)]:
                self._local_steps(local)
        gradients: dict[Node, Expr] = {}  # ∂L/∂c as a template in i, for each c on the path
        for node in self.path:
            gradients[node] = self._level(node, parents[node], locals_, direct, gradients)
        self._finish(rules.rebind(gradients[self.path[-1]], {self.j}).xreplace({self.i: self.j}))
        return Derivation(name=self.problem.name, title=self._title(), model=model, steps=tuple(self.steps),
                          convention=CONVENTION, notes=tuple(self.notes))

    def _run_jacobian(self) -> Derivation:
        """∂f_i/∂x_j of a vector function of one layer over x (softmax, sigmoid, …): its
        definition, its local rule with the two cases and the matrix, then the identity's rhs."""
        root = self.ctx.named[self.function]
        if self.inputs(self.function) != [Var(self.wrt, VECTOR)] or len(self.path) > 2:
            raise UsageError("jacobian(f, x) is derived for one layer f over x (softmax(z), sigmoid(z), …); "
                             "for a composition, derive the gradient of a scalar loss instead")
        self.model = self.ctx.model(self.problem.name, self._assumptions(), self.size_value)
        for named in self.ctx.order:
            self.steps.append(Step(_definition_title(self.ctx, named), Rule.DEFINITION,
                                   named.head[self.i], named.definition.body, (self.i,)))
        local = jacobian_of(self.ctx, root, Var(self.wrt, VECTOR))
        self._local_steps(local)
        if self.problem.rhs is not None:
            rhs_tree = to_tree(parse_tree(self.problem.rhs), self.kinds)
            if rhs_tree.kind != MATRIX:
                raise UsageError("the right-hand side of a jacobian identity must be a matrix")
            rhs = self.ctx.matrix_entry(rhs_tree, self.i, self.j)
            self.steps.append(Step(r"which is entry $(i, j)$ of the identity's right-hand side", Rule.IDENTITY,
                                   local.lhs, rhs, (self.i, self.j)))
        return Derivation(name=self.problem.name, title=self._title(), model=self.model, steps=tuple(self.steps),
                          convention=CONVENTION, notes=tuple(self.notes))

    def _title(self) -> str:
        size = "for every n" if not self.fixed else f"n = {self.size_value}"
        return (self.problem.title or f"Gradient of {self.problem.expression} by {self.wrt}") + f", {size}"

    def _assumptions(self) -> dict[str, Assumption]:
        out = {}
        for text in self.problem.assume:
            tree = parse_tree(text, allow_equation=True).body
            left, right = (to_tree(ast.Expression(side), self.kinds) for side in (tree.left, tree.comparators[0]))
            if left.kind != SCALAR or right.kind != SCALAR:
                raise UsageError(f"assumption {text!r} must compare two scalars")
            name, description = self.problem.assumption_names.get(text, (text, None))
            out[name] = self.ctx.assumption(text, (left, right), name, description)
        return out

    def _definitions(self, root_body: Expr) -> None:
        for named in self.ctx.order:
            self.steps.append(Step(_definition_title(self.ctx, named), Rule.DEFINITION,
                                   named.head[self.i], named.definition.body, (self.i,)))
        self.steps.append(Step(_loss_name(self.function), Rule.DEFINITION, self.loss, root_body))

    def _local_steps(self, local: Local) -> None:
        self.steps.append(Step(local.title, local.rule, local.lhs, local.value, local.free))
        if local.cases is not None:
            self.steps.append(Step("The Jacobian's two cases", Rule.CASE_SPLIT, local.lhs, local.cases, local.free))
        if local.matrix is not None and self.fixed:
            count = int(self.size_value)
            (p, c) = local.lhs.expr.base, local.lhs.variables[0].base
            (diagonal, _), (off_diagonal, _) = local.cases.args
            entries = ImmutableMatrix(count, count, lambda r, k: diagonal.xreplace({self.i: r + 1}) if r == k
                                      else off_diagonal.xreplace({self.i: r + 1, self.j: k + 1}))
            whole = PartialD(Vec(p, self.ctx.size), Vec(c, self.ctx.size))
            self.steps.append(Step(rf"The ${count} \times {count}$ Jacobian", Rule.MATRIX_FORM, whole, entries))
            self.steps.append(Step(local.matrix_title, Rule.MATRIX_FORM, whole, local.matrix))

    def _level(self, node: Node, parents: list[Node], locals_, direct, gradients) -> Expr:
        """∂L/∂c for one node c on the path, from its parents' gradients (a template in i)."""
        i, j = self.i, self.j
        c = child_head(self.ctx, node)
        if parents == [self.function]:
            return locals_[(self.function, node)].value
        lhs = Derivative(self.loss, c[j])
        single = len(parents) == 1
        if single:
            (parent,) = parents
            p = self.ctx.named[parent].head
            local = locals_[(parent, node)]
            whole_c, whole_p = Vec(c, self.ctx.size), Vec(p, self.ctx.size)
            self.steps.append(Step(rf"Chain rule: the $1 \times n$ row $\partial {tex(self.loss)}/\partial {bold(p)}$ "
                                   rf"times the $n \times n$ Jacobian $\partial {bold(p)}/\partial {bold(c)}$",
                                   Rule.CHAIN_RULE, PartialD(self.loss, whole_c),
                                   MatMul(PartialD(self.loss, whole_p), PartialD(whole_p, whole_c))))
            if self.fixed and local.matrix is not None and parents == [parent] and \
                    self._gradient_is_local(parent, gradients):
                count = int(self.size_value)
                upstream = gradients[parent]
                row = ImmutableMatrix(1, count, lambda _, k: upstream.xreplace({i: k + 1}))
                matrix_steps = [s for s in self.steps if s.rule is Rule.MATRIX_FORM and s.lhs == PartialD(whole_p, whole_c)]
                self.steps.append(Step("with the entries written out", Rule.SUBSTITUTE, PartialD(self.loss, whole_c),
                                       MatMul(row, matrix_steps[0].rhs), assumptions=self.used))
        terms, known = [], {}
        for parent in parents:
            local = locals_[(parent, node)]
            if parent is self.function:
                terms.append(rules.rebind(local.value, {j}).xreplace({i: j}))
                continue
            p = self.ctx.named[parent].head
            jacobian = local.value if direct[(parent, node)] else Derivative(p[i], c[j])
            terms.append(Sum(Mul(Derivative(self.loss, p[i]), jacobian, evaluate=False), (i, 1, self.ctx.size)))
            known[Derivative(self.loss, p[i])] = rules.rebind(gradients[parent], {i, j})
            known[Derivative(p[i], c[j])] = local.value
        chain = Add(*terms, evaluate=False) if len(terms) > 1 else terms[0]
        self.steps.append(Step(rf"Component $j$: $\partial {tex(self.loss)}/\partial {tex(c)}_j$ by the chain rule"
                               if single else rf"Chain rule: ${tex(c)}_j$ reaches the loss along {len(terms)} paths",
                               Rule.CHAIN_RULE, lhs, chain, (j,)))
        substituted = Add(*[rules.substitute_factors(t, known) if isinstance(t, Sum) else t for t in terms],
                          evaluate=False) if len(terms) > 1 else (
            rules.substitute_factors(chain, known) if isinstance(chain, Sum) else chain)
        names = ", ".join(f"$\\partial {tex(self.loss)}/\\partial {tex(self.ctx.named[p].head)}_i$" for p in parents
                          if p is not self.function)
        self.steps.append(Step(f"Substitute {names} and the Jacobian", Rule.SUBSTITUTE, lhs, substituted, (j,),
                               assumptions=self.used))
        value = self._simplify(lhs, substituted, locals_[(parents[0], node)] if single else None)
        value = self._apply_assumptions(lhs, value)
        return rules.rebind(value, {i}).xreplace({j: i})

    def _gradient_is_local(self, parent: Node, gradients) -> bool:
        return parent in gradients and not gradients[parent].has(Derivative)

    def _simplify(self, lhs, substituted: Expr, local: Local | None) -> Expr:
        j = self.j
        if local is not None and local.cases is not None and isinstance(substituted, Sum):
            split = rules.split_sum_at(substituted, j)
            self.steps.append(Step(r"Split the sum into its $i = j$ term ($\delta_{jj} = 1$) and its $i \neq j$ "
                                   r"terms ($\delta_{ij} = 0$)", Rule.SPLIT_SUM, lhs, split, (j,), assumptions=self.used))
            cancelled = rules.evaluated(split)
            self.steps.append(Step("Cancel common factors", Rule.CANCEL, lhs, cancelled, (j,), assumptions=self.used))
            collected = rules.collect_excluded_sum(cancelled)
            self.steps.append(Step(r"Collect: the $i = j$ term completes the sum", Rule.COLLECT, lhs, collected, (j,),
                                   assumptions=self.used))
            return collected
        collapsed = rules.collapse_delta_sums(rules.evaluated(substituted))
        if collapsed != substituted:
            self.steps.append(Step(r"The Jacobian is diagonal: only the $i = j$ term of the sum is left"
                                   if local is not None and local.diagonal else
                                   r"Sum over the Kronecker delta: only the $i = j$ terms are left",
                                   Rule.DELTA_SUM, lhs, collapsed, (j,), assumptions=self.used))
        tidy = _tidy(collapsed)
        if tidy != collapsed:
            self.steps.append(Step("Simplify", Rule.SIMPLIFY, lhs, tidy, (j,), assumptions=self.used))
        return tidy

    def _apply_assumptions(self, lhs, value: Expr) -> Expr:
        """Each assumption whose left side (a sum) occurs, as a step of its own; a sum of a named
        constant (smoothed targets t) is unfolded first when that lets an assumption apply."""
        for name, assumption in self.model.assumptions.items():
            pattern = assumption.equation.lhs
            if not isinstance(pattern, Sum):
                continue
            applied = rules.replace_sum(value, pattern, assumption.equation.rhs)
            if applied == value:
                unfolded = self._unfold_constant_sums(value)
                if unfolded != value and rules.replace_sum(unfolded, pattern, assumption.equation.rhs) != unfolded:
                    self.steps.append(Step("Unfold the sum of a constant intermediate through its definition",
                                           Rule.UNFOLD, lhs, unfolded, (self.j,), assumptions=self.used))
                    value = unfolded
                    applied = rules.replace_sum(value, pattern, assumption.equation.rhs)
            if applied != value:
                self.used = tuple(dict.fromkeys([*self.used, name]))
                self.steps.append(Step(_assumption_title(assumption), Rule.ASSUMPTION, lhs, applied, (self.j,),
                                       assumptions=self.used))
                value = applied
        return value

    def _unfold_constant_sums(self, value: Expr) -> Expr:
        constants = {n.head: n for n in self.ctx.order if not n.depends}

        def unfold(total: Sum) -> Expr:
            index = total.limits[0][0]
            term = total.function
            if isinstance(term, Indexed) and term.base in constants:
                body = constants[term.base].definition.instantiate((index,))
                return rules.linearize_sums(Sum(body, total.limits[0]))
            return total
        return value.replace(lambda e: isinstance(e, Sum), unfold)

    def _finish(self, component: Expr) -> None:
        """The gradient as a vector, the note on what stopped it, the identity's rhs."""
        x, j = self.x, self.j
        gradient = Transpose(PartialD(self.loss, Vec(x, self.ctx.size)))
        vector = to_vector(component, j, self.ctx.size)
        if vector is not None:
            self.steps.append(Step(rf"As a vector: the gradient ${bold('d' + tex(x))}$", Rule.VECTOR_FORM,
                                   gradient, vector, assumptions=self.used))
        if self.problem.rhs is None:
            self._note_unused_sums(component)
            return
        rhs_tree = to_tree(parse_tree(self.problem.rhs), self.kinds)
        if rhs_tree.kind != VECTOR:
            raise UsageError("the identity's right-hand side must be a vector, like the gradient")
        rhs = self.ctx.entry(rhs_tree, j)
        rhs_vector = to_vector(factor_terms(rhs), j, self.ctx.size) if vector is not None else None
        if rhs_vector is not None:
            self.steps.append(Step("which is the identity's right-hand side", Rule.IDENTITY, gradient, rhs_vector,
                                   assumptions=self.used))
        else:
            self.steps.append(Step("Component $j$ is the identity's right-hand side", Rule.IDENTITY,
                                   Derivative(self.loss, x[j]), rhs, (j,), assumptions=self.used))

    def _note_unused_sums(self, component: Expr) -> None:
        for total in component.atoms(Sum):
            term = total.function
            if getattr(term, "base", None) in self.ctx.bases.values():
                self.notes.append(rf"Stopped with ${latex(total)}$ left in: an assumption such as "
                                  rf"\texttt{{sum({term.base}) == 1}} (one-hot or probability labels) "
                                  r"would reduce it further.")


def to_vector(component: Expr, j, size) -> Expr | None:
    """A component formula in the free index j as a vector expression (a_j − y_j → a − y), or
    None when a term is not a multiple of one entry indexed by j."""
    def convert(expr):
        if isinstance(expr, Add):
            parts = [convert(t) for t in expr.args]
            return None if any(p is None for p in parts) else MatAdd(*parts)
        if isinstance(expr, Mul):
            outside, inside = expr.as_independent(j, as_Add=False)
            if outside == 1:
                return None
            inner = convert(inside)
            if inner is None:
                return None
            return -inner if outside == -1 else MatMul(outside, inner)
        if getattr(expr, "indices", None) == (j,):
            return Vec(expr.base, size)
        return None
    if not component.has(j):
        return None
    return convert(factor_terms(component))


def _tidy(expr: Expr) -> Expr:
    """A readable simplest form: cancel rational expressions, then pull common factors out."""
    if expr.has(Sum):
        return factor_terms(expr)
    return factor_terms(cancel(expr))


def _kinds(variables: dict) -> dict[str, str]:
    out = {}
    for name, length in variables.items():
        if not str(name).isidentifier() or name in ("i", "j", "k", "l", "n"):
            raise UsageError(f"{name!r} cannot be a variable name (i, j, k, l, n are indices and sizes)")
        out[name] = SCALAR if length == "scalar" else VECTOR
    return out


def _check_lengths(variables: dict, size) -> None:
    for name, length in variables.items():
        if isinstance(length, int) and not isinstance(length, bool) and length != size:
            raise UsageError(f"{name} has length {length}, but the derivation is at n = {size}: "
                             "declare it with length n")


def _loss_name(node: Node) -> str:
    outer = node.arg if isinstance(node, Negate) else node
    return LOSS_NAMES.get(outer.function, "The loss") if isinstance(outer, Apply) else "The loss"


def _definition_title(ctx: Lowering, named: Named) -> str:
    node = named.node
    if isinstance(node, Apply):
        arg = node.args[0]
        if isinstance(arg, Var) and arg.name == "z" and node.function == "softmax":
            return "Softmax of the logits"
        what = bold(child_head(ctx, arg)) if (arg in ctx.named or isinstance(arg, Var)) else "its argument"
        return f"{named.definition.description.capitalize()} of ${what}$"
    if not named.depends:
        return rf"Shorthand ${bold(named.head)}$ for an expression that does not depend on the variable"
    return rf"Shorthand ${bold(named.head)}$ for an elementwise expression"


def _assumption_title(assumption: Assumption) -> str:
    equation = latex(assumption.equation)
    if assumption.description and assumption.description != assumption.name:
        return rf"Assume {assumption.name}, ${equation}$ ({assumption.description})"
    return rf"Assume ${equation}$"


def problem_from_identity(identity, size: int | str) -> Problem:
    """The derivation an identity file's ``grad(...)``/``jacobian(...)`` identity asks for: derive
    its lhs, under its assumptions, and end at its rhs."""
    body = parse_tree(identity.lhs).body
    if not (isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id in ("grad", "jacobian")):
        raise UsageError(f"identity {identity.name!r} is not a derivative (its lhs is not grad(…) or "
                         "jacobian(…)): there is nothing to derive; check it with `symgrad verify`")
    return Problem(identity.lhs, dict(identity.variables), assume=tuple(identity.assume), size=size,
                   rhs=identity.rhs, name=identity.name, title=identity.name)
