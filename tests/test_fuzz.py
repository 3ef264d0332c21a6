"""The expression language's contract, for any input: a value or a one-line ``LanguageError`` with
a column, within a time bound, and nothing ever executed.

Grammar-aware fuzzing (``tests/strategies.py``) runs a sample here on every push (about 30 s);
``python bench/fuzz.py --examples 100000`` runs the long campaign.
"""

from __future__ import annotations

import ast
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sympy import Eq, ImmutableMatrix, Integer
from sympy.core.expr import Expr

import symgrad
from symgrad.language import FUNCTIONS, MAX_SIZE, LanguageError, evaluate, parse_tree

sys.path.insert(0, str(Path(__file__).resolve().parent))
import strategies  # noqa: E402  (tests/ is not a package)

SECONDS = 10  # any accepted input evaluates (or is refused) well within this, even on a loaded CI machine
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))

# The reasons a *well-typed* program may still be refused: documented limits and undefined values.
LIMITS = ("too large to build", "too much work", "reaches degree", "digits", "undefined", "constrains nothing",
          "too large to evaluate")


class _TimeLimit(Exception):
    pass


@contextmanager
def deadline(seconds: float = SECONDS):
    """Fail (not hang) when the body runs longer than ``seconds`` — a guard in case a bound is wrong."""
    def expired(signum, frame):
        raise _TimeLimit(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < seconds


def outcome(text: str, n: int = 3, equation: bool | None = None):
    """The value, or the LanguageError; anything else propagates and fails the test."""
    equation = "==" in text if equation is None else equation
    with deadline():
        try:
            return evaluate(text, strategies.variables(n), allow_equation=equation,
                            constants={"n": Integer(n)})
        except LanguageError as error:
            assert "\n" not in str(error) and str(error), repr(str(error))
            assert error.column is None or 1 <= error.column <= len(text) + 1, (error.column, text)
            return error


def assert_nothing_ran():
    assert not os.path.exists(strategies.CANARY), "a generated program created the canary file"
    assert not hasattr(symgrad, strategies.CANARY_ATTRIBUTE), "a generated program set an attribute"


# -- properties ----------------------------------------------------------------------------------
@settings(FUZZ, max_examples=120)
@given(strategies.programs(max_depth=3), st.integers(1, 3))
def test_valid_programs_give_a_value_or_a_documented_limit(text, n):
    result = outcome(text, n)
    if isinstance(result, LanguageError):
        assert any(reason in str(result) for reason in LIMITS), f"{text!r} refused: {result}"
    else:
        assert isinstance(result, (ImmutableMatrix, Expr)), type(result)


@settings(FUZZ, max_examples=40)
@given(strategies.equations(max_depth=2), st.integers(1, 3))
def test_valid_equations_give_an_equation_or_a_documented_limit(text, n):
    result = outcome(text, n, equation=True)
    if isinstance(result, LanguageError):
        assert any(reason in str(result) for reason in LIMITS), f"{text!r} refused: {result}"
    else:
        assert isinstance(result, Eq)


@settings(FUZZ, max_examples=300)
@given(strategies.mutants(), st.integers(1, 3))
def test_mutated_programs_only_ever_raise_language_errors_and_run_nothing(text, n):
    outcome(text, n)
    outcome(text, n, equation=True)
    assert_nothing_ran()


@settings(FUZZ, max_examples=150)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1"))))
def test_noise_only_ever_raises_language_errors(text):
    outcome(text)
    assert_nothing_ran()


@settings(FUZZ, max_examples=6)
@given(strategies.programs(max_depth=2))
def test_a_sample_through_the_real_checker_ends_in_a_verdict_or_a_clean_error(text):
    """lhs = rhs = a generated program, checked by ``check_identity`` as ``verify`` does."""
    from symgrad.errors import UsageError
    from symgrad.identity_file import Identity
    from symgrad.verify.identity import check_identity

    identity = Identity("fuzz", "", {"z": "n", "y": "n", "c": "scalar"}, (1, 2), (), text, text,
                        Path("fuzz.toml"), f'lhs = "{text}"\n')
    with deadline(60):
        try:
            result = check_identity(identity)
        except UsageError as error:  # IdentityFileError: the language refused the expression
            assert "\n" not in str(error)
            return
    assert result.holds is not False, f"{text!r} = itself was refuted: {result.results}"


# -- the crashes fuzzing found, each fixed ----------------------------------------------------------
@pytest.mark.parametrize("text, column, words", [
    ("1e309", 1, "out of range"),
    ("-1e1000", 2, "out of range"),
    ("z ** 1e309", 6, "out of range"),
    ("1e-400", 1, "out of range"),
    ("softmax(z) * 1.5e400", 14, "out of range"),
    # an exponent of a billion: refused from the text, never built (Fraction would hang on it)
    ("(746353.1-1e1000431880051) * (z)", 11, "out of range"),
    ("1e-1000431880051 * z", 1, "out of range"),
])
def test_float_literals_that_overflow_are_refused_not_crashed(text, column, words):
    error = outcome(text)
    assert isinstance(error, LanguageError) and words in str(error) and error.column == column


def test_literals_are_exact_as_written():
    assert outcome("0.1") == Integer(1) / 10
    assert outcome("1e-300") == Integer(10) ** -300
    assert outcome("1e300") == Integer(10) ** 300
    assert outcome("0.0e99999999999 * z") == ImmutableMatrix([0, 0, 0])
    assert outcome("0.001e311") == Integer(10) ** 308


@pytest.mark.parametrize("text", [
    "((((9)**64)**64)**64)**64",
    "(((2 ** 64) ** 64) ** 64)",
    "((z ** 64) ** 64) ** 64",
    "((z * z * z) ** 64) ** 64",
    "(1e300 * z) ** 64",
    "((c + 9) ** 64) ** 64",
])
def test_exponent_towers_are_refused_before_any_work(text):
    started = time.monotonic()
    with pytest.raises(LanguageError, match="degree|digits"):
        parse_tree(text)
    assert time.monotonic() - started < 0.5


def test_the_largest_power_allowed_is_built_quickly():
    value = outcome("((z + 1) ** 64) ** 64", n=MAX_SIZE)
    assert isinstance(value, ImmutableMatrix) and value.shape == (MAX_SIZE, 1)


@pytest.mark.parametrize("text, n", [
    ("softmax(" * 10 + "z" + ")" * 10, 3),
    ("log_softmax(" * 8 + "z" + ")" * 8, 3),
    ("jacobian(softmax(softmax(softmax(softmax(z)))), z)", MAX_SIZE),
    ("grad(cross_entropy(softmax(z), y), z)", MAX_SIZE),
    ("outer(softmax(softmax(z)), softmax(softmax(z)))", MAX_SIZE),
])
def test_work_too_large_for_the_sizes_is_refused_up_front(text, n):
    started = time.monotonic()
    error = outcome(text, n)
    assert isinstance(error, LanguageError) and "too" in str(error) and "smaller n" in str(error), error
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("text, n", [
    ("grad(cross_entropy(softmax(z), y), z)", 8),
    ("jacobian(softmax(z), z)", 8),
    ("softmax(softmax(softmax(z)))", 8),
    ("grad(logsumexp(z), z)", 16),
    ("outer(softmax(z), softmax(z))", 32),
])
def test_ordinary_work_is_accepted_and_fast(text, n):
    assert isinstance(outcome(text, n), ImmutableMatrix)


def test_sympy_failures_underneath_become_language_errors(monkeypatch):
    """SymPy's assumption system raises KeyError('extended_real') on states it does not expect;
    the boundary reports it as a LanguageError naming the problem, at the call's column."""
    def broken(value):
        raise KeyError("extended_real")

    monkeypatch.setitem(FUNCTIONS, "tanh", (broken, 1))
    error = outcome("z + tanh(z)")
    assert isinstance(error, LanguageError) and "KeyError" in str(error) and "extended_real" in str(error)
    assert error.column == 5


def test_our_own_errors_are_not_disguised_as_sympy_failures():
    error = outcome("dot(z, c)")
    assert isinstance(error, LanguageError) and "SymPy" not in str(error) and "dot needs a vector" in str(error)


@pytest.mark.parametrize("text", ["(440) ** 64 == tanh((binary_cross_entropy(y, y)) ** 3)",
                                  "tanh((cross_entropy(y, y)) ** -64) == c"])
def test_assumptions_are_built_without_sympy_deciding_them(text):
    """Both ran past 10 s inside SymPy's Eq, which tries to decide the equation (bench/fuzz.py)."""
    started = time.monotonic()
    assert isinstance(outcome(text, equation=True), Eq)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("text", ["0 == 1", "1 == 1", "sum(y) == sum(y)", "mse(z, z) == 0"])
def test_constant_assumptions_are_refused(text):
    error = outcome(text, equation=True)
    assert isinstance(error, LanguageError) and "constrains nothing" in str(error)


@pytest.mark.parametrize("text", ["1/0", "z / 0", "log(0)", "0 ** -1", "c / (c - c)"])
def test_undefined_values_are_refused(text):
    error = outcome(text)
    assert isinstance(error, LanguageError) and "undefined" in str(error)


@pytest.mark.parametrize("text", ["softplus(exp(4e6))", "softplus(exp(4e6)) == 0.0", "exp(exp(exp(20)))",
                                  "maximum(exp(exp(30)), z)", "log(1 + exp(exp(2000)))",
                                  # the same towers one vector entry at a time (y / y is a vector of 1s)
                                  "exp(exp(exp(exp(exp(y / y))))) + 1", "softmax(exp(exp(exp(exp(y / y)))))"])
def test_astronomical_constants_are_refused_quickly(text):
    """The 100,000-example campaign found these running for minutes inside mpmath (a sign query
    on exp(exp(4e6)) evaluates it at millions of digits)."""
    started = time.monotonic()
    error = outcome(text, equation="==" in text)
    assert isinstance(error, LanguageError) and "beyond" in str(error)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("text", ["softplus(exp(20))", "exp(700) * z", "log(exp(3)) + z"])
def test_large_but_representable_constants_are_accepted(text):
    assert not isinstance(outcome(text), Exception)


# -- messages that help ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, column, words", [
    ("c @ z", 1, ["`@` (matrix product)", "dot(a, b)"]),
    ("sofmax(z)", 1, ["unknown function 'sofmax'", "did you mean softmax?"]),
    ("sigmod(z)", 1, ["did you mean sigmoid?"]),
    ("swish(z)", 1, ["unknown function 'swish'", "softmax", "sigmoid", "cross_entropy"]),
    ("softmax(zz)", 9, ["unknown name 'zz'", "did you mean z?"]),
    ("softmax + 1", 1, ["softmax is a function"]),
    ("z.T", 1, ["attribute access"]),
    ("z.sum()", 1, ["method call"]),
    ("z[0]", 1, ["indexing"]),
    ("(lambda: z)()", 1, ["calling a lambda"]),
    ("lambda: z", 1, ["a lambda"]),
    ("__import__('os')", 1, ["dunder"]),
    ("z + __builtins__", 5, ["dunder"]),
    ("(x := z)", 4, ["`:=` (assignment)"]),
    ("f'{z}'", 1, ["f-string"]),
    ("sum(*z)", 5, ["starred argument"]),
    ("dot(z, b=y)", 8, ["keyword argument `b=`"]),
    ("sum(**z)", 5, ["keyword unpacking"]),
    ("z < y", 1, ["comparison (`<`)", "only allowed in assume"]),
    ("z // 2", 1, ["`//` (floor division)"]),
    ("'text'", 1, ["a string"]),
    ("True", 1, ["boolean"]),
    ("z if c else y", 1, ["`if`/`else`"]),
    ("[z]", 1, ["a list"]),
    ("grad(c, z + y)", 9, ["second argument of grad must be a vector variable"]),
    ("softmax(z, y)", 1, ["softmax takes 1 argument, not 2"]),
    ("   z +* y", 7, ["syntax error"]),
])
def test_messages_name_what_is_wrong_with_the_column(text, column, words):
    error = outcome(text)
    assert isinstance(error, LanguageError), error
    for word in words:
        assert word in str(error), (word, str(error))
    assert error.column == column, (error.column, str(error))


