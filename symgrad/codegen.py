"""Code generation: a checked derivation as a Python module with ``forward`` (the loss) and
``backward`` (its gradients), in NumPy, JAX or PyTorch.

The code is written from the derivation itself, never from a second differentiation:

* ``forward`` evaluates the model's definitions (the steps that define the softmax, the layers,
  the loss), each translated from its index template (Z[i, s] = b[i] + Σ_p W[i, p] X[p, s]) into
  array operations (``b[:, None] + W @ X``);
* ``backward`` evaluates, for each variable differentiated by, the derivation's matrix or vector
  form of the gradient (a − y, dZ ⊙ (1 − A∘2), dZ Xᵀ, dZ 1_m), and references to a gradient one
  level up (∂J/∂Z in dW = ∂J/∂Z Aᵀ) become the variable that step computed, as in hand-written
  backpropagation. Only an index form (∂L/∂x_j = …) is used where no matrix form exists.

Numerically stable forms replace the textbook ones where they differ: a softmax is evaluated as
exp(log-softmax) with the maximum subtracted, log a (a a softmax) as the log-softmax, log σ(z)
and log(1 − σ(z)) through ``logaddexp``. The conventions at kinks are those of the derivation's
own steps (Heaviside(x, 0) for relu′(0) = 0, θ(0) = 1/2 for a tie of max).

Only a derivation every step of which is proven is turned into code (``UsageError`` otherwise).
Sizes come from the arrays: a derivation for every n gives code for every n; a derivation at a
fixed size gives code that checks the arrays have that size. Vectors are 1-D arrays, matrices
2-D with one example per column (softmax over axis 0).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from sympy import (
    Add,
    Basic,
    Derivative,
    Indexed,
    IndexedBase,
    Integer,
    Lambda,
    Mul,
    Pow,
    S,
    Sum,
    Symbol,
    Transpose,
    exp,
    log,
)
from sympy.matrices.expressions import (
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixExpr,
)
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.special import OneMatrix, ZeroMatrix
from sympy.printing.numpy import NumPyPrinter

from symgrad.errors import UsageError

TARGETS = ("numpy", "jax", "torch")
_MODULE = {"numpy": ("numpy", "np"), "jax": ("jax.numpy", "jnp"), "torch": ("torch", "torch")}


class _Unsupported(Exception):
    """This expression (or step) has no translation; another step may have one."""


# -- printing scalar (elementwise) expressions whose atoms are array-valued code -----------------

class _Code(Symbol):
    """A placeholder atom: a piece of Python code (a name, ``W.T``, ``b[:, None]``, ``np.sum(…)``)."""


def _atom(code: str) -> Symbol:
    """A placeholder for ``code``, parenthesised unless it is already atomic."""
    if not re.fullmatch(r"[A-Za-z_][\w.]*(\[[^\[\]]*\])?(\([^()]*(\([^()]*\))*[^()]*\))?(\.T)?", code):
        code = f"({code})"
    return _Code(code)


class _Printer(NumPyPrinter):
    """SymPy's NumPy printer with the target's module alias (np., jnp., torch.) and array-safe
    forms of max, min and the step function."""

    def __init__(self, target: str):
        module, alias = _MODULE[target]
        self._target_module, self._alias = module, alias
        super().__init__({"fully_qualified_modules": True, "allow_unknown_functions": False})
        self._module = module

    def _module_format(self, fqn, register=True):
        for prefix in ("numpy.", "jax.numpy."):
            if fqn.startswith(prefix):
                return f"{self._alias}.{fqn[len(prefix):]}"
        return super()._module_format(fqn, register)

    def _print__Code(self, expr):
        return expr.name

    def _pair(self, name, expr):
        args = list(expr.args)
        numbers = [a for a in args if a.is_Number]
        if self._alias == "torch" and len(args) == 2 and len(numbers) == 1:  # torch.maximum takes tensors only
            other = next(a for a in args if not a.is_Number)
            bound = "min" if name == "maximum" else "max"
            return f"torch.clamp({self._print(other)}, {bound}={self._print(numbers[0])})"
        code = self._print(args[0])
        for arg in args[1:]:
            code = f"{self._alias}.{name}({code}, {self._print(arg)})"
        return code

    def _print_Max(self, expr):
        return self._pair("maximum", expr)

    def _print_Min(self, expr):
        return self._pair("minimum", expr)

    def _print_Heaviside(self, expr):
        at_zero = expr.pargs[1] if len(expr.pargs) > 1 else Integer(1) / 2
        argument = self._print(expr.pargs[0])
        if self._alias == "torch":  # torch.heaviside wants a tensor of values
            return f"torch.where({argument} == 0, {float(at_zero)!r}, ({argument} > 0).to({_atom(argument).name}.dtype))"
        return f"{self._alias}.heaviside({argument}, {float(at_zero)!r})"

    def _print_sign(self, expr):
        return f"{self._alias}.sign({self._print(expr.args[0])})"

    def _print_Abs(self, expr):
        return f"{self._alias}.abs({self._print(expr.args[0])})"

    def _print_Piecewise(self, expr):
        if expr.args[-1].cond is not S.true:
            raise _Unsupported("a case split without an 'otherwise' case")
        conditions = ", ".join(self._print(c) for _, c in expr.args[:-1])
        values = ", ".join(self._print(v) for v, _ in expr.args[:-1])
        default = self._print(expr.args[-1].expr)
        if len(expr.args) == 2:
            return f"{self._alias}.where({conditions}, {values}, {default})"
        return f"{self._alias}.select([{conditions}], [{values}], default={default})"

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.as_base_exp()
        if exponent == -1:
            return f"1/{self.parenthesize(base, 50)}"  # above Mul: 1/(2*n)
        if exponent.is_Integer:
            return f"{self.parenthesize(base, 60)}**{exponent}"
        return super()._print_Pow(expr, rational=rational)

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}"

    def _print_Half(self, expr):
        return "1/2"

    def _print_Indexed(self, expr):
        raise _Unsupported(f"an entry {expr} left over")

    def _print_Function(self, expr):
        raise _Unsupported(f"no translation for {expr.func}")

    def _print_not_supported(self, expr):
        raise _Unsupported(f"no translation for {type(expr).__name__}")


# -- the model: names, sizes, definitions ---------------------------------------------------------

@dataclass
class _Line:
    name: str
    code: str
    needs: frozenset  # names used
    comment: str = ""


def _label(base) -> str:
    return str(base.label if isinstance(base, IndexedBase) else base)


def _identifier(name: str, taken: set) -> str:
    candidate = re.sub(r"\W", "_", name)
    if not candidate or candidate[0].isdigit():
        candidate = "v_" + candidate
    if keyword.iskeyword(candidate) or candidate in {"np", "jnp", "jax", "torch", "forward", "backward"}:
        candidate += "_"
    while candidate in taken:
        candidate += "_"
    taken.add(candidate)
    return candidate


def generate(derivation, target: str = "numpy", *, command: str | None = None, recheck: bool = False) -> str:
    """The source of a Python module with ``forward(**variables)`` (the loss) and
    ``backward(**variables)`` (the gradient by each variable differentiated by, in order: a tuple,
    or the one array), written from ``derivation``'s definitions and final matrix or vector forms.
    ``target``: numpy, jax (jax.numpy, works under jax.jit) or torch. ``command``: the symgrad
    command line that made the derivation, quoted in the docstrings. ``recheck``: check every step
    again first (a derivation whose steps were edited after checking keeps its old checks; this
    catches it, at the cost of the checks' time).

    Raises UsageError for a target it does not know, a derivation not every step of which is
    proven, or one it cannot translate (the message says what)."""
    from symgrad.steps import Derivation

    if not isinstance(derivation, Derivation):
        raise UsageError(f"codegen takes a symgrad Derivation, not {type(derivation).__name__}")
    target = str(getattr(target, "value", target)).lower()
    if target not in TARGETS:
        raise UsageError(f"unknown codegen target {target!r}; known: {', '.join(TARGETS)}")
    if recheck:
        import dataclasses

        from symgrad.verify import check_derivation

        derivation = check_derivation(derivation.with_steps(dataclasses.replace(step, check=None)
                                                            for step in derivation.steps))
    if not derivation.checked:
        raise UsageError("codegen needs a checked derivation: steps "
                         f"{_numbers((k, s) for k, s in enumerate(derivation.steps, 1) if s.check is None)} were not checked")
    if not derivation.proven:
        raise UsageError("refusing to generate code from a derivation that is not proven: steps "
                         f"{_numbers((k, s) for k, s in enumerate(derivation.steps, 1) if not s.check.proven)} are not proven "
                         "(symgrad derive shows why)")
    try:
        return _Generator(derivation, target, command).module()
    except _Unsupported as problem:
        raise UsageError(f"cannot generate code for {derivation.title!r}: {problem}") from None


def _numbers(numbered) -> str:
    return ", ".join(str(number) for number, _ in numbered) or "none"


class _Generator:
    def __init__(self, derivation, target: str, command: str | None):
        self.d = derivation
        self.model = derivation.model
        self.target = target
        self.command = command
        self.printer = _Printer(target)
        self.alias = _MODULE[target][1]
        self._axis = "dim" if target == "torch" else "axis"
        self.taken: set = set()
        self.names: dict = {}  # IndexedBase / Symbol → code name
        self.size_source: dict = {}  # size symbol → (variable code name, axis)
        self.lines: dict = {}  # code name → _Line, forward definitions and log forms
        self.order: list = []  # code names of definitions, in model order
        self.followed: dict = {}  # code name → step number (1-based) it follows
        self.kinds: dict = {}  # abbreviation code name → ("softmax", axis, arg code) or ("sigmoid", arg)
        self._setup()

    # -- names and sizes --------------------------------------------------------------------------
    def _setup(self):
        model = self.model
        self.variables = []
        for base, shape in model.shapes.items():
            self.variables.append((self._name(base), base, tuple(shape)))
        for scalar in model.scalars:
            self.variables.append((self._name(scalar), scalar, ()))
        for name, _, shape in self.variables:
            for axis, size in enumerate(shape):
                if isinstance(size, Symbol) and size not in self.size_source:
                    self.size_source[size] = (name, axis)
        for size in self.size_source:
            self._name(size)
        if not model.definitions:
            raise _Unsupported("the model has no definitions (no loss to compute)")
        self.loss_def = model.definitions[-1]
        if self.loss_def.index:
            raise _Unsupported("the last definition is not a scalar loss")
        self.loss_symbol = self.loss_def.head
        for definition in model.definitions:
            self._name(definition.head)
        numbers = {}
        for number, step in enumerate(self.d.steps, start=1):
            numbers.setdefault((step.lhs, tuple(step.free_indices)), number)
        for definition in model.definitions:
            self.followed[self._name(definition.head)] = numbers.get(
                (definition.template_lhs(), tuple(definition.index)))
            self._define(definition)

    def _name(self, obj) -> str:
        key = obj.label if isinstance(obj, IndexedBase) else obj
        if key not in self.names:
            self.names[key] = _identifier(str(key), self.taken)
        return self.names[key]

    def _is_variable(self, base) -> bool:
        return base in self.model.shapes or base in self.model.scalars

    # -- index templates → array code -------------------------------------------------------------
    def _place(self, indexed: Indexed, axes: tuple) -> str:
        """``indexed`` (every index one of ``axes``) as an array laid out along ``axes``."""
        name = self._name(indexed.base)
        idx = tuple(indexed.indices)
        if any(i not in axes for i in idx) or len(set(idx)) != len(idx):
            raise _Unsupported(f"entry {indexed} is not indexed by free or summed indices")
        present = sorted(idx, key=axes.index)
        code = name
        if list(idx) != present:
            if len(idx) != 2:
                raise _Unsupported(f"entry {indexed}: axes out of order")
            code = f"{name}.T"
        if len(present) == len(axes):
            return code
        slots = ", ".join(":" if a in present else "None" for a in axes)
        return f"{code}[{slots}]"

    def _sum_axes(self, limits, size_ok=True) -> tuple:
        indices = []
        for index, low, high in limits:
            if low != 1:
                raise _Unsupported(f"a sum from {low}, not 1")
            indices.append(index)
        return tuple(indices)

    def _index_code(self, expr: Basic, axes: tuple) -> str:
        """Array code for an index expression whose free indices are among ``axes``."""
        return self.printer.doprint(self._index_sym(expr, axes))

    def _index_sym(self, expr: Basic, axes: tuple) -> Basic:
        """``expr`` with every array part replaced by a code placeholder (printable elementwise)."""
        def convert(e):
            if isinstance(e, Indexed):
                if any(getattr(i, "is_Integer", False) for i in e.indices):
                    raise _Unsupported(f"a single entry {e} (a written-out size-specific form)")
                return _atom(self._place(e, axes))
            if isinstance(e, Sum):
                return _atom(self._sum_code(e, axes))
            if isinstance(e, log):
                special = self._stable_log(e.args[0], axes)
                if special is not None:
                    return special
            if isinstance(e, Symbol):
                if e in self.size_source or e in self.model.scalars or e in self.names:
                    return _Code(self._name(e))
                if e in axes:
                    raise _Unsupported(f"the index {e} used as a number")
                raise _Unsupported(f"unknown symbol {e}")
            if isinstance(e, (MatrixExpr, Derivative)) or type(e).__name__ in ("SumExcluding", "KroneckerDelta"):
                raise _Unsupported(f"{type(e).__name__} in an index form")
            if not e.args:
                return e
            return e.func(*[convert(a) for a in e.args])
        return convert(expr)

    def _sum_code(self, total: Sum, axes: tuple) -> str:
        summed = self._sum_axes(total.limits)
        if any(i in axes for i in summed):
            raise _Unsupported("a sum over a free index")
        body = total.function
        outer = [a for a in axes if a in body.free_symbols]
        if not outer:  # a full reduction: Σ_i Σ_s f(i, s)
            inner = self._index_code(body, summed)
            return f"{self.alias}.sum({inner})"  # every entry
        product = self._matmul(body, summed, axes)
        if product is not None:
            return product
        inner = self._index_code(body, axes + summed)
        axis = tuple(range(len(axes), len(axes) + len(summed)))
        axis_code = str(axis[0]) if len(axis) == 1 else str(axis)
        return f"{self.alias}.sum({inner}, {self._axis}={axis_code})"

    def _matmul(self, body, summed, axes):
        """Σ_k P[., k] Q[k, .] (times factors free of k) as ``P @ Q``, laid out along ``axes``."""
        if len(summed) != 1:
            return None
        (k,) = summed
        factors = Mul.make_args(body)
        holding = [f for f in factors if k in f.free_symbols]
        rest = [f for f in factors if k not in f.free_symbols]
        if rest or len(holding) != 2 or not all(isinstance(f, Indexed) for f in holding):
            return None
        p, q = holding
        if (len(q.indices) == 2 and len(p.indices) == 1) or (
                len(q.indices) == 2 and [i for i in q.indices if i != k] == [axes[0]]):
            p, q = q, p
        if len(p.indices) != 2 or len(q.indices) > 2:
            return None
        p_out = [i for i in p.indices if i != k]
        q_out = [i for i in q.indices if i != k]
        if len(p_out) != 1 or len(q_out) != len(q.indices) - 1 or p.indices.count(k) != 1:
            return None
        left = self._name(p.base) + ("" if p.indices[1] == k else ".T")
        if not q_out:
            if tuple(p_out) != tuple(axes):
                return None
            return f"{left} @ {self._name(q.base)}"
        right = self._name(q.base) + ("" if q.indices[0] == k else ".T")
        if (p_out[0], q_out[0]) == tuple(axes):
            return f"{left} @ {right}"
        return None

    # -- definitions (forward) ------------------------------------------------------------------
    def _define(self, definition):
        name = self._name(definition.head)
        axes = tuple(definition.index)
        body = definition.body
        softmax = self._softmax_argument(body, axes)
        if softmax is not None:
            argument, axis = softmax
            log_name = _identifier(f"log_{name}", self.taken)
            code = self._index_code(argument, axes)
            self._add(log_name, f"_log_softmax({code}, axis={axis})", "log-softmax: the maximum subtracted")
            self._add(name, f"{self.alias}.exp({log_name})", "")
            self.kinds[definition.head] = ("softmax", log_name)
            return
        sigmoid = self._sigmoid_argument(body)
        if sigmoid is not None:
            code = self._index_code(sigmoid, axes)
            log_name = _identifier(f"log_{name}", self.taken)
            log1m_name = _identifier(f"log1m_{name}", self.taken)
            if self.target == "torch":
                self._add(log_name, f"torch.nn.functional.logsigmoid({code})", "log σ, stable")
                self._add(log1m_name, f"torch.nn.functional.logsigmoid(-{_atom(code).name})", "log(1 − σ), stable")
            else:
                self._add(log_name, f"-{self.alias}.logaddexp(0, -{_atom(code).name})", "log σ, stable")
                self._add(log1m_name, f"-{self.alias}.logaddexp(0, {code})", "log(1 − σ), stable")
            self._add(name, f"{self.alias}.exp({log_name})", "")
            self.kinds[definition.head] = ("sigmoid", log_name, log1m_name)
            return
        self._add(name, self._index_code(body, axes), "")

    def _add(self, name, code, comment):
        needs = frozenset(re.findall(r"(?<![\w.])([A-Za-z_]\w*)", code)) & (self.taken - {name})
        self.lines[name] = _Line(name, code, needs, comment)
        self.order.append(name)

    def _softmax_argument(self, body, axes):
        """exp(P)/Σ_k exp(P at k): (P, the axis of the index k replaces)."""
        numerator, denominator = body.as_numer_denom()
        if not (isinstance(numerator, exp) and isinstance(denominator, Sum) and len(denominator.limits) == 1):
            return None
        k = denominator.limits[0][0]
        term = denominator.function
        if not isinstance(term, exp):
            return None
        for axis, i in enumerate(axes):
            if term.args[0].xreplace({k: i}) == numerator.args[0] and k in term.free_symbols \
                    and self._full_range(denominator.limits[0], term.args[0], k):
                return numerator.args[0], axis
        return None

    def _full_range(self, limit, expr, k) -> bool:
        """Whether Σ_k runs over every entry of the arrays it indexes (1..their size)."""
        _, low, high = limit
        if low != 1:
            return False
        for entry in expr.atoms(Indexed):
            if k in entry.indices:
                shape = self._shape_of(entry.base)
                if shape is None or shape[list(entry.indices).index(k)] != high:
                    return False
        return True

    def _shape_of(self, base):
        if base in self.model.shapes:
            return tuple(self.model.shapes[base])
        if base in self.model.abbreviation_shapes:
            return tuple(self.model.abbreviation_shapes[base])
        return None

    def _sigmoid_argument(self, body):
        """1/(1 + exp(−P)): P."""
        if isinstance(body, Pow) and body.exp == -1 and isinstance(body.base, Add):
            terms = body.base.args
            if len(terms) == 2 and Integer(1) in terms:
                other = terms[0] if terms[1] == 1 else terms[1]
                if isinstance(other, exp):
                    return -other.args[0]
        return None

    def _stable_log(self, argument, axes):
        """log a (a softmax), log s and log(1 − s) (s a sigmoid) as their stable names."""
        if isinstance(argument, Indexed) and argument.base in self.kinds:
            kind = self.kinds[argument.base]
            return _atom(self._relaid(kind[1], argument, axes))
        if isinstance(argument, Add) and len(argument.args) == 2 and Integer(1) in argument.args:
            other = argument.args[0] if argument.args[1] == 1 else argument.args[1]
            negated = -other
            if isinstance(negated, Indexed) and negated.base in self.kinds and self.kinds[negated.base][0] == "sigmoid":
                return _atom(self._relaid(self.kinds[negated.base][2], negated, axes))
        return None

    def _relaid(self, name, entry, axes):
        placed = self._place(entry, axes)
        return name + placed[len(self._name(entry.base)):]

    # -- gradients (backward) -------------------------------------------------------------------
    def _gradient_of(self, lhs):
        """(the array, by name or base, a gradient of the loss by; 'matrix' or index tuple) or None."""
        from symgrad.notation import GradientMatrix, MatVar, PartialD, Vec

        if isinstance(lhs, Transpose) and isinstance(lhs.arg, PartialD):
            lhs = lhs.arg
        if isinstance(lhs, (PartialD, GradientMatrix)) and lhs.f == self.loss_symbol \
                and isinstance(lhs.x, (Vec, MatVar)):
            return lhs.x.args[0], "matrix"
        if isinstance(lhs, Derivative) and lhs.expr == self.loss_symbol and len(lhs.variables) == 1:
            (x,) = lhs.variables
            if isinstance(x, Indexed):
                return x.base, tuple(x.indices)
        return None

    def _plan_backward(self):
        candidates: dict = {}  # base → [(number, kind, step)]
        order: list = []
        for number, step in enumerate(self.d.steps, start=1):
            found = self._gradient_of(step.lhs)
            if found is None:
                continue
            base, kind = found
            if kind != "matrix" and tuple(step.free_indices) != kind:
                continue
            candidates.setdefault(base, []).append((number, kind, step))
            if base in self.model.shapes and base not in order:
                order.append(base)
        if not order:
            raise _Unsupported("no step states the gradient of the loss by a variable")
        self.candidates = candidates
        self.backward_lines: dict = {}
        self.resolving: set = set()
        self.grad_names: dict = {}
        results = [self._resolve(base) for base in order]
        return order, results

    def _grad_name(self, base) -> str:
        if base not in self.grad_names:
            self.grad_names[base] = _identifier("d" + _label(base), self.taken)
        return self.grad_names[base]

    def _resolve(self, base) -> str:
        name = self._grad_name(base)
        if name in self.backward_lines:
            return name
        if base in self.resolving:
            raise _Unsupported(f"the gradient by {_label(base)} is defined through itself")
        self.resolving.add(base)
        steps = self.candidates.get(base, [])
        # matrix forms first (the earliest that translates: the chain through the gradient one level
        # up), then the last index form that translates
        ordered = [c for c in steps if c[1] == "matrix"] + [c for c in reversed(steps) if c[1] != "matrix"]
        problems = []
        for number, kind, step in ordered:
            saved = dict(self.backward_lines)
            try:
                if kind == "matrix":
                    code = self.printer.doprint(self._matrix_sym(step.rhs))
                else:
                    code = self._index_code(step.rhs, kind)
            except _Unsupported as problem:
                self.backward_lines = saved  # references resolved for a step that failed
                problems.append(f"step {number}: {problem}")
                continue
            needs = frozenset(re.findall(r"(?<![\w.])([A-Za-z_]\w*)", code)) & self.taken
            self.backward_lines[name] = (_Line(name, code, needs), number, step)
            self.resolving.discard(base)
            return name
        self.resolving.discard(base)
        raise _Unsupported(f"no step gives the gradient by {_label(base)} in a form with a translation"
                           + (f" ({'; '.join(problems[-2:])})" if problems else ""))

    def _matrix_sym(self, expr):
        """A matrix expression as an elementwise scalar expression over code placeholders."""
        from symgrad.notation import GradientMatrix, MatVar, PartialD, Vec

        if isinstance(expr, (Vec, MatVar)):
            return _Code(self._name(expr.args[0]))
        if isinstance(expr, Transpose) and isinstance(expr.arg, PartialD):
            expr = expr.arg
        if isinstance(expr, (PartialD, GradientMatrix)):
            found = self._gradient_of(expr)
            if found is None:
                raise _Unsupported(f"{type(expr).__name__} of something other than the loss")
            return _Code(self._resolve(found[0]))
        if isinstance(expr, Transpose):
            inner = self.printer.doprint(self._matrix_sym(expr.arg))
            return _Code(_atom(inner).name + ".T")
        if isinstance(expr, MatAdd):
            return Add(*[self._matrix_sym(a) for a in expr.args])
        if isinstance(expr, HadamardProduct):
            return Mul(*[self._matrix_sym(a) for a in expr.args])
        if isinstance(expr, HadamardPower):
            return Pow(self._matrix_sym(expr.base), expr.exp)
        if isinstance(expr, ElementwiseApplyFunction):
            function = expr.function
            if not isinstance(function, Lambda) or len(function.variables) != 1:
                raise _Unsupported("an entrywise function of several arguments")
            return function.expr.xreplace({function.variables[0]: self._matrix_sym(expr.expr)})
        if isinstance(expr, OneMatrix):
            return Integer(1)
        if isinstance(expr, ZeroMatrix):
            return Integer(0)
        if isinstance(expr, MatMul):
            scalars = [a for a in expr.args if not getattr(a, "is_Matrix", False)]
            matrices = [a for a in expr.args if getattr(a, "is_Matrix", False)]
            coefficient = Mul(*[self._index_sym(s, ()) for s in scalars])
            if len(matrices) == 1:
                return coefficient * self._matrix_sym(matrices[0])
            reduce = None
            if len(matrices) == 2 and isinstance(matrices[1], OneMatrix) and matrices[1].shape[0] == 1 \
                    and matrices[0].shape[1] == 1:  # v 1ᵀ: the column v in every column (broadcast)
                column = _atom(self.printer.doprint(self._matrix_sym(matrices[0]))).name
                return coefficient * _Code(f"{column}[:, None]")
            if isinstance(matrices[-1], OneMatrix) and matrices[-1].shape[1] == 1:
                matrices, reduce = matrices[:-1], 1  # times 1_m: the sum of each row
            elif isinstance(matrices[0], OneMatrix) and matrices[0].shape[0] == 1:
                matrices, reduce = matrices[1:], 0
            codes = [_atom(self.printer.doprint(self._matrix_sym(m))).name for m in matrices]
            code = " @ ".join(codes)
            if reduce is not None:
                code = f"{self.alias}.sum({_unwrap(code)}, {self._axis}={reduce})"
            return coefficient * _atom(code)
        if isinstance(expr, MatrixExpr):
            raise _Unsupported(f"no translation for {type(expr).__name__}")
        return self._index_sym(expr, ())

    # -- the module ----------------------------------------------------------------------------
    def module(self) -> str:
        order, results = self._plan_backward()
        loss_name = self._name(self.loss_symbol)
        forward_body = self._emit([loss_name], {})
        backward_body = self._emit(results, {n: line for n, (line, _, _) in self.backward_lines.items()})
        wrt = [self._name(b) for b in order]
        used_helpers = any("_log_softmax(" in line for line in forward_body + backward_body)
        signature = ", ".join(name for name, _, _ in self.variables)
        parts = [self._module_docstring(wrt), "", self._imports(), ""]
        if used_helpers:
            parts += ["", _LOG_SOFTMAX[self.target], ""]
        if any(line.startswith("_check_shape(") for line in self._size_lines([])):
            parts += ["", _CHECK_SHAPE, ""]
        parts += ["", f"def forward(*, {signature}):", self._forward_docstring(loss_name)]
        parts += [f"    {line}" for line in self._size_lines(forward_body)]
        parts += [f"    {line}" for line in forward_body]
        parts += [f"    return {loss_name}", "", ""]
        parts += [f"def backward(*, {signature}):", self._backward_docstring(wrt, order)]
        parts += [f"    {line}" for line in self._size_lines(backward_body)]
        parts += [f"    {line}" for line in backward_body]
        returned = ", ".join(self._grad_name(b) for b in order)
        parts += [f"    return {returned}", ""]
        return "\n".join(parts)

    def _emit(self, wanted, backward: dict) -> list:
        """Assignment lines computing ``wanted`` (forward definitions first, in model order)."""
        needed, stack = set(), list(wanted)
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            line = backward.get(name) or self.lines.get(name)
            if line is None:
                continue
            needed.add(name)
            stack.extend(line.needs)
        lines = []
        for name in self.order:
            if name in needed:
                line = self.lines[name]
                lines.append(f"{name} = {_unwrap(line.code)}" + (f"  # {line.comment}" if line.comment else ""))
        self.emitted = needed
        for name, (line, number, _) in self.backward_lines.items():
            if name in needed:
                lines.append(f"{name} = {_unwrap(line.code)}  # step {number}")
        # backward lines must follow their dependencies: order them by resolution order (already
        # dependency-first, since _resolve finishes a reference before the line that uses it)
        return lines

    def _size_lines(self, body) -> list:
        used = set()
        for line in body:
            used |= set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)", line.split("#")[0]))
        lines = []
        for size, (variable, axis) in self.size_source.items():
            if self._name(size) in used:
                lines.append(f"{self._name(size)} = {variable}.shape[{axis}]")
        checks = []
        for name, _, shape in self.variables:
            if shape and all(isinstance(s, (int, Integer)) for s in shape):
                expected = tuple(int(s) for s in shape)
                checks.append((name, expected))
        for name, expected in checks:
            lines.append(f"_check_shape({name!r}, {name}, {expected!r})")
        return lines

    def _imports(self) -> str:
        return {"numpy": "import numpy as np", "jax": "import jax.numpy as jnp",
                "torch": "import torch"}[self.target]

    # -- docstrings -------------------------------------------------------------------------------
    def _module_docstring(self, wrt) -> str:
        from symgrad import __version__

        status = "every step proven" if self.d.proven else "NOT every step proven"
        lines = [f'"""{_plain(self.d.title)}: forward (the loss) and backward (its gradients).', "",
                 (f"Generated by symgrad {__version__} (target: {self.target}) from a derivation of "
                  f"{len(self.d.steps)} steps, {status}.")]
        lines.append(f"Certificate: {self._certificate()}.")
        lines += ["", "Arrays: vectors are 1-D, matrices 2-D with one example per column."]
        lines.append('"""')
        return "\n".join(_wrap_docstring(lines))

    def _certificate(self) -> str:
        command = self.command or _builtin_command(self.d)
        if command:
            command = re.sub(r"^symgrad codegen", "symgrad derive", _plain(command))
            command = re.sub(r"\s+(--target|-o|--output)(=|\s+)\S+", "", command)
            command = re.sub(r"\s+--allow-unproven", "", command)
            return f"run `{command} --format json`"
        return "run the same `symgrad derive …` with `--format json`"

    def _forward_docstring(self, loss_name) -> str:
        steps = sorted(n for name, n in self.followed.items() if n is not None and name in self.lines)
        lines = [f'    """The loss {loss_name} of "{_plain(self.d.title)}".', "",
                 "    Follows the definitions: " + self._step_list(steps) + "."]
        kinds = {kind[0] for kind in self.kinds.values()}
        if "softmax" in kinds:
            lines.append("    The softmax is exp(log-softmax), the maximum subtracted; log a is the log-softmax.")
        if "sigmoid" in kinds:
            lines.append("    log σ(x) = −logaddexp(0, −x) and log(1 − σ(x)) = −logaddexp(0, x): no overflow, no log(0).")
        lines.append('    """')
        return "\n".join(_wrap_docstring(lines))

    def _backward_docstring(self, wrt, order) -> str:
        used = [(number, step) for name, (_, number, step) in self.backward_lines.items() if name in self.emitted]
        proven = all(step.check is not None and step.check.proven for _, step in used)
        returned = ", ".join("d" + w for w in wrt)
        lines = [f'    """The gradient of the loss by {", ".join(wrt)} (returns {returned}).', "",
                 "    Follows the steps:"]
        lines += [f"    {name}: step {number} ({_plain(step.title)})"
                  for name, (_, number, step) in self.backward_lines.items() if name in self.emitted]
        for assumption in self.model.assumptions.values():
            lines.append(f"    Assumes {_plain(assumption.name)}: {assumption.equation.lhs} = {assumption.equation.rhs} "
                         f"({_plain(assumption.description)}).")
        verdict = "Every step of the derivation is proven" if self.d.proven and proven else "NOT PROVEN"
        lines += [f"    {verdict} ({self._scopes(used)}).", f"    Certificate: {self._certificate()}.", '    """']
        return "\n".join(_wrap_docstring(lines))

    def _scopes(self, used) -> str:
        scopes = sorted({step.check.scope for _, step in used if step.check is not None and step.check.scope})
        return "scope: " + ", ".join(scopes) if scopes else "exact check"

    def _step_list(self, numbers) -> str:
        return "; ".join(f"{n} ({_plain(self.d.steps[n - 1].title)})" for n in numbers)


