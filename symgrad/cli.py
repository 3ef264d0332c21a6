"""The command line: a thin typer layer over ``symgrad.api``.

Exit codes: 0 every step proven · 1 a check failed or could not be decided (including a time
limit reached) · 2 usage or input error (bad option, bad size, bad identity file, unwritable
path) · 3 internal error (a bug: please report it) · 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from symgrad import collector, sympy_cache
from symgrad.files import check_output_path, write_atomically  # noqa: F401 (write_atomically: API)
from symgrad.recipes import options_by_derivation

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = ((EXIT_OK, "every identity holds (derive: every step proven)"),
              (EXIT_FAILED, "a check failed or was undecided (including a time limit reached)"),
              (EXIT_USAGE, "usage or input error (bad option, bad or unreadable file)"),
              (EXIT_INTERNAL, "internal error (a bug: please report it)"),
              (EXIT_INTERRUPTED, "interrupted (Ctrl-C or SIGTERM)"))
# \b keeps click from re-wrapping the lines: the help of every command ends with them
EPILOG = "\b\nExit codes:\n" + "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES)
TIME_LIMIT_HELP = "Seconds each identity may take at each size (0: no limit); beyond it the size is undecided."
JOBS_HELP = "Worker processes checking identities at once (default: the machine's cores); the output is the same."
# derive's help ends with which options go with which derivation (its options are all in one list)
DERIVE_EPILOG = ("\b\nWhich options go with which derivation (symgrad list describes each):\n"
                 + options_by_derivation() + "\n\n" + EPILOG)
NO_CACHE_HELP = ("Check every identity again, without reading or writing .symgrad_cache/ "
                 "(also: environment variable SYMGRAD_NO_CACHE=1).")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EPILOG,
    help="Symbolic, step-by-step, checked derivations of ML gradients, exported as LaTeX.",
)


class Format(str, Enum):
    text = "text"
    latex = "latex"
    markdown = "markdown"
    json = "json"


class NotationChoice(str, Enum):
    plain = "plain"
    course = "course"


class Bold(str, Enum):
    mathbf = "mathbf"
    bm = "bm"


def _show_version(value: bool) -> None:
    if value:
        from symgrad import __version__

        sys.stdout.write(f"symgrad {__version__}\n")
        raise typer.Exit(EXIT_OK)


_DEBUG = {"traceback": False}  # set by --debug: an internal error prints its traceback


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", is_eager=True, callback=_show_version,
                                          help="Print the installed version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="On an internal error, print the traceback "
                                        "instead of writing a crash report (also SYMGRAD_DEBUG=1).")] = False,
):
    """symgrad: derive gradients step by step, check every step, export LaTeX."""
    _DEBUG["traceback"] = debug


def plain_output() -> bool:
    """Plain text (no colour, no escape codes, no box drawing) unless standard output is a
    terminal and NO_COLOR is unset (https://no-color.org: any non-empty value)."""
    return bool(os.environ.get("NO_COLOR")) or not _isatty(sys.stdout)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _console(stderr: bool = False):
    from rich.console import Console

    plain = bool(os.environ.get("NO_COLOR")) or not _isatty(sys.stderr if stderr else sys.stdout)
    return Console(stderr=stderr, highlight=False, color_system=None if plain else "auto")


def _jobs_count(text: str) -> int:
    """-j N: worker processes, a whole number 1 or more (click's own words, "not a valid int
    range", name a type and not what the option wants)."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise typer.BadParameter(f"{text!r} is not a number of worker processes (a whole number, 1 or more)")
    return count


@app.command(epilog=DERIVE_EPILOG)
def derive(
    name: Annotated[Optional[str], typer.Argument(help="A built-in derivation: softmax-cross-entropy (the default), softmax-layer (Z = W A_prev + b over a batch) or network (hidden layers); or an identity file (*.toml) with --identity.", show_default=False)] = None,
    expr: Annotated[Optional[str], typer.Option("--expr", help="Derive the gradient of this loss, written in the expression language, e.g. \"binary_cross_entropy(sigmoid(z), y)\" (with --wrt and --vars).")] = None,
    wrt: Annotated[Optional[str], typer.Option("--wrt", help="--expr: the vector or matrix variable to differentiate by, or several separated by commas (W1,b1,W2,b2), derived together.")] = None,
    variables: Annotated[Optional[str], typer.Option("--vars", help="--expr: the variables and their shapes, e.g. z=n,y=n,T=scalar; a size name (n, m) is a vector (also written 'n x 1'), 'ROWS x COLS' a matrix: 'W=n x p,X=p x m,b=n,Y=n x m' (quoted; sizes other than n get their values from --sizes).")] = None,
    assume: Annotated[Optional[list[str]], typer.Option("--assume", help="--expr: an assumption such as \"sum(y) == 1\" (repeatable).")] = None,
    identity: Annotated[Optional[str], typer.Option("--identity", help="With an identity file: the name of the grad/jacobian identity to derive.")] = None,
    n: Annotated[Optional[str], typer.Option("--n", help="Number of classes, the size n: a positive integer, or 'symbolic' (default 3).", show_default=False)] = None,
    sizes_text: Annotated[Optional[str], typer.Option("--sizes", metavar="NAME=VALUE,...", help="--expr: the value of each size name of --vars, e.g. n=3,p=2,m=2 (positive integers, or 'symbolic' for a proof for every value); n may come from --n instead.")] = None,
    n_prev: Annotated[Optional[str], typer.Option("--n-prev", help="softmax-layer: units of the previous layer (default 2).")] = None,
    m: Annotated[Optional[str], typer.Option("--m", help="softmax-layer: examples in the batch (default 2).")] = None,
    hidden: Annotated[Optional[str], typer.Option("--hidden", metavar="G,G,...", help="network: the hidden layers' activations, e.g. tanh,sigmoid (any elementwise function; default tanh), or g for an abstract activation g[l]. Sizes n0 (input), n1 … nL (layers) and m (batch) come from --sizes.")] = None,
    generic: Annotated[bool, typer.Option("--generic", help="network: the generic layer, every hidden activation an abstract g[l] (--hidden g; with --hidden N,…: that many layers).")] = False,
    output_layer: Annotated[Optional[str], typer.Option("--output-layer", metavar="KIND", help="network: the output layer: softmax (with cross-entropy, the default), sigmoid (binary cross-entropy) or identity (squared error).")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", case_sensitive=False,
                                        help="Output: text (terminal), latex, markdown, json (certificate).")] = Format.text,
    standalone: Annotated[bool, typer.Option(help="LaTeX: a complete document that pdflatex compiles.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file (atomically) instead of stdout.")] = None,
    normalized_labels: Annotated[bool, typer.Option(help="Assume Σ_i y_i = 1 (one-hot or probability labels) and finish at dz = a − y.")] = True,
    one_hot: Annotated[Optional[str], typer.Option("--one-hot", metavar="K", help="softmax-cross-entropy with a one-hot label y = e_K: L = −log a_K and ∂L/∂z_j = a_j − δ_jK, every logit's gradient (K a class 1 … n; with --n symbolic, the letter K: proven for every K).", show_default=False)] = None,
    notation: Annotated[NotationChoice, typer.Option(case_sensitive=False, help="Names in print: plain (z, a, y, L) or course (Z^[L], A^[L], …).")] = NotationChoice.plain,
    bold: Annotated[Bold, typer.Option(case_sensitive=False, help=r"Bold vectors with \mathbf (plain LaTeX) or \bm (package bm).")] = Bold.mathbf,
    label: Annotated[Optional[str], typer.Option(help=r"LaTeX: number the lines and put \label{PREFIX:step-k} on each.")] = None,
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", metavar="SECONDS",
                                                        help="Seconds the whole derivation may take (0: no limit).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Derive and check again, without reading or writing "
                                           ".symgrad_cache/ (also: environment variable SYMGRAD_NO_CACHE=1).")] = False,
) -> None:
    """Derive a gradient step by step, check every step, and print it."""
    hidden = _generic_hidden(generic, name, hidden)
    # everything the printed output depends on (the time limit does not: a proven result is the
    # same under any limit); a derivation proven before prints again without SymPy
    shaping = {"name": name, "expr": expr, "wrt": wrt, "vars": variables, "assume": assume, "identity": identity,
               "n": n, "sizes": sizes_text, "n_prev": n_prev, "m": m, "hidden": hidden, "output_layer": output_layer,
               "format": fmt.value, "standalone": standalone, "to_file": output is not None,
               "normalized_labels": normalized_labels, "one_hot": one_hot, "notation": notation.value,
               "bold": bold.value, "label": label}

    # sizes, limits and the output path first: refusing takes no time (no SymPy yet)
    inputs = _DeriveInputs(name, expr, wrt, variables, assume, identity, n, sizes_text, n_prev, m, hidden,
                           output_layer, normalized_labels, one_hot, time_limit)
    target = check_output_path(output)
    # (an entry exists only for options that were valid and a derivation that was proven)
    cache, shaping = _output_cache(no_cache, shaping, fmt is Format.text and target is None)
    kept = cache.get(shaping) if cache is not None else None
    if kept is not None:
        _emit(kept, target)
        return
    from symgrad.api import check_render_options, notation_of, render
    from symgrad.budget import deadline

    check_render_options(fmt.value, standalone=standalone, notation=notation.value, bold=bold.value, label=label)
    with deadline(inputs.limit):  # the derivation, its checks and its rendering: one budget
        derivation = inputs.derive()
        text = None
        if not (fmt is Format.text and target is None):
            text = render(derivation, fmt.value, standalone=standalone, notation=notation.value,
                          bold=bold.value, label=label)
    if text is None:
        from symgrad.output.text import rich_renderable, without_trailing_spaces

        console = _console()
        with console.capture() as captured:
            console.print(rich_renderable(derivation, notation=notation_of(notation.value, bold.value)))
        text = captured.get() if console.color_system else without_trailing_spaces(captured.get())
    _emit(text, target)
    if not derivation.proven:
        _error_line("not every step could be proven; see the step statuses above")
        raise typer.Exit(EXIT_FAILED)
    if cache is not None:
        cache.put(shaping, text)


def _generic_hidden(generic: bool, name: Optional[str], hidden: Optional[str]) -> Optional[str]:
    """--generic: every hidden layer's activation an abstract g[l] (as many as --hidden names)."""
    if not generic:
        return hidden
    if name != "network":
        from symgrad.errors import UsageError

        raise UsageError("--generic goes with `symgrad derive network`")
    return ",".join("g" for _ in (hidden or "g").split(","))


def _emit(text: str, target: Optional[Path]) -> None:
    """The output on stdout, or written atomically to ``target``."""
    if target is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(target, text)


def _output_cache(no_cache: bool, shaping: dict, to_terminal: bool):
    """derive's output cache (None when turned off) and the full key: the options, the bytes of
    an identity file it reads, and for the terminal its width and colours."""
    from symgrad.cache import OutputCache, disabled_by_environment

    if no_cache or disabled_by_environment():
        return None, shaping
    name = shaping["name"]
    if name is not None and (name.endswith(".toml") or Path(name).is_file()):
        import hashlib

        try:
            shaping = {**shaping, "file_sha256": hashlib.sha256(Path(name).read_bytes()).hexdigest()}
        except OSError:
            return None, shaping  # deriving reports it
    if to_terminal:
        console = _console()
        shaping = {**shaping, "terminal": [console.width, console.color_system, console.is_terminal]}
    return OutputCache(warn=_warning_line), shaping


class _DeriveInputs:
    """The inputs ``derive`` and ``codegen`` share (a built-in name, --expr …, network …, or
    FILE.toml --identity NAME), parsed and refused at once (no SymPy yet); ``derive()`` then
    makes the checked derivation (inside the caller's time budget ``limit``)."""

    def __init__(self, name, expr, wrt, variables, assume, identity, n, sizes_text, n_prev, m, hidden,
                 output_layer, normalized_labels, one_hot, time_limit):
        from symgrad.limits import (DEFAULT_DERIVE_TIME_LIMIT, expression_sizes, parse_size, parse_sizes,
                                    parse_time_limit, parse_variables, refuse_too_much_work)

        self.options = dict(name=name, expr=expr, wrt=wrt, variables=variables, assume=assume, identity=identity,
                            n=n, sizes_text=sizes_text, n_prev=n_prev, m=m, hidden=hidden,
                            output_layer=output_layer, normalized_labels=normalized_labels, one_hot=one_hot)
        size = None if n is None else parse_size(n)
        self.limit = parse_time_limit(DEFAULT_DERIVE_TIME_LIMIT if time_limit is None else time_limit)
        sizes = {key: value for key, value in (("n_prev", n_prev), ("m", m)) if value is not None}
        refuse_too_much_work(name or "softmax-cross-entropy", 3 if size is None else size,
                             {key: parse_size(value, key.replace("_", "-")) for key, value in sizes.items()})
        named_sizes = None if sizes_text is None else parse_sizes(sizes_text)
        one_hot_class = None if one_hot is None else _one_hot_class(one_hot, 3 if size is None else size, name,
                                                                    expr, identity, sizes, named_sizes,
                                                                    normalized_labels)
        if expr is not None and variables is not None:  # parsed once here, so bad sizes are refused at once
            variables = parse_variables(variables)
            expression_sizes(variables, named_sizes, size, " ".join((expr, *(assume or []))))
        self.size, self.sizes, self.named_sizes, self.one_hot_class = size, sizes, named_sizes, one_hot_class
        self.parsed_variables = variables

    def derive(self):
        from symgrad import api

        o = self.options
        if o["name"] == "network":
            from symgrad.errors import UsageError

            if o["expr"] is not None or self.size is not None or self.sizes or self.one_hot_class is not None:
                raise UsageError("network takes --hidden, --output-layer and --sizes (n0=…,n1=…,m=…), "
                                 "not --expr/--n/--n-prev/--m/--one-hot")
            return api.derive_network(o["hidden"] or "tanh", o["output_layer"] or "softmax",
                                      sizes=self.named_sizes, progress=_progress_reporter())
        if o["hidden"] is not None or o["output_layer"] is not None:
            from symgrad.errors import UsageError

            raise UsageError("--hidden and --output-layer go with `symgrad derive network`")
        if self.one_hot_class is not None:
            return api.derive_one_hot(self.one_hot_class, 3 if self.size is None else self.size,
                                      progress=_progress_reporter())
        return _run_derive(o["name"], self.size, o["expr"], o["wrt"], self.parsed_variables, o["assume"] or [],
                           o["identity"], self.sizes, self.named_sizes, o["normalized_labels"])

    def command(self) -> str:
        """The ``symgrad derive`` command line these inputs make (for a generated module's docstring)."""
        import shlex

        o, words = self.options, ["symgrad", "derive"]
        if o["name"] is not None:
            words.append(str(o["name"]))
        for option, key in (("--expr", "expr"), ("--wrt", "wrt"), ("--vars", "variables"), ("--identity", "identity"),
                            ("--n", "n"), ("--sizes", "sizes_text"), ("--n-prev", "n_prev"), ("--m", "m"),
                            ("--hidden", "hidden"), ("--output-layer", "output_layer"), ("--one-hot", "one_hot")):
            if o[key] is not None:
                words += [option, str(o[key])]
        for assumption in o["assume"] or []:
            words += ["--assume", assumption]
        if not o["normalized_labels"]:
            words.append("--no-normalized-labels")
        return shlex.join(words)


class Target(str, Enum):
    numpy = "numpy"
    jax = "jax"
    torch = "torch"


@app.command(epilog=EPILOG)
def codegen(
    name: Annotated[Optional[str], typer.Argument(help="As for derive: a built-in derivation, network, or an identity file (*.toml) with --identity.", show_default=False)] = None,
    expr: Annotated[Optional[str], typer.Option("--expr", help="As for derive: the loss, in the expression language (with --wrt and --vars).")] = None,
    wrt: Annotated[Optional[str], typer.Option("--wrt", help="--expr: the variable(s) to differentiate by, e.g. W1,b1,W2,b2; backward() returns their gradients in this order.")] = None,
    variables: Annotated[Optional[str], typer.Option("--vars", help="--expr: the variables and their shapes, e.g. z=n,y=n or 'W=n x p,X=p x m,b=n'.")] = None,
    assume: Annotated[Optional[list[str]], typer.Option("--assume", help="--expr: an assumption such as \"sum(y) == 1\" (repeatable).")] = None,
    identity: Annotated[Optional[str], typer.Option("--identity", help="With an identity file: the grad/jacobian identity to derive.")] = None,
    n: Annotated[Optional[str], typer.Option("--n", help="The size n: a positive integer, or 'symbolic' (symbolic: code for every n; default 3: code that accepts n = 3 only).", show_default=False)] = None,
    sizes_text: Annotated[Optional[str], typer.Option("--sizes", metavar="NAME=VALUE,...", help="--expr and network: each size's value, e.g. n=symbolic,m=symbolic (symbolic: code for any size).")] = None,
    n_prev: Annotated[Optional[str], typer.Option("--n-prev", help="softmax-layer: units of the previous layer.")] = None,
    m: Annotated[Optional[str], typer.Option("--m", help="softmax-layer: examples in the batch.")] = None,
    hidden: Annotated[Optional[str], typer.Option("--hidden", metavar="G,G,...", help="network: the hidden layers' activations, e.g. tanh,sigmoid.")] = None,
    output_layer: Annotated[Optional[str], typer.Option("--output-layer", metavar="KIND", help="network: softmax (the default), sigmoid or identity.")] = None,
    normalized_labels: Annotated[bool, typer.Option(help="Assume Σ_i y_i = 1 (one-hot or probability labels).")] = True,
    one_hot: Annotated[Optional[str], typer.Option("--one-hot", metavar="K", help="softmax-cross-entropy with a one-hot label y = e_K.", show_default=False)] = None,
    target_name: Annotated[Target, typer.Option("--target", "-t", case_sensitive=False, help="The array library of the generated code: numpy, jax (jax.numpy; works under jax.jit) or torch.")] = Target.numpy,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the module to this file (atomically) instead of stdout.")] = None,
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", metavar="SECONDS", help="Seconds the whole derivation may take (0: no limit).")] = None,
) -> None:
    """Derive and check a gradient (as derive does) and write it as a Python module: forward(...)
    returns the loss, backward(...) the gradients, both taking the variables by name. Nothing is
    written unless every step is proven (exit 1)."""
    inputs = _DeriveInputs(name, expr, wrt, variables, assume, identity, n, sizes_text, n_prev, m, hidden,
                           output_layer, normalized_labels, one_hot, time_limit)
    target = check_output_path(output)
    from symgrad.budget import deadline
    from symgrad.codegen import generate

    with deadline(inputs.limit):
        derivation = inputs.derive()
    if not derivation.proven:
        unproven = [str(k) for k, step in enumerate(derivation.steps, 1) if not (step.check and step.check.proven)]
        _error_line(f"not every step could be proven (steps {', '.join(unproven)}): no code written "
                    "(symgrad derive with the same options shows why)")
        raise typer.Exit(EXIT_FAILED)
    _emit(generate(derivation, target_name.value, command=inputs.command()), target)


def _run_derive(name, size, expr, wrt, variables, assume, identity, sizes, named_sizes, normalized_labels):
    """Which derivation the options ask for: a built-in one, an expression, or a file's identity.
    ``sizes``: --n-prev/--m (softmax-layer's); ``named_sizes``: --sizes (--expr's)."""
    from pathlib import Path

    from symgrad import api
    from symgrad.errors import UsageError

    progress = _progress_reporter()
    if expr is not None:
        if name is not None:
            raise UsageError("give either a derivation name or --expr, not both")
        if variables is None:
            raise UsageError("--expr needs --vars (e.g. --vars z=n,y=n)")
        _reject(sizes, "--n-prev/--m", "--expr")
        return api.derive_expression(expr, variables=variables, wrt=wrt, assume=assume, n=size, sizes=named_sizes,
                                     progress=progress)
    for option, value in (("--wrt", wrt), ("--vars", variables), ("--assume", assume or None)):
        if value is not None:
            raise UsageError(f"{option} goes with --expr")
    if name is not None and (name.endswith(".toml") or Path(name).is_file()):
        _reject(sizes, "--n-prev/--m", "an identity file")
        _reject(named_sizes, "--sizes", "an identity file (its sizes are in the file)")
        return api.derive_identity(Path(name), identity, n=3 if size is None else size, progress=progress)
    if identity is not None:
        raise UsageError("--identity goes with an identity file (symgrad derive FILE.toml --identity NAME)")
    name = name or "softmax-cross-entropy"
    if api.builtin(name) is not None:  # (an unknown name: api.derive says so)
        _reject(named_sizes, "--sizes", f"{name} (it takes {' '.join(api.builtin(name).options)})")
    return api.derive(name, 3 if size is None else size, normalized_labels=normalized_labels,
                      progress=progress, **sizes)


def _one_hot_class(one_hot, size, name, expr, identity, sizes, named_sizes, normalized_labels):
    """--one-hot K's class (a number in 1..n, or "K" at a symbolic n), refused at once (no SymPy)
    with a derivation other than softmax-cross-entropy or an option that contradicts it."""
    from symgrad.errors import UsageError
    from symgrad.one_hot_label import parse_class

    if expr is not None or identity is not None or name not in (None, "softmax-cross-entropy"):
        what = "--expr" if expr is not None else repr(name) if name is not None else "--identity"
        raise UsageError(f"--one-hot applies to softmax-cross-entropy (the default derivation), not to {what}")
    if sizes or named_sizes:
        raise UsageError("--one-hot takes only --n (the number of classes)")
    if not normalized_labels:
        raise UsageError("--one-hot and --no-normalized-labels contradict each other: a one-hot label sums to 1")
    return parse_class(one_hot, size)


def _reject(sizes: dict | None, option: str, what: str) -> None:
    """A UsageError if size options were given that the chosen derivation does not take."""
    if sizes:
        from symgrad.errors import UsageError

        applies = "applies to --expr" if option == "--sizes" else "apply to softmax-layer"
        raise UsageError(f"{option} {applies}, not to {what}")


class VerifyFormat(str, Enum):
    text = "text"
    json = "json"


@app.command(epilog=EPILOG)
def verify(
    paths: Annotated[list[Path], typer.Argument(help="Identity files (*.toml) or directories to search for them; - reads one file from standard input (called <stdin>).")],
    fmt: Annotated[VerifyFormat, typer.Option("--format", "-f", case_sensitive=False,
                                              help="text (a table) or json (machine-readable results).")] = VerifyFormat.text,
    junit: Annotated[Optional[Path], typer.Option(help="Also write JUnit XML here (atomically), for CI dashboards.")] = None,
    check_exports: Annotated[bool, typer.Option("--check-exports", help="Also fail if a committed .tex beside a .toml is not what `symgrad export` writes.")] = False,
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", metavar="SECONDS", help=TIME_LIMIT_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only failures, errors and the summary line (no table).")] = False,
    only_identity_files: Annotated[bool, typer.Option("--only-identity-files", help="Skip .toml files holding no [[identity]] table, and take a .tex export as the .toml beside it (for pre-commit, which passes every changed file).")] = False,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", parser=_jobs_count, metavar="N", help=JOBS_HELP, show_default=False)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help=NO_CACHE_HELP)] = False,
) -> None:
    """Check every identity at every listed size, exactly and numerically.

    Every identity that can be checked is checked. A file that cannot be read (not TOML, no
    [[identity]] tables) is reported on one line, and so is each identity with a mistake (a bad
    key or expression, or one that shows only at some size): the file's other identities are
    still checked. Each is an error in --junit and -f json. A summary line follows the table."""
    from symgrad.api import check_files
    from symgrad.output.report import problem_line, results_json, results_junit

    limit = _time_limit(time_limit)
    paths = _tex_as_toml(paths) if only_identity_files else paths
    junit_target = check_output_path(junit, inputs=_input_files(paths))
    checked = check_files(paths, time_limit=limit, progress=_identity_progress(),
                          only_identity_files=only_identity_files, **_checking(jobs, no_cache))
    results, problems = checked.results, checked.problems
    stale = _stale_exports(results, problems) if check_exports else []
    if fmt is VerifyFormat.json:
        sys.stdout.write(results_json(results, problems=problems))
    else:
        _print_verify_text(checked, stale, quiet)
    for problem in problems:
        _error_line(problem_line(problem))
    if junit_target is not None:
        write_atomically(junit_target, results_junit(results, problems=problems))
    if problems:
        raise typer.Exit(EXIT_USAGE)
    if stale or not all(r.holds for r in results):
        raise typer.Exit(EXIT_FAILED)


