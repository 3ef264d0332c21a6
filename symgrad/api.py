"""The library API the CLI is a thin layer over; a notebook or a test calls these directly.

    >>> from symgrad import derive, render
    >>> d = derive("softmax-cross-entropy", n=3)
    >>> d.proven
    True
    >>> print(render(d, "latex"))          # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import IO, TYPE_CHECKING, Any

from symgrad.errors import UsageError
from symgrad.identity_file import IdentityFileError
from symgrad.output.notation import NOTATIONS, Notation
from symgrad.recipes import BUILTINS, GENERAL, Builtin, builtin  # noqa: F401 (the API names them)
from symgrad.limits import (DEFAULT_DERIVE_TIME_LIMIT, DEFAULT_TIME_LIMIT, EXTRA_SIZES, MAX_N,  # noqa: F401
                            MAX_MATRIX_WORK, expression_sizes, parse_size, parse_sizes,
                            parse_time_limit, parse_variables, refuse_too_much_work)

if TYPE_CHECKING:  # (SymPy is imported when something is derived or checked, not with this module:
    from pathlib import Path  # a verify served from the cache never imports it)

    from symgrad.cache import ResultCache
    from symgrad.identity_file import Identity
    from symgrad.steps import Derivation
    from symgrad.verdicts import IdentityResult

FORMATS = ("text", "latex", "markdown", "json")
STDIN = "-"  # as a path: read one identity file from standard input
STDIN_NAME = "<stdin>"  # what that file is called in messages and reports


Shapes = Mapping[str, "int | str"] | str  # {"z": "n", "W": "n x p", "T": "scalar"} or "z=n,W=n x p,T=scalar"
Sizes = Mapping[str, "int | str"] | str  # {"n": 3, "p": "symbolic"} or "n=3,p=symbolic"


def derive(name: str | None = None, n: int | str | None = None, *, expr: str | None = None,
           wrt: str | Sequence[str] | None = None, vars: Shapes | None = None, sizes: Sizes | None = None,
           assume: str | Sequence[str] = (), hidden: str | Sequence[str] | None = None,
           output_layer: str | None = None, one_hot: int | str | None = None,
           file: str | PathLike[str] | None = None, identity: str | None = None,
           normalized_labels: bool = True, check: bool = True,
           progress: Callable[[int, int, str], None] | None = None, time_limit: float | None = None,
           **extra_sizes: int | str) -> Derivation:
    """Derive a gradient step by step and (by default) check every step: the one entry point
    for everything ``symgrad derive`` derives. ``n`` is the size (an integer, or "symbolic": a
    proof for every n); it defaults to 3.

    - a built-in: ``derive("softmax-cross-entropy", n=3)`` (the default; ``one_hot=2``: a
      one-hot label y = e_2, ``normalized_labels=False``: stop before Σy = 1), or
      ``derive("softmax-layer", n=3, n_prev=2, m=2)``;
    - any loss: ``derive(expr="binary_cross_entropy(sigmoid(z), y)", wrt="z", vars="z=n,y=n")``,
      ``vars`` each variable's shape (a dict or the CLI's "z=n,W=n x p,T=scalar"), ``wrt`` one
      variable or several ("W1,b1" or a list), ``sizes`` the value of each size name (a dict or
      "n=3,p=2,m=2"), ``assume`` one equation or several ("sum(y) == 1");
    - a network: ``derive("network", hidden=["tanh"], output_layer="softmax", sizes="n0=2,n1=3,n2=2,m=2")``;
    - an identity's lhs, ending at its rhs: ``derive(file="ids.toml", identity="NAME")``.

    Raises ``UsageError`` for bad or contradictory input, and ``symgrad.budget.TimeLimitReached``
    when ``time_limit`` seconds (if given) run out.

        >>> import symgrad
        >>> d = symgrad.derive(expr="mse(tanh(z), y)", wrt="z", vars={"z": "n", "y": "n"}, n=2)
        >>> d.proven
        True
    """
    from symgrad.budget import deadline

    limit = parse_time_limit(time_limit)
    given = {"expr": expr, "wrt": wrt, "vars": vars, "sizes": sizes, "assume": assume or None, "hidden": hidden,
             "output_layer": output_layer, "one_hot": one_hot, "file": file, "identity": identity,
             "normalized_labels": None if normalized_labels else False,
             **{key: value for key, value in extra_sizes.items()}}

    def only(what: str, *allowed: str) -> None:
        """A UsageError for any option given that ``what`` does not take."""
        wrong = [key for key, value in given.items() if value is not None and key not in allowed]
        if wrong:
            raise UsageError(f"{', '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply to {what}"
                             + (f" (it takes {', '.join(allowed)})" if allowed else ""))

    if name is not None and not isinstance(name, str):
        raise UsageError(f"the derivation's name must be a string, not {name!r}")
    if file is None and name is not None and name.endswith(".toml"):
        file, name = name, None  # as on the command line: derive("ids.toml", identity=...)
        given["file"] = file
    with deadline(limit):
        if expr is not None:
            if name is not None:
                raise UsageError("give either a derivation name or expr=, not both")
            only("expr=", "expr", "wrt", "vars", "sizes", "assume")
            if vars is None:
                raise UsageError('expr= needs vars= (each variable\'s shape, e.g. vars="z=n,y=n")')
            return derive_expression(expr, variables=_shapes(vars), wrt=_names(wrt, "wrt"),
                                     assume=_equations(assume), n=n, sizes=_sizes(sizes),
                                     check=check, progress=progress)
        if file is not None:
            if name is not None:
                raise UsageError("give either a derivation name or file=, not both")
            only("an identity file", "file", "identity")
            return derive_identity(file, identity, n=3 if n is None else n, check=check, progress=progress)
        name = "softmax-cross-entropy" if name is None else name
        if name == "network":
            only("network", "hidden", "output_layer", "sizes")
            if n is not None:
                raise UsageError("network takes its sizes as sizes= (n0, n1, …, m), not n=")
            return derive_network(_names(hidden, "hidden") or ["tanh"], output_layer or "softmax",
                                  sizes=_sizes(sizes), check=check, progress=progress)
        if one_hot is not None:
            if name != "softmax-cross-entropy":
                raise UsageError(f"one_hot applies to softmax-cross-entropy, not to {name!r}")
            only("one_hot", "one_hot")
            return derive_one_hot(one_hot, 3 if n is None else n, check=check, progress=progress)
        from symgrad.derivation import DERIVATIONS

        if name not in DERIVATIONS:  # (the messages the command line has always printed)
            known = ", ".join(sorted(DERIVATIONS))
            raise UsageError(f"unknown derivation {name!r}; known: {known}")
        accepted = EXTRA_SIZES.get(name, ())
        for key in extra_sizes:
            if key not in accepted:
                raise UsageError(f"--{key.replace('_', '-')} does not apply to {name}"
                                 + (f" (it takes --n{''.join(' --' + k.replace('_', '-') for k in accepted)})"))
        only(name, "normalized_labels", *accepted)
        size = parse_size(3 if n is None else n)
        extra = {key: parse_size(value, key.replace("_", "-")) for key, value in extra_sizes.items()}
        refuse_too_much_work(name, size, extra)
        derivation = DERIVATIONS[name](size, normalized_labels=normalized_labels, **extra)
        return _checked(derivation, progress) if check else derivation


def _shapes(shapes: Shapes) -> dict[str, int | str]:
    """Each variable's shape from a dict or the CLI's "z=n,W=n x p" (validated the same way)."""
    if isinstance(shapes, str):
        return parse_variables(shapes)
    if not isinstance(shapes, Mapping):
        raise UsageError(f'vars must be a dict such as {{"z": "n", "y": "n"}} or a string such as "z=n,y=n", '
                         f"not {type(shapes).__name__}")
    return parse_variables(_assignments_text(shapes, "vars", "shape"))


def _sizes(sizes: Sizes | None) -> dict[str, int | str] | None:
    """Each size name's value from a dict or the CLI's "n=3,p=2" (validated the same way)."""
    if sizes is None or isinstance(sizes, str):
        return None if sizes is None else parse_sizes(sizes)
    if not isinstance(sizes, Mapping):
        raise UsageError(f'sizes must be a dict such as {{"n": 3, "m": 2}} or a string such as "n=3,m=2", '
                         f"not {type(sizes).__name__}")
    return parse_sizes(_assignments_text(sizes, "sizes", "value"))


def _assignments_text(values: Mapping[str, int | str], option: str, what: str) -> str:
    """A dict as the CLI's "name=value,…" text, refusing what that text could not hold."""
    parts = []
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, (int, str)) or isinstance(value, bool) \
                or any(c in str(value) for c in ",="):
            raise UsageError(f"{option}: {key!r}: {value!r} is not a {what} (a string or an integer)")
        parts.append(f"{key}={value}")
    return ",".join(parts) or ","


