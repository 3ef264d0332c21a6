"""Hypothesis strategies for the expression language: valid programs, and hostile mutations of them.

``programs()`` generates expressions that follow the grammar and its types (vectors z and y of
length n, the scalar c, the size n, numbers including floats, + − * / **, unary minus, every
function of ``FUNCTIONS`` with its arity and argument kinds, grad/jacobian by a vector variable);
``equations()`` generates assumptions ``lhs == rhs``; ``mutants()`` corrupts a valid program with
what an attacker or a careless user writes: attributes, subscripts, lambdas, dunders, walrus,
f-strings, starred and keyword arguments, huge literals, deep nesting, look-alike Unicode, NUL
bytes and random noise. Importable by tests and by ``bench/fuzz.py``.
"""

from __future__ import annotations

import os
import tempfile

from hypothesis import strategies as st

from symgrad.functions import ELEMENTWISE as ELEMENTWISE_FUNCTIONS
from symgrad.language import FUNCTIONS, Variable

VECTORS = ("z", "y")
SCALARS = ("c",)


def variables(n: int) -> dict[str, Variable]:
    """The declarations every generated program is written against."""
    return {"z": Variable("z", n), "y": Variable("y", n), "c": Variable("c", None)}


# A file a hostile program would create, and a module attribute it would set, if it ever ran.
CANARY = os.path.join(tempfile.gettempdir(), f"symgrad-fuzz-canary-{os.getpid()}")
CANARY_ATTRIBUTE = "fuzz_canary_was_set"

ELEMENTWISE = tuple(ELEMENTWISE_FUNCTIONS)  # every entry of functions.py, as it grows
ONE_ARGUMENT = tuple(name for name, f in ELEMENTWISE_FUNCTIONS.items() if f.arity == 1)
VECTOR_TO_VECTOR = ("softmax", "log_softmax")
VECTOR_TO_SCALAR = ("sum", "logsumexp", "mean", "norm")
PAIR_TO_SCALAR = ("dot", "cross_entropy", "binary_cross_entropy", "mse")
PAIR_TO_MATRIX = ("outer",)
VECTOR_TO_MATRIX = ("diag",)
DERIVATIVES = ("grad", "jacobian")
COVERED = set(ELEMENTWISE + VECTOR_TO_VECTOR + VECTOR_TO_SCALAR + PAIR_TO_SCALAR + PAIR_TO_MATRIX
              + VECTOR_TO_MATRIX + DERIVATIVES)
assert COVERED == set(FUNCTIONS), f"the strategy does not cover {set(FUNCTIONS) ^ COVERED}"

OPERATORS = (" + ", " - ", " * ", " / ")


def _float_text(value: float) -> str:
    return repr(value)


numbers = st.one_of(
    st.integers(0, 1000).map(str),
    # valid literals: 0 or between 1e-308 and 1e6 (the language refuses subnormals like 2.2e-309)
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False).map(abs).map(_float_text),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(1, 99), st.integers(-300, 300)),
    st.sampled_from(["0.5", "0.1", "1e-30", "1e60", "2.5", "1_000", "0x10", "n"]),
)
exponents = st.one_of(st.integers(-4, 6).map(str), st.sampled_from(["0.5", "-0.5", "1.5", "64", "-64", "(-2)"]))


def _paren(text: str) -> str:
    return f"({text})"


def _elementwise(draw, first: str, scalar) -> str:
    """f(first, …) for an entry of functions.py: further arguments are scalars (broadcast), or
    a positive number where the function needs one (huber's delta)."""
    name = draw(st.sampled_from(ELEMENTWISE))
    function = ELEMENTWISE_FUNCTIONS[name]
    rest = [draw(st.sampled_from(["0.5", "1", "2.5", "1e-3"])) if k in function.positive_parameters
            else draw(scalar) for k in range(1, function.arity)]
    return f"{name}({', '.join([first, *rest])})"


