"""Stage 1 — the elementwise functions of the language, in one table.

Everything symgrad knows about an elementwise function lives in its entry: its value in SymPy
(what ``evaluate`` builds and definitions unfold to), its derivative written through its own
value where that is the usual form (σ' = σ(1 − σ)), the sentence a derivation states for it, its
LaTeX name, what its intermediate is called, and whether its values are positive. The language,
the tree, the lowering, the local rule and the identity printer all read this table, so adding
a smooth elementwise function (softplus below) is one entry here and one test.

Functions defined by cases (relu, abs, maximum, clip, huber) are entries too. Their derivative
(``derivative``, and ``partials`` for the further arguments) is the value used *everywhere*,
the kink included: the minimum-norm subgradient (relu′(0) = 0, abs′(0) = sign(0) = 0, an even
split on a tie of maximum/minimum, clip passing the gradient strictly inside (lo, hi)), written
with SymPy's standard classes (``Heaviside(x, 0)`` — SymPy's own Heaviside(0) is 1/2 —,
``sign``, ``Max``, ``Min``, ``Piecewise``). ``cases`` is the derivative as a lecturer writes it,
by cases *away from* the kinks (a ``Piecewise`` with no value at a kink), and ``convention``
the sentence naming the value taken at a kink: the derivation shows both as steps of their
own, and the checker proves them region by region (``verify/cases.py``), almost everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sympy import (Abs, Eq, Expr, Heaviside, Max, Min, Piecewise, S, erf, exp, log, pi, sign, sqrt,
                   tanh)


@dataclass(frozen=True)
class Elementwise:
    name: str
    value: Callable[[Expr], Expr]  # f(x) in SymPy
    derivative: Callable[[Expr, Expr], Expr]  # f'(x) from (f(x), x): the form a lecturer writes
    fact: str  # the derivative as a derivation states it (LaTeX in $…$)
    tex: str  # the function's name in LaTeX
    description: str  # "the sigmoid of z" reads "<description> of z"
    vector_name: str  # preferred name of its intermediate over a vector (s = σ(z))
    matrix_name: str  # … over a matrix (S = σ(Z))
    positive: bool = False  # its value is positive for every real argument
    needs_positive_argument: bool = False  # real only where its argument is positive (log)
    cost: int = 1  # SymPy nodes it adds to an entry (the language's cost estimate)
    arity: int = 1  # arguments: maximum(a, b), clip(x, lo, hi); each may be a scalar (broadcast)
    # ∂f/∂(argument k) for k = 1, 2, … from (f(args), *args); None: not differentiated by it
    # (a parameter such as huber's δ must not depend on the variable)
    partials: tuple = ()
    # f′ by cases away from the kinks, per argument: (*args) → Piecewise with no value at a kink
    cases: tuple = ()
    convention: str = ""  # the value taken at a kink, as the derivation states it (LaTeX in $…$)
    # where f is not differentiable: (*args) → the equations of its kinks ([Eq(x, 0)] for relu)
    kinks: Callable | None = None
    # arguments that must be numbers known when the expression is built (huber's δ > 0)
    positive_parameters: tuple = ()

    def partial(self, k: int):
        """∂f/∂(argument k) as a function of (f(args), *args), or None."""
        if k == 0:
            return self.derivative
        return self.partials[k - 1] if k - 1 < len(self.partials) else None

    def cases_of(self, k: int):
        return self.cases[k] if k < len(self.cases) else None

    @property
    def by_cases(self) -> bool:
        return bool(self.cases)


def _sigmoid(x: Expr) -> Expr:
    return 1 / (1 + exp(-x))


ELEMENTWISE: dict[str, Elementwise] = {f.name: f for f in (
    Elementwise("exp", exp, lambda out, x: out, r"$(e^x)' = e^x$", r"\exp", "exponential", "v", "E",
                positive=True),
    Elementwise("log", log, lambda out, x: 1 / x, r"$(\log x)' = 1/x$", r"\log", "logarithm", "g", "G",
                needs_positive_argument=True),
    Elementwise("sigmoid", _sigmoid, lambda out, x: out * (1 - out), r"$\sigma' = \sigma (1 - \sigma)$",
                r"\sigma", "sigmoid", "s", "S", positive=True, cost=4),
    Elementwise("tanh", tanh, lambda out, x: 1 - out ** 2, r"$\tanh' = 1 - \tanh^2$", r"\tanh", "tanh",
                "h", "H"),
    Elementwise("softplus", lambda x: log(1 + exp(x)), lambda out, x: _sigmoid(x),
                r"$\operatorname{softplus}'(x) = \sigma(x)$", r"\operatorname{softplus}", "softplus", "r", "R",
                positive=True, cost=4),
    Elementwise("sqrt", sqrt, lambda out, x: 1 / (2 * out), r"$(\sqrt{x})' = 1/(2\sqrt{x})$", r"\operatorname{sqrt}",
                "square root", "q", "Q", positive=True, needs_positive_argument=True, cost=2),
    Elementwise("erf", erf, lambda out, x: 2 / sqrt(pi) * exp(-x ** 2),
                r"$\operatorname{erf}'(x) = \frac{2}{\sqrt{\pi}} e^{-x^2}$", r"\operatorname{erf}",
                "error function", "f", "F", cost=2),
    # -- by cases ---------------------------------------------------------------------------
    Elementwise("relu", lambda x: Max(0, x), lambda out, x: Heaviside(x, 0),
                r"$\operatorname{relu}'(x) = 1$ for $x > 0$ and $0$ for $x < 0$", r"\operatorname{relu}", "ReLU",
                "r", "R", cost=2,
                cases=(lambda x: Piecewise((1, x > 0), (0, x < 0)),),
                convention=r"$\operatorname{relu}'(0) = 0$, the minimum-norm subgradient (as PyTorch does), so "
                           r"$\operatorname{relu}'(x) = \theta(x)$, the step function with $\theta(0) = 0$",
                kinks=lambda x, *rest: [Eq(x, 0)]),
    Elementwise("leaky_relu", lambda x, a: Max(0, x) + a * Min(0, x),
                lambda out, x, a: a + (1 - a) * Heaviside(x, 0),
                r"$\operatorname{leaky\_relu}'(x) = 1$ for $x > 0$ and $\alpha$ for $x < 0$",
                r"\operatorname{leaky\_relu}", "leaky ReLU", "r", "R", cost=5, arity=2,
                partials=(lambda out, x, a: Min(0, x),),
                cases=(lambda x, a: Piecewise((1, x > 0), (a, x < 0)), lambda x, a: Min(0, x)),
                convention=r"$\operatorname{leaky\_relu}'(0) = \alpha$ (PyTorch's convention; the minimum-norm "
                           r"subgradient for $0 \le \alpha \le 1$): the derivative is "
                           r"$\alpha + (1 - \alpha)\,\theta(x)$, with $\theta(0) = 0$",
                kinks=lambda x, *rest: [Eq(x, 0)]),
    Elementwise("abs", Abs, lambda out, x: sign(x),
                r"$|x|' = 1$ for $x > 0$ and $-1$ for $x < 0$", r"\operatorname{abs}", "absolute value", "c", "C",
                cost=2, cases=(lambda x: Piecewise((1, x > 0), (-1, x < 0)),),
                convention=r"$\operatorname{sign}(0) = 0$ as the derivative at $0$, the minimum-norm subgradient, so "
                           r"$|x|' = \operatorname{sign}(x)$",
                kinks=lambda x, *rest: [Eq(x, 0)]),
    Elementwise("sign", sign, lambda out, x: S.Zero,
                r"$\operatorname{sign}'(x) = 0$ for $x > 0$ and for $x < 0$", r"\operatorname{sign}", "sign", "s", "S",
                cost=2, cases=(lambda x: Piecewise((0, x > 0), (0, x < 0)),),
                convention=r"$0$ at $x = 0$, where sign jumps and has no derivative (as PyTorch's sign)",
                kinks=lambda x: [Eq(x, 0)]),
    Elementwise("maximum", Max, lambda out, a, b: Heaviside(a - b, S.Half),
                r"$\partial \operatorname{max}(a, b)/\partial a = 1$ for $a > b$ and $0$ for $a < b$", r"\max", "maximum",
                "m", "M", cost=3, arity=2,
                partials=(lambda out, a, b: Heaviside(b - a, S.Half),),
                cases=(lambda a, b: Piecewise((1, a > b), (0, a < b)), lambda a, b: Piecewise((0, a > b), (1, a < b))),
                convention=r"half the gradient for each argument on a tie (the minimum-norm subgradient, as PyTorch's "
                           r"maximum), so $\partial \operatorname{max}(a, b)/\partial a = \theta(a - b)$ with $\theta(0) = 1/2$",
                kinks=lambda a, b: [Eq(b, a) if a.is_number else Eq(a, b)]),
    Elementwise("minimum", Min, lambda out, a, b: Heaviside(b - a, S.Half),
                r"$\partial \operatorname{min}(a, b)/\partial a = 1$ for $a < b$ and $0$ for $a > b$", r"\min", "minimum",
                "m", "M", cost=3, arity=2,
                partials=(lambda out, a, b: Heaviside(a - b, S.Half),),
                cases=(lambda a, b: Piecewise((1, a < b), (0, a > b)), lambda a, b: Piecewise((0, a < b), (1, a > b))),
                convention=r"half the gradient for each argument on a tie (the minimum-norm subgradient, as PyTorch's "
                           r"minimum), so $\partial \operatorname{min}(a, b)/\partial a = \theta(b - a)$ with $\theta(0) = 1/2$",
                kinks=lambda a, b: [Eq(b, a) if a.is_number else Eq(a, b)]),
    Elementwise("clip", lambda x, lo, hi: Min(Max(x, lo), hi),
                lambda out, x, lo, hi: Heaviside(x - lo, 0) * Heaviside(hi - x, 0),
                r"$\partial \operatorname{clip}(x, l, h)/\partial x = 1$ for $l < x < h$ and $0$ for $x < l$ or "
                r"$x > h$", r"\operatorname{clip}", "clip", "c", "C", cost=4, arity=3,
                partials=(lambda out, x, lo, hi: Heaviside(lo - x, 0), lambda out, x, lo, hi: Heaviside(x - hi, 0)),
                cases=(lambda x, lo, hi: Piecewise((1, (x > lo) & (x < hi)), (0, (x < lo) | (x > hi))),
                       lambda x, lo, hi: Piecewise((1, x < lo), (0, x > lo)),
                       lambda x, lo, hi: Piecewise((1, x > hi), (0, x < hi))),
                convention=r"$0$ at $x = l$ and at $x = h$, the minimum-norm subgradient: the gradient passes "
                           r"strictly inside $(l, h)$ only, $\theta(x - l)\,\theta(h - x)$ with $\theta(0) = 0$",
                kinks=lambda x, lo, hi: [Eq(x, lo), Eq(x, hi)]),
    Elementwise("huber", lambda r, d: Piecewise((r ** 2 / 2, Abs(r) <= d), (d * (Abs(r) - d / 2), True)),
                lambda out, r, d: Min(Max(r, -d), d),
                r"$\operatorname{huber}'(r) = r$ for $|r| \le \delta$ and $\delta \operatorname{sign}(r)$ "
                r"otherwise, that is $\operatorname{clip}(r, -\delta, \delta)$ (continuous: no kink to settle)",
                r"\operatorname{huber}", "Huber loss", "h", "H", cost=8, arity=2, positive_parameters=(1,),
                partials=(None,)),
)}


def sign_of_value(function: Elementwise, argument_sign: str | None) -> str | None:
    """"positive", "real" or None (unknown: maybe complex) for f(x), from x's sign."""
    if function.needs_positive_argument:
        return ("positive" if function.positive else "real") if argument_sign == "positive" else None
    if argument_sign is None:
        return None
    return "positive" if function.positive else "real"