@pytest.mark.parametrize("text, column, words", [
    ("softmаx(z)", 6, ["U+0430 CYRILLIC SMALL LETTER A", "did you mean 'a'?"]),  # Cyrillic а
    ("ｚ + y", 1, ["U+FF5A", "did you mean 'z'?"]),  # fullwidth z: Python would NFKC it to z
    ("１ + z", 1, ["U+FF11", "did you mean '1'?"]),
    ("z\u00a0+ y", 2, ["NO-BREAK SPACE", "did you mean ' '?"]),
    ("z − y", 3, ["MINUS SIGN"]),
    ("z\x00", 2, ["NUL character"]),
    ("\x00", 1, ["NUL character"]),
    ("z + \x1b[31m", 5, ["control character U+001B"]),
    ("\ud800", 1, ["U+D800"]),
])
def test_look_alike_unicode_and_nul_bytes_get_a_clear_message(text, column, words):
    """Decision: expressions are ASCII. Python NFKC-normalises identifiers (fullwidth ``ｚ`` would
    silently mean ``z``) and would read Cyrillic ``softmаx`` as an unknown name: both are refused
    with the character's code point and name, and the ASCII character it looks like."""
    error = outcome(text)
    assert isinstance(error, LanguageError), error
    for word in words:
        assert word in str(error), (word, str(error))
    assert error.column == column


