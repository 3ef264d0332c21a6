"""Issue 9: every claim printed is one that was checked; no input crashes symgrad (traceback),
hangs it, or loses a file. Each test fails on the code before the fix."""

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from support import compile_latex, needs_latex, run

CATALOG = Path(__file__).resolve().parent.parent / "derivations"
ROOT = CATALOG.parent


def identity_file(path, lhs="grad(logsumexp(z), z)", rhs="softmax(z)", name="t", vars='{ z = "n" }',
                  n="[2]", extra=""):
    path.write_text(f"[[identity]]\nname = {json.dumps(name)}\nvars = {vars}\nn = {n}\n{extra}"
                    f"lhs = {json.dumps(lhs)}\nrhs = {json.dumps(rhs)}\n", encoding="utf-8")
    return path


def one_error_line(result):
    """stderr is exactly one line `symgrad: error: …`, and no traceback."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("symgrad: error: "), result.stderr
    return lines[0]


SLOW = "jacobian(softmax(softmax(z)), z)"  # about 3 s of checking at n = 11 (the largest the cost limit admits)


def slow_file(path, copies: int = 16):
    """A file whose check takes a while (``copies`` slow identities of about 3 s each, so a
    signal sent a few seconds in lands inside the work), then a fast one."""
    slow = "".join(f'[[identity]]\nname = "slow {k}"\nvars = {{ z = "n" }}\nn = [11]\nlhs = "{SLOW}"\n'
                   f'rhs = "{SLOW} + 0"\n' for k in range(1, copies + 1))
    path.write_text(slow + '[[identity]]\nname = "fast"\nvars = { z = "n" }\nn = [2]\n'
                    'lhs = "grad(logsumexp(z), z)"\nrhs = "softmax(z)"\n', encoding="utf-8")
    return path


# -- claims: export states "checked" only for what holds ------------------------------------------
def test_export_refuses_a_false_identity_and_writes_nothing(tmp_path):
    path = identity_file(tmp_path / "wrong.toml", rhs="-softmax(z)", name="wrong sign")
    out = tmp_path / "wrong.tex"
    result = run("export", str(path), "-o", str(out))
    assert result.returncode == 1, result.stderr
    assert "wrong sign" in result.stderr and "refuted at n = 2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_export_unchecked_marks_what_does_not_hold_in_the_latex(tmp_path):
    path = tmp_path / "mixed.toml"
    identity_file(path, rhs="-softmax(z)", name="wrong sign")
    path.write_text(path.read_text() + '[[identity]]\nname = "right"\nvars = { z = "n" }\nn = [2]\n'
                    'lhs = "grad(logsumexp(z), z)"\nrhs = "softmax(z)"\n', encoding="utf-8")
    result = run("export", str(path), "--unchecked")
    assert result.returncode == 0, result.stderr
    wrong, right = result.stdout.split(r"\subsection*{right}")
    assert "NOT verified" in wrong and "refuted at $n = 2$" in wrong and "checked by" not in wrong
    assert "checked by" in right and "NOT verified" not in right


@pytest.mark.parametrize("problem,rhs,vars", [
    ("mismatched lengths", "softmax(y)", '{ z = "n", y = 3 }'),
    ("undeclared variable", "softmax(w)", '{ z = "n" }'),
])
def test_export_of_an_ill_formed_identity_is_an_input_error(tmp_path, problem, rhs, vars):
    path = identity_file(tmp_path / "bad.toml", rhs=rhs, vars=vars)
    result = run("export", str(path), "--unchecked")
    assert result.returncode == 2
    assert str(path) in one_error_line(result)
    assert "checked by" not in result.stdout


# -- errors are one clear line, the same for verify and export ------------------------------------
@pytest.mark.parametrize("lhs", ["sofmax(z)", "swish(z)", "c @ z"])
def test_export_and_verify_give_the_same_one_line_error(tmp_path, lhs):
    path = identity_file(tmp_path / "typo.toml", lhs=lhs)
    verified, exported = run("verify", str(path)), run("export", str(path))
    assert verified.returncode == exported.returncode == 2
    assert one_error_line(verified) == one_error_line(exported)
    assert f"{path}:5:" in verified.stderr
    assert "at n =" not in verified.stderr  # a mistake of the text is not a mistake at one size


def test_every_file_is_checked_and_every_bad_file_reported(tmp_path):
    good = identity_file(tmp_path / "a.toml")
    typo = identity_file(tmp_path / "typo.toml", lhs="sofmax(z)")
    relu = identity_file(tmp_path / "relu.toml", lhs="swish(z)")  # an unknown function
    junit = tmp_path / "report.xml"
    result = run("verify", str(good), str(typo), str(relu), "--junit", str(junit), "-f", "json")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    for line, bad in zip(lines, (typo, relu)):
        assert line.startswith(f"symgrad: error: {bad}:5:")
    data = json.loads(result.stdout)
    assert [r["name"] for r in data["results"]] == ["t"] and data["results"][0]["holds"] is True
    assert data["summary"]["errors"] == 2 and {e["file"] for e in data["errors"]} == {str(typo), str(relu)}
    root = ET.parse(junit).getroot()
    errored = {suite.get("name") for suite in root.iter("testsuite") if suite.find(".//error") is not None}
    assert errored == {str(typo), str(relu)}
    table = run("verify", str(good), str(typo), str(relu))
    assert table.returncode == 2 and "holds" in table.stdout


def test_pytest_plugin_fails_one_item_with_the_one_line_message(tmp_path):
    identity_file(tmp_path / "syntax.toml", lhs="softmax(z) +* 1")
    identity_file(tmp_path / "good.toml")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed" in result.stdout
    assert f"symgrad: error: {tmp_path / 'syntax.toml'}:5:" in result.stdout
    assert "Traceback" not in result.stdout and len(result.stdout.splitlines()) < 30


@pytest.mark.parametrize("body,expected", [
    ('[[identity]]\nname = "t"\nvars = { z = "n" }\nn = "3"\nlhs = "z"\nrhs = "z"\n', "n must be a list of sizes"),
    ('[identity]\nname = "t"\nvars = { z = "n" }\nn = [3]\nlhs = "z"\nrhs = "z"\n', "write [[identity]]"),
    ('[[identity]]\nname = "t"\nvars = { z = "n" }\nn = []\nlhs = "z"\nrhs = "z"\n', "nothing would be checked"),
], ids=["n-string", "single-brackets", "no-sizes"])
def test_identity_file_mistakes_get_a_message_that_helps(symgrad_main, tmp_path, body, expected):
    path = tmp_path / "x.toml"
    path.write_text(body, encoding="utf-8")
    result = symgrad_main("verify", str(path))
    assert result.returncode == 2, result.stdout
    line = one_error_line(result)
    assert expected in line and line.startswith(f"symgrad: error: {path}:")


# -- every input is a value or a clean error ------------------------------------------------------
@pytest.mark.parametrize("nesting", ["[" * 2000 + "]" * 2000, "{a = " * 2000 + "}" * 2000], ids=["arrays", "tables"])
def test_deeply_nested_toml_is_an_input_error(symgrad_main, tmp_path, nesting):
    path = tmp_path / "deep.toml"
    path.write_text(f"[[identity]]\nname = \"t\"\nx = {nesting}\n", encoding="utf-8")
    result = symgrad_main("verify", str(path))
    assert result.returncode == 2
    assert "nested too deeply" in one_error_line(result)


def test_check_exports_with_a_tex_that_is_not_utf8_is_out_of_date(tmp_path):
    path = identity_file(tmp_path / "a.toml")
    path.with_suffix(".tex").write_bytes(b"\\documentclass{article} caf\xe9\n")
    result = run("verify", str(path), "--check-exports")
    assert result.returncode == 1 and "out of date" in result.stdout
    assert "Traceback" not in result.stderr


def test_thousands_of_declared_vectors_are_refused_quickly(tmp_path):
    path = tmp_path / "many.toml"
    names = ", ".join(f'v{k} = "n"' for k in range(6000))
    path.write_text(f'[[identity]]\nname = "t"\nvars = {{ z = "n", {names} }}\nn = [64]\n'
                    'lhs = "sum(z)"\nrhs = "sum(z)"\n', encoding="utf-8")
    assert path.stat().st_size > 60_000
    started = time.monotonic()
    result = run("verify", str(path))
    assert time.monotonic() - started < 15
    assert result.returncode == 2 and "variables declared" in one_error_line(result)


def test_unused_declared_vectors_are_not_built(tmp_path):
    names = ", ".join(f'v{k} = "n"' for k in range(60))
    path = identity_file(tmp_path / "unused.toml", vars=f'{{ z = "n", {names} }}', n="[64]",
                         lhs="sum(z)", rhs="sum(z) + 0")
    started = time.monotonic()
    result = run("verify", str(path), "-f", "json")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20


# -- files written and names shown ----------------------------------------------------------------
def test_junit_is_well_formed_whatever_the_names(tmp_path):
    path = tmp_path / "names.toml"
    path.write_text('[[identity]]\nname = "nul \\u0000 bell \\u0007 esc \\u001b[31m red"\nvars = { z = "n" }\n'
                    'n = [2]\nlhs = "z"\nrhs = "z + 1"\n', encoding="utf-8")
    junit = tmp_path / "r.xml"
    result = run("verify", str(path), "--junit", str(junit))
    assert result.returncode == 1
    case = ET.parse(junit).getroot().find(".//testcase")
    assert case.get("name").startswith("nul ") and case.find("failure") is not None
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout  # nothing drives the terminal


@needs_latex
def test_names_and_descriptions_are_text_in_latex(tmp_path):
    path = identity_file(tmp_path / "names.toml", name=r"leak $\input{secret-notes}$ and }",
                         extra='description = "a lone } \\\\write18{x} \\\\catcode`\\\\^ 100% #1 ~ $x_2$ α"\n')
    tex = tmp_path / "names.tex"
    result = run("export", str(path), "-o", str(tex))
    assert result.returncode == 0, result.stderr
    text = tex.read_text()
    for command in (r"\input", r"\write", r"\catcode"):
        assert command not in text
    compile_latex(tex)


def test_output_to_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run("export", str(CATALOG / "classification.toml"), "-o", str(fifo))
    reader.join(60)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received and received[0].startswith(b"\\documentclass")


@pytest.mark.parametrize("command", ["export", "junit"])
def test_an_input_file_is_never_overwritten(symgrad_main, tmp_path, command):
    path = identity_file(tmp_path / "id.toml")
    before = path.read_bytes()
    args = ["export", str(path), "-o", str(path)] if command == "export" else \
        ["verify", str(tmp_path), "--junit", str(path)]
    result = symgrad_main(*args)
    assert result.returncode == 2
    assert "input" in one_error_line(result)
    assert path.read_bytes() == before


def test_new_files_respect_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    def export(target, umask):
        return subprocess.run([sys.executable, "-m", "symgrad", "export", str(CATALOG / "classification.toml"),
                               "-o", str(target)], capture_output=True, text=True, timeout=300,
                              preexec_fn=lambda: os.umask(umask))
    new = tmp_path / "new.tex"
    assert export(new, 0o022).returncode == 0
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    existing = tmp_path / "existing.tex"
    existing.write_text("old\n")
    existing.chmod(0o640)
    assert export(existing, 0o077).returncode == 0
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and existing.read_text().startswith("\\documentclass")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_says_so_leaves_no_temporary_file_and_keeps_the_old_output(tmp_path, sig):
    path = slow_file(tmp_path / "slow.toml")
    out = tmp_path / "out.tex"
    out.write_text("previous content\n")
    process = subprocess.Popen([sys.executable, "-m", "symgrad", "export", str(path), "-o", str(out),
                                "--unchecked"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path)
    time.sleep(8)  # well inside the slow check (its default limit is 60 s), even on a loaded machine
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip() == "symgrad: interrupted"
    assert out.read_text() == "previous content\n"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_sigterm_while_writing_leaves_a_complete_file_and_no_temporary_file(tmp_path, monkeypatch):
    """SIGTERM arriving in the middle of the write (here: while the temporary file is being
    synced), with the CLI's handler: it takes effect once the file is complete, and no .tmp stays."""
    from symgrad import files
    from symgrad.cli import _on_signal
    from symgrad.errors import Interrupted

    target = tmp_path / "out.tex"
    target.write_text("previous\n")
    real_fsync = os.fsync

    def fsync_then_sigterm(fd):
        os.kill(os.getpid(), signal.SIGTERM)
        real_fsync(fd)
    monkeypatch.setattr(files.os, "fsync", fsync_then_sigterm)
    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        with pytest.raises(Interrupted):
            files.write_atomically(target, "new content\n")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert target.read_text() in ("previous\n", "new content\n")
    assert not list(tmp_path.glob(".*.tmp"))