def _builtin_command(derivation) -> str | None:
    """The derive command of a built-in derivation, from its name and sizes (None: not one)."""
    sizes = derivation.model.sizes
    options = {"softmax-cross-entropy": (("--n", "n"),),
               "softmax-layer": (("--n", "n"), ("--n-prev", "n_prev"), ("--m", "m"))}.get(derivation.name)
    if options is None or not all(key in sizes for _, key in options):
        return None
    words = ["symgrad", "derive", derivation.name]
    for option, key in options:
        words += [option, str(sizes[key])]
    return " ".join(words)


def _unwrap(code: str) -> str:
    """``code`` without one pair of parentheses around all of it."""
    if not (code.startswith("(") and code.endswith(")")):
        return code
    depth = 0
    for position, character in enumerate(code):
        depth += {"(": 1, ")": -1}.get(character, 0)
        if depth == 0 and position < len(code) - 1:
            return code
    return code[1:-1]


def _plain(text: str) -> str:
    """A title as plain Unicode for a docstring (no backslashes, no quotes that end it); names as
    the code spells them (A_prev, z[j])."""
    from symgrad.notation import replace_names
    from symgrad.output.latex import identifiers_as_math
    from symgrad.output.notation import latex_to_unicode

    names: list = []

    def keep(word: str) -> str:
        names.append(word)
        return f"QQ{len(names) - 1}QQ"

    try:
        text = replace_names(identifiers_as_math(text),
                             entry=lambda name, indices: keep(f"{name}[{', '.join(str(i) for i in indices)}]"),
                             name=keep, bold=keep)
        text = latex_to_unicode(text)
        text = re.sub(r"QQ(\d+)QQ", lambda match: names[int(match.group(1))], text)
    except Exception as problem:  # noqa: BLE001 - a title that does not convert stays as it is
        text = f"{text} ({type(problem).__name__})"
    text = text.replace("\\", "").replace('"""', "'''").replace("$", "")
    return " ".join(text.split())


