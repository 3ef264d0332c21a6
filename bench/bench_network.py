"""Time and peak memory of ``symgrad derive network`` — a two-layer network by W2, b2, W1 and b1
at once (build + check every step + render the JSON certificate) — at fixed sizes and for every
size (all symbolic), beside plain SymPy proving dW1 alone at the same fixed sizes, in the same run.

The plain route: J written out with every entry a symbol, ``diff`` by every entry of W1 and
``simplify`` of the difference from the claimed ((W2ᵀ(A2 − Y)) ⊙ (1 − A1⊙A1)) Xᵀ / m. It proves one
gradient and no steps. Every measurement runs in a fresh process; the median of --repeat runs.

    python bench/bench_network.py                         # (2, 3, 2, 2) and symbolic, tanh + softmax
    python bench/bench_network.py --sizes 2,3,2,2 3,4,3,2 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics

from rich.console import Console
from rich.table import Table

from bench_derive import measure

# each program prints what bench_derive.measure reads: CPU s, wall s, peak RSS (KB), output bytes
SYMGRAD = """
import resource, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c, t = cpu(), time.perf_counter()
from symgrad.api import derive_network, render
d = derive_network({hidden!r}, {output!r}, sizes={sizes!r})
text = render(d, "json")
assert d.proven
print(cpu() - c, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(text.encode()))
"""

PLAIN = """
import resource, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c, t = cpu(), time.perf_counter()
import sympy as sp
n0, n1, n2, m = {sizes}
sym = lambda name, r, c: sp.Matrix(r, c, lambda i, j: sp.Symbol(f"{{name}}{{i}}_{{j}}", real=True))
X, W1, b1, W2, b2, Y = sym("X", n0, m), sym("W1", n1, n0), sym("b1", n1, 1), sym("W2", n2, n1), sym("b2", n2, 1), sym("Y", n2, m)
A1 = (W1 * X + b1 * sp.ones(1, m)).applyfunc(sp.tanh)
Z2 = W2 * A1 + b2 * sp.ones(1, m)
A2 = sp.Matrix(n2, m, lambda r, c: sp.exp(Z2[r, c]) / sum(sp.exp(Z2[k, c]) for k in range(n2)))
J = -sum(Y[r, c] * sp.log(A2[r, c]) for r in range(n2) for c in range(m)) / m
last = {{Y[n2 - 1, c]: 1 - sum(Y[r, c] for r in range(n2 - 1)) for c in range(m)}}
dZ1 = (W2.T * (A2 - Y)).multiply_elementwise(sp.ones(n1, m) - A1.multiply_elementwise(A1))
claimed = dZ1 * X.T / m
for r in range(n1):
    for c in range(n0):
        assert sp.simplify((J.diff(W1[r, c]) - claimed[r, c]).subs(last)) == 0
print(cpu() - c, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["2,3,2,2", "symbolic"],
                        help="n0,n1,n2,m (or 'symbolic' for every size)")
    parser.add_argument("--hidden", default="tanh")
    parser.add_argument("--output", default="softmax")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="also time plain SymPy (dW1 only) at fixed sizes")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    table = Table(title=f"derive network --hidden {args.hidden} --output-layer {args.output} "
                        "(by W2, b2, W1, b1; every step checked)")
    for column in ("n0, n1, n2, m", "symgrad CPU s", "symgrad wall s", "peak MB", "certificate KB",
                   "plain SymPy CPU s (dW1 only)", "plain / symgrad"):
        table.add_column(column, justify="right")
    for text in args.sizes:
        names = ("n0", "n1", "n2", "m")
        sizes = {k: "symbolic" for k in names} if text == "symbolic" else dict(zip(names, map(int, text.split(","))))
        runs = [measure(SYMGRAD.format(hidden=args.hidden, output=args.output, sizes=sizes), args.timeout)
                for _ in range(args.repeat)]
        done = [r for r in runs if r is not None]
        ours = statistics.median(r["cpu"] for r in done) if done else None
        wall = statistics.median(r["wall"] for r in done) if done else None
        memory = max(r["mb"] for r in done) if done else None
        certificate = done[-1]["bytes"] / 1024 if done else None
        plain = None
        if args.plain and text != "symbolic" and args.hidden == "tanh" and args.output == "softmax":
            result = measure(PLAIN.format(sizes=tuple(sizes.values())), args.timeout)
            plain = result["cpu"] if result else None
        table.add_row(text, f"{ours:.1f}" if ours else "> cap", f"{wall:.1f}" if wall else "",
                      f"{memory:.0f}" if memory else "", f"{certificate:.0f}" if certificate else "",
                      f"{plain:.1f}" if plain else ("> cap" if args.plain and text != "symbolic" else "not run"),
                      f"{plain / ours:.1f}" if plain and ours else "")
    Console().print(table)


if __name__ == "__main__":
    main()