# -- declared (abstract) functions ---------------------------------------------------------------
# ``--vars 'g=function'`` declares g an abstract scalar function applied entry by entry, as a
# course writes a layer's activation g[l]: nothing is known of it but that it is differentiable.
# Its entry in the table is built from its name: its value is g(x), a SymPy function whose
# derivative is g′(x), another undefined function (so SymPy's own ``diff`` gives g′(u)·u′ by the
# chain rule, and the exact checker proves steps with g symbolically). The numeric check
# substitutes concrete smooth functions for g, g′ (``concrete_interpretation``).

from sympy import Function, sin  # noqa: E402


class AbstractFunction(Function):
    """g(x) (order 0), g′(x) (order 1), g″(x) …: an undefined real function of one real argument
    and its derivatives. ``fdiff`` is the chain rule's only knowledge of it."""

    nargs = 1
    base_name = "g"
    order = 0

    def fdiff(self, argindex=1):
        return abstract_sympy(self.base_name, self.order + 1)(self.args[0])

    def _eval_is_real(self):
        return True if self.args[0].is_real else None

    def _eval_is_extended_real(self):
        return True if self.args[0].is_extended_real else None

    @classmethod
    def symbol_text(cls, unicode: bool = True) -> str:
        return cls.base_name + ("′" * cls.order if unicode else "'" * cls.order)

    @classmethod
    def symbol_tex(cls) -> str:
        name = cls.base_name
        tex_name = name[0] + (f"_{{{name[1:]}}}" if name[1:] else "")
        return tex_name + "'" * cls.order

    def __reduce_ex__(self, protocol):  # the class is made from its name: pickled as (name, order)
        return _rebuild_abstract, (self.base_name, self.order, self.args)

    def __reduce__(self):
        return self.__reduce_ex__(2)

    def _latex(self, printer):
        if hasattr(printer, "_print_AbstractFunction"):  # symgrad's printers: the name in their notation
            return printer._print_AbstractFunction(self)
        return rf"{self.symbol_tex()}\left({printer._print(self.args[0])}\right)"

    def _sympystr(self, printer):
        return f"{self.symbol_text()}({printer._print(self.args[0])})"

    def _pretty(self, printer):
        from sympy.printing.pretty.stringpict import prettyForm

        if hasattr(printer, "_print_AbstractFunction"):
            return printer._print_AbstractFunction(self)
        return prettyForm(*prettyForm(*printer._print(self.args[0]).parens()).left(self.symbol_text()))


