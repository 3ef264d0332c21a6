"""Stage 4 — results of ``symgrad verify``: a rich table for people, JSON for programs, JUnit XML
for CI dashboards. Times are left out of JSON and JUnit by default so the files are
byte-identical from run to run (``timings=True`` adds them)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from rich.table import Table

from symgrad.verify.identity import IdentityResult

WORDS = {True: "holds", False: "FAILS", None: "undecided"}


def results_table(results: list[IdentityResult]) -> Table:
    table = Table(title="symgrad verify")
    for column in ("identity", "sizes", "method", "result", "time"):
        table.add_column(column, justify="right" if column == "time" else "left")
    for result in results:
        methods = sorted({r.method for r in result.results})
        colour = {True: "green", False: "bold red", None: "yellow"}[result.holds]
        table.add_row(result.identity.name, ", ".join(str(r.size) for r in result.results), " / ".join(methods),
                      f"[{colour}]{WORDS[result.holds]}[/{colour}]", f"{result.seconds:.2f} s")
    return table


def failure_lines(results: list[IdentityResult]) -> list[str]:
    """One paragraph per size that does not hold: what was checked and the counterexample."""
    lines = []
    for result in results:
        for r in result.results:
            if r.holds is not True:
                lines.append(f"{WORDS[r.holds]}: {result.identity.name} ({result.identity.path}) "
                             f"at n = {r.size}: {r.detail}")
    return lines


def results_json(results: list[IdentityResult], timings: bool = False) -> str:
    rows = []
    for result in results:
        rows.append({
            "file": str(result.identity.path),
            "name": result.identity.name,
            "holds": result.holds,
            "sizes": [{"n": r.size, "holds": r.holds, "method": r.method, "detail": r.detail,
                       **({"seconds": round(r.seconds, 3)} if timings else {})} for r in result.results],
        })
    summary = {"identities": len(results), "hold": sum(1 for r in results if r.holds),
               "fail": sum(1 for r in results if r.holds is False),
               "undecided": sum(1 for r in results if r.holds is None)}
    return json.dumps({"summary": summary, "results": rows}, indent=2, ensure_ascii=False) + "\n"


def results_junit(results: list[IdentityResult], timings: bool = False) -> str:
    """JUnit XML: one <testsuite> per file, one <testcase> per identity and size."""
    suites = ET.Element("testsuites", name="symgrad verify")
    by_file: dict[str, list[IdentityResult]] = {}
    for result in results:
        by_file.setdefault(str(result.identity.path), []).append(result)
    for file, members in by_file.items():
        cases = [(result, r) for result in members for r in result.results]
        suite = ET.SubElement(suites, "testsuite", name=file, tests=str(len(cases)),
                              failures=str(sum(1 for _, r in cases if r.holds is False)),
                              errors=str(sum(1 for _, r in cases if r.holds is None)))
        for result, r in cases:
            case = ET.SubElement(suite, "testcase", classname=file, name=f"{result.identity.name} [n={r.size}]")
            if timings:
                case.set("time", f"{r.seconds:.3f}")
            if r.holds is False:
                ET.SubElement(case, "failure", message="identity does not hold").text = r.detail
            elif r.holds is None:
                ET.SubElement(case, "error", message="undecided").text = r.detail
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
