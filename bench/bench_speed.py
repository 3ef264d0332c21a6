"""Where users wait (issue 17): start-up, ``derive --n 3`` (fresh and cached), the softmax layer
at 16, 16, 16, ``verify derivations/`` cold and warm (the result cache), cold on the 15 identities
the catalog held when the issue set its target (``ISSUE_CATALOG``), ``verify`` on one worker
process against two, and with ``--suite`` the test suite — wall time of fresh processes, medians
of several runs, and the ratios computed from this same run.

Each command runs as a user runs it (``python -m symgrad …``, the interpreter itself rather
than a launcher script) from a scratch folder holding a copy of the catalog, so the cache it
writes is its own: "cold" runs start with no ``.symgrad_cache/``, "warm" ones after a cold run.
The -j rows use ``--no-cache``; their outputs (JSON) are compared, and the benchmark stops if
-j 2 says anything -j 1 does not.

With ``--installed`` the start-up rows are also measured as ``pip install symgrad`` leaves them:
the package built and installed (not editable) into a fresh virtual environment, run through its
``symgrad`` launcher, against that environment's bare interpreter. A development checkout's
interpreter starts slower than a user's: the editable install's import hook (setuptools' finder)
and whatever ``.pth`` files the machine's own Python carries run in every process.

Run:  python bench/bench_speed.py                # 7 runs of the fast rows, 3 of the slow ones
      python bench/bench_speed.py --runs 5 --slow-runs 1 --suite --installed   # and the test suite, once
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the catalog as it was when issue 17 set "a cold verify derivations/ in under 5 s" (15 identities,
# 29 s then); losses.toml (PyTorch's loss zoo, 20 identities) came after
ISSUE_CATALOG = ["derivations/classification.toml", "derivations/layer.toml", "derivations/softmax_and_activations.toml"]


def timed(args: list[str], cwd: Path, before=None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one fresh ``python -m symgrad ARGS`` (``before`` runs first, untimed)."""
    if before:
        before()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, whatever is installed
    env.pop("SYMGRAD_NO_CACHE", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "symgrad", *args], cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"bench: {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return seconds, done


def median_of(runs: int, args: list[str], cwd: Path, before=None) -> tuple[float, list[float], str]:
    times, outputs = [], []
    for _ in range(runs):
        seconds, done = timed(args, cwd, before)
        times.append(seconds)
        outputs.append(done.stdout)
    return statistics.median(times), times, outputs[-1]


def python_start(runs: int, python: str = sys.executable) -> tuple[float, list[float]]:
    """The bare interpreter's start-up, the floor under every row."""
    return median_of_command(runs, [python, "-c", "pass"], Path.cwd())


