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