@st.composite
def _scalar(draw, depth: int):
    if depth <= 0:
        return draw(st.one_of(numbers, st.sampled_from(SCALARS)))
    sub_s, sub_v = _scalar(depth - 1), _vector(depth - 1)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.one_of(numbers, st.sampled_from(SCALARS)))
    if kind == 1:
        return _elementwise(draw, draw(sub_s), sub_s)
    if kind == 2:
        return f"{draw(st.sampled_from(VECTOR_TO_SCALAR))}({draw(sub_v)})"
    if kind == 3:
        return f"{draw(st.sampled_from(PAIR_TO_SCALAR))}({draw(sub_v)}, {draw(sub_v)})"
    if kind == 4:
        return f"-{_paren(draw(sub_s))}"
    if kind == 5:
        return f"{_paren(draw(sub_s))} ** {draw(exponents)}"
    return f"{_paren(draw(sub_s))}{draw(st.sampled_from(OPERATORS))}{_paren(draw(sub_s))}"


@st.composite
def _vector(draw, depth: int):
    if depth <= 0:
        return draw(st.sampled_from(VECTORS))
    sub_s, sub_v = _scalar(depth - 1), _vector(depth - 1)
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return draw(st.sampled_from(VECTORS))
    if kind == 1:
        if draw(st.booleans()):
            return f"{draw(st.sampled_from(VECTOR_TO_VECTOR))}({draw(sub_v)})"
        return _elementwise(draw, draw(sub_v), sub_s)
    if kind == 2:
        return f"grad({draw(sub_s)}, {draw(st.sampled_from(VECTORS))})"
    if kind == 3:
        return f"-{_paren(draw(sub_v))}"
    if kind == 4:
        return f"{_paren(draw(sub_v))} ** {draw(exponents)}"
    if kind == 5:
        return f"{_paren(draw(sub_v))}{draw(st.sampled_from(OPERATORS))}{_paren(draw(sub_s))}"
    if kind == 6:
        return f"{_paren(draw(sub_s))}{draw(st.sampled_from(OPERATORS))}{_paren(draw(sub_v))}"
    return f"{_paren(draw(sub_v))}{draw(st.sampled_from(OPERATORS))}{_paren(draw(sub_v))}"


@st.composite
def _matrix(draw, depth: int):
    sub_v = _vector(max(depth - 1, 0))
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return f"outer({draw(sub_v)}, {draw(sub_v)})"
    if kind == 1:
        return f"diag({draw(sub_v)})"
    return f"jacobian({draw(sub_v)}, {draw(st.sampled_from(VECTORS))})"


@st.composite
def programs(draw, max_depth: int = 4):
    """A well-typed expression of the language (it may still hit a documented limit)."""
    depth = draw(st.integers(0, max_depth))
    kind = draw(st.sampled_from(["scalar", "vector", "vector", "matrix"]))
    if kind == "scalar":
        return draw(_scalar(depth))
    if kind == "vector":
        return draw(_vector(depth))
    matrix = draw(_matrix(depth))
    if draw(st.booleans()):
        return f"{matrix}{draw(st.sampled_from(OPERATORS))}{_paren(draw(_matrix(depth)))}"
    return matrix


@st.composite
def equations(draw, max_depth: int = 3):
    return f"{draw(_scalar(draw(st.integers(0, max_depth))))} == {draw(_scalar(draw(st.integers(0, max_depth))))}"