_ABSTRACT_CLASSES: dict[tuple[str, int], type] = {}
DECLARED: dict[str, Elementwise] = {}  # abstract entries built so far, by name (a cache: each is
# a function of its name alone, so a name declared in one problem means the same in the next)


def abstract_sympy(name: str, order: int = 0) -> type:
    """The SymPy function class of g (order 0) or of its order-th derivative; one class per
    (name, order), so g built twice is one function."""
    key = (name, order)
    if key not in _ABSTRACT_CLASSES:
        class_name = name if order == 0 else f"{name}_{'prime' * order}"
        _ABSTRACT_CLASSES[key] = type(class_name, (AbstractFunction,),
                                      {"base_name": name, "order": order, "__module__": __name__})
    return _ABSTRACT_CLASSES[key]


def _rebuild_abstract(name: str, order: int, args: tuple):
    return abstract_sympy(name, order)(*args)


def abstract(name: str) -> Elementwise:
    """The table's entry for a declared function g: value g(x), derivative g′(x)."""
    if name not in DECLARED:
        g, g_prime = abstract_sympy(name), abstract_sympy(name, 1)
        tex_name = g.symbol_tex()
        DECLARED[name] = Elementwise(
            name, g, lambda out, x, _p=g_prime: _p(x),
            rf"${tex_name}'$ its derivative (${tex_name}$ is any differentiable function)", tex_name,
            f"the declared function {name}", "a", "A")
    return DECLARED[name]


