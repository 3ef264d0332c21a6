"""The command line: a thin typer layer over ``symgrad.api``.

Exit codes: 0 every step proven · 1 a check failed or could not be decided · 2 usage error
(bad option, bad size, unwritable path) · 3 internal error (a bug: please report it).
"""

from __future__ import annotations

import os
import sys
import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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


@app.callback()
def _root():
    """symgrad: derive gradients step by step, check every step, export LaTeX."""


@app.command()
def derive(
    name: Annotated[Optional[str], typer.Argument(help="A built-in derivation (softmax-cross-entropy, the default; softmax-layer: Z = W A_prev + b over a batch), or an identity file (*.toml) with --identity.", show_default=False)] = None,
    expr: Annotated[Optional[str], typer.Option("--expr", help="Derive the gradient of this loss, written in the expression language, e.g. \"binary_cross_entropy(sigmoid(z), y)\" (with --wrt and --vars).")] = None,
    wrt: Annotated[Optional[str], typer.Option("--wrt", help="--expr: the vector variable to differentiate by.")] = None,
    variables: Annotated[Optional[str], typer.Option("--vars", help="--expr: the variables and their lengths, e.g. z=n,y=n,T=scalar.")] = None,
    assume: Annotated[Optional[list[str]], typer.Option("--assume", help="--expr: an assumption such as \"sum(y) == 1\" (repeatable).")] = None,
    identity: Annotated[Optional[str], typer.Option("--identity", help="With an identity file: the name of the grad/jacobian identity to derive.")] = None,
    n: Annotated[str, typer.Option("--n", help="Number of classes: a positive integer, or 'symbolic'.")] = "3",
    n_prev: Annotated[Optional[str], typer.Option("--n-prev", help="softmax-layer: units of the previous layer (default 2).")] = None,
    m: Annotated[Optional[str], typer.Option("--m", help="softmax-layer: examples in the batch (default 2).")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", case_sensitive=False,
                                        help="Output: text (terminal), latex, markdown, json (certificate).")] = Format.text,
    standalone: Annotated[bool, typer.Option(help="LaTeX: a complete document that pdflatex compiles.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file (atomically) instead of stdout.")] = None,
    normalized_labels: Annotated[bool, typer.Option(help="Assume Σ_i y_i = 1 (one-hot or probability labels) and finish at dz = a − y.")] = True,
    notation: Annotated[NotationChoice, typer.Option(case_sensitive=False, help="Names in print: plain (z, a, y, L) or course (Z^[L], A^[L], …).")] = NotationChoice.plain,
    bold: Annotated[Bold, typer.Option(case_sensitive=False, help=r"Bold vectors with \mathbf (plain LaTeX) or \bm (package bm).")] = Bold.mathbf,
    label: Annotated[Optional[str], typer.Option(help=r"LaTeX: number the lines and put \label{PREFIX:step-k} on each.")] = None,
) -> None:
    """Derive a gradient step by step, check every step, and print it."""
    from symgrad.api import parse_size, render

    size = parse_size(n)
    target = _check_output_path(output)
    sizes = {key: value for key, value in (("n_prev", n_prev), ("m", m)) if value is not None}
    derivation = _run_derive(name, size, expr, wrt, variables, assume or [], identity, sizes, normalized_labels)
    if fmt is Format.text and target is None:
        from rich.console import Console

        Console(highlight=False).print(derivation)
    else:
        text = render(derivation, fmt.value, standalone=standalone, notation=notation.value,
                      bold=bold.value, label=label)
        if target is None:
            sys.stdout.write(text)
        else:
            write_atomically(target, text)
    if not derivation.proven:
        _error_line("not every step could be proven; see the step statuses above")
        raise typer.Exit(EXIT_FAILED)


def _run_derive(name, size, expr, wrt, variables, assume, identity, sizes, normalized_labels):
    """Which derivation the options ask for: a built-in one, an expression, or a file's identity."""
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
        return api.derive_expression(expr, variables=variables, wrt=wrt, assume=assume, n=size, progress=progress)
    for option, value in (("--wrt", wrt), ("--vars", variables), ("--assume", assume or None)):
        if value is not None:
            raise UsageError(f"{option} goes with --expr")
    if name is not None and (name.endswith(".toml") or Path(name).is_file()):
        _reject(sizes, "--n-prev/--m", "an identity file")
        return api.derive_identity(Path(name), identity, n=size, progress=progress)
    if identity is not None:
        raise UsageError("--identity goes with an identity file (symgrad derive FILE.toml --identity NAME)")
    return api.derive(name or "softmax-cross-entropy", size, normalized_labels=normalized_labels,
                      progress=progress, **sizes)


def _reject(sizes: dict, option: str, what: str) -> None:
    if sizes:
        from symgrad.errors import UsageError

        raise UsageError(f"{option} apply to softmax-layer, not to {what}")


class VerifyFormat(str, Enum):
    text = "text"
    json = "json"


