"""Time and peak memory of ``symgrad derive`` (build + check every step + render) for
n = 2 … 128, beside the plain-SymPy route measured in the same run.

The plain route is what a user would write by hand: L with Σ_k e^{z_k} written out,
``diff`` by each z_j, ``simplify`` of the difference from a_j − y_j (with y_n = 1 − Σ y_others).
It proves only the final identity, no steps; symgrad proves every step, exactly and numerically.

Every measurement runs in a fresh Python process, so peak memory (ru_maxrss) and import costs
are its own. Run:  python bench/bench_derive.py            (plain route up to n = 32)
                   python bench/bench_derive.py --sizes 2 8 64 --plain-max 16 --format json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

SYMGRAD = """
import resource, time
t = time.perf_counter()
from symgrad import derive, render
d = derive("softmax-cross-entropy", n={n})
render(d, "{fmt}")
assert d.proven
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

PLAIN = """
import resource, time
t = time.perf_counter()
import sympy as sp
n = {n}
z, y = sp.symbols(f"z1:{{n + 1}}", real=True), sp.symbols(f"y1:{{n + 1}}", real=True)
s = sum(sp.exp(zk) for zk in z)
a = [sp.exp(zi) / s for zi in z]
L = -sum(yi * sp.log(ai) for yi, ai in zip(y, a))
last = {{y[-1]: 1 - sum(y[:-1])}}
for j in range(n):
    assert sp.simplify((L.diff(z[j]) - (a[j] - y[j])).subs(last)) == 0
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def measure(code: str, timeout: float) -> tuple[float, float] | None:
    """(seconds, peak MB) of one fresh process, or None on timeout."""
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    seconds, kilobytes = done.stdout.split()
    return float(seconds), int(kilobytes) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--plain-max", type=int, default=32, help="largest n for the plain route")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per measurement")
    parser.add_argument("--format", default="json", choices=["text", "latex", "markdown", "json"])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = parser.parse_args()

    console = Console(stderr=True)
    rows = []
    for n in args.sizes:
        console.log(f"n = {n}: symgrad")
        ours = measure(SYMGRAD.format(n=n, fmt=args.format), args.timeout)
        plain = None
        if n <= args.plain_max:
            console.log(f"n = {n}: plain SymPy")
            plain = measure(PLAIN.format(n=n), args.timeout)
        rows.append({"n": n, "symgrad_s": ours and ours[0], "symgrad_mb": ours and ours[1],
                     "plain_s": plain and plain[0], "plain_mb": plain and plain[1],
                     "speedup": (plain[0] / ours[0]) if ours and plain else None})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"symgrad derive (every step checked, --format {args.format}) vs plain SymPy "
                        "(diff + simplify of the final identity only)")
    for column in ("n", "symgrad s", "symgrad peak MB", "plain SymPy s", "plain peak MB", "plain / symgrad"):
        table.add_column(column, justify="right")

    def cell(value, spec):
        return "—" if value is None else format(value, spec)
    for row in rows:
        table.add_row(str(row["n"]), cell(row["symgrad_s"], ".2f"), cell(row["symgrad_mb"], ".0f"),
                      cell(row["plain_s"], ".2f"), cell(row["plain_mb"], ".0f"), cell(row["speedup"], ".1f"))
    Console().print(table)
    print("— : not run (n above --plain-max) or over --timeout")


if __name__ == "__main__":
    main()