def _wrap_docstring(lines, width: int = 100) -> list:
    import textwrap

    wrapped = []
    for line in lines:
        if len(line) <= width or line.lstrip().startswith("Certificate:"):  # a command stays whole
            wrapped.append(line.rstrip())
            continue
        indent = line[: len(line) - len(line.lstrip())]
        wrapped += textwrap.wrap(line, width=width, subsequent_indent=indent, break_long_words=False,
                                 break_on_hyphens=False)
    return wrapped


_CHECK_SHAPE = '''def _check_shape(name, array, shape):
    """The sizes this code was derived for (a derivation for every n gives code for any size)."""
    if tuple(array.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(array.shape)}; this code was derived for {shape}")'''


_LOG_SOFTMAX = {
    "numpy": '''def _log_softmax(x, axis):
    """log softmax(x) along ``axis``: x − max − log Σ exp(x − max), finite for any finite x."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))''',
    "jax": '''def _log_softmax(x, axis):
    """log softmax(x) along ``axis``: x − max − log Σ exp(x − max), finite for any finite x."""
    shifted = x - jnp.max(x, axis=axis, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))''',
    "torch": '''def _log_softmax(x, axis):
    """log softmax(x) along ``axis``: x − max − log Σ exp(x − max), finite for any finite x."""
    return torch.log_softmax(x, dim=axis)''',
}