# -- mutations -------------------------------------------------------------------------------------
HOSTILE = [
    f"open({CANARY!r}, 'w')",
    f"__import__('pathlib').Path({CANARY!r}).touch()",
    f"__import__('os').system('touch {CANARY}')",
    f"setattr(__import__('symgrad'), {CANARY_ATTRIBUTE!r}, 1)",
    f"exec(\"open({CANARY!r}, 'w')\")",
    f"eval(\"open({CANARY!r}, 'w')\")",
    f"(lambda: open({CANARY!r}, 'w'))()",
    f"[open({CANARY!r}, 'w') for _ in z]",
    f"f'{{open({CANARY!r}, \"w\")}}'",
    f"(q := open({CANARY!r}, 'w'))",
    f"z.__class__.__init__.__globals__['__builtins__']['open']({CANARY!r}, 'w')",
    "z.__class__", "z.T", "z.shape", "z[0]", "z[1:2]", "(lambda x: x)(z)", "lambda: 1", "__import__('os')",
    "__builtins__", "(x := 1)", "x := 1", "f'{z}'", "f'{z!r:>{c}}'", "sum(*z)", "sum(*[z])", "sum(z=1)",
    "sum(**{'z': 1})", "dot(z, b=y)", "z < y", "c == c", "z @ y", "z // 2", "z % 2", "z ^ 2", "not z", "~z",
    "z if c else y", "z and y", "[z]", "(z, y)", "{z}", "{'a': z}", "'text'", "b'bytes'", "1j", "...", "None",
    "True", "await z", "yield z", "softmax", "grad", "grad(z, c)", "grad(c, z + y)", "jacobian(z, 1)",
    "1e309", "-1e1000", "z ** 1e309", "1e-400", "9" * 400, "0x" + "f" * 300, "((((9)**64)**64)**64)**64",
    "9**9**9**9", "z ** 100000", "(z ** 64) ** 64 ** 64", "2 ** 0.000000000001",
    "softmax(" * 10 + "z" + ")" * 10, "(" * 200 + "z" + ")" * 200, "-" * 500 + "z", "+".join(["z"] * 300),
    "sofmax(z)", "swish(z)", "softmаx(z)", "ｚ", "１ + z", "z\u00a0+ y", "z\u200b", "e\u0301xp(z)", "\ufeffz",
    "z\x00", "\x00", "z\x07", "\x1b[31mz", "\ud800", "z\r\n+ y", "z\t+\ty",
]

LOOK_ALIKES = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "1": "１", "z": "ｚ",
               "(": "（", ")": "）", "+": "＋", "-": "−", "*": "∗", " ": "\u00a0"}


@st.composite
def mutants(draw, max_depth: int = 3):
    """A valid program corrupted by one or more hostile edits, or pure noise."""
    text = draw(programs(max_depth))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 7))
        position = draw(st.integers(0, len(text)))
        if kind <= 2:  # splice a hostile fragment in, alone or around the program
            fragment = draw(st.sampled_from(HOSTILE))
            text = draw(st.sampled_from([fragment, text[:position] + fragment + text[position:],
                                         f"{text} + {fragment}", f"softmax({fragment})", f"{fragment}({text})"]))
        elif kind == 3:  # a look-alike character
            spots = [i for i, ch in enumerate(text) if ch in LOOK_ALIKES]
            if spots:
                i = draw(st.sampled_from(spots))
                text = text[:i] + LOOK_ALIKES[text[i]] + text[i + 1:]
        elif kind == 4:  # raw noise: any characters, including NUL and surrogates
            noise = draw(st.text(min_size=1, max_size=8))
            text = text[:position] + noise + text[position:]
        elif kind == 5:  # random bytes decoded as Latin-1
            noise = draw(st.binary(min_size=1, max_size=8)).decode("latin-1")
            text = text[:position] + noise + text[position:]
        elif kind == 6:  # deep nesting or a huge literal
            depth = draw(st.integers(30, 300))
            text = draw(st.sampled_from([f"{'(' * depth}{text}{')' * depth}", f"{'-' * depth}{text}",
                                         f"{'exp(' * depth}{text}{')' * depth}",
                                         f"({text}) ** {draw(st.sampled_from(['1e309', '65', '64.5', '9' * 40]))}",
                                         f"{text} * 1{'0' * depth}"]))
        else:  # cut or duplicate a piece
            end = draw(st.integers(position, len(text)))
            text = draw(st.sampled_from([text[:position] + text[end:], text[:end] + text[position:]]))
    return text


anything = st.one_of(programs(), mutants(), st.text(max_size=80),
                     st.text(alphabet="zyc()+-*/.,=_ 0123456789eE'[]:@%<>!", max_size=80))