@app.command(epilog=EPILOG)
def export(
    path: Annotated[Path, typer.Argument(help="An identity file (*.toml).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here (atomically) instead of stdout.")] = None,
    unchecked: Annotated[bool, typer.Option("--unchecked", help="Export even identities that do not hold (or are undecided), each marked NOT verified in the LaTeX.")] = False,
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", metavar="SECONDS", help=TIME_LIMIT_HELP)] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", parser=_jobs_count, metavar="N", help=JOBS_HELP, show_default=False)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help=NO_CACHE_HELP)] = False,
) -> None:
    """Check an identity file (as `symgrad verify` does) and render its statements as a LaTeX
    document (as written, not expanded). Only identities that hold are stated as checked: if any
    does not, nothing is written (exit 1) unless --unchecked."""
    from symgrad.api import check_files
    from symgrad.errors import UsageError
    from symgrad.output.identity_latex import render_identities
    from symgrad.output.report import problem_line, verdict

    limit = _time_limit(time_limit)
    target = check_output_path(output, inputs=[path])
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    checked = check_files([path], time_limit=limit, progress=_identity_progress(), **_checking(jobs, no_cache))
    if checked.problems:
        for problem in checked.problems[:-1]:
            _error_line(problem_line(problem))
        raise checked.problems[-1]
    not_holding = [r for r in checked.results if r.holds is not True]
    for result in not_holding:
        if unchecked:
            _warning_line(f"{path}: identity {result.identity.name!r} {verdict(result)}: exported marked NOT verified")
        else:
            _error_line(f"{path}: identity {result.identity.name!r} {verdict(result)}: not exported "
                        "(symgrad verify shows why; --unchecked exports it marked NOT verified)")
    if not_holding and not unchecked:
        raise typer.Exit(EXIT_FAILED)
    text = render_identities(checked.results, title=path.stem)
    if target is None:
        sys.stdout.write(text)
    else:
        write_atomically(target, text)
        held = len(checked.results) - len(not_holding)
        _console(stderr=True).print(f"wrote {target}: {held} of {len(checked.results)} identities checked"
                                    + (f", {len(not_holding)} marked NOT verified" if not_holding else ""),
                                    markup=False, highlight=False)


