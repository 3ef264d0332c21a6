"""Time and peak memory of ``symgrad derive softmax-layer`` (the general engine by W, b and A_prev
at once; build + check every step + render) at several sizes n = n_prev = m, and once for every
size (all three symbolic), beside the plain-SymPy route measured in the same run.

The plain route is what a user would write by hand: J = −(1/m) Σ_s Σ_i Y_is log softmax(Z)_is
with Z = W A_prev + b written out, ``diff`` by every entry of W, and ``simplify`` of the
difference from the claimed ((A − Y) A_prevᵀ / m)_ip (the last row of Y eliminated by the column
sums). It proves one gradient (dW) and no steps; symgrad proves every step of dZ, dW, db and
dA_prev. Every measurement runs in a fresh process. Run:  python bench/bench_layer.py
                                                         python bench/bench_layer.py --sizes 2 3 --plain-max 3
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from bench_derive import measure

SYMGRAD = """
import resource, time
t = time.perf_counter()
from symgrad import derive, render
d = derive("softmax-layer", {n!r}, n_prev={n!r}, m={n!r})
render(d, "json")
assert d.proven
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

PLAIN = """
import resource, time
t = time.perf_counter()
import sympy as sp
n = p = m = {n}
W = sp.Matrix(n, p, lambda r, c: sp.Symbol(f"W{{r}}_{{c}}", real=True))
P = sp.Matrix(p, m, lambda r, c: sp.Symbol(f"P{{r}}_{{c}}", real=True))
b = sp.Matrix(n, 1, lambda r, c: sp.Symbol(f"b{{r}}", real=True))
Y = sp.Matrix(n, m, lambda r, c: sp.Symbol(f"Y{{r}}_{{c}}", real=True))
Z = W * P + b * sp.ones(1, m)
A = sp.Matrix(n, m, lambda r, c: sp.exp(Z[r, c]) / sum(sp.exp(Z[k, c]) for k in range(n)))
J = -sum(Y[r, c] * sp.log(A[r, c]) for r in range(n) for c in range(m)) / m
last = {{Y[n - 1, c]: 1 - sum(Y[r, c] for r in range(n - 1)) for c in range(m)}}
claimed = (A - Y) * P.T / m
for r in range(n):
    for c in range(p):
        assert sp.simplify((J.diff(W[r, c]) - claimed[r, c]).subs(last)) == 0
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    parser.add_argument("--plain-max", type=int, default=4, help="largest size for the plain route")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per measurement")
    args = parser.parse_args()

    console = Console(stderr=True)
    rows = []
    for n in [*args.sizes, "symbolic"]:
        console.log(f"n = n_prev = m = {n}: symgrad")
        ours = measure(SYMGRAD.format(n=n), args.timeout)
        plain = None
        if n != "symbolic" and n <= args.plain_max:
            console.log(f"n = n_prev = m = {n}: plain SymPy")
            plain = measure(PLAIN.format(n=n), args.timeout)
        rows.append((n, ours, plain))
    table = Table(title="symgrad derive softmax-layer (dZ, dW, db, dA_prev, every step checked) vs plain "
                        "SymPy (diff + simplify of dW only)")
    for column in ("n = n_prev = m", "symgrad s", "symgrad peak MB", "plain SymPy s", "plain peak MB",
                   "plain / symgrad"):
        table.add_column(column, justify="right")

    def cell(value, spec):
        return "—" if value is None else format(value, spec)
    for n, ours, plain in rows:
        table.add_row(str(n), cell(ours and ours[0], ".2f"), cell(ours and ours[1], ".0f"),
                      cell(plain and plain[0], ".2f"), cell(plain and plain[1], ".0f"),
                      cell(plain[0] / ours[0] if ours and plain else None, ".1f"))
    Console().print(table)
    print("— : not run (size above --plain-max, or symbolic) or over --timeout")


if __name__ == "__main__":
    main()
