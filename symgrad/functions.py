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

from sympy import (Abs, Eq, Expr, Heaviside, Max, Min, Piecewise, Rational, S, erf, exp, log, pi, sign, sqrt,
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