def _names(names: str | Sequence[str] | None, option: str) -> list[str] | None:
    """"W1,b1" or ["W1", "b1"] as a list of names (None: none given)."""
    if names is None:
        return None
    if isinstance(names, str):
        return [part.strip() for part in names.split(",")]
    if not all(isinstance(part, str) for part in names):
        raise UsageError(f"{option} must be a string or a list of strings, not {names!r}")
    return list(names)


def _equations(assume: str | Sequence[str]) -> tuple[str, ...]:
    """One assumption ("sum(y) == 1") or several, as a tuple."""
    if isinstance(assume, str):
        return (assume,)
    if not all(isinstance(a, str) for a in assume):
        raise UsageError(f"assume must be a string or a list of strings, not {assume!r}")
    return tuple(assume)


def derive_one_hot(k: int | str, n: int | str = 3, *, check: bool = True,
                   progress: Callable[[int, int, str], None] | None = None,
                   time_limit: float | None = None) -> Derivation:
    """Softmax + cross-entropy with a one-hot label y = e_K: L = −log a_K and ∂L/∂z_j = a_j − δ_jK,
    every step checked. ``k``: the class, a number in 1..n at a fixed ``n``, or "K" (a symbolic
    class 1 ≤ K ≤ n) with ``n="symbolic"``. Raises UsageError for a class outside 1..n.

    >>> d = derive_one_hot(2, n=3)
    >>> d.proven, str(d.result)
    (True, '-KroneckerDelta(2, j) + a[j]')
    """
    size = parse_size(n)
    from symgrad.budget import deadline
    from symgrad.derivation.one_hot import derive_one_hot as build
    from symgrad.one_hot_label import parse_class

    k = parse_class(k, size)
    with deadline(parse_time_limit(time_limit)):
        derivation = build(size, k)
        return _checked(derivation, progress) if check else derivation