def _checking(jobs: Optional[int], no_cache: bool) -> dict:
    """check_files's ``jobs`` and ``cache`` from -j and --no-cache (and SYMGRAD_NO_CACHE)."""
    from symgrad.batch import default_jobs
    from symgrad.cache import ResultCache, disabled_by_environment

    cache = None if no_cache or disabled_by_environment() else ResultCache(warn=_warning_line)
    return {"jobs": default_jobs() if jobs is None else jobs, "cache": cache}


def _print_verify_text(checked, stale: list, quiet: bool) -> None:
    """The table (a rich table on a terminal, aligned plain text otherwise), each failure, each
    out-of-date export, and the summary line."""
    from symgrad.output.report import (RESULT_COLUMNS, failure_lines, plain_table, results_rows,
                                       results_table, summary_line)

    results, problems = checked.results, checked.problems
    console = _console()
    failures = failure_lines(results) + [
        f"out of date: {path} (run: symgrad export {path.with_suffix('.toml')} -o {path})" for path in stale]
    if not quiet and (results or not problems):
        if plain_output():
            sys.stdout.write(plain_table(RESULT_COLUMNS, results_rows(results)))
        else:
            console.print(results_table(results))
    for line in failures:
        console.print(line, style="red", soft_wrap=True, markup=False)
    summary = summary_line(results, problems, len(checked.files), checked.seconds)
    console.print(summary, style="bold" if not (failures or problems) else "bold red",
                  soft_wrap=True, markup=False)