# -- bounded work ---------------------------------------------------------------------------------
def test_a_slow_identity_is_undecided_at_the_time_limit_and_the_others_still_run(tmp_path):
    path = slow_file(tmp_path / "slow.toml", copies=1)
    started = time.monotonic()
    result = run("verify", str(path), "--time-limit", "1", "-f", "json")
    assert time.monotonic() - started < 60
    assert result.returncode == 1, result.stderr
    slow, fast = json.loads(result.stdout)["results"]
    assert slow["holds"] is None and slow["sizes"][0]["detail"].startswith("time limit reached after 1 s")
    assert fast["holds"] is True


def test_bad_time_limits_are_usage_errors(symgrad_main):
    for value in ("-1", "nan", "soon"):
        result = symgrad_main("verify", str(CATALOG), "--time-limit", value)
        assert result.returncode == 2
        line = one_error_line(result)
        assert "time-limit" in line and "No such option" not in line


@pytest.mark.parametrize("n", ["4096", "1025", "100000"])
def test_sizes_that_cannot_finish_are_refused_up_front(symgrad_main, n):
    started = time.monotonic()
    result = symgrad_main("derive", "--n", n)
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert "--n symbolic" in one_error_line(result)


def test_a_derivation_out_of_time_is_undecided_not_a_hang():
    # a ReLU network takes tens of seconds (derive --n 128, used before, now fits in a second)
    result = run("derive", "network", "--hidden", "relu", "--time-limit", "1")
    assert result.returncode == 1
    assert "time limit reached after 1 s" in one_error_line(result)


