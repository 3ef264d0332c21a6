"""The garbage collector's settings (``symgrad.collector``): tuned in symgrad's own processes —
the command line and ``verify -j`` workers —, never in a caller's (a test, a notebook)."""

from __future__ import annotations

import gc
import subprocess
import sys

from symgrad.collector import YOUNG_THRESHOLD

# the young-generation threshold and how many objects are frozen, as a process ends its run
REPORT = "import gc; print(gc.get_threshold()[0], gc.get_freeze_count())"


def _in_a_fresh_python(program: str) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    threshold, frozen = done.stdout.split()[-2:]
    return int(threshold), int(frozen)


def test_the_command_line_tunes_its_own_process():
    program = ("import sys; from symgrad.cli import main; sys.argv = ['symgrad', 'list']\n"
               f"try:\n    main()\nexcept SystemExit:\n    pass\n{REPORT}")
    threshold, frozen = _in_a_fresh_python(program)
    assert threshold == YOUNG_THRESHOLD
    assert frozen > 0  # frozen before exit: the interpreter's last collection skips them


def test_a_caller_of_main_keeps_its_own_settings(symgrad_main):
    before = gc.get_threshold(), gc.get_freeze_count()
    assert symgrad_main("list").returncode == 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_a_worker_does_not_collect_what_it_inherited():
    threshold, frozen = _in_a_fresh_python(f"from symgrad import batch; batch._worker_started()\n{REPORT}")
    assert threshold == YOUNG_THRESHOLD
    assert frozen > 0


# SymPy's cache size as the process ends its run (``symgrad.sympy_cache``)
CACHE_REPORT = "import sympy.core.cache as c; print(c.SYMPY_CACHE_SIZE)"


def _cache_size_after(program: str, env: dict | None = None) -> str:
    import os

    environment = {k: v for k, v in os.environ.items() if k != "SYMPY_CACHE_SIZE"}
    environment.update(env or {})
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          env=environment)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


COMMAND = ("import sys; from symgrad.cli import main; sys.argv = ['symgrad', 'derive', '--n', '1', '--no-cache']\n"
           f"try:\n    main()\nexcept SystemExit:\n    pass\n{CACHE_REPORT}")


def test_the_command_line_gives_sympy_a_larger_cache():
    from symgrad.sympy_cache import CACHE_SIZE

    assert _cache_size_after(COMMAND) == str(CACHE_SIZE)


def test_the_users_own_sympy_cache_size_wins():
    assert _cache_size_after(COMMAND, {"SYMPY_CACHE_SIZE": "123"}) == "123"


def test_a_library_caller_keeps_sympys_default_cache():
    assert _cache_size_after(f"import symgrad.api\n{CACHE_REPORT}") == "1000"