def _input_files(paths) -> list[Path]:
    """The identity files named or found under ``paths`` (never to be overwritten by --junit)."""
    from symgrad.identity_file import find_files

    named = [Path(p) for p in paths if str(p) != "-"]
    return find_files(named)[0] if named else []


def _tex_as_toml(paths) -> list[Path]:
    """For pre-commit: a changed ``X.tex`` stands for the ``X.toml`` beside it (if any)."""
    mapped = []
    for path in paths:
        path = Path(path)
        if path.suffix == ".tex":
            path = path.with_suffix(".toml")
            if not path.is_file():
                continue
        mapped.append(path)
    return list(dict.fromkeys(mapped))


@app.command("list", epilog=EPILOG)
def list_(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Identity files (*.toml) or directories: list their identities (read, not checked).", show_default=False)] = None,
) -> None:
    """List the built-in derivations and the options each takes and, given files or folders, the
    identities in them (name, variables, sizes, whether derive --identity derives it), without
    checking anything."""
    from symgrad.api import BUILTINS, GENERAL, list_identities
    from symgrad.output.report import identities_table, problem_line

    rows = [(b.name, b.summary, " ".join(b.options)) for b in (*BUILTINS, *GENERAL)]
    _print_table("derivations (symgrad derive NAME)", ("derivation", "derives", "options"), rows)
    if not paths:
        return
    found, problems = list_identities(paths)
    if found:
        sys.stdout.write("\n")
        _print_table("identities", *identities_table(found))
    for problem in problems:
        _error_line(problem_line(problem))
    if problems:
        raise typer.Exit(EXIT_USAGE)