def elementwise(name: str) -> Elementwise | None:
    """The table's entry for ``name``: a built-in function, a declared one, or None."""
    return ELEMENTWISE.get(name) or DECLARED.get(name)


def is_elementwise(name: str) -> bool:
    return name in ELEMENTWISE or name in DECLARED


def concrete_interpretation(function, variant: int):
    """For the numeric check: a concrete smooth function standing for g^(order), as an mpmath
    function of one argument. ``variant`` 0 is sin-like, 1 tanh-like and polynomial; each name
    gets its own scale, so g1 and g2 differ and a step confusing them is caught."""
    import mpmath

    scale = mpmath.mpf(1) + mpmath.mpf(sum(map(ord, function.base_name)) % 11) / 8
    order = function.order
    if variant % 2 == 0:  # g(x) = sin(c x) + x/3
        def value(x):
            x = mpmath.mpf(x) if not isinstance(x, (mpmath.mpf, mpmath.mpc)) else x
            if order == 0:
                return mpmath.sin(scale * x) + x / 3
            if order == 1:
                return scale * mpmath.cos(scale * x) + mpmath.mpf(1) / 3
            return mpmath.diff(lambda t: mpmath.sin(scale * t) + t / 3, x, order)
    else:  # g(x) = tanh(c x) + x²/5
        def value(x):
            if order == 0:
                return mpmath.tanh(scale * x) + x ** 2 / 5
            if order == 1:
                return scale * (1 - mpmath.tanh(scale * x) ** 2) + 2 * x / 5
            return mpmath.diff(lambda t: mpmath.tanh(scale * t) + t ** 2 / 5, x, order)
    return value


def concrete_sympy(function, variant: int = 0):
    """The SymPy expression of the same concrete function at x (for tests and exact checks)."""
    from sympy import Rational as _R, Symbol as _Symbol

    x = _Symbol("x", real=True)
    scale = 1 + _R(sum(map(ord, function.base_name)) % 11, 8)
    g = sin(scale * x) + x / 3 if variant % 2 == 0 else tanh(scale * x) + x ** 2 / 5
    return x, g.diff(x, function.order) if function.order else g