@app.command()
def verify(
    paths: Annotated[list[Path], typer.Argument(help="Identity files (*.toml) or directories to search for them.")],
    fmt: Annotated[VerifyFormat, typer.Option("--format", "-f", case_sensitive=False,
                                              help="text (a table) or json (machine-readable results).")] = VerifyFormat.text,
    junit: Annotated[Optional[Path], typer.Option(help="Also write JUnit XML here (atomically), for CI dashboards.")] = None,
    check_exports: Annotated[bool, typer.Option("--check-exports", help="Also fail if a committed .tex beside a .toml is not what `symgrad export` writes.")] = False,
) -> None:
    """Check every identity at every listed size, exactly and numerically.

    Exit codes: 0 all hold · 1 at least one fails or is undecided · 2 a usage or file error · 3 a bug."""
    from symgrad.api import verify_paths
    from symgrad.output.report import failure_lines, results_json, results_junit, results_table

    junit_target = _check_output_path(junit)
    results = verify_paths(paths, progress=_identity_progress())
    stale = _stale_exports(results) if check_exports else []
    if fmt is VerifyFormat.json:
        sys.stdout.write(results_json(results))
    else:
        from rich.console import Console

        console = Console(highlight=False)
        console.print(results_table(results))
        for line in failure_lines(results):
            console.print(line, style="red", soft_wrap=True)
        for path in stale:
            console.print(f"out of date: {path} (run: symgrad export {path.with_suffix('.toml')} -o {path})", style="red")
    if junit_target is not None:
        write_atomically(junit_target, results_junit(results))
    if stale or not all(r.holds for r in results):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="An identity file (*.toml).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here (atomically) instead of stdout.")] = None,
) -> None:
    """Render an identity file's statements as a LaTeX document (as written, not expanded)."""
    from symgrad.identity_file import load_file
    from symgrad.output.identity_latex import render_identities

    target = _check_output_path(output)
    if not path.is_file():
        from symgrad.errors import UsageError

        raise UsageError(f"{path}: no such file")
    text = render_identities(load_file(path), title=path.stem)
    if target is None:
        sys.stdout.write(text)
    else:
        write_atomically(target, text)


def _stale_exports(results) -> list[Path]:
    """Committed .tex files beside the checked identity files that differ from a fresh export
    (from the identities already loaded, not by reading the files again)."""
    from symgrad.output.identity_latex import render_identities

    by_file: dict[Path, list] = {}
    for result in results:
        by_file.setdefault(result.identity.path, []).append(result.identity)
    stale = []
    for file, identities in by_file.items():
        tex = file.with_suffix(".tex")
        if tex.is_file() and tex.read_text(encoding="utf-8") != render_identities(identities, title=file.stem):
            stale.append(tex)
    return stale


def _identity_progress():
    """A progress bar on stderr for a person at a terminal, when there is more than a little work."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(console=Console(stderr=True), transient=True)
    task = None

    def report(done: int, total: int, name: str) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task("verifying", total=total)
        progress.update(task, completed=done, description=f"verifying {name}")
        if done == total:
            progress.stop()
    return report


def _check_output_path(output: Optional[Path]) -> Optional[Path]:
    from symgrad.errors import UsageError

    if output is None:
        return None
    directory = output.parent if str(output.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"cannot write {output}: directory {directory} does not exist")
    if output.is_dir():
        raise UsageError(f"cannot write {output}: it is a directory")
    return output


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it over: a failure leaves the old
    file (if any) untouched and no half-written file behind."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _progress_reporter():
    """Progress on stderr, only for a person at a terminal (CI logs stay clean)."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)
    status = console.status("checking …")
    status.start()

    def report(number: int, total: int, title: str) -> None:
        from symgrad.output.notation import latex_to_unicode

        status.update(f"checking step {number}/{total}: {latex_to_unicode(title)}")
        if number == total:
            status.stop()
    return report


def _error_line(message: str) -> None:
    sys.stderr.write(f"symgrad: error: {message}\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors become one line on stderr and exit 2; a bug exits 3.

    Click's exceptions are recognised by what they carry (``exit_code``, ``format_message``), not
    by class: typer ≥ 0.20 vendors its own click, and older typer uses the click package."""
    from symgrad.errors import UsageError

    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="symgrad", standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 - the top of the program
        name = type(exc).__name__
        if name == "NoArgsIsHelpError" and hasattr(exc, "ctx"):
            sys.stdout.write(exc.ctx.get_help() + "\n")
            code = EXIT_OK
        elif name == "Exit" and hasattr(exc, "exit_code"):
            code = exc.exit_code
        elif name == "Abort":
            _error_line("aborted")
            code = EXIT_FAILED
        elif hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's usage errors
            _error_line(exc.format_message())
            code = EXIT_USAGE if exc.exit_code == 2 else exc.exit_code
        elif isinstance(exc, UsageError):
            _error_line(str(exc))
            code = EXIT_USAGE
        elif isinstance(exc, OSError):
            _error_line(f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "))
            code = EXIT_USAGE
        else:
            import traceback

            traceback.print_exc()
            _error_line(f"internal error ({type(exc).__name__}: {exc}); please report this as a bug")
            code = EXIT_INTERNAL
    sys.exit(code if isinstance(code, int) else EXIT_OK)