def _print_table(title: str, columns, rows) -> None:
    from symgrad.output.report import plain_table

    if plain_output():
        sys.stdout.write(plain_table(columns, rows))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    _console().print(table)


def _time_limit(value: Optional[float]) -> Optional[float]:
    from symgrad.limits import DEFAULT_TIME_LIMIT, parse_time_limit

    return parse_time_limit(DEFAULT_TIME_LIMIT if value is None else value)


def _stale_exports(results, problems=()) -> list[Path]:
    """Committed .tex files beside the checked identity files that differ from a fresh export
    (from the results already computed, not by reading the files again). A file with a problem
    is reported as such, not also as stale; a .tex that cannot be read or is not UTF-8 is stale."""
    from symgrad.files import read_bytes
    from symgrad.output.identity_latex import render_identities

    bad = {str(getattr(problem, "path", "")) for problem in problems}
    by_file: dict[Path, list] = {}
    for result in results:
        by_file.setdefault(result.identity.path, []).append(result)
    stale = []
    for file, members in by_file.items():
        tex = file.with_suffix(".tex")
        if str(file) in bad or not tex.is_file():
            continue
        expected = render_identities(members, title=file.stem).encode("utf-8", "surrogateescape")
        if read_bytes(tex) != expected:
            stale.append(tex)
    return stale


