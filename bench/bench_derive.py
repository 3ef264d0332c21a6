"""Time, peak memory and certificate size of ``symgrad derive`` (build + check every step +
render the JSON certificate) for n = 2 … 1024, beside the plain-SymPy route measured in the
same run (issue 17).

The plain route is what a user would write by hand: L with Σ_k e^{z_k} written out, ``diff``
by each z_j, ``simplify`` of the difference from a_j − y_j (with y_n = 1 − Σ y_others). It
proves only the final identity, no steps; symgrad proves every step (in index form: once for
every index value) and screens every entry numerically.

Every measurement runs in a fresh Python process, so peak memory (ru_maxrss) is its own. Times
are the process's CPU seconds (user + system) for the work after the imports, the median of
``--runs`` runs: on a shared machine the wall clock measures the neighbours (the wall-clock
median is printed too). The plain route gets ``--cap`` CPU seconds per run (RLIMIT_CPU); past
it the cell reads "> cap" and the ratio is a lower bound, and larger sizes are not tried.

Run:  python bench/bench_derive.py                      (n = 2 … 1024, 3 runs, cap 300 s)
      python bench/bench_derive.py --quick              (n = 2, 8, 64, 1024; 1 run; cap 60 s)
      python bench/bench_derive.py --sizes 8 64 --runs 5 --cap 120 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import statistics
import subprocess
import sys

SIZES = [2, 8, 16, 32, 64, 128, 256, 512, 1024]

SYMGRAD = """
import resource, time, sys
from symgrad import derive, render
import symgrad.verify, symgrad.output.certificate
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c, t = cpu(), time.perf_counter()
d = derive("softmax-cross-entropy", n={n})
text = render(d, "json")
assert d.proven
print(cpu() - c, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(text.encode()))
"""

PLAIN = """
import resource, time
import sympy as sp
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c, t = cpu(), time.perf_counter()
n = {n}
z, y = sp.symbols(f"z1:{{n + 1}}", real=True), sp.symbols(f"y1:{{n + 1}}", real=True)
s = sum(sp.exp(zk) for zk in z)
a = [sp.exp(zi) / s for zi in z]
L = -sum(yi * sp.log(ai) for yi, ai in zip(y, a))
last = {{y[-1]: 1 - sum(y[:-1])}}
for j in range(n):
    assert sp.simplify((L.diff(z[j]) - (a[j] - y[j])).subs(last)) == 0
print(cpu() - c, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 0)
"""


def measure(code: str, cap: float | None) -> dict | None:
    """cpu s, wall s, peak MB, output bytes of one fresh process; None past ``cap`` seconds of
    CPU (RLIMIT_CPU: the child is stopped by SIGXCPU; a wall clock ten times longer as a guard)."""
    def limit():
        if cap is not None:
            seconds = int(cap) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=limit,
                              timeout=None if cap is None else 10 * cap, check=cap is None)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        if cap is not None and done.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return None
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    cpu, wall, kilobytes, size = done.stdout.split()
    return {"cpu": float(cpu), "wall": float(wall), "mb": int(kilobytes) / 1024, "bytes": int(size)}


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help=f"default {SIZES}")
    parser.add_argument("--runs", type=int, default=None, help="runs per size (median; default 3)")
    parser.add_argument("--plain-runs", type=int, default=None, help="runs of the plain route (default: --runs)")
    parser.add_argument("--cap", type=float, default=None, help="CPU seconds per plain run (default 300)")
    parser.add_argument("--plain-max", type=int, default=1024, help="largest n for the plain route")
    parser.add_argument("--quick", action="store_true", help="n = 2, 8, 64, 1024, one run, cap 60 s")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = parser.parse_args()
    sizes = args.sizes or ([2, 8, 64, 1024] if args.quick else SIZES)
    runs = args.runs or (1 if args.quick else 3)
    plain_runs = args.plain_runs or runs
    cap = args.cap or (60.0 if args.quick else 300.0)

    rows = []
    plain_over = False  # once the plain route runs out of time, larger sizes would too
    for n in sizes:
        print(f"n = {n}: symgrad × {runs}", file=sys.stderr, flush=True)
        ours = [m for m in (measure(SYMGRAD.format(n=n), None) for _ in range(runs)) if m]
        plain: list[dict] = []
        over = plain_over or n > args.plain_max
        if not over:
            for _ in range(plain_runs):
                print(f"n = {n}: plain SymPy (cap {cap:.0f} s)", file=sys.stderr, flush=True)
                result = measure(PLAIN.format(n=n), cap)
                if result is None:
                    over = plain_over = True
                    break
                plain.append(result)
                if result["cpu"] > cap / 2:
                    break  # one run this long is the measurement
        row = {"n": n, "symgrad_cpu_s": median_of(ours, "cpu"), "symgrad_wall_s": median_of(ours, "wall"),
               "symgrad_peak_mb": max(r["mb"] for r in ours), "certificate_bytes": ours[0]["bytes"],
               "plain_cpu_s": median_of(plain, "cpu") if plain else None,
               "plain_over_cap": over and not plain and n <= args.plain_max, "runs": len(ours), "plain_runs": len(plain)}
        if plain:
            row["ratio"] = row["plain_cpu_s"] / row["symgrad_cpu_s"]
        elif row["plain_over_cap"]:
            row["ratio_at_least"] = cap / row["symgrad_cpu_s"]
        rows.append(row)
    if args.json:
        print(json.dumps({"cap_s": cap, "rows": rows}, indent=2))
        return
    header = ["n", "symgrad s", "(wall s)", "peak MB", "certificate", "plain SymPy s", "plain / symgrad"]
    table = [header]
    for row in rows:
        if row["plain_cpu_s"] is not None:
            plain_cell, ratio_cell = f"{row['plain_cpu_s']:.2f}", _ratio(row["ratio"])
        elif row["plain_over_cap"]:
            plain_cell, ratio_cell = f"> {cap:.0f}", "> " + _ratio(row["ratio_at_least"])
        else:
            plain_cell, ratio_cell = "—", "—"
        table.append([str(row["n"]), f"{row['symgrad_cpu_s']:.2f}", f"{row['symgrad_wall_s']:.2f}",
                      f"{row['symgrad_peak_mb']:.0f}", _size(row["certificate_bytes"]), plain_cell, ratio_cell])
    widths = [max(len(r[k]) for r in table) for k in range(len(header))]
    print(f"symgrad derive --n N --format json (every step checked) vs plain SymPy (diff + simplify of the "
          f"gradient); CPU seconds, median of {runs} run(s) (plain: {plain_runs}), plain capped at {cap:.0f} CPU s")
    for k, line in enumerate(table):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print("— : not run (n above --plain-max); > cap: the plain route ran out of time at this size (or a smaller one)")


def _ratio(value: float) -> str:
    return f"{value:.1f}×" if value < 10 else f"{value:.0f}×"


def _size(count: int) -> str:
    return f"{count / 1024:.0f} KB" if count < 1024 * 1024 else f"{count / 1024 / 1024:.1f} MB"


if __name__ == "__main__":
    main()
