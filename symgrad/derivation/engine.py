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

Matrices (``W = "n x p"``, several size names) go through the same levels with index tuples:
∂L/∂c_J = Σ_I ∂L/∂p_I ∂p_I/∂c_J summed over every index of the parent (Σ_s Σ_i), the
Kronecker deltas collapsed (the one over the example index first, then the familiar split at
i = j for a column softmax), assumptions for every entry (Σ_i Y_is = 1 for every s), and the
gradient shaped like the variable, read back into matrix notation ((A − Y) Xᵀ / m).

Every right-hand side is computed from the previous one by a rule; nothing here checks anything:
``verify`` checks each step afterwards, so an engine mistake shows up as a failed step.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace

from sympy import (Add, Derivative, Expr, Indexed, IndexedBase, Integer, KroneckerDelta, Mul, Sum, Symbol,
                   Transpose, cancel, count_ops, factor_terms)
from sympy.matrices.expressions import MatMul

from symgrad.build import N
from symgrad.derivation import rules
from symgrad.derivation.local import (Local, bold, child_head, entry, jacobian_of, loss_gradient, sub, tex)
from symgrad.derivation.matrix_form import read_matrix, tree_matrix
from symgrad.errors import UsageError
from symgrad.language import LanguageError, parse_tree
from symgrad.lowering import Lowering, Named, index_names
from symgrad.model import Assumption, Definition, TemplateMatrix
from symgrad.notation import GradientMatrix, MatVar, PartialD, Vec, index_symbols, math_markup, name_markup
from symgrad.steps import Derivation, Rule, Step
from symgrad.tree import (KIND_OF_RANK, MATRIX, SCALAR, VECTOR, Apply, Arith, Derivative as DerivativeNode,
                          MatProduct, Negate, Node, Size, Var, depends_on, to_tree)

CONVENTION = (r"numerator layout, so $\partial \name{L}/\partial \bname{x}$ is a $1 \times n$ row and "
              r"$\partial \bname{a}/\partial \bname{x}$ the $n \times n$ Jacobian with entry "
              r"$(i, j) = \partial \entry{a}{i}/\partial \entry{x}{j}$; the gradient "
              r"$(\partial \name{L}/\partial \bname{x})^\top$ is a column like $\bname{x}$")
MAX_NAMES_WRITTEN_OUT = 5  # a gradient naming more matrices reads better through the level above
LOSS_NAMES = {"cross_entropy": "Cross-entropy loss", "binary_cross_entropy": "Binary cross-entropy loss",
              "mse": "Mean squared error", "logsumexp": "Log-sum-exp", "dot": "A dot product",
              "sum": "A sum"}


def matrix_convention(sizes, loss: str = "L", names=index_names) -> str:
    """The layout line of a matrix derivation, naming the indices of each size it uses
    (``names``: size → its index names, the derivation's ``Lowering.index_names``)."""
    ranges = "; ".join(rf"${', '.join(names(name)[:2])} \le {name_markup(name)}$" for name in sizes)
    return (rf"gradients are shaped like the variable: each entry of $\partial {loss}/\partial \bname{{X}}$ is "
            rf"${loss}$'s derivative by the same entry of $\bname{{X}}$; one example per column; indices "
            rf"{ranges} (each runs over the size it is named for)")