_LIVE: list = []  # progress displays to stop if the command ends early


def _identity_progress():
    """A progress bar on stderr for a person at a terminal, when there is more than a little work."""
    if not _isatty(sys.stderr) or os.environ.get("NO_COLOR"):
        return None
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress

    from symgrad.errors import one_line

    progress = Progress(console=Console(stderr=True), transient=True)
    _LIVE.append(progress)
    task = None

    def report(done: int, total: int, name: str) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task("verifying", total=total)
        progress.update(task, completed=done, description=f"verifying {escape(one_line(name))}")
        if done == total:
            progress.stop()
    return report


def _progress_reporter():
    """Progress on stderr, only for a person at a terminal (CI logs stay clean)."""
    if not _isatty(sys.stderr) or os.environ.get("NO_COLOR"):
        return None
    from rich.console import Console

    console = Console(stderr=True)
    status = console.status("checking …")
    _LIVE.append(status)
    status.start()

    def report(number: int, total: int, title: str) -> None:
        from symgrad.output.text import markup_text

        status.update(f"checking step {number}/{total}: {markup_text(title)}")
        if number == total:
            status.stop()
    return report


def _error_line(message: str) -> None:
    from symgrad.errors import one_line

    sys.stderr.write(f"symgrad: error: {one_line(message)}\n")
    sys.stderr.flush()