def derive_expression(expression: str, *, variables: Mapping[str, int | str] | str,
                      wrt: str | Sequence[str] | None = None, assume: Sequence[str] = (),
                      n: int | str | None = None, sizes: Mapping[str, int | str] | str | None = None, check: bool = True,
                      progress: Callable[[int, int, str], None] | None = None) -> Derivation:
    """Derive the gradient of any loss written in the expression language, step by step.
    ``variables``: each name's shape ("z=n,T=scalar", or "W=n x p,X=p x m,b=n" for matrices);
    ``wrt``: the variable to differentiate by, or several ("W1,b1,W2,b2", or a list), derived
    together; ``sizes``: the value of each size name ("n=3,p=2,m=2", or a dict); ``n`` (default 3) is n's
    value when ``sizes`` leaves it out. Raises UsageError for a size missing, unused or too large.

    >>> d = derive_expression("binary_cross_entropy(sigmoid(z), y)", wrt="z", variables="z=n,y=n")
    >>> d.proven
    True
    """
    shapes = parse_variables(variables) if isinstance(variables, str) else dict(variables)
    values = parse_sizes(sizes) if isinstance(sizes, str) else None if sizes is None else dict(sizes)
    assume = tuple(assume)
    size, values = expression_sizes(shapes, values, None if n is None else parse_size(n),
                                    " ".join((expression, *assume)))
    from symgrad.derivation.engine import Problem, derive_problem

    targets = [w.strip() for w in wrt.split(",")] if isinstance(wrt, str) else list(wrt or [])
    if len(targets) != len(set(targets)) or any(not t for t in targets):
        raise UsageError(f"--wrt {wrt!r}: name each variable once, separated by commas (W1,b1,W2,b2)")
    # several variables: one derivation, the levels they share (dZ[2]) derived once
    problem = Problem(expression, shapes, wrt=targets[0] if targets else None, assume=assume, size=size,
                      name="expression", title=None, sizes=values, also=tuple(targets[1:]))
    derivation = derive_problem(problem)
    return _checked(derivation, progress) if check else derivation


