"""The long fuzz campaign of the expression language (the suite runs a sample of it on every push).

    PYTHONPATH=. nice -n 10 python bench/fuzz.py --examples 100000 --workers 2

Generates valid programs, hostile mutations of them and raw noise (``tests/strategies.py``), runs
each through ``parse_tree`` and ``evaluate`` under a per-example time limit, and sends a sample of
the valid ones through the real checker (``check_identity``, lhs = rhs = the program, n = 1, 2).
Prints the counts: examples, values, clean errors by kind, crashes (anything but a
``LanguageError``, or running past the time limit — should be 0), the slowest example. Exits 1 if
anything crashed or a generated program ran code (the canary file or attribute exists).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import re
import signal
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hypothesis import HealthCheck, Phase, given, settings, strategies as st  # noqa: E402
from sympy import Integer  # noqa: E402

import strategies  # noqa: E402
import symgrad  # noqa: E402
from symgrad.language import LanguageError, evaluate  # noqa: E402


class TimeLimit(BaseException):
    pass


def _expired(signum, frame):
    raise TimeLimit()


def kind_of(message: str) -> str:
    """A message without its particulars: names, numbers and columns removed, to count by kind."""
    message = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`|U\+[0-9A-F]+ [A-Z0-9 -]+|\d[\d,.e+-]*", "…", message)
    return message.split(";")[0].split(" (")[0][:70]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit per example (CPU seconds)")
    parser.add_argument("--checker-every", type=int, default=400,
                        help="send every k-th valid program through check_identity (0: never)")
    parser.add_argument("--report-every", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the examples")
    parser.add_argument("--json", help=argparse.SUPPRESS)  # a worker's counts, for the parent to merge
    args = parser.parse_args()
    if args.workers > 1:
        return _parent(args)

    counts = collections.Counter()
    errors = collections.Counter()
    crashes: dict = {}
    checker = collections.Counter()
    checker_crashes: dict = {}
    slowest = (0.0, "")
    started = time.monotonic()
    # the limit is on this process's CPU time (ITIMER_PROF), not the wall clock: on a shared
    # machine a busy neighbour must not turn an example into a "crash"
    signal.signal(signal.SIGPROF, _expired)

    def timed(function, seconds):
        signal.setitimer(signal.ITIMER_PROF, seconds)
        try:
            return function()
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)

    def run_checker(text: str) -> None:
        from symgrad.errors import UsageError
        from symgrad.identity_file import Identity
        from symgrad.verify.identity import check_identity

        identity = Identity("fuzz", "", {"z": "n", "y": "n", "c": "scalar"}, (1, 2), (), text, text,
                            Path("fuzz.toml"), f'lhs = "{text}"\n')
        try:
            result = timed(lambda: check_identity(identity), 60)
            checker[{True: "holds", False: "REFUTED (X = X)", None: "undecided"}[result.holds]] += 1
            if result.holds is False:
                checker_crashes.setdefault(("refuted X = X", ""), (text, ""))
        except UsageError:
            checker["clean error"] += 1
        except TimeLimit:
            checker["time limit (60 s)"] += 1
            checker_crashes.setdefault(("TimeLimit", "60 s"), (text, ""))
        except Exception as error:  # noqa: BLE001 — counting what escapes is the point
            checker["crash"] += 1
            key = (type(error).__name__, str(error)[:100])
            checker_crashes.setdefault(key, (text, "".join(traceback.format_exc(limit=-3))))

    source = st.one_of(strategies.programs(max_depth=3), strategies.programs(max_depth=3),
                       strategies.equations(), strategies.mutants(), strategies.mutants(),
                       st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1")))

    @settings(max_examples=args.examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(source, st.integers(1, 3))
    def one(text, n):
        nonlocal slowest
        equation = "==" in text
        counts["examples"] += 1
        begin, cpu = time.monotonic(), time.process_time()
        try:
            timed(lambda: evaluate(text, strategies.variables(n), allow_equation=equation,
                                           constants={"n": Integer(n)}), args.seconds)
            counts["values"] += 1
            if args.checker_every and not equation and counts["values"] % args.checker_every == 0:
                run_checker(text)
        except LanguageError as error:
            counts["clean errors"] += 1
            errors[kind_of(str(error))] += 1
        except TimeLimit:
            counts["CRASHES"] += 1
            crashes.setdefault(("TimeLimit", f"> {args.seconds} s"), (text, n, ""))
            cpu = None
        except BaseException as error:  # noqa: BLE001
            if isinstance(error, KeyboardInterrupt):
                raise
            counts["CRASHES"] += 1
            crashes.setdefault((type(error).__name__, str(error)[:100]),
                               (text, n, "".join(traceback.format_exc(limit=-3))))
        elapsed = time.monotonic() - begin
        if cpu is not None and time.process_time() - cpu > args.seconds:
            # the alarm can land where Python ignores exceptions (a gc callback): judge by the clock too
            counts["CRASHES"] += 1
            crashes.setdefault(("TimeLimit", f"> {args.seconds} s"), (text, n, "(its alarm was swallowed)"))
        if elapsed > slowest[0]:
            slowest = (elapsed, f"{text[:120]!r} at n = {n}")
        if counts["examples"] % args.report_every == 0:
            print(f"[{time.monotonic() - started:7.0f} s] {dict(counts)}", flush=True)

    one()

    ran_code = os.path.exists(strategies.CANARY) or hasattr(symgrad, strategies.CANARY_ATTRIBUTE)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "counts": counts, "errors": errors, "checker": checker, "slowest": slowest, "ran_code": ran_code,
            "crashes": [[k, m, t, n, tr] for (k, m), (t, n, tr) in crashes.items()],
            "checker_crashes": [[k, m, t, tr] for (k, m), (t, tr) in checker_crashes.items()],
            "seconds": time.monotonic() - started}))
        return 0
    return _report(counts, errors, crashes, slowest, checker, checker_crashes, ran_code, time.monotonic() - started)


def _parent(args) -> int:
    """Run ``--workers`` processes of examples/workers each and merge their counts."""
    import tempfile

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        outputs = [Path(folder) / f"worker{k}.json" for k in range(args.workers)]
        workers = [subprocess.Popen([sys.executable, __file__, "--examples", str(-(-args.examples // args.workers)),
                                     "--seconds", str(args.seconds), "--checker-every", str(args.checker_every),
                                     "--report-every", str(args.report_every), "--json", str(out)])
                   for out in outputs]
        for worker in workers:
            worker.wait()
        parts = [json.loads(out.read_text()) for out in outputs if out.exists()]
    if len(parts) != args.workers:
        print(f"only {len(parts)} of {args.workers} workers finished")
    merged = [collections.Counter() for _ in range(3)]
    crashes, checker_crashes, slowest, ran_code = {}, {}, (0.0, ""), False
    for part in parts:
        for counter, key in zip(merged, ("counts", "errors", "checker")):
            counter.update(part[key])
        crashes.update({(k, m): (t, n, tr) for k, m, t, n, tr in part["crashes"]})
        checker_crashes.update({(k, m): (t, tr) for k, m, t, tr in part["checker_crashes"]})
        slowest = max(slowest, tuple(part["slowest"]))
        ran_code = ran_code or part["ran_code"]
    code = _report(*merged[:2], crashes, slowest, merged[2], checker_crashes, ran_code, time.monotonic() - started)
    return code if len(parts) == args.workers else 1


def _report(counts, errors, crashes, slowest, checker, checker_crashes, ran_code, seconds) -> int:
    print(f"\nexamples:        {counts['examples']}")
    print(f"valid values:    {counts['values']}")
    print(f"clean errors:    {counts['clean errors']}")
    for kind, count in errors.most_common():
        print(f"    {count:7}  {kind}")
    print(f"crashes:         {counts['CRASHES']}")
    for (kind, message), (text, n, trace) in crashes.items():
        print(f"    {kind}: {message}\n      input {text[:200]!r} at n = {n}\n{trace}")
    print(f"max time per example: {slowest[0]:.2f} s ({slowest[1]})")
    print(f"checker sample:  {dict(checker)}")
    for (kind, message), (text, trace) in checker_crashes.items():
        print(f"    {kind}: {message}\n      lhs = rhs = {text[:200]!r}\n{trace}")
    print(f"code ran:        {'YES' if ran_code else 'no'} (canary {strategies.CANARY})")
    print(f"wall time:       {seconds:.0f} s")
    return 1 if counts["CRASHES"] or ran_code else 0


if __name__ == "__main__":
    sys.exit(main())
