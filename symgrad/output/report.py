"""Stage 4 — results of ``symgrad verify``: a rich table for people, JSON for programs, JUnit XML
for CI dashboards. Times are left out of JSON and JUnit by default so the files are
byte-identical from run to run (``timings=True`` adds them)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from rich.markup import escape
from rich.table import Table

from symgrad.errors import one_line
from symgrad.verdicts import IdentityResult

WORDS = {True: "holds", False: "FAILS", None: "undecided"}

# characters XML 1.0 forbids (C0 controls but tab/newline/CR, lone surrogates, U+FFFE/U+FFFF)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """Text any XML 1.0 parser accepts: forbidden characters become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(text))


shown = one_line  # text on one terminal line, control characters escaped


def json_text(text) -> str:
    """Text JSON can carry in UTF-8: lone surrogates (from undecodable file names) become U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", str(text))


def verdict(result: IdentityResult) -> str:
    """Where an identity does not hold, in words: "refuted at n = 2; undecided at n = 64"."""
    said = []
    for holds, word in ((False, "refuted"), (None, "undecided")):
        sizes = [r.size for r in result.results if r.holds is holds]
        if sizes:
            tables = all("=" in str(size) for size in sizes)
            said.append(f"{word} at " + ("; ".join(map(str, sizes)) if tables else f"n = {', '.join(map(str, sizes))}"))
    return "; ".join(said) or "holds"


def problem_line(problem) -> str:
    """A file or identity that could not be checked, as one line (``file:line:column: message``)."""
    return shown(str(problem))


def results_table(results: list[IdentityResult]) -> Table:
    table = Table(title="symgrad verify")
    for column in ("identity", "sizes", "method", "result", "time"):
        table.add_column(column, justify="right" if column == "time" else "left")
    for result in results:
        methods = sorted({r.method for r in result.results})
        colour = {True: "green", False: "bold red", None: "yellow"}[result.holds]
        table.add_row(escape(shown(result.identity.name)), ", ".join(str(r.size) for r in result.results), " / ".join(methods),
                      f"[{colour}]{WORDS[result.holds]}[/{colour}]", f"{result.seconds:.2f} s")
    return table


def failure_lines(results: list[IdentityResult]) -> list[str]:
    """One paragraph per size that does not hold: what was checked and the counterexample."""
    lines = []
    for result in results:
        for r in result.results:
            if r.holds is not True:
                lines.append(shown(f"{WORDS[r.holds]}: {result.identity.name} ({result.identity.path}) "
                                   f"at {_size_words(r.size)}: {r.detail}"))
    return lines


def results_json(results: list[IdentityResult], timings: bool = False, problems=()) -> str:
    """Every result, and every file or identity that could not be checked (``errors``)."""
    rows = []
    for result in results:
        rows.append({
            "file": json_text(result.identity.path),
            "name": json_text(result.identity.name),
            "holds": result.holds,
            "sizes": [{"n": r.size, "holds": r.holds, "method": r.method, "detail": json_text(r.detail),
                       **({"seconds": round(r.seconds, 3)} if timings else {})} for r in result.results],
        })
    errors = [{"file": json_text(getattr(p, "path", None) or ""),
               "name": json_text(getattr(p, "identity", None)) if getattr(p, "identity", None) else None,
               "message": json_text(p)} for p in problems]
    summary = {"identities": len(results), "hold": sum(1 for r in results if r.holds),
               "fail": sum(1 for r in results if r.holds is False),
               "undecided": sum(1 for r in results if r.holds is None),
               "errors": len(errors)}
    return json.dumps({"summary": summary, "results": rows, "errors": errors}, indent=2,
                      ensure_ascii=False) + "\n"


def results_junit(results: list[IdentityResult], timings: bool = False, problems=()) -> str:
    """JUnit XML: one <testsuite> per file and one <testcase> per identity, counted as the text
    summary and JSON count them: an identity that holds at every size passes, one refuted at a size
    is a <failure>, one undecided at a size (and refuted at none) is <skipped message="undecided:
    …"> (neither passed nor failed), and a file or identity that could not be checked is a
    <testcase> with an <error>. Each size's verdict is in the test case's text. Any name gives a
    well-formed file (characters XML 1.0 forbids become U+FFFD)."""
    suites = ET.Element("testsuites", name="symgrad verify")
    by_file: dict[str, list] = {}
    for result in results:
        by_file.setdefault(str(result.identity.path), []).append(result)
    for problem in problems:
        by_file.setdefault(str(getattr(problem, "path", None) or ""), []).append(problem)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for file, members in by_file.items():
        cases = [result for result in members if isinstance(result, IdentityResult)]
        bad = [p for p in members if not isinstance(p, IdentityResult)]
        counts = {"tests": len(cases) + len(bad),
                  "failures": sum(1 for result in cases if result.holds is False),
                  "errors": len(bad),
                  "skipped": sum(1 for result in cases if result.holds is None)}
        for key, value in counts.items():
            totals[key] += value
        suite = ET.SubElement(suites, "testsuite", name=xml_text(file), **{k: str(v) for k, v in counts.items()})
        for result in cases:
            case = ET.SubElement(suite, "testcase", classname=xml_text(file), name=xml_text(result.identity.name))
            if timings:
                case.set("time", f"{result.seconds:.3f}")
            sizes = "\n".join(f"{WORDS[r.holds]} at {_size_words(r.size)} ({r.method}): {r.detail}"
                               for r in result.results)
            if result.holds is False:
                ET.SubElement(case, "failure", message=xml_text(verdict(result))).text = xml_text(sizes)
            elif result.holds is None:
                ET.SubElement(case, "skipped", message=xml_text(f"undecided: {verdict(result)}")).text = xml_text(sizes)
        for problem in bad:
            name = getattr(problem, "identity", None) or "(identity file)"
            case = ET.SubElement(suite, "testcase", classname=xml_text(file), name=xml_text(name))
            ET.SubElement(case, "error", message="could not be checked").text = xml_text(problem)
    for key, value in totals.items():
        suites.set(key, str(value))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _size_words(size) -> str:
    """"n = 3", or a size table as it is ("n = 3, p = 2, m = 2")."""
    return str(size) if "=" in str(size) else f"n = {size}"


def results_rows(results: list[IdentityResult]) -> list[tuple[str, ...]]:
    """The rows of the verify table as plain text (identity, sizes, method, result, time)."""
    return [(shown(result.identity.name), _sizes_text([r.size for r in result.results]),
             " / ".join(sorted({r.method for r in result.results})), WORDS[result.holds],
             f"{result.seconds:.2f} s") for result in results]


RESULT_COLUMNS = ("identity", "sizes", "method", "result", "time")


def plain_table(columns, rows) -> str:
    """Columns aligned with spaces, one line per row: no colour, no box drawing, no wrapping
    (what a pipe, a log or ``grep`` gets)."""
    rows = [tuple(shown(cell) for cell in row) for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in (tuple(columns), *rows)]
    return "\n".join(lines) + "\n"


def summary_line(results: list[IdentityResult], problems=(), files: int = 0, seconds: float = 0.0) -> str:
    """One line after the table: "12 held, 1 failed, 0 undecided, 0 errors in 2 files (3.41 s)"."""
    held = sum(1 for r in results if r.holds is True)
    failed = sum(1 for r in results if r.holds is False)
    undecided = sum(1 for r in results if r.holds is None)
    errors = len(problems)
    plural = "" if files == 1 else "s"
    return (f"{held} held, {failed} failed, {undecided} undecided, {errors} error{'' if errors == 1 else 's'}"
            f" in {files} file{plural} ({seconds:.2f} s)")


def _sizes_text(sizes: list) -> str:
    """1, 2, symbolic — or, for size tables, (n = 3, p = 2, m = 2); (n = 2, p = 3, m = 1)."""
    if not any(hasattr(size, "values") for size in sizes):  # identity_file.SizeTable: a str with values
        return ", ".join(map(str, sizes))
    return "; ".join(f"({size})" for size in sizes)


def identities_table(rows: list[dict]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """``symgrad list FILE…``: name, file, variables, sizes, and whether derive --identity applies."""
    columns = ("identity", "file", "vars", "sizes", "derive --identity")
    shown_rows = [(row["name"], row["file"], ", ".join(f"{k}={v}" for k, v in row["vars"].items()),
                   _sizes_text(row["sizes"]),
                   "yes" if row["derivable"] else "no (lhs is not grad/jacobian)") for row in rows]
    return columns, shown_rows