def derive_network(hidden: Sequence[str] | str = ("tanh",), output: str = "softmax", *,
                   sizes: Mapping[str, int | str] | str | None = None,
                   check: bool = True, progress: Callable[[int, int, str], None] | None = None) -> Derivation:
    """The gradients of a network's cost by every W[l] and b[l], layer by layer from the output:
    ``hidden`` the hidden layers' activations ("tanh,sigmoid" or a list; any elementwise function, or
    "g": an abstract activation g[l], declared as the function g1, g2, … of its layer),
    ``output`` softmax (cross-entropy), sigmoid (binary cross-entropy) or identity (squared error),
    ``sizes`` n0 … nL and m ("n0=2,n1=3,n2=2,m=2", ints or "symbolic"; missing ones small).

    >>> d = derive_network("tanh", "softmax", sizes="n0=2,n1=2,n2=2,m=1")  # doctest: +SKIP
    """
    from symgrad.derivation.network import derive_network as build, network_question

    layers = [h.strip() for h in hidden.split(",") if h.strip()] if isinstance(hidden, str) else list(hidden)
    values = parse_sizes(sizes) if isinstance(sizes, str) else None if sizes is None else dict(sizes)
    question = network_question(layers, output, values)
    expression_sizes(question.variables, question.sizes, None, " ".join((question.cost, *question.assume)))
    derivation = build(layers, output, question.sizes)
    return _checked(derivation, progress) if check else derivation