@dataclass(frozen=True)
class Problem:
    """What to derive: ``expression`` is ``grad(f, x)`` (or ``f`` with ``wrt``), over the declared
    ``variables`` (name → "n", an integer length, "scalar", or a matrix "n x p"), at ``size``
    (an int or "symbolic"; with matrices or several size names, ``sizes`` gives each name its
    value, and ``size`` is used for any name it leaves out), under ``assume`` (equations in
    the language). ``rhs``: an identity's right-hand
    side, which the derivation must end by reaching (for ``wrt``). ``also``: with matrices, more
    variables to differentiate by in the same derivation (a layer's dW, db and dA_prev share
    ∂J/∂Z), each finished in the order given after ``wrt``."""

    expression: str
    variables: dict
    wrt: str | None = None
    assume: tuple[str, ...] = ()
    size: int | str = 3
    rhs: str | None = None
    name: str = "expression"
    title: str | None = None
    assumption_names: dict = field(default_factory=dict)  # text → (name, description)
    sizes: dict | None = None  # several size names (matrices): {"n": 3, "p": 2, "m": 2}
    also: tuple[str, ...] = ()  # further variables (matrices) whose gradients share the levels above
    loss_name: str | None = None  # the loss's symbol (default L, or J when L is a variable)
    names: dict = field(default_factory=dict)  # sub-expression text → its intermediate's name (Z1, A1)


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
        self.functions = _functions(problem.variables)  # declared functions (g=function)
        self.shapes = _shapes({k: v for k, v in problem.variables.items() if k not in self.functions})
        clash = sorted(set(self.functions) & ({d for shape in self.shapes.values() for d in shape}
                                              | set(problem.sizes or ())))
        if clash:
            raise UsageError(f"{clash[0]!r} is both a size and a declared function: rename one of them")
        self.kinds = {name: KIND_OF_RANK[len(shape)] for name, shape in self.shapes.items()}
        self.more_sizes = tuple(problem.sizes or ())  # size names usable as numbers (/ m)
        # several size names (matrices, a vector over m, or a size used only as a number: / m)
        self.several = any(len(shape) == 2 or shape and shape != ("n",) for shape in self.shapes.values()) \
            or bool(set(problem.sizes or {}) - {"n"}) or bool(problem.also)
        sizes = None
        if self.several:
            self.size_value, sizes = _sizes(self.shapes, problem)
            self.fixed = "symbolic" not in self.size_value.values()
            size = sizes.get("n", next(iter(sizes.values())))
        else:
            self.size_value = problem.size if problem.size == "symbolic" else int(problem.size)
            self.fixed = self.size_value != "symbolic"
            size = N if not self.fixed else Integer(self.size_value)
            _check_lengths(problem.variables, self.size_value)
        tree = to_tree(parse_tree(problem.expression, matrices=True, functions=self.functions), self.shapes,
                       more_sizes=self.more_sizes, functions=self.functions)
        self.jacobian = isinstance(tree, DerivativeNode) and tree.function == "jacobian"
        if isinstance(tree, DerivativeNode):
            self.function, self.wrt = tree.of, tree.wrt.name
        else:
            if problem.wrt is None:
                raise UsageError("say which variable to differentiate by (--wrt)")
            self.function, self.wrt = tree, problem.wrt
        self.targets = tuple(dict.fromkeys((self.wrt, *problem.also)))
        if len(self.targets) > 1 and self.jacobian:
            raise UsageError("a jacobian is taken by one variable")
        for target in self.targets:
            if target not in self.kinds:
                raise UsageError(f"--wrt {target}: {target!r} is not declared (--vars declares "
                                 f"{', '.join(self.kinds) or 'nothing'})")
            if self.kinds.get(target) != VECTOR and not (self.several and self.kinds.get(target) == MATRIX):
                raise UsageError(f"--wrt must name vector{' or matrix' if self.several else ''} variables, "
                                 f"not {target!r} (a scalar)")
        if self.function.kind != (VECTOR if self.jacobian else SCALAR):
            raise UsageError("derive takes a scalar function (a loss) and derives its gradient, or "
                             "jacobian(f, x) of a vector function f")
        for target in self.targets:
            if not depends_on(self.function, target):
                raise UsageError(f"the expression does not depend on {target}: its gradient is 0")
        self.target_nodes = [Var(t, self.kinds[t], None, self.shapes[t]) for t in self.targets]
        self.wrt_node = self.target_nodes[0]
        names = {to_tree(parse_tree(text, matrices=True, functions=self.functions), self.shapes,
                         more_sizes=self.more_sizes, functions=self.functions): name
                 for text, name in problem.names.items()}
        self.ctx = Lowering(self.kinds, size, self.targets, shapes=self.shapes, sizes=sizes, names=names,
                            functions=self.functions)
        self.ctx.prepare(self.function)
        if self.jacobian:
            if isinstance(self.function, Var):
                raise UsageError("the Jacobian of a variable by itself is the identity matrix: nothing to derive")
            self.ctx.name(self.function)
        self.path = self._path()
        self.loss = Symbol(problem.loss_name or ("J" if "L" in self.kinds else "L"), real=True)
        if self.loss.name in self.kinds:
            raise UsageError(f"{self.loss.name!r} names a variable: the loss needs another name")
        self.steps: list[Step] = []
        # nodes whose gradient is written through the level above, and that step
        self.course_forms: dict[Node, Step] = {}
        self.notes: list[str] = []
        self.used: tuple[str, ...] = ()  # assumptions the current expression relies on
        self.x = self.ctx.bases[self.wrt]
        self.i, self.j = self.ctx.i, self.ctx.j

    # -- the graph of intermediates between the loss and x ----------------------------------
    def _path(self) -> list[Node]:
        """Named intermediates that depend on x, nearest the loss first, then x itself (then the
        other variables of ``Problem.also``)."""
        named = [n.node for n in reversed(self.ctx.order) if n.depends]
        return named + self.target_nodes

    def inputs(self, node: Node) -> list[Node]:
        """The named intermediates and variables that ``node``'s template reads directly and
        that depend on x."""
        found: list[Node] = []

        def visit(child: Node):
            if child in self.ctx.named or isinstance(child, Var):
                if self.ctx.depends(child) and child not in found:
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
            # with several variables, the local derivative by each variable comes with its level
            if not direct[(parent, child)] and not (len(self.targets) > 1 and child in self.target_nodes):
                self._local_steps(local)
        gradients: dict[Node, Expr] = {}  # ∂L/∂c as a template in i, for each c on the path
        if self.several:
            for node in self.path:
                if len(self.targets) > 1 and node in self.target_nodes:
                    for parent in parents[node]:
                        if parent is not self.function and not direct[(parent, node)]:
                            self._local_steps(locals_[(parent, node)])
                value, index = self._level_entries(node, parents[node], locals_, direct, gradients)
                if node in self.target_nodes:
                    self._finish_entries(value, index, node)
                outer = self.ctx.outer(node)
                gradients[node] = rules.rebind(value, set(outer)).xreplace(dict(zip(index, outer)))
            return Derivation(name=self.problem.name, title=self._title(), model=model, steps=tuple(self.steps),
                              convention=matrix_convention(self.ctx.sizes, tex(self.loss), self.ctx.index_names), notes=tuple(self.notes))
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
            rhs_tree = to_tree(parse_tree(self.problem.rhs, matrices=True, functions=self.functions), self.kinds,
                               functions=self.functions)
            if rhs_tree.kind != MATRIX:
                raise UsageError("the right-hand side of a jacobian identity must be a matrix")
            rhs = self.ctx.matrix_entry(rhs_tree, self.i, self.j)
            self.steps.append(Step(r"Entry $(i, j)$ is the identity's right-hand side", Rule.IDENTITY,
                                   local.lhs, rhs, (self.i, self.j)))
        return Derivation(name=self.problem.name, title=self._title(), model=self.model, steps=tuple(self.steps),
                          convention=CONVENTION, notes=tuple(self.notes))

    def _title(self) -> str:
        if isinstance(self.size_value, dict):
            size = ", ".join(f"{name} = {value}" for name, value in self.size_value.items() if value != "symbolic")
            symbolic = [name for name, value in self.size_value.items() if value == "symbolic"]
            size = ", ".join(([f"for every {', '.join(symbolic)}"] if symbolic else []) + ([size] if size else []))
            return (self.problem.title or f"Gradient of {self.problem.expression} by {self.wrt}") + f", {size}"
        size = "for every n" if not self.fixed else f"n = {self.size_value}"
        return (self.problem.title or f"Gradient of {self.problem.expression} by {self.wrt}") + f", {size}"

    def _assumptions(self) -> dict[str, Assumption]:
        out = {}
        for text in self.problem.assume:
            tree = parse_tree(text, allow_equation=True, matrices=True, functions=self.functions).body
            left, right = (to_tree(ast.Expression(side), self.shapes, more_sizes=self.more_sizes,
                                   functions=self.functions)
                           for side in (tree.left, tree.comparators[0]))
            if self.several and (left.shape and right.shape and left.shape != right.shape or
                                 MATRIX in (left.kind, right.kind)):
                raise UsageError(f"assumption {text!r} must compare two scalars, or a vector with a number "
                                 "(meaning every entry)")
            if not self.several and (left.kind != SCALAR or right.kind != SCALAR):
                raise UsageError(f"assumption {text!r} must compare two scalars")
            name, description = self.problem.assumption_names.get(text, (text, None))
            out[name] = self.ctx.assumption(text, (left, right), name, description)
        return out

    def _definitions(self, root_body: Expr) -> None:
        for named in self.ctx.order:
            index = named.definition.index
            self.steps.append(Step(_definition_title(self.ctx, named), Rule.DEFINITION,
                                   named.head[index], named.definition.body, index))
        self.steps.append(Step(_loss_name(self.function, self.ctx), Rule.DEFINITION, self.loss, root_body))

    def _local_steps(self, local: Local) -> None:
        for title, rule, value in local.preface:  # a derivative by cases, before its kink convention
            self.steps.append(Step(title, rule, local.lhs, value, local.free))
        self.steps.append(Step(local.title, local.rule, local.lhs, local.value, local.free))
        if local.cases is not None:
            self.steps.append(Step("The Jacobian's two cases", Rule.CASE_SPLIT, local.lhs, local.cases, local.free))
        if local.matrix is not None and self.fixed:
            length = local.matrix.shape[0]
            count = int(length)
            i, j = local.free[:2]
            (p, c) = local.lhs.expr.base, local.lhs.variables[0].base
            entries = TemplateMatrix(local.value, (i, count), (j, count))  # every entry by one rule: O(1), not n²
            whole = PartialD(Vec(p, length), Vec(c, length))
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
                row = TemplateMatrix(upstream, (1, 1), (i, count))
                matrix_steps = [s for s in self.steps if s.rule is Rule.MATRIX_FORM and s.lhs == PartialD(whole_p, whole_c)]
                self.steps.append(Step("The same product with the entries written out", Rule.SUBSTITUTE, PartialD(self.loss, whole_c),
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
        self.steps.append(Step(rf"Component $j$: $\partial {tex(self.loss)}/\partial {entry(c, 'j')}$ by the chain rule"
                               if single else rf"Chain rule: ${entry(c, 'j')}$ reaches the loss along {len(terms)} paths",
                               Rule.CHAIN_RULE, lhs, chain, (j,)))
        substituted = Add(*[rules.substitute_factors(t, known) if isinstance(t, Sum) else t for t in terms],
                          evaluate=False) if len(terms) > 1 else (
            rules.substitute_factors(chain, known) if isinstance(chain, Sum) else chain)
        names = ", ".join(f"$\\partial {tex(self.loss)}/\\partial {entry(self.ctx.named[p].head, 'i')}$" for p in parents
                          if p is not self.function)
        self.steps.append(Step(f"Substitute {names} and the Jacobian", Rule.SUBSTITUTE, lhs, substituted, (j,),
                               assumptions=self.used))
        value = self._simplify(lhs, substituted, locals_[(parents[0], node)] if single else None)
        value = self._apply_assumptions(lhs, value)
        return rules.rebind(value, {i}).xreplace({j: i})

    # -- entries with several indices (matrices) --------------------------------------------
    def _limits(self, index: tuple) -> list[tuple]:
        return [(x, 1, self.model.range_of(x)) for x in index]

    def _level_entries(self, node: Node, parents: list[Node], locals_, direct, gradients) -> tuple[Expr, tuple]:
        """∂L/∂c_J for one node c on the path: Σ_I ∂L/∂p_I ∂p_I/∂c_J over every parent p, summed
        over all of p's indices (Σ_s Σ_i), then simplified. Returns the value and J."""
        ctx = self.ctx
        c = child_head(ctx, node)
        if parents == [self.function]:
            local = locals_[(self.function, node)]
            return local.value, local.free
        avoid = set()
        for parent in parents:
            if parent is not self.function:
                avoid |= set(ctx.outer(parent))
        J = ctx.outer(node, avoid=avoid)  # noqa: N806 - the child's index tuple
        lhs = Derivative(self.loss, c[J])
        terms, known = [], {}
        for parent in parents:
            local = locals_[(parent, node)]
            if parent is self.function:
                terms.append(rules.rebind(local.value, set(J)).xreplace(dict(zip(local.free, J))))
                continue
            I = ctx.outer(parent)  # noqa: E741, N806
            p = ctx.named[parent].head
            value = local.value.xreplace(dict(zip(local.free[len(I):], J)))
            jacobian = value if direct[(parent, node)] else Derivative(p[I], c[J])
            terms.append(Sum(Mul(Derivative(self.loss, p[I]), jacobian, evaluate=False), *self._limits(I)))
            known[Derivative(self.loss, p[I])] = rules.rebind(gradients[parent], set(I) | set(J))
            known[Derivative(p[I], c[J])] = value
        chain = Add(*terms, evaluate=False) if len(terms) > 1 else terms[0]
        single = len(parents) == 1 and parents[0] is not self.function
        if single:
            p = ctx.named[parents[0]].head
            I = ctx.outer(parents[0])  # noqa: E741, N806
            title = (rf"Chain rule: ${entry(c, J)}$ reaches the loss through the entries "
                     rf"${entry(p, I)}$ of ${bold(p)}$, summed over ${', '.join(map(str, I))}$")
        else:
            title = rf"Chain rule: ${entry(c, J)}$ reaches the loss along {len(terms)} paths"
        self.steps.append(Step(title, Rule.CHAIN_RULE, lhs, chain, J))
        self._chain_rule_in_matrices(node, parents, locals_, J)
        substituted = Add(*[rules.substitute_factors(t, known) if isinstance(t, Sum) else t for t in terms],
                          evaluate=False) if len(terms) > 1 else (
            rules.substitute_factors(chain, known) if isinstance(chain, Sum) else chain)
        names = ", ".join(f"$\\partial {tex(self.loss)}/\\partial {entry(ctx.named[q].head, ctx.outer(q))}$"
                          for q in parents if q is not self.function)
        self.steps.append(Step(f"Substitute {names} and the local derivative", Rule.SUBSTITUTE, lhs, substituted, J,
                               assumptions=self.used))
        value = self._simplify_entries(lhs, substituted, locals_[(parents[0], node)] if single else None, J)
        value = self._apply_assumptions(lhs, value, J)
        if node not in self.target_nodes:
            self._matrix_form(node, value, J, intermediate=True)
        return value, J

    def _chain_rule_in_matrices(self, node: Node, parents: list[Node], locals_, J: tuple) -> None:  # noqa: N803
        """The level as a course writes it, in the gradients one level up: dA1 = W2ᵀ dZ2,
        dZ1 = dA1 ⊙ (1 − A1^⊙2), dW1 = dZ1 Xᵀ. Only where every parent's local derivative is
        linear or elementwise (a softmax or the loss itself is written out entry by entry), and
        only when the sum reads back as a matrix; a checked step like the others."""
        ctx = self.ctx
        if any(p is self.function or locals_[(p, node)].cases is not None for p in parents):
            return
        stand_ins, back = {}, {}
        terms = []
        for parent in parents:
            I = ctx.outer(parent)  # noqa: E741, N806
            p = ctx.named[parent].head
            local = locals_[(parent, node)]
            stand_in = IndexedBase(f"∂{self.loss}/∂{p.label}", real=True)
            stand_ins[Derivative(self.loss, p[I])] = stand_in[I]
            back[stand_in] = GradientMatrix(self.loss, self._whole(parent))
            value = local.value.xreplace(dict(zip(local.free[len(I):], J)))
            terms.append(Sum(stand_in[I] * value, *self._limits(I)))
        collapsed = rules.collapse_kronecker(Add(*terms))
        if collapsed.has(KroneckerDelta):
            return
        ranges = {x: self.model.range_of(x) for x in J}
        matrix = read_matrix(_tidy(rules.evaluated(collapsed)), J, ranges)
        if matrix is None:
            return
        matrix = matrix.replace(lambda e: isinstance(e, (MatVar, Vec)) and e.base in back, lambda e: back[e.base])
        upstream = ", ".join(rf"$\partial {tex(self.loss)}/\partial {bold(ctx.named[p].head)}$" for p in parents)
        step = Step(rf"The same in matrices, through {upstream} (the gradient one level up)",
                    Rule.CHAIN_RULE, GradientMatrix(self.loss, self._whole(node)), matrix, assumptions=self.used)
        self.course_forms[node] = step
        self.steps.append(step)

    def _simplify_entries(self, lhs, substituted: Expr, local: Local | None, J: tuple) -> Expr:  # noqa: N803
        """The Kronecker deltas collapse (the δ over the example index first); a softmax Jacobian
        is then split at i = j, cancelled and collected, as for one example."""
        collapsed = rules.collapse_kronecker(substituted)
        if collapsed != substituted:
            title = (local.collapse_title if local is not None and local.collapse_title else
                     r"Sum over the Kronecker deltas: only the terms they select are left")
            self.steps.append(Step(title, Rule.DELTA_SUM, lhs, collapsed, J, assumptions=self.used))
        if local is not None and local.cases is not None and isinstance(collapsed, Sum) and len(collapsed.limits) == 1:
            bound = collapsed.limits[0][0]
            pairs = [d for d in collapsed.function.atoms(KroneckerDelta) if bound in d.args]
            if pairs:
                (j,) = [x for x in pairs[0].args if x != bound]
                split = rules.split_sum_at(collapsed, j)
                self.steps.append(Step(rf"Split the sum into its ${bound} = {j}$ term ($\delta_{{{j}{j}}} = 1$) and its "
                                       rf"${bound} \neq {j}$ terms ($\delta_{{{bound}{j}}} = 0$)", Rule.SPLIT_SUM, lhs,
                                       split, J, assumptions=self.used))
                cancelled = rules.evaluated(split)
                self.steps.append(Step("Cancel common factors", Rule.CANCEL, lhs, cancelled, J, assumptions=self.used))
                collected = rules.collect_excluded_sum(cancelled)
                self.steps.append(Step(rf"Collect: the ${bound} = {j}$ term completes the sum", Rule.COLLECT, lhs,
                                       collected, J, assumptions=self.used))
                return collected
        tidy = _tidy(rules.evaluated(collapsed))
        if tidy != collapsed:
            self.steps.append(Step("Simplify", Rule.SIMPLIFY, lhs, tidy, J, assumptions=self.used))
        return tidy

    def _whole(self, node: Node):
        """The whole variable or intermediate, in matrix notation (W, Z) or as a vector (b)."""
        head = child_head(self.ctx, node)
        dims = tuple(self.ctx.size_of(d) for d in node.shape)
        return MatVar(head, *dims) if len(dims) == 2 else Vec(head, dims[0])

    def _matrix_form(self, node: Node, component: Expr, J: tuple, intermediate: bool = False):
        """The gradient shaped like the variable, read from its entries; None if unreadable."""
        ranges = {x: self.model.range_of(x) for x in J}
        reasons: list[str] = []
        matrix = read_matrix(factor_terms(component), J, ranges, reasons)
        if matrix is None:
            return None
        if node in self.course_forms and len({m.base for m in matrix.atoms(MatVar, Vec)}) > MAX_NAMES_WRITTEN_OUT:
            # deep in a network: the form through the level above (dZ1 Xᵀ) is the one to read, so
            # the derivation ends on it, after the entries it stands for
            course = self.course_forms[node]
            del self.steps[next(k for k, step in enumerate(self.steps) if step is course)]
            self.steps.append(replace(course, title=course.title.replace("The same in matrices", "In matrices")))
            return course.rhs
        whole = self._whole(node)
        shape = "a matrix" if isinstance(whole, MatVar) else "a vector"
        why = ("; " + "; ".join(dict.fromkeys(reasons))) if reasons else ""
        self.steps.append(Step(rf"As {shape} shaped like ${bold(whole.base)}$: entry ${_entry(J)}$ is the "
                               rf"formula above{why}", Rule.MATRIX_FORM if isinstance(whole, MatVar) else Rule.VECTOR_FORM,
                               GradientMatrix(self.loss, whole), matrix, assumptions=self.used))
        return matrix

    def _finish_entries(self, component: Expr, J: tuple, node: Node) -> None:  # noqa: N803
        """The gradient shaped like the variable, the note on what stopped it, the identity's rhs
        (which speaks of ``wrt``, the first variable)."""
        head = child_head(self.ctx, node)
        component = self._in_known_names(Derivative(self.loss, head[J]), component, J)
        matrix = self._matrix_form(node, component, J)
        if node != self.wrt_node:
            return
        if self.problem.rhs is None:
            self._note_unused_sums(component)
            return
        rhs_tree = to_tree(parse_tree(self.problem.rhs, matrices=True, functions=self.functions), self.shapes,
                           more_sizes=self.more_sizes, functions=self.functions)
        if rhs_tree.shape != node.shape:
            raise UsageError(f"the identity's right-hand side has shape {rhs_tree.shape}, but the gradient is "
                             f"shaped like {self.wrt}: {node.shape}")
        rhs_matrix = tree_matrix(rhs_tree, self.ctx.named, self.ctx.sizes) if matrix is not None else None
        if rhs_matrix is not None:
            self.steps.append(Step("This is the identity's right-hand side", Rule.IDENTITY,
                                   GradientMatrix(self.loss, self._whole(node)), rhs_matrix, assumptions=self.used))
        else:
            head = child_head(self.ctx, node)
            self.steps.append(Step(rf"Entry ${sub(J)}$ is the identity's right-hand side", Rule.IDENTITY,
                                   Derivative(self.loss, head[J]), self.ctx.at(rhs_tree, J), J,
                                   assumptions=self.used))

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

    def _apply_assumptions(self, lhs, value: Expr, free: tuple | None = None) -> Expr:
        """Each assumption whose left side (a sum) occurs, as a step of its own; a sum of a named
        constant (smoothed targets t) is unfolded first when that lets an assumption apply. An
        assumption for every entry (Σ_i Y_is = 1 for every s) applies at any s."""
        free = free or (self.j,)
        for name, assumption in self.model.assumptions.items():
            pattern = assumption.equation.lhs
            if not isinstance(pattern, Sum):
                continue
            # free indices of the assumption (s in Σ_i Y_is = 1); only matrices have them (at a
            # symbolic n, the size n is an integer symbol too, and not an index)
            sizes = set(self.ctx.sizes.values())
            every = tuple(x for x in index_symbols(assumption.equation) if x not in sizes) if self.several else ()
            if every:
                applied = rules.replace_sum_for_every(value, pattern, assumption.equation.rhs, every)
                if applied != value:
                    self.used = tuple(dict.fromkeys([*self.used, name]))
                    self.steps.append(Step(_assumption_title(assumption, every), Rule.ASSUMPTION, lhs, applied,
                                           free, assumptions=self.used))
                    value = applied
                continue
            applied = rules.replace_sum(value, pattern, assumption.equation.rhs)
            if applied == value:
                unfolded = self._unfold_constant_sums(value)
                if unfolded != value and rules.replace_sum(unfolded, pattern, assumption.equation.rhs) != unfolded:
                    self.steps.append(Step("Unfold the sum of a constant intermediate through its definition",
                                           Rule.UNFOLD, lhs, unfolded, free, assumptions=self.used))
                    value = unfolded
                    applied = rules.replace_sum(value, pattern, assumption.equation.rhs)
            if applied != value:
                self.used = tuple(dict.fromkeys([*self.used, name]))
                self.steps.append(Step(_assumption_title(assumption), Rule.ASSUMPTION, lhs, applied, free,
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
        component = self._in_known_names(Derivative(self.loss, x[j]), component, (j,))
        reasons: list[str] = []
        vector = read_matrix(factor_terms(component), (j,), {j: self.ctx.size}, reasons) if component.has(j) else None
        if vector is not None:
            why = "".join("; " + r for r in dict.fromkeys(reasons))
            self.steps.append(Step(rf"As a vector: the gradient ${bold('d' + str(x.label))}${why}", Rule.VECTOR_FORM,
                                   gradient, vector, assumptions=self.used))
        if self.problem.rhs is None:
            self._note_unused_sums(component)
            return
        rhs_tree = to_tree(parse_tree(self.problem.rhs, matrices=True, functions=self.functions), self.kinds,
                               functions=self.functions)
        if rhs_tree.kind != VECTOR:
            raise UsageError("the identity's right-hand side must be a vector, like the gradient")
        # in the file's own terms: the rhs's (1 − ε)y + ε/n is the shorthand t of step 2, which
        # the result was just written without
        rhs = self._without_shorthands(self.ctx.entry(rhs_tree, j))
        rhs_vector = read_matrix(factor_terms(rhs), (j,), {j: self.ctx.size}) if vector is not None and rhs.has(j) else None
        if rhs_vector is not None:
            self.steps.append(Step("This is the identity's right-hand side", Rule.IDENTITY, gradient, rhs_vector,
                                   assumptions=self.used))
        else:
            self.steps.append(Step("Component $j$ is the identity's right-hand side", Rule.IDENTITY,
                                   Derivative(self.loss, x[j]), rhs, (j,), assumptions=self.used))

    def _in_known_names(self, lhs, component: Expr, free: tuple) -> Expr:
        """The result written in the inputs and the activations a reader knows (a, s, h, A),
        never in a shorthand the derivation introduced for an inner expression (u = 1 + v,
        v = e^z): each shorthand is replaced by its definition, as a checked step."""
        value = self._without_shorthands(component)
        if value == component:
            return component
        shorthands = self._shorthands()
        tidy = _tidy(value)
        names = ", ".join(f"${bold(h)}$" for h in shorthands if component.has(h))
        self.steps.append(Step(f"Write the result in the variables and the named activations: {names} "
                               f"{'were shorthands' if ',' in names else 'was a shorthand'}",
                               Rule.UNFOLD, lhs, tidy, free, assumptions=self.used))
        return tidy

    def _shorthands(self) -> dict:
        """The shorthands the derivation introduced for inner expressions, by head (u, v, t)."""
        return {n.head: n for n in self.ctx.order if _is_shorthand(n.node)}

    def _without_shorthands(self, value: Expr) -> Expr:
        """``value`` with every shorthand the derivation introduced replaced by its definition."""
        shorthands = self._shorthands()
        for _ in range(len(shorthands)):
            unfolded = value.replace(lambda e: isinstance(e, Indexed) and e.base in shorthands,
                                     lambda e: _instantiate(shorthands[e.base].definition, e.indices))
            if unfolded == value:
                break
            value = unfolded
        return value

    def _note_unused_sums(self, component: Expr) -> None:
        """A leftover Σ_i y_i: name the assumption that would remove it — only for labels (the
        targets of a loss: cross_entropy(·, y), mse(·, y)), never for weights or inputs."""
        labels = _labels(self.function)
        for total in component.atoms(Sum):
            term = total.function
            base = getattr(term, "base", None)
            if base in self.ctx.bases.values() and str(base.label) in labels:
                what = "colsum" if len(term.indices) == 2 else "sum"
                self.notes.append(rf"Stopped with ${math_markup(total)}$ left in: an assumption such as "
                                  rf"\texttt{{{what}({term.base}) == 1}} (one-hot or probability labels) "
                                  r"would reduce it further.")


def _labels(node: Node) -> set[str]:
    """The variables a loss compares with (its targets), anywhere in ``node``."""
    found = set()
    if isinstance(node, Apply) and node.function in ("cross_entropy", "binary_cross_entropy", "mse") \
            and isinstance(node.args[1], Var):
        found.add(node.args[1].name)
    for child in node.children:
        found |= _labels(child)
    return found


def _entry(index: tuple) -> str:
    """(j, t) for a matrix entry, j for a vector's."""
    return str(index[0]) if len(index) == 1 else f"({', '.join(map(str, index))})"


def _instantiate(definition: Definition, indices: tuple) -> Expr:
    """The definition's body at ``indices``, its own sums' bound indices renamed first (u_i = Σ_j …
    read at j must not capture j)."""
    body = rules.rebind(definition.body, {x for x in indices if isinstance(x, Symbol)})
    return body.xreplace(dict(zip(definition.index, indices)))


def _is_shorthand(node: Node) -> bool:
    """An intermediate a reader does not know by name: arithmetic on vectors (u = 1 + v) or an
    exponential (v = e^z); a layer's linear part (Z = W X + b) and activations are kept."""
    def has_product(n: Node) -> bool:
        return isinstance(n, MatProduct) or any(has_product(c) for c in n.children)
    if has_product(node):
        return False
    return not isinstance(node, Apply) or node.function == "exp"


def _tidy(expr: Expr) -> Expr:
    """A readable simplest form: common factors pulled out, rational expressions cancelled —
    but never longer than what it simplifies, and never a product a lecturer keeps
    (s(1 − s)(2s/3 − 2y/3) reads 2s(1 − s)(s − y)/3, not 2s(ys + s − s² − y)/3)."""
    candidates = [factor_terms(expr)]
    if not expr.has(Sum):
        candidates.append(factor_terms(cancel(expr)))
    best = min(candidates, key=lambda e: (count_ops(e), len(str(e))))
    return best if count_ops(best) <= count_ops(expr) else expr


def _functions(variables: dict) -> tuple[str, ...]:
    """The names declared as abstract functions (g=function), refused where they clash with a
    function of the language or an index."""
    from symgrad.language import FUNCTIONS, MATRIX_FUNCTIONS

    names = tuple(name for name, declared in variables.items() if declared == "function")
    for name in names:
        if name in FUNCTIONS or name in MATRIX_FUNCTIONS or name in ("grad", "jacobian"):
            raise UsageError(f"{name!r} cannot be declared a function: {name} is already a function of the language")
        if not str(name).isidentifier() or name in ("i", "j", "k", "l", "n", "L", "J"):
            raise UsageError(f"{name!r} cannot be a function name (i, j, k, l, n, L, J are indices, sizes "
                             "and the loss)")
    return names


def _shapes(variables: dict) -> dict[str, tuple]:
    """Each declared name's shape: "scalar" → (), "n" or an int length → ("n",), another size
    name "m" → ("m",), "n x p" → ("n", "p")."""
    out = {}
    for name, declared in variables.items():
        if not str(name).isidentifier() or name in ("i", "j", "k", "l", "n"):
            raise UsageError(f"{name!r} cannot be a variable name (i, j, k, l, n are indices and sizes)")
        if declared == "scalar":
            out[name] = ()
        elif isinstance(declared, int) and not isinstance(declared, bool):
            out[name] = ("n",)
        elif isinstance(declared, str) and all(part.strip().isidentifier() for part in declared.split(" x ")) \
                and 1 <= len(declared.split(" x ")) <= 2:
            out[name] = tuple(part.strip() for part in declared.split(" x "))
        else:
            raise UsageError(f"cannot read the shape of {name!r}: {declared!r} (use scalar, n, or n x p)")
    size_names = {d for shape in out.values() for d in shape}
    clash = sorted(set(out) & (size_names | {"n"}))
    if clash:
        raise UsageError(f"{clash[0]!r} cannot be a variable name: it is a size "
                         f"({', '.join(sorted(size_names | {'n'}))})")
    return out


def _sizes(shapes: dict[str, tuple], problem: Problem) -> tuple[dict, dict]:
    """The value of every size name (from ``problem.sizes``, else ``problem.size``): an int, or
    "symbolic" (then a positive integer symbol of that name); as given and as SymPy."""
    names = list(dict.fromkeys(d for shape in shapes.values() for d in shape))  # as declared: n, p, m
    given = dict(problem.sizes or {})
    values = {}
    for name in [*names, *(g for g in given if g not in names)]:  # a size used only as a number (/ m)
        value = given.get(name, problem.size)
        if value != "symbolic" and (not str(value).isdigit() or int(value) < 1):
            raise UsageError(f"size {name} must be a positive integer or \"symbolic\", not {value!r}")
        values[name] = value if value == "symbolic" else int(value)
    clash = sorted(set(values) & set(shapes))
    if clash:
        raise UsageError(f"{clash[0]!r} is both a size and a variable: rename one of them")
    return values, {name: Symbol(name, integer=True, positive=True) if v == "symbolic" else Integer(v)
                    for name, v in values.items()}


def _check_lengths(variables: dict, size) -> None:
    for name, length in variables.items():
        if isinstance(length, int) and not isinstance(length, bool) and length != size:
            raise UsageError(f"{name} has length {length}, but the derivation is at n = {size}: "
                             "declare it with length n")


def _loss_name(node: Node, ctx: Lowering | None = None) -> str:
    outer = node.arg if isinstance(node, Negate) else node
    if ctx is not None and ctx.several_sizes:
        divided = ""
        if isinstance(outer, Arith) and outer.op == "/" and isinstance(outer.right, Size):
            divided, outer = outer.right.name, outer.left
        name = LOSS_NAMES.get(outer.function, "The loss") if isinstance(outer, Apply) else "The loss"
        columns = isinstance(outer, Apply) and any(a.kind == MATRIX for a in outer.args)
        if columns and divided and outer.args[0].shape[1] == divided:
            return f"{name} of each column (one example each), averaged over the ${divided}$ examples"
        if columns:
            return f"{name} of each column (one example each), summed over the columns" + \
                (f", divided by ${divided}$" if divided else "")
        return name + (f", divided by ${divided}$" if divided else "")
    return LOSS_NAMES.get(outer.function, "The loss") if isinstance(outer, Apply) else "The loss"


def _written(ctx: Lowering, node: Node, top: bool = False) -> str:
    """A tree as it reads in a title: W X + b (named intermediates by name, except ``node``
    itself when ``top``)."""
    if node in ctx.named and not top:
        return bold(ctx.named[node].head)
    if isinstance(node, Var):
        return bold(node.name) if node.shape else tex(node.name)
    if isinstance(node, MatProduct):
        return f"{_written(ctx, node.left)} {_written(ctx, node.right)}"
    if isinstance(node, Arith):
        return f"{_written(ctx, node.left)} {node.op} {_written(ctx, node.right)}"
    if isinstance(node, Negate):
        return f"-{_written(ctx, node.arg)}"
    if isinstance(node, Apply) and node.function == "transpose":
        return f"{_written(ctx, node.args[0])}^\\top"
    if isinstance(node, Apply):
        return rf"\operatorname{{{node.function}}}(" + ", ".join(_written(ctx, a) for a in node.args) + ")"
    return str(getattr(node, "name", getattr(node, "value", "")))


def _broadcasts(node: Node, named=()) -> list[Node]:
    """Vectors added to a matrix in ``node`` (each is added to every column), not looking inside
    a named intermediate (Z2 = W2 A1 + b2 says nothing of A1's b1)."""
    found = []
    if isinstance(node, Arith) and node.kind == MATRIX:
        found += [side for side in (node.left, node.right) if side.kind == VECTOR]
    for child in node.children:
        if child not in named:
            found += _broadcasts(child, named)
    return found


def _definition_title(ctx: Lowering, named: Named) -> str:
    node = named.node
    if node.kind == MATRIX and isinstance(node, Apply) and node.function == "softmax":
        return rf"Softmax of each column of ${_written(ctx, node.args[0])}$ (one example per column)"
    if node.kind == MATRIX and not isinstance(node, Apply):
        added = "".join(rf", ${_written(ctx, v)}$ added to every column" for v in _broadcasts(node, ctx.named))
        return rf"${bold(named.head)} = {_written(ctx, node, top=True)}${added}"
    if isinstance(node, Apply):
        arg = node.args[0]
        if isinstance(arg, Var) and arg.name == "z" and node.function == "softmax":
            return "Softmax of the logits"
        what = bold(child_head(ctx, arg)) if (arg in ctx.named or isinstance(arg, Var)) else "its argument"
        return f"{named.definition.description.capitalize()} of ${what}$"
    if not named.depends:
        return rf"Shorthand ${bold(named.head)}$ for an expression that does not depend on the variable"
    return rf"Shorthand ${bold(named.head)}$ for an elementwise expression"


def _assumption_title(assumption: Assumption, every: tuple = ()) -> str:
    equation = math_markup(assumption.equation)
    for_every = (" for every " + ", ".join(f"${x}$" for x in every)) if every else ""
    if assumption.description and assumption.description != assumption.name:
        return rf"Assume {assumption.name}, ${equation}${for_every} ({assumption.description})"
    return rf"Assume ${equation}${for_every}"


def problem_from_identity(identity, size, sizes: dict | None = None) -> Problem:
    """The derivation an identity file's ``grad(...)``/``jacobian(...)`` identity asks for: derive
    its lhs, under its assumptions, and end at its rhs. ``size`` is n (an int or "symbolic"), or
    a dict of several sizes ({"n": 3, "p": 2, "m": 2}, for matrices), as is ``sizes``."""
    body = parse_tree(identity.lhs, matrices=True).body
    if not (isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id in ("grad", "jacobian")):
        raise UsageError(f"identity {identity.name!r} is not a derivative (its lhs is not grad(…) or "
                         "jacobian(…)): there is nothing to derive; check it with `symgrad verify`")
    if isinstance(size, dict):
        size, sizes = size.get("n", 3), dict(size)
    return Problem(identity.lhs, dict(identity.variables), assume=tuple(identity.assume), size=size,
                   rhs=identity.rhs, name=identity.name, title=identity.name, sizes=sizes)