def median_of_command(runs: int, command: list[str], cwd: Path) -> tuple[float, list[float]]:
    """Median wall seconds of a command run as it stands (a launcher, an interpreter)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def installed_rows(runs: int, scratch: Path, log) -> list[tuple]:
    """Start-up as a user's ``pip install`` leaves it: a fresh venv with symgrad installed from
    this checkout (not editable), its launcher timed against the venv's bare interpreter."""
    venv = scratch / "venv"
    log("a fresh venv with symgrad installed (not editable)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(ROOT)], check=True,
                   capture_output=True)
    launcher = str(bin_dir / "symgrad")
    log("installed: python -c pass, symgrad --help, derive --n 3")
    bare, bare_all = python_start(runs, str(bin_dir / "python"))
    help_s, help_all = median_of_command(runs, [launcher, "--help"], scratch)
    fresh_s, fresh_all = median_of_command(runs, [launcher, "derive", "--n", "3", "--no-cache"], scratch)
    cached_s, cached_all = median_of_command(runs, [launcher, "derive", "--n", "3"], scratch)
    return [
        ("installed: python -c pass (the venv's interpreter)", bare, bare_all, ""),
        ("installed: symgrad --help", help_s, help_all, f"{help_s / bare:.1f}× the bare interpreter"),
        ("installed: symgrad derive --n 3 --no-cache", fresh_s, fresh_all, ""),
        ("installed: symgrad derive --n 3 (its result cached)", cached_s, cached_all,
         f"{fresh_s / cached_s:.1f}× faster"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="runs of each fast row (--help, derive, warm)")
    parser.add_argument("--slow-runs", type=int, default=3, help="runs of each slow row (cold, -j 1, -j 2)")
    parser.add_argument("--suite", action="store_true", help="also time the test suite once (minutes)")
    parser.add_argument("--installed", action="store_true",
                        help="also time start-up from a wheel installed in a fresh venv (needs the package registry)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="symgrad-bench-"))
    try:
        shutil.copytree(ROOT / "derivations", scratch / "derivations")
        cache = scratch / ".symgrad_cache"

        def clear():
            shutil.rmtree(cache, ignore_errors=True)

        log = lambda what: print(f"… {what}", file=sys.stderr, flush=True)  # noqa: E731
        log("python -c pass")
        bare, bare_all = python_start(args.runs)
        log("symgrad --help")
        help_s, help_all, _ = median_of(args.runs, ["--help"], scratch)
        log("derive --n 3 --no-cache")
        fresh_s, fresh_all, _ = median_of(args.runs, ["derive", "--n", "3", "--no-cache"], scratch)
        log("derive --n 3")
        derive_s, derive_all, _ = median_of(args.runs, ["derive", "--n", "3"], scratch)
        log("derive softmax-layer at 16, 16, 16")
        layer_s, layer_all, _ = median_of(args.slow_runs, ["derive", "softmax-layer", "--n", "16", "--n-prev", "16",
                                                           "--m", "16", "--no-cache"], scratch)
        log("verify derivations/ (cold)")
        cold_s, cold_all, cold_out = median_of(args.slow_runs, ["verify", "-f", "json", "derivations"], scratch, clear)
        log("verify of the 15 identities of the issue (cold)")
        issue_s, issue_all, _ = median_of(args.slow_runs, ["verify", "-f", "json", *ISSUE_CATALOG], scratch, clear)
        log("verify derivations/ (warm)")
        warm_s, warm_all, warm_out = median_of(args.runs, ["verify", "-f", "json", "derivations"], scratch)
        if warm_out != cold_out:
            sys.exit("bench: the warm run's JSON differs from the cold run's")
        log("verify -j 1 --no-cache")
        one_s, one_all, one_out = median_of(args.slow_runs, ["verify", "-f", "json", "--no-cache", "-j", "1",
                                                             "derivations"], scratch)
        log("verify -j 2 --no-cache")
        two_s, two_all, two_out = median_of(args.slow_runs, ["verify", "-f", "json", "--no-cache", "-j", "2",
                                                             "derivations"], scratch)
        if one_out != two_out:
            sys.exit("bench: verify -j 2 printed something -j 1 did not")
        installed = installed_rows(args.runs, scratch, log) if args.installed else []
        suite = None
        if args.suite:
            log("the test suite (README's command: python -m pytest -q -n auto)")
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "auto"], cwd=ROOT,
                                  capture_output=True, text=True)
            suite = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"bench: the test suite failed:\n{done.stdout[-2000:]}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows = [
        ("python -c pass (the interpreter alone)", bare, bare_all, ""),
        ("symgrad --help", help_s, help_all, f"{help_s / bare:.1f}× the bare interpreter"),
        ("symgrad derive --n 3 --no-cache", fresh_s, fresh_all, ""),
        ("symgrad derive --n 3 (its result cached)", derive_s, derive_all, f"{fresh_s / derive_s:.1f}× faster"),
        ("symgrad derive softmax-layer 16,16,16 --no-cache", layer_s, layer_all, ""),
        ("symgrad verify derivations/ (cold cache)", cold_s, cold_all, ""),
        ("symgrad verify (15 identities of issue 17, cold cache)", issue_s, issue_all, ""),
        ("symgrad verify derivations/ (warm cache)", warm_s, warm_all, f"{cold_s / warm_s:.1f}× faster than cold"),
        ("symgrad verify --no-cache -j 1 derivations/", one_s, one_all, ""),
        ("symgrad verify --no-cache -j 2 derivations/", two_s, two_all, f"{one_s / two_s:.2f}× faster than -j 1"),
    ]
    rows += installed
    if suite is not None:
        rows.append(("python -m pytest -q -n auto (the test suite)", suite, [suite], ""))
    width = max(len(r[0]) for r in rows)
    print(f"{'command':<{width}}  {'median':>8}  {'runs':>4}  {'min':>7}  {'max':>7}  ratio (same run)")
    for name, median, times, ratio in rows:
        print(f"{name:<{width}}  {median:>7.2f}s  {len(times):>4}  {min(times):>6.2f}s  {max(times):>6.2f}s  {ratio}")
    print(f"\n{os.cpu_count()} cores, Python {sys.version.split()[0]}; wall time of fresh processes "
          f"(python -m symgrad from a scratch copy of derivations/)")


if __name__ == "__main__":
    main()