def derive_identity(path: str | PathLike[str], identity: str | None = None, *, n: int | str = 3, check: bool = True,
                    progress: Callable[[int, int, str], None] | None = None) -> Derivation:
    """Derive the lhs of a ``grad(...)``/``jacobian(...)`` identity of a file, ending at its rhs."""
    from pathlib import Path

    from symgrad.derivation.engine import derive_problem, problem_from_identity
    from symgrad.identity_file import load_file_parts

    identities, problems = load_file_parts(Path(path))
    # a mistake in the identity asked for (or, with none named, in any) is this command's error;
    # one in another identity of the file is not
    asked = [p for p in problems if identity is None or p.identity == identity]
    if asked:
        raise asked[0]
    if identity is None:
        if len(identities) != 1:
            names = ", ".join(repr(i.name) for i in identities)
            raise UsageError(f"{path} holds {len(identities)} identities: choose one with --identity ({names})")
        (chosen,) = identities
    else:
        matches = [i for i in identities if i.name == identity]
        if not matches:
            import difflib

            known = [i.name for i in identities]
            near = difflib.get_close_matches(identity, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (it has: {', '.join(map(repr, known))})"
            raise UsageError(f"{path}: no identity named {identity!r}{hint}")
        chosen = matches[0]
    from symgrad.identity_file import SizeTable

    tables = [size for size in chosen.sizes if isinstance(size, SizeTable)]
    size = dict(tables[0].values) if tables else parse_size(n)  # matrices: the file's first size table
    derivation = derive_problem(problem_from_identity(chosen, size))
    return _checked(derivation, progress) if check else derivation


def _checked(derivation: Derivation, progress: Callable[[int, int, str], None] | None) -> Derivation:
    """The derivation with every step checked (the checker, and SymPy, imported on first use)."""
    from symgrad.verify import check_derivation

    return check_derivation(derivation, progress)


def notation_of(notation: str, bold: str = "mathbf") -> Notation:
    """The printer's names for a notation ("plain" or "course") and bold command."""
    if notation not in NOTATIONS:
        raise UsageError(f"unknown notation {notation!r}; known: {', '.join(NOTATIONS)}")
    return Notation(dict(NOTATIONS[notation]), bold)


def check_render_options(fmt: str, *, standalone: bool = False, notation: str = "plain", bold: str = "mathbf",
                         label: str | None = None) -> None:
    """Refuse an option that does nothing in the chosen format, rather than ignore it."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if standalone and fmt != "latex":
        raise UsageError(f"--standalone applies to --format latex, not {fmt}")
    if label is not None and fmt in ("text", "json"):
        raise UsageError(f"--label applies to latex (and markdown, which numbers with \\tag), not {fmt}")
    if bold != "mathbf" and fmt in ("text", "json"):
        raise UsageError(f"--bold applies to latex and markdown, not {fmt}")
    if notation != "plain" and fmt == "json":
        raise UsageError("--notation does not apply to json: the certificate is always in plain names")


def render(derivation: Derivation, fmt: str = "text", *, standalone: bool = False,
           notation: str = "plain", bold: str = "mathbf", label: str | None = None) -> str:
    """The derivation as text (plain, no colour), LaTeX, Markdown or a JSON certificate."""
    check_render_options(fmt, standalone=standalone, notation=notation, bold=bold, label=label)
    names = notation_of(notation, bold)
    if fmt == "latex":
        from symgrad.output.latex import render_latex

        return render_latex(derivation, standalone=standalone, notation=names, label=label)
    if fmt == "markdown":
        from symgrad.output.markdown import render_markdown

        return render_markdown(derivation, notation=names)
    if fmt == "json":
        from symgrad.output.certificate import render_json

        return render_json(derivation)
    if fmt == "text":
        import io

        from rich.console import Console

        from symgrad.output.text import rich_renderable, without_trailing_spaces

        console = Console(record=True, width=200, file=io.StringIO(), color_system=None)
        console.print(rich_renderable(derivation, notation=names))
        return without_trailing_spaces(console.export_text())
    raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")



@dataclass(frozen=True)
class Checked:
    """What ``check_files`` found: a result per identity that could be checked, and one problem
    (an ``IdentityFileError``, with ``path`` and perhaps ``identity``) per file or identity that
    could not; ``files`` are the identity files read (inputs: never to be overwritten)."""

    results: list[Any]
    problems: list[Any]
    files: list[Any]
    seconds: float = 0.0  # how long reading and checking took


def check_identity(identity: Identity, time_limit: float | None = DEFAULT_TIME_LIMIT,
                   progress: Callable[[str], None] | None = None, cache: Any = None) -> IdentityResult:
    """``symgrad.verify.identity.check_identity`` with a time budget for each size: a size that
    runs out of time (or memory) is undecided, and the other sizes still run. Raises
    IdentityFileError for a mistake in the identity that shows only at some size. ``cache``: a
    ``symgrad.cache.ResultCache`` that serves and keeps definite verdicts (None: no cache)."""
    from symgrad.batch import check_size
    from symgrad.verdicts import IdentityResult
    from symgrad.identity_file import shared_proof_groups

    limit = parse_time_limit(time_limit)
    results: dict[int, Any] = {}
    everywhere = list(range(len(identity.sizes)))
    for group in shared_proof_groups(identity, everywhere):  # symbolic sizes first, then their instances
        cached = cache.get_group(identity, [identity.sizes[k] for k in group]) if cache is not None else None
        if cached is not None:  # served whole or checked whole
            results.update(zip(group, cached))
            continue
        for k in group:
            size = identity.sizes[k]
            if progress:
                progress(f"{identity.name} (n = {size})")
            result = check_size(identity, size, limit)
            if cache is not None:
                cache.put(identity, size, result)
            results[k] = result
    return IdentityResult(identity, tuple(results[k] for k in everywhere))


def check_files(paths: Iterable[str | PathLike[str]], *, time_limit: float | None = DEFAULT_TIME_LIMIT,
                progress: Callable[[int, int, str], None] | None = None,
                only_identity_files: bool = False, stdin: IO[bytes] | IO[str] | None = None, jobs: int = 1,
                cache: Any = None) -> Checked:
    """Read every identity file under ``paths`` and check each identity at each of its sizes;
    a bad file or identity is a problem and everything else is still checked. Raises UsageError
    only if there is nothing at all to check. The path ``-`` is one identity file read from
    ``stdin`` (default: standard input), called ``<stdin>``. With ``only_identity_files``, TOML
    files holding no ``[[identity]]`` table are skipped (pre-commit passes every changed .toml).
    ``jobs``: worker processes (1: check in this process); the results are the same, in the
    same order. ``cache``: a ``symgrad.cache.ResultCache`` (None: check everything)."""
    from symgrad.batch import check_identities

    started = time.perf_counter()
    identities, problems, files = read_identities(paths, only_identity_files=only_identity_files, stdin=stdin,
                                                  cache=cache)
    results, more = check_identities(identities, time_limit=parse_time_limit(time_limit), jobs=jobs,
                                     cache=cache, progress=progress)
    return Checked(results, problems + more, files, time.perf_counter() - started)


def read_identities(paths: Iterable[str | PathLike[str]], *, only_identity_files: bool = False,
                    stdin: IO[bytes] | IO[str] | None = None,
                    cache: ResultCache | None = None) -> tuple[list[Identity], list[IdentityFileError], list[Path]]:
    """(identities, problems, files): every identity of the files under ``paths`` (``-``: standard
    input), read and validated but not checked, with one problem per file that cannot be read
    and one per identity with a mistake (the file's other identities are still read).
    ``cache``: a ``symgrad.cache.ResultCache`` that keeps what reading an unchanged file found."""
    from pathlib import Path

    from symgrad.identity_file import find_files, load_file_parts

    named = [str(p) for p in paths]
    if named.count(STDIN) > 1:
        raise UsageError("'-' (standard input) can be given only once")
    others = [Path(p) for p in named if p != STDIN]
    files, problems = find_files(others) if others else ([], [])
    if only_identity_files:
        files = [file for file in files if holds_identities(file)]
    identities: list[Identity] = []

    def read(parts: Callable[[], tuple[list[Identity], list[IdentityFileError]]], path: Path) -> None:
        """One file's identities, and its problems: one if it cannot be read at all, else one per
        identity with a mistake (a bad identity does not hide the file's others)."""
        try:
            found, bad = parts()
        except IdentityFileError as unreadable:
            found, bad = [], [unreadable]
        for mistake in bad:
            mistake.path = mistake.path or path
        identities.extend(found)
        problems.extend(bad)

    if STDIN in named:
        read(lambda: load_stdin(stdin), Path(STDIN_NAME))
        files = [Path(STDIN_NAME), *files]
    for file in files[1 if STDIN in named else 0:]:
        read(lambda: load_file_parts(file, cache), file)
    return identities, _in_the_order_given(problems, named, files), files


def _in_the_order_given(problems: list[IdentityFileError], named: list[str], files: list[Path]) -> list[IdentityFileError]:
    """Problems in the order of the paths that were given (a directory's files, as ``files``
    lists them, where the directory was named), not "missing paths first": ``verify bad.toml
    missing.toml`` reports bad.toml first. Stable: one file's problems keep their order."""
    from pathlib import Path

    if len(problems) < 2:
        return problems
    position: dict[Path, int] = {}
    for name in named:
        path = Path(STDIN_NAME if name == STDIN else name)
        for file in [f for f in files if f == path or path in f.parents] or [path]:
            position.setdefault(file, len(position))
    return sorted(problems, key=lambda problem: position.get(Path(problem.path or ""), len(position)))


def holds_identities(path: str | PathLike[str]) -> bool:
    """Whether a file has an ``[[identity]]`` table header (read as bytes, without parsing)."""
    import re
    from pathlib import Path

    from symgrad.identity_file import MAX_FILE_BYTES

    try:
        with open(Path(path), "rb") as handle:
            head = handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        return True  # let reading it report the problem
    return re.search(rb"^[ \t]*\[\[[ \t]*identity[ \t]*\]\]", head, re.M) is not None


def load_stdin(stream: IO[bytes] | IO[str] | None = None) -> tuple[list[Identity], list[IdentityFileError]]:
    """The identities of one identity file read from ``stream`` (default: standard input), named
    ``<stdin>`` in every message and report, and a problem per identity with a mistake, as
    ``load_text_parts``. Raises IdentityFileError for input that cannot be read at all."""
    import sys

    from symgrad.identity_file import MAX_FILE_BYTES

    stream = stream if stream is not None else sys.stdin.buffer
    data = stream.read(MAX_FILE_BYTES + 1)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return load_text_parts(data, STDIN_NAME)


def load_text(data: bytes, name: str) -> list[Identity]:
    """The identities of one identity file's contents, read as ``symgrad verify`` reads a file
    (the same checks, the same messages), and called ``name`` in every message and report.
    Raises IdentityFileError: the first problem, with the contents or with one identity."""
    identities, problems = load_text_parts(data, name)
    if problems:
        raise problems[0]
    return identities


def load_text_parts(data: bytes, name: str) -> tuple[list[Identity], list[IdentityFileError]]:
    """``load_text`` with a problem per identity with a mistake instead of raising the first
    (``identity_file.load_file_parts``); contents that cannot be read at all still raise."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from symgrad.identity_file import IdentityFileError, load_file_parts

    with tempfile.TemporaryDirectory(prefix="symgrad-stdin-") as folder:
        temporary = Path(folder) / "stdin.toml"
        temporary.write_bytes(data)

        def named(error: IdentityFileError) -> IdentityFileError:
            return IdentityFileError(str(error).replace(str(temporary), name), Path(name), error.identity)

        try:
            identities, problems = load_file_parts(temporary)
        except IdentityFileError as error:
            raise named(error) from None
    return [dataclasses.replace(identity, path=Path(name)) for identity in identities], [named(p) for p in problems]


def list_identities(paths: Iterable[str | PathLike[str]]) -> tuple[list[dict[str, Any]], list[IdentityFileError]]:
    """What ``symgrad list FILE…`` shows, without checking anything: for each identity its name,
    file, variables, sizes and whether ``derive --identity`` can derive it; and the problems."""
    identities, problems, _ = read_identities(paths)
    return [{"name": i.name, "file": str(i.path), "vars": dict(i.variables), "sizes": list(i.sizes),
             "derivable": is_derivable(i)} for i in identities], problems


def is_derivable(identity: Identity) -> bool:
    """Whether the lhs is ``grad(...)`` or ``jacobian(...)``, which ``derive --identity`` derives."""
    import ast

    from symgrad.language import LanguageError, parse_tree

    try:
        tree = parse_tree(identity.lhs, matrices=True)  # matrix identities derive too (@, transpose)
    except LanguageError:
        return False
    body = tree.body if isinstance(tree, ast.Expression) else None
    return isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id in ("grad", "jacobian")


def verify_paths(paths: Iterable[str | PathLike[str]], progress: Callable[[int, int, str], None] | None = None,
                 time_limit: float | None = DEFAULT_TIME_LIMIT) -> list[IdentityResult]:
    """Load every identity file under ``paths`` and check each identity at each of its sizes.
    Raises UsageError (an IdentityFileError) for the first problem with the files themselves."""
    checked = check_files(paths, time_limit=time_limit, progress=progress)
    if checked.problems:
        raise checked.problems[0]
    return checked.results
