"""Stage 1 — the elementwise functions of the language, in one table.

Everything symgrad knows about an elementwise function lives in its entry: its value in SymPy
(what ``evaluate`` builds and definitions unfold to), its derivative written through its own
value where that is the usual form (σ' = σ(1 − σ)), the sentence a derivation states for it, its
LaTeX name, what its intermediate is called, and whether its values are positive. The language,
the tree, the lowering, the local rule and the identity printer all read this table, so adding
a smooth elementwise function (softplus below) is one entry here and one test.

Functions defined by cases (relu, abs) would add a ``cases`` derivative here and return it as
``Local.cases`` from the same rule; nothing else needs to change shape for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sympy import Expr, exp, log, tanh


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
)}


def sign_of_value(function: Elementwise, argument_sign: str | None) -> str | None:
    """"positive", "real" or None (unknown: maybe complex) for f(x), from x's sign."""
    if function.needs_positive_argument:
        return "real" if argument_sign == "positive" else None
    if argument_sign is None:
        return None
    return "positive" if function.positive else "real"
