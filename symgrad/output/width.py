"""How wide a piece of LaTeX math will be on the page, estimated from its source (in em of the
10 pt body font), so that the LaTeX writer can elide matrices and break lines *before* pdflatex
would report an ``Overfull \\hbox``. The estimate errs on the wide side; ``tests/test_output.py``
compiles every combination with a real pdflatex and fails on any overfull box, which keeps the
numbers here honest.
"""

from __future__ import annotations

import re

_COMMANDS = {
    "partial": 0.6, "delta": 0.5, "sigma": 0.6, "varepsilon": 0.5, "top": 0.8, "log": 1.5,
    "cdots": 1.4, "dots": 1.4, "ldots": 1.4, "ddots": 1.4, "vdots": 0.4, "neq": 1.45, "ne": 1.45,
    "le": 1.45, "leq": 1.45, "ge": 1.45, "geq": 1.45, "to": 1.45, "in": 1.2, "times": 1.3,
    "cdot": 0.8, "quad": 1.0, "qquad": 2.0, ",": 0.2, " ": 0.35, ";": 0.3, ":": 0.25, "!": 0.0,
    "exp": 1.6, "nabla": 0.9, "infty": 1.0, "mathcal": 0.0, "{": 0.5, "}": 0.5,
}
_FONTS = {"mathbf": 1.15, "bm": 1.15, "boldsymbol": 1.15, "mathrm": 1.0, "mathcal": 1.1,
          "mathit": 1.0}
_TEXT = {"text", "textit", "textbf", "mathrm"}


def _argument(s: str, i: int) -> tuple[str, int]:
    """The braced group (or single token) starting at s[i], and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        depth = 0
        for k in range(i, len(s)):
            if s[k] == "{":
                depth += 1
            elif s[k] == "}":
                depth -= 1
                if depth == 0:
                    return s[i + 1:k], k + 1
        return s[i + 1:], len(s)
    if s[i] == "\\":
        m = re.match(r"\\([A-Za-z]+|.)", s[i:])
        return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def split_top(s: str, separator: str) -> list[str]:
    """Split at ``separator`` (``&`` or ``\\\\``) outside braces and nested environments."""
    parts, depth, env, start, k = [], 0, 0, 0, 0
    while k < len(s):
        if s.startswith(r"\begin{", k):
            env += 1
        elif s.startswith(r"\end{", k):
            env -= 1
        c = s[k]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif depth == 0 and env == 0 and s.startswith(separator, k) and not (
                separator == "&" and k and s[k - 1] == "\\"):
            parts.append(s[start:k])
            k += len(separator)
            start = k
            continue
        elif c == "\\" and separator != "\\\\":
            k += 2
            continue
        k += 1
    parts.append(s[start:])
    return parts


def _environment(name: str, body: str) -> float:
    rows = [split_top(row, "&") for row in split_top(body, r"\\")]
    columns = max(len(r) for r in rows)
    widths = [max((width(r[c]) for r in rows if c < len(r)), default=0.0) for c in range(columns)]
    if name == "cases":
        return 1.2 + sum(widths) + 1.0 * (columns - 1)
    if name in ("aligned", "align", "align*"):
        return sum(widths)
    return 1.4 + sum(widths) + 1.1 * (columns - 1)  # pmatrix: parentheses and \arraycolsep


def width(s: str, display: bool = True) -> float:
    """Estimated width of math ``s`` in em, in display style (``display=False``: text style,
    as inside a fraction, where Σ is smaller and its limits sit beside it)."""
    total, i = 0.0, 0
    script_base = None  # width of the previous script, to overlap a sub- and superscript
    operator = None  # (operator width, extra width its limits took) after \sum
    while i < len(s):
        c = s[i]
        if c in " \n\t{}&":
            i += 1
            continue
        if c in "^_":
            argument, i = _argument(s, i + 1)
            w = 0.72 * width(argument, False)
            if operator is not None:
                base, extra = operator
                grown = max(extra, w - base)
                total += grown - extra
                operator = (base, grown)
            elif script_base is not None:
                total += max(0.0, w - script_base)
                script_base = None
            else:
                total += w
                script_base = w
            continue
        script_base = None
        operator = None
        if c == "\\":
            name_match = re.match(r"\\([A-Za-z]+|.)", s[i:])
            name = name_match.group(1)
            i += len(name_match.group(0))
            if name == "frac":
                top, i = _argument(s, i)
                bottom, i = _argument(s, i)
                scale = 1.0 if display else 0.75
                total += scale * max(width(top, False), width(bottom, False)) + 0.3
            elif name in ("left", "right"):
                delimiter, i = _argument(s, i)
                total += 0.0 if delimiter == "." else 0.55
            elif name == "begin":
                env, i = _argument(s, i)
                end = s.find(rf"\end{{{env}}}", i)
                end = len(s) if end < 0 else end
                total += _environment(env, s[i:end])
                i = end + len(rf"\end{{{env}}}")
            elif name in _TEXT and name != "mathrm":
                text, i = _argument(s, i)
                total += 0.52 * len(re.sub(r"\\[A-Za-z]+|[{}$]", "", text))
            elif name in _FONTS:
                inner, i = _argument(s, i)
                total += _FONTS[name] * width(inner, display)
            elif name == "operatorname":
                inner, i = _argument(s, i)
                total += 0.5 * len(inner) + 0.35
            elif name == "sum":
                total += 1.5 if display else 1.1
                operator = (1.5, 0.0) if display else None
            elif name == "tag":
                inner, i = _argument(s, i)
                total += 2.0 + 0.5 * len(inner)
            elif name == "\\":
                pass
            else:
                total += _COMMANDS.get(name, 0.7)
            continue
        i += 1
        if c in "+-":
            total += 1.3 if total > 0 else 0.8
        elif c in "=<>":
            total += 1.4
        elif c in ",;":
            total += 0.45
        elif c in "()[]|":
            total += 0.4
        elif c == "/":
            total += 0.5
        elif c.isdigit():
            total += 0.5
        elif c.isupper():
            total += 0.8
        elif c.isalpha():
            total += 0.55
        else:
            total += 0.6
    return total