def _warning_line(message: str) -> None:
    from symgrad.errors import one_line

    sys.stderr.write(f"symgrad: warning: {one_line(message)}\n")


def _on_signal(signum, frame) -> None:
    from symgrad.errors import Interrupted

    raise Interrupted(signal.Signals(signum).name)


def _stop_progress() -> None:
    for live in _LIVE:
        try:
            live.stop()
        except Exception:  # noqa: BLE001 - best effort while exiting
            pass
    _LIVE.clear()


def _streams_that_cannot_fail() -> None:
    """A stream whose encoding cannot write ∂, Σ or ✓ (PYTHONIOENCODING=ascii, an old code page)
    writes each such character as a JSON-style escape (\\u2202; a pair of \\u escapes beyond
    U+FFFF), so text stays readable and JSON stays valid JSON, instead of stopping with
    UnicodeEncodeError halfway through a derivation. The first escape written warns once on
    stderr. Files written with --output are UTF-8 whatever the terminal."""
    import codecs

    codecs.register_error("symgrad-escape", _escaped)
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            "∂Σ✓".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="symgrad-escape")


_ESCAPE_WARNED: list[bool] = []


def _warn_of_escapes() -> None:
    if _ESCAPE_WARNED:
        _warning_line("the terminal's encoding cannot show symbols such as the partial derivative sign: they were "
                      "written as \\u escapes (set PYTHONIOENCODING=utf-8, or write a file with --output)")