def test_hostile_programs_never_run():
    for text in strategies.HOSTILE:
        outcome(text)
    assert_nothing_ran()


def test_parse_tree_checks_the_whole_whitelist_so_loading_a_file_reports_it():
    """identity_file and the LaTeX export call parse_tree only: unknown functions, ``@`` and
    keyword arguments must fail there, not later in a printer."""
    for text in ("sofmax(z)", "swish(z)", "c @ z", "sum(z=1)", "z ** (c + 1)", "1e309", "z.T"):
        with pytest.raises(LanguageError):
            parse_tree(text)
    assert isinstance(parse_tree("  softmax(z) - y"), ast.Expression)


@pytest.mark.parametrize("text", ["-", "~", "f(", "  (", "z +"])
def test_syntax_errors_have_a_column_inside_the_text(text):
    error = outcome(text)
    assert isinstance(error, LanguageError) and "syntax error" in str(error)
    assert 1 <= error.column <= len(text) + 1


@pytest.mark.parametrize("command", ["verify", "export"])
def test_the_cli_reports_language_errors_in_one_line_quickly(tmp_path, command):
    """The same one-line message from verify and export (export used to die with a KeyError in
    its printer on ``sofmax``), and the limits stop the issue's slow inputs before any work."""
    import subprocess

    cases = [("sofmax(z)", "did you mean softmax?"), ("softmax(" * 10 + "z" + ")" * 10, "too large to build")]
    for lhs, words in cases[:1] if command == "export" else cases:  # export does not build: no size limits
        path = tmp_path / "t.toml"
        path.write_text(f'[[identity]]\nname = "t"\nvars = {{ z = "n", c = "scalar" }}\nn = [3]\n'
                        f'lhs = "{lhs}"\nrhs = "z"\n', encoding="utf-8")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "symgrad", command, str(path), "-o", str(tmp_path / "o.tex")]
                                if command == "export" else [sys.executable, "-m", "symgrad", command, str(path)],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert result.returncode == 2, (lhs, result.stdout, result.stderr)
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert time.monotonic() - started < 30
