"""The library API the CLI is a thin layer over; a notebook or a test calls these directly.

    >>> from symgrad import derive, render
    >>> d = derive("softmax-cross-entropy", n=3)
    >>> d.proven
    True
    >>> print(render(d, "latex"))          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

from symgrad.derivation import DERIVATIONS
from symgrad.errors import UsageError
from symgrad.output.notation import NOTATIONS, Notation
from symgrad.steps import Derivation
from symgrad.verify import check_derivation

FORMATS = ("text", "latex", "markdown", "json")
EXTRA_SIZES = {"softmax-layer": ("n_prev", "m")}  # sizes a derivation takes besides n
MAX_N = 4096  # beyond this a fixed-n derivation is not useful to print and would take very long


def parse_size(value: str | int, name: str = "n") -> int | str:
    """A size as the user gave it: a positive integer, or "symbolic"."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        if text.lower() == "symbolic":
            return "symbolic"
        try:
            number = int(text)
        except ValueError:
            raise UsageError(f"--{name} must be a positive integer or 'symbolic', not {text!r}") from None
    if number < 1:
        raise UsageError(f"--{name} must be at least 1, not {number}")
    if number > MAX_N:
        raise UsageError(f"--{name} must be at most {MAX_N}, not {number}")
    return number


def derive(name: str = "softmax-cross-entropy", n: int | str = 3, *, normalized_labels: bool = True,
           check: bool = True, progress: Callable[[int, int, str], None] | None = None,
           **sizes) -> Derivation:
    """Build, derive and (by default) check a derivation. Raises UsageError on bad input."""
    if name not in DERIVATIONS:
        known = ", ".join(sorted(DERIVATIONS))
        raise UsageError(f"unknown derivation {name!r}; known: {known}")
    size = parse_size(n)
    builder = DERIVATIONS[name]
    accepted = EXTRA_SIZES.get(name, ())
    for key in sizes:
        if key not in accepted:
            raise UsageError(f"--{key.replace('_', '-')} does not apply to {name}"
                             + (f" (it takes --n{''.join(' --' + k.replace('_', '-') for k in accepted)})"))
    extra = {key: parse_size(value, key.replace("_", "-")) for key, value in sizes.items()}
    derivation = builder(size, normalized_labels=normalized_labels, **extra)
    return check_derivation(derivation, progress) if check else derivation


def parse_variables(text: str) -> dict:
    """``"z=n,y=n,T=scalar"`` → {"z": "n", "y": "n", "T": "scalar"} (lengths as in identity files:
    the size name n, a positive integer, or "scalar")."""
    variables = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, length = (x.strip() for x in part.partition("="))
        if not sep or not name or not length:
            raise UsageError(f"--vars: {part!r} is not NAME=LENGTH (e.g. z=n, y=n, T=scalar)")
        if not name.isidentifier():
            raise UsageError(f"--vars: {name!r} is not a valid variable name")
        if name in variables:
            raise UsageError(f"--vars: {name!r} is declared twice")
        if length in ("n", "scalar"):
            variables[name] = length
        elif length.isdigit() and int(length) >= 1:
            variables[name] = int(length)
        else:
            raise UsageError(f"--vars: the length of {name!r} must be n, a positive integer or scalar, not {length!r}")
    if not variables:
        raise UsageError("--vars declares no variable (e.g. --vars z=n,y=n)")
    return variables


def derive_expression(expression: str, *, variables: dict | str, wrt: str | None = None, assume=(),
                      n: int | str = 3, check: bool = True,
                      progress: Callable[[int, int, str], None] | None = None) -> Derivation:
    """Derive the gradient of any loss written in the expression language, step by step.

    >>> d = derive_expression("binary_cross_entropy(sigmoid(z), y)", wrt="z", variables="z=n,y=n")
    >>> d.proven
    True
    """
    from symgrad.derivation.engine import Problem, derive_problem

    if isinstance(variables, str):
        variables = parse_variables(variables)
    problem = Problem(expression, variables, wrt=wrt, assume=tuple(assume), size=parse_size(n),
                      name="expression", title=None)
    derivation = derive_problem(problem)
    return check_derivation(derivation, progress) if check else derivation


def derive_identity(path, identity: str | None = None, *, n: int | str = 3, check: bool = True,
                    progress: Callable[[int, int, str], None] | None = None) -> Derivation:
    """Derive the lhs of a ``grad(...)``/``jacobian(...)`` identity of a file, ending at its rhs."""
    from pathlib import Path

    from symgrad.derivation.engine import derive_problem, problem_from_identity
    from symgrad.identity_file import load_file

    identities = load_file(Path(path))
    if identity is None:
        if len(identities) != 1:
            names = ", ".join(repr(i.name) for i in identities)
            raise UsageError(f"{path} holds {len(identities)} identities: choose one with --identity ({names})")
        (chosen,) = identities
    else:
        matches = [i for i in identities if i.name == identity]
        if not matches:
            import difflib

            names = [i.name for i in identities]
            near = difflib.get_close_matches(identity, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (it has: {', '.join(map(repr, names))})"
            raise UsageError(f"{path}: no identity named {identity!r}{hint}")
        chosen = matches[0]
    derivation = derive_problem(problem_from_identity(chosen, parse_size(n)))
    return check_derivation(derivation, progress) if check else derivation


def render(derivation: Derivation, fmt: str = "text", *, standalone: bool = False,
           notation: str = "plain", bold: str = "mathbf", label: str | None = None) -> str:
    """The derivation as text (plain, no colour), LaTeX, Markdown or a JSON certificate."""
    if notation not in NOTATIONS:
        raise UsageError(f"unknown notation {notation!r}; known: {', '.join(NOTATIONS)}")
    names = Notation(dict(NOTATIONS[notation]), bold)
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

        console = Console(record=True, width=200, file=io.StringIO(), color_system=None)
        console.print(derivation)
        return console.export_text()
    raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")



def verify_paths(paths, progress: Callable[[int, int, str], None] | None = None) -> list:
    """Load every identity file under ``paths`` and check each identity at each of its sizes.
    Raises UsageError (an IdentityFileError) for any problem with the files themselves."""
    from pathlib import Path

    from symgrad.identity_file import load_paths
    from symgrad.verify.identity import check_identity

    identities = load_paths([Path(p) for p in paths])
    results = []
    for done, identity in enumerate(identities):
        if progress:
            progress(done, len(identities), identity.name)
        results.append(check_identity(identity))
    if progress:
        progress(len(identities), len(identities), "done")
    return results
