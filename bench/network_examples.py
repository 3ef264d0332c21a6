"""Issue 15's example commands, each run as a user runs it — a fresh ``python -m symgrad derive …
--no-cache --format json`` — with its wall and CPU time, its step count and whether every step
was proven, as one Markdown row per command.

The certificate (JSON) says whether the derivation is proven; the table never decides that itself.
Run:  python bench/network_examples.py
      python bench/network_examples.py --only 1,9        (rows by number)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYER = "W1=h x p,X=p x m,b1=h,W2=n x h,b2=n,Y=n x m"
EXAMPLES: list[tuple[str, list[str]]] = [
    ("two layers by W1 (batch), fixed sizes",
     ["--expr", "cross_entropy(softmax(W2 @ tanh(W1 @ X + b1) + b2), Y) / m", "--wrt", "W1", "--vars", LAYER,
      "--sizes", "n=2,h=2,p=2,m=2", "--assume", "colsum(Y) == 1"]),
    ("two layers by W1 (batch), symbolic sizes",
     ["--expr", "cross_entropy(softmax(W2 @ tanh(W1 @ X + b1) + b2), Y) / m", "--wrt", "W1", "--vars", LAYER,
      "--sizes", "n=symbolic,h=symbolic,p=symbolic,m=symbolic", "--assume", "colsum(Y) == 1"]),
    ("mse through a sigmoid layer, h ≠ n",
     ["--expr", "mse(W2 @ sigmoid(W1 @ x + b1), y)", "--wrt", "W1", "--vars", "W1=h x p,x=p,b1=h,W2=n x h,y=n",
      "--sizes", "n=2,h=3,p=2"]),
    ("attention score by the query q",
     ["--expr", "dot(w, transpose(V) @ softmax(K @ q / s))", "--wrt", "q",
      "--vars", "K=n x d,V=n x d,q=d,w=d,s=scalar", "--sizes", "n=3,d=2"]),
    ("mse(sigmoid(z), y)", ["--expr", "mse(sigmoid(z), y)", "--wrt", "z", "--vars", "z=n,y=n"]),
    ("dot(y, tanh(z))", ["--expr", "dot(y, tanh(z))", "--wrt", "z", "--vars", "z=n,y=n"]),
    ("sum(log(1 + exp(z)))", ["--expr", "sum(log(1 + exp(z)))", "--wrt", "z", "--vars", "z=n"]),
    ("weight decay: λW + (a − y)xᵀ",
     ["--expr", "cross_entropy(softmax(W @ x + b), y) + lam / 2 * sum(W * W)", "--wrt", "W",
      "--vars", "W=n x p,x=p,b=n,y=n,lam=scalar", "--sizes", "n=2,p=2", "--assume", "sum(y) == 1"]),
    ("logistic regression by its weights",
     ["--expr", "binary_cross_entropy(sigmoid(X @ w), y)", "--wrt", "w", "--vars", "X=n x p,w=p,y=n",
      "--sizes", "n=2,p=2"]),
    ("several variables at once: --wrt W1,b1,W2,b2",
     ["--expr", "cross_entropy(softmax(W2 @ tanh(W1 @ X + b1) + b2), Y) / m", "--wrt", "W1,b1,W2,b2",
      "--vars", LAYER, "--sizes", "n=2,h=3,p=2,m=2", "--assume", "colsum(Y) == 1"]),
    ("network --hidden tanh,relu --output-layer softmax", ["network", "--hidden", "tanh,relu", "--output-layer", "softmax"]),
    ("network --hidden tanh, symbolic sizes",
     ["network", "--hidden", "tanh", "--sizes", "n0=symbolic,n1=symbolic,n2=symbolic,m=symbolic"]),
    ("network --generic", ["network", "--generic"]),
    ("network --generic, symbolic sizes",
     ["network", "--generic", "--sizes", "n0=symbolic,n1=symbolic,n2=symbolic,m=symbolic"]),
    ("--one-hot 2 at n = 3", ["--one-hot", "2", "--n", "3"]),
    ("--one-hot K at symbolic n", ["--one-hot", "K", "--n", "symbolic"]),
]


def run(args: list[str], timeout: float) -> tuple[str, str, str, float, float]:
    """steps, proven, what stopped it (if anything), wall s, CPU s of one fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "symgrad", "derive", *args, "--no-cache", "--format", "json"],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "—", "—", f"over {timeout:.0f} s", timeout, float("nan")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        certificate = json.loads(done.stdout)
    except json.JSONDecodeError:
        return "—", "—", (done.stderr.strip().splitlines() or ["no output"])[-1], wall, cpu
    proven = "all" if certificate["proven"] else "NOT all"
    return str(len(certificate["steps"])), proven, "", wall, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated row numbers (1-based)")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    only = {int(k) for k in args.only.split(",") if k.strip()}
    print("| # | example | steps | proven | wall s | CPU s |")
    print("|---:|---|---:|---|---:|---:|")
    failures = 0
    for number, (title, command) in enumerate(EXAMPLES, 1):
        if only and number not in only:
            continue
        steps, proven, problem, wall, cpu = run(command, args.timeout)
        failures += proven != "all"
        shown = f"`symgrad derive {' '.join(_quoted(a) for a in command)}`"
        print(f"| {number} | {title}: {shown} | {steps} | {proven or problem}{' — ' + problem if problem else ''} "
              f"| {wall:.1f} | {cpu:.1f} |", flush=True)
    print(f"\n{failures} examples not proven")
    return 1 if failures else 0


def _quoted(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " ()=,*@") else arg


if __name__ == "__main__":
    sys.exit(main())
