"""How names print: the mathematics is the same objects whichever notation is chosen.

``plain``: z, a, y, L. ``course``: Z^{[L]}, A^{[L]}, Y, J … (the deep-learning course style).
Vectors/matrices print bold with ``\\mathbf`` (the default: plain LaTeX) or ``\\bm`` (package bm,
which keeps Greek letters and italics bold too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PLAIN = {"z": "z", "a": "a", "y": "y", "L": "L", "dz": "dz",
         # the layer: Z = W A_prev + b, A = softmax(Z), J = (1/m) Σ_s L_s
         "A_prev": "A_{\\mathrm{prev}}", "n_prev": "n_{\\mathrm{prev}}",
         "dA_prev": "dA_{\\mathrm{prev}}"}
COURSE = {"z": "Z^{[L]}", "a": "A^{[L]}", "y": "Y", "L": "\\mathcal{L}", "dz": "dZ^{[L]}",
          "Z": "Z^{[L]}", "A": "A^{[L]}", "W": "W^{[L]}", "b": "b^{[L]}", "A_prev": "A^{[L-1]}",
          # sizes and the course's gradient names (not bold: dW^{[L]} as the course writes it)
          "n_prev": "n^{[L-1]}", "dZ": "dZ^{[L]}", "dW": "dW^{[L]}", "db": "db^{[L]}",
          "dA_prev": "dA^{[L-1]}"}
# Short names users give scalars (eps for ε in label smoothing), printed as the letter they mean;
# SymPy already prints the full names (epsilon, lambda, tau …) as Greek.
SHORT_GREEK = {"eps": (r"\varepsilon", "ε"), "lam": (r"\lambda", "λ")}
GRADIENT_NAMES = {"dz", "dZ", "dW", "db", "dA_prev"}


_LAYER_NAME = re.compile(r"([A-Za-z]+)(\d+)")


def layer_name(name: str) -> tuple[str, str] | None:
    """A name with a layer number, letters then digits (W2, b1, A0, n1), as (letters, number);
    else None."""
    found = _LAYER_NAME.fullmatch(name)
    return (found.group(1), found.group(2)) if found else None


@dataclass(frozen=True)
class Notation:
    """LaTeX names for the base names used by derivations, and the bold command. A name with a
    layer number prints as the course writes it: W2 is W_{2}, or W^{[2]} in course notation."""

    names: dict = field(default_factory=lambda: dict(PLAIN))
    bold: str = "mathbf"

    @property
    def course(self) -> bool:
        """Layers written W^{[l]} (the course's own names are in use) rather than W_{l}."""
        return self.names.get("W") == COURSE["W"]

    def latex_name(self, name: str) -> str:
        if name in self.names:
            return self.names[name]
        layer = layer_name(name)
        if layer is None:
            return name
        from sympy.printing.latex import translate  # alpha2 → \alpha_{2}, as SymPy writes Greek

        head, number = layer
        head = SHORT_GREEK[head][0] if head in SHORT_GREEK else translate(head)
        return f"{head}^{{[{number}]}}" if self.course else f"{head}_{{{number}}}"

    def terminal_name(self, name: str) -> str | None:
        """W₂ (W^[2] in course notation) for a name with a layer number, else None."""
        layer = layer_name(name)
        if layer is None or name in self.names:
            return None
        from sympy.printing.pretty.pretty_symbology import pretty_symbol  # alpha → α

        head, number = layer
        head = SHORT_GREEK[head][1] if head in SHORT_GREEK else pretty_symbol(head)
        return f"{head}^[{number}]" if self.course else head + subscript(number)

    def latex_bold(self, name: str) -> str:
        if name in GRADIENT_NAMES and self.latex_name(name) != PLAIN.get(name, name):
            return self.latex_name(name)  # not bold: dW^{[L]} as the course writes it
        return f"\\{self.bold}{{{self.latex_name(name)}}}"


NOTATIONS = {"plain": PLAIN, "course": COURSE}

SUBSCRIPTS = str.maketrans("0123456789aeijklmnoprstuvx+-=()", "₀₁₂₃₄₅₆₇₈₉ₐₑᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ₊₋₌₍₎")
_SUBSCRIPTABLE = set("0123456789aeijklmnoprstuvx+-=()")

_COMMANDS = {
    r"\partial": "∂", r"\sum": "Σ", r"\delta": "δ", r"\neq": "≠", r"\ne": "≠", r"\times": "×",
    r"\cdot": "·", r"\dots": "…", r"\ldots": "…", r"\to": "→", r"\in": "∈", r"\varepsilon": "ε",
    r"\sigma": "σ", r"\nabla": "∇", r"\leq": "≤", r"\le": "≤", r"\ge": "≥", r"\,": " ", r"\quad": "  ", r"\log": "log",
    r"\odot": "⊙", r"\oslash": "⊘",
}


_PREFIX_COMMANDS = {r"\partial", r"\sum", r"\nabla"}  # ∂L reads better than ∂ L


_SUPERSCRIPTS = str.maketrans("abcdefghijklmnoprstuvwxyz0123456789", "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻ⁰¹²³⁴⁵⁶⁷⁸⁹")
_SUPERSCRIPTABLE = set("abcdefghijklmnoprstuvwxyz0123456789")


def superscript(text: str) -> str:
    """Unicode superscript letters if every character has one (prev → ᵖʳᵉᵛ), else ``^(text)``."""
    if text and set(text) <= _SUPERSCRIPTABLE:  # every character has one (zₖ has not: e^(zₖ))
        return text.translate(_SUPERSCRIPTS)
    return f"^({text})"


def subscript(text: str) -> str:
    """Unicode subscript if every character has one, else ``_text``."""
    return text.translate(SUBSCRIPTS) if set(text) <= _SUBSCRIPTABLE else f"_{text}"


def _greek(name: str) -> str | None:
    """\\lambda → λ, \\Sigma → Σ (Unicode's own names for the letters), else None."""
    import unicodedata

    case = "CAPITAL" if name[:1].isupper() else "SMALL"
    try:
        return unicodedata.lookup(f"GREEK {case} LETTER {name.upper().replace('LAMBDA', 'LAMDA')}")
    except KeyError:
        return None


_SPACING = {",": " ", ";": " ", ":": " ", " ": " ", "!": "", "\\": " ", "{": "(", "}": ")", "|": "‖",
            "_": "_", "%": "%", "&": "&", "#": "#"}


def _innermost(pattern: str, replace, s: str) -> str:
    """Apply ``re.sub(pattern, replace)`` until nothing changes: groups written ``[^{}]*`` match
    the innermost braces first, so nested ones (a_{i_{k}}, \\frac{a_{i}}{2}) come out too."""
    while True:
        changed = re.sub(pattern, replace, s)
        if changed == s:
            return s
        s = changed


_FONTS = r"\\(?:mathbf|bm|boldsymbol|operatorname|mathrm|text|mathcal|mathit)\{([^{}]*)\}"
_SQUARE_ROOT = r"\\sqrt\{([^{}]*)\}"


def _square_root(match: re.Match) -> str:
    inside = match.group(1)
    return "√" + (inside if len(inside) == 1 else f"({inside})")


def _fraction(match: re.Match) -> str:
    top, bottom = match.group(1).strip(), match.group(2).strip()
    wrap = lambda part: f"({part})" if re.search(r"[\s+−/-]", part) else part  # noqa: E731 (a/b over c: (a/b)/c)
    return f"{wrap(top)}/{wrap(bottom)}"


def superscript_letters() -> str:
    """The letters a name's superscript tail can hold (prev in Aᵖʳᵉᵛ)."""
    return "".join(sorted({superscript(c) for c in "abcdefghijklmnopqrstuvwxyz" if len(superscript(c)) == 1}
                          - set("abcdefghijklmnopqrstuvwxyz")))


def latex_to_unicode(markup: str) -> str:
    """Titles and notes are written as text with ``$…$`` LaTeX math; show them in a terminal.
    Every command becomes Unicode or its plain name (\\tanh → tanh, \\lambda → λ), scripts
    become Unicode sub- and superscripts (or _x, ^(x)), fractions a/b: no backslash or brace
    is left, whatever LaTeX a title holds."""
    def math(match: re.Match) -> str:
        s = match.group(1).replace(r"\_", "\x00")  # an escaped underscore (leaky\_relu) is no subscript
        s = re.sub(r"\^\{(\[[^\]{}]*\])\}", r"^\1", s)  # course names: Z^{[L]} → Z^[L]
        s = s.replace(r"\mathcal{L}", "ℒ")
        s = _innermost(_FONTS, r"\1", s)
        s = _innermost(_SQUARE_ROOT, _square_root, s)
        s = s.replace(r"\left", "").replace(r"\right", "")
        # {Aᵖʳᵉᵛ}^\top: (Aᵖʳᵉᵛ)ᵀ, as the equations print it; Aᵖʳᵉᵛᵀ would read as one exponent
        tail = "[" + superscript_letters() + "]"
        s = re.sub(r"(?:\{([^{}]*" + tail + r")\}|(\w*" + tail + r"))\^(?:\{\\top\}|\\top)",
                   lambda m: f"({m.group(1) or m.group(2)})ᵀ", s)
        s = s.replace("^{\\top}", "ᵀ").replace("^\\top", "ᵀ")
        for command in sorted(_COMMANDS, key=len, reverse=True):
            space = " ?" if command in _PREFIX_COMMANDS else ""
            s = re.sub(re.escape(command) + r"(?![A-Za-z])" + space, lambda _m: _COMMANDS[command], s)
        s = re.sub(r"\\([A-Za-z]+)", lambda m: _greek(m.group(1)) or m.group(0), s)
        # one-character scripts first: a braced one may come out as _i,q, not to be read again
        s = re.sub(r"_(\w)", lambda m: subscript(m.group(1)), s)
        s = re.sub(r"\^(\w)", lambda m: superscript(m.group(1)), s)
        while True:  # nested: a fraction in a script (z^{\frac{3}{2}}), a script in a fraction or a font
            before = s
            s = _innermost(_FONTS, r"\1", s)
            s = _innermost(r"\{(\([^{}]*\))\}", r"\1", s)  # a function's argument: \operatorname{sign}{(x)}
            s = _innermost(_SQUARE_ROOT, _square_root, s)
            s = _innermost(r"_\{([^{}]*)\}", lambda m: subscript(m.group(1)), s)
            s = _innermost(r"\^\{([^{}]*)\}", lambda m: superscript(m.group(1)), s)
            s = _innermost(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", _fraction, s)
            if s == before:
                break
        s = re.sub(r"\\([A-Za-z]+)", r"\1", s)  # a function's name: \tanh → tanh
        s = re.sub(r"\\(.)", lambda m: _SPACING.get(m.group(1), m.group(1)), s)
        s = s.replace("-", "−").replace("{", "").replace("}", "").replace("\x00", "_")
        return s
    markup = re.sub(r"\\texttt\{([^{}$]*)\}", r"\1", markup)  # code in a note: plain in a terminal
    return re.sub(r"\$([^$]*)\$", math, markup)