def _escaped(error: UnicodeError) -> tuple[str, int]:
    """The ``symgrad-escape`` codec error handler: \\uXXXX for each character the stream's
    encoding lacks (UTF-16 surrogate pairs beyond U+FFFF, as JSON writes them)."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    if not _ESCAPE_WARNED:  # the warning is written once the command is done (``main``)
        _ESCAPE_WARNED.append(True)
    out = []
    for character in error.object[error.start:error.end]:
        code = ord(character)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out), error.end


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors become one line on stderr and exit 2; a bug exits 3; Ctrl-C or
    SIGTERM print "symgrad: interrupted" and exit 130 (files being written are cleaned up).

    ``argv`` None (the process's own command line): the garbage collector and SymPy's cache are
    tuned for the whole process (``symgrad.collector``, ``symgrad.sympy_cache``); a caller
    passing ``argv`` keeps its own settings.

    Click's exceptions are recognised by what they carry (``exit_code``, ``format_message``), not
    by class: typer ≥ 0.20 vendors its own click, and older typer uses the click package."""
    from symgrad.budget import TimeLimitReached
    from symgrad.errors import Interrupted, UsageError

    for name in ("SIGINT", "SIGTERM"):
        try:
            signal.signal(getattr(signal, name), _on_signal)
        except (AttributeError, ValueError, OSError):  # not the main thread, or no such signal
            pass
    _streams_that_cannot_fail()
    whole_process = argv is None  # the console script or ``python -m symgrad``, not a caller's test
    if whole_process:
        collector.for_a_command()
        sympy_cache.for_a_command()
    command = typer.main.get_command(app)
    try:
        try:
            code = command.main(args=argv, prog_name="symgrad", standalone_mode=False)
        finally:
            _stop_progress()
            _warn_of_escapes()
    except (Interrupted, KeyboardInterrupt):
        code = _interrupted()
    except TimeLimitReached as reached:
        _error_line(f"undecided: {reached}; raise it with --time-limit SECONDS (0: no limit)")
        code = EXIT_FAILED
    except MemoryError:
        _error_line("out of memory: the problem is too large for this machine (try a smaller size, "
                    "or --n symbolic)")
        code = EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the top of the program
        name = type(exc).__name__
        if name == "NoArgsIsHelpError" and hasattr(exc, "ctx"):
            sys.stdout.write(exc.ctx.get_help() + "\n")
            code = EXIT_OK
        elif name == "Exit" and hasattr(exc, "exit_code"):
            code = exc.exit_code
        elif name == "Abort":
            if isinstance(exc.__context__, (Interrupted, KeyboardInterrupt)):
                code = _interrupted()
            else:
                _error_line("aborted")
                code = EXIT_FAILED
        elif hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's usage errors
            # typer's enum check words it "…: Value error, 'pdf' is not one of …": keep the sense
            _error_line(exc.format_message().replace(": Value error, ", ": "))
            code = EXIT_USAGE if exc.exit_code == 2 else exc.exit_code
        elif isinstance(exc, UsageError):
            _error_line(str(exc))
            code = EXIT_USAGE
        elif isinstance(exc, OSError):
            _error_line(f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "))
            code = EXIT_USAGE
        else:
            code = _internal_error(exc, sys.argv[1:] if argv is None else list(argv))
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    if whole_process:
        collector.before_exit()
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _internal_error(exc: Exception, argv: list[str]) -> int:
    """A bug: a few lines (what failed, where, the version, the crash report holding the
    traceback) rather than a traceback of hundreds of lines; --debug or SYMGRAD_DEBUG=1 prints
    the traceback instead. Exit 3."""
    import traceback

    from symgrad import __version__
    from symgrad.errors import crash_report, short_message, where_it_failed, write_crash_report

    where = where_it_failed(exc)
    debug = _DEBUG["traceback"] or os.environ.get("SYMGRAD_DEBUG", "") not in ("", "0")
    if debug:
        traceback.print_exception(exc)
    _error_line(f"internal error: {short_message(exc)}" + (f" (at {where})" if where else ""))
    if not debug:
        try:
            report = write_crash_report(crash_report(exc, argv, __version__))
        except OSError as failed:
            _error_line(f"could not write a crash report ({failed.strerror or failed}); the traceback:")
            traceback.print_exception(exc)
        else:
            sys.stderr.write(f"symgrad: the traceback is in {report}\n"
                             "symgrad: (symgrad --debug … prints it here instead)\n")
    sys.stderr.write(f"symgrad: this is a bug in symgrad {__version__}: please report it"
                     + ("" if debug else ", with the crash report") + "\n")
    return EXIT_INTERNAL


def _interrupted() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not interrupt the exit
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stderr.write("symgrad: interrupted\n")
    return EXIT_INTERRUPTED