def test_memory_error_is_not_reported_as_a_bug():
    code = ("import symgrad.api as api\n"
            "def boom(*a, **k): raise MemoryError()\n"
            "api.derive = boom\n"
            "from symgrad.cli import main\n"
            "main(['derive', '--n', '3'])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert "out of memory" in one_error_line(result) and "bug" not in result.stderr


# -- the budget itself ----------------------------------------------------------------------------
def test_deadline_raises_nests_and_restores_the_previous_handler():
    from symgrad.budget import TimeLimitReached, deadline

    def busy(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(TimeLimitReached) as reached:
        with deadline(0.2):
            busy(5)
    assert reached.value.seconds == 0.2
    assert signal.getsignal(signal.SIGALRM) == before
    with deadline(5):  # the inner budget ends first; the outer one still holds afterwards
        with pytest.raises(TimeLimitReached):
            with deadline(0.2):
                busy(5)
        busy(0.3)
    with pytest.raises(TimeLimitReached):  # an outer budget ending first stops the inner block too
        with deadline(0.2):
            with deadline(10):
                busy(5)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_swallowed_time_limit_is_raised_again():
    from symgrad.budget import TimeLimitReached, deadline

    with pytest.raises(TimeLimitReached):
        with deadline(0.1):
            try:
                time.sleep(1)
            except BaseException:  # noqa: BLE001 - what careless code might do
                pass


def test_the_api_takes_a_time_limit_too():
    from symgrad.api import derive
    from symgrad.budget import TimeLimitReached

    started = time.monotonic()
    with pytest.raises(TimeLimitReached):
        derive("softmax-cross-entropy", 1024, time_limit=0.5)  # about 4 s without a limit
    assert time.monotonic() - started < 10
    assert derive("softmax-cross-entropy", 3, time_limit=60).proven
