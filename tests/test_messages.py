"""Issue 15, item 8: messages and display a user can act on. An internal error is a few lines
and a crash report (the traceback with --debug); the summary prints the results; a long equation
is wrapped, never cut; titles hold no raw LaTeX; W2 prints as W₂ / W_{2} / W^{[2]}."""

import os
import re
import signal
import stat
import subprocess
import sys

import pytest
import typer

from symgrad import api, cli
from symgrad.errors import UsageError


# -- internal errors ------------------------------------------------------------------------------
@pytest.fixture
def crash(monkeypatch, capsys, tmp_path):
    """Run ``symgrad ARGS`` in this process with ``api.derive`` raising ``error``; returns
    (exit code, stdout, stderr, the crash folder). Signal handlers are restored afterwards."""
    handlers = {name: signal.getsignal(name) for name in (signal.SIGINT, signal.SIGTERM)}
    folder = tmp_path / "cache" / "symgrad"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SYMGRAD_DEBUG", raising=False)
    monkeypatch.setitem(cli._DEBUG, "traceback", False)

    def run(error: BaseException, *args: str):
        def fail(*_args, **_kwargs):
            raise error

        monkeypatch.setattr(api, "derive", fail)
        with pytest.raises(SystemExit) as stopped:
            cli.main(list(args or ("derive", "--n", "2")))
        streams = capsys.readouterr()
        return stopped.value.code, streams.out, streams.err, folder

    yield run
    for name, handler in handlers.items():
        signal.signal(name, handler)


def _report_path(stderr: str):
    found = re.search(r"the traceback is in (\S+)", stderr)
    assert found, stderr
    return found.group(1)


def test_an_internal_error_is_a_few_lines_and_a_crash_report_holds_the_traceback(crash):
    import sympy

    from symgrad import __version__

    code, out, err, folder = crash(RuntimeError("boom: the engine lost an index"))
    assert code == cli.EXIT_INTERNAL
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4, err
    assert "RuntimeError: boom: the engine lost an index" in err and __version__ in err
    report = _report_path(err)
    assert os.path.dirname(report) == str(folder)  # $XDG_CACHE_HOME/symgrad
    assert re.fullmatch(r"crash-\d{8}T\d{6}Z-\d+\.txt", os.path.basename(report))
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o600  # the command line may name private files
    text = open(report, encoding="utf-8").read()
    assert "Traceback (most recent call last)" in text and "in fail" in text
    assert "RuntimeError: boom: the engine lost an index" in text
    assert "command: symgrad derive --n 2" in text
    assert f"sympy: {sympy.__version__}" in text and f"python: {sys.version.split()[0]}" in text
    assert [p.name for p in folder.iterdir()] == [os.path.basename(report)]  # no temporary left


def test_a_huge_message_is_cut_on_the_terminal_and_kept_whole_in_the_report(crash):
    message = "maximum recursion depth exceeded " + "x" * 20000
    code, out, err, folder = crash(RecursionError(message))
    assert code == cli.EXIT_INTERNAL
    assert len(err) < 1000 and "…" in err, err
    assert message in open(_report_path(err), encoding="utf-8").read()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_debug_prints_the_traceback_and_writes_no_report(crash, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("SYMGRAD_DEBUG", "1")
        args = ("derive", "--n", "2")
    else:
        args = ("--debug", "derive", "--n", "2")
    code, out, err, folder = crash(RuntimeError("boom"), *args)
    assert code == cli.EXIT_INTERNAL
    assert "Traceback (most recent call last)" in err and "in fail" in err and "RuntimeError: boom" in err
    assert "the traceback is in" not in err and not folder.exists()


def test_an_unwritable_report_location_says_so_and_prints_the_traceback(crash, monkeypatch, tmp_path):
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # $XDG_CACHE_HOME/symgrad cannot be made
    monkeypatch.setattr(tempfile, "tempdir", str(blocker))  # nor can the temporary folder be used
    code, out, err, folder = crash(RuntimeError("boom"))
    assert code == cli.EXIT_INTERNAL
    assert "could not write a crash report" in err and "Traceback (most recent call last)" in err


@pytest.mark.parametrize("error, expected", [
    (UsageError("no such derivation"), cli.EXIT_USAGE), (KeyboardInterrupt(), cli.EXIT_INTERRUPTED),
    (typer.Exit(cli.EXIT_FAILED), cli.EXIT_FAILED), (MemoryError(), cli.EXIT_FAILED)])
def test_what_is_not_a_bug_gets_no_crash_report(crash, error, expected):
    code, out, err, folder = crash(error)
    assert code == expected
    assert "crash report" not in err and "Traceback" not in err and not folder.exists()


def test_a_user_sees_the_short_message_from_the_real_program(tmp_path):
    """The installed entry point in a subprocess, as a user runs it (``python -m`` semantics)."""
    program = "import symgrad.api as a; a.derive = lambda *x, **k: 1 / 0; from symgrad.cli import main; main()"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("SYMGRAD_DEBUG", None)
    result = subprocess.run([sys.executable, "-c", program, "derive", "--n", "2"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 4 and "ZeroDivisionError: division by zero" in lines[0], result.stderr
    assert "Traceback (most recent call last)" in open(_report_path(result.stderr), encoding="utf-8").read()
