"""Set-up every test module shares, made for pytest-xdist (``python -m pytest -n auto``).

* Every ``python -m symgrad`` (or ``python -m pytest``) a test starts imports *this* checkout,
  whatever its working directory: the checkout goes first on PYTHONPATH (an editable install of
  another checkout, or an installed symgrad, would otherwise answer from a temporary folder).
* The result cache is off (``SYMGRAD_NO_CACHE=1``): each test checks what it claims to check,
  whatever ran before it on the same worker, and no test writes ``.symgrad_cache/`` into the
  checkout. tests/test_cache.py turns it back on, in a ``tmp_path`` working directory.

Both are set when this file is imported, so the worker processes of pytest-xdist, which import
it too, and every subprocess they start inherit them.
"""

import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

os.environ["SYMGRAD_NO_CACHE"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture
def symgrad_main(capsys):
    """``symgrad ARGS`` through the command line's own entry point (``symgrad.cli.main``, which
    ``python -m symgrad`` calls) in this process, as a ``subprocess.CompletedProcess``: the exit
    code, stdout and stderr a user sees, without the half second a subprocess takes to start
    Python and import symgrad. For usage errors refused before any work; tests of the process
    itself (signals, terminals, environment, hash seeds) keep ``support.run``. The SIGINT and
    SIGTERM handlers main installs are put back afterwards."""
    from symgrad import cli

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def main(*args):
        capsys.readouterr()  # only what this command writes
        with pytest.raises(SystemExit) as stopped:
            cli.main(list(args))
        streams = capsys.readouterr()
        return subprocess.CompletedProcess(["symgrad", *args], stopped.value.code, streams.out, streams.err)

    yield main
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
