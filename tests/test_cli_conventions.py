"""Issue 12: symgrad behaves like the command-line tools users know (pytest, ruff, mypy):
--version, -h, `list`, `verify -`, a summary line, -q, exit codes in --help, colour only on a
terminal, and a README whose CI examples use only options that exist."""

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from support import run

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "derivations"
COMMANDS = ["derive", "verify", "export", "list", "codegen"]
ESCAPE = "\x1b"
SUMMARY = re.compile(r"^(\d+) held, (\d+) failed, (\d+) undecided, (\d+) errors? in (\d+) files? \((\d+\.\d+) s\)$")


def identity(name="t", lhs="grad(logsumexp(z), z)", rhs="softmax(z)"):
    return (f'[[identity]]\nname = {json.dumps(name)}\nvars = {{ z = "n" }}\nn = [2]\n'
            f'lhs = {json.dumps(lhs)}\nrhs = {json.dumps(rhs)}\n')


MIXED = identity("good") + identity("wrong sign", rhs="-softmax(z)") + identity("shift", lhs="softmax(z + 1)")


@functools.cache
def help_of(*command):
    """``symgrad COMMAND --help``, run once per command in a test process: its text does not
    change between calls, and the README checks below ask for the same few commands many times."""
    return run(*command, "--help")


def help_options(*command):
    """Every option the real --help of a command shows."""
    result = help_of(*command)
    assert result.returncode == 0, result.stderr
    options = result.stdout.split("Which options go with which derivation")[0]  # not derive's table of them
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", options))


def summary_of(stdout):
    last = stdout.strip().splitlines()[-1]
    found = SUMMARY.match(last)
    assert found, f"no summary line at the end: {last!r}"
    return [int(x) for x in found.groups()[:5]], float(found.group(6))


# -- --version, -h, python -m symgrad -------------------------------------------------------------
def test_version_comes_from_the_package_metadata_and_pyproject_holds_the_only_copy():
    import symgrad

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"symgrad {symgrad.__version__}\n"
    assert symgrad.__version__ == project["version"]
    assert "dynamic" not in project or "version" not in project["dynamic"]
    sources = [p.read_text(encoding="utf-8") for p in (ROOT / "symgrad").rglob("*.py")]
    assert not any(project["version"] in text for text in sources), "a second copy of the version number"


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_dash_h_is_help_wherever_help_is(command):
    short, long = run(*command, "-h"), help_of(*command)
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout and "Usage:" in short.stdout


def test_python_dash_m_is_the_same_program_as_the_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts == {"symgrad": "symgrad.cli:main"}
    main = (ROOT / "symgrad" / "__main__.py").read_text(encoding="utf-8")
    assert "from symgrad.cli import main" in main
    assert help_of().stdout.startswith("Usage: symgrad ")


# -- exit codes at the end of every --help, and once in the README ---------------------------------
EXIT_CODES = {0: "hold", 1: "fail", 2: "usage", 3: "internal", 130: "interrupt"}


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_ends_with_the_exit_codes(command):
    lines = help_of(*command).stdout.rstrip().splitlines()
    tail = lines[-6:]
    assert tail[0].strip() == "Exit codes:", tail
    for (code, word), line in zip(EXIT_CODES.items(), tail[1:]):
        assert line.split()[0] == str(code) and word in line.lower(), line


def test_readme_lists_the_exit_codes_once():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count("## Exit codes") == 1
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `?(\d+)`? \|", section, re.M)
    assert [int(r) for r in rows] == list(EXIT_CODES)
    assert readme.lower().count("internal error") == 1  # the meanings are listed in that table only


# -- symgrad list ----------------------------------------------------------------------------------
def test_list_shows_every_builtin_derivation_with_options_that_exist():
    from symgrad.derivation import DERIVATIONS

    result = run("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    names = [line.split()[0] for line in lines[1:] if line and not line.startswith(("-", "FILE"))]
    assert names == list(DERIVATIONS)
    derive_options = help_options("derive")
    for line in lines[1:]:
        listed = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", line.split("  ")[-1]))
        assert listed and listed <= derive_options, line
    assert any(line.startswith("--expr") for line in lines)
    assert any(line.startswith("FILE.toml --identity NAME") for line in lines)


def test_derive_help_says_which_options_go_with_which_derivation():
    """`derive softmax-layer --help` is derive's help: it ends with the options of each
    derivation, the same as `symgrad list` gives them, each one an option derive has."""
    listed = [line for line in run("list").stdout.splitlines()[1:] if line.strip()]
    text = help_of("derive").stdout.split("Which options go with which derivation")[1].split("Exit codes:")[0]
    table = [line.strip() for line in text.splitlines()[1:] if line.strip()]
    assert len(table) == len(listed)
    for row, line in zip(table, listed):
        name, options = re.split(r"\s{2,}", row)
        assert line.startswith(name) and line.rstrip().endswith(options), (row, line)
        assert set(options.split()) <= help_options("derive"), row


def test_list_of_files_shows_identities_without_checking_them(tmp_path):
    path = tmp_path / "mixed.toml"
    path.write_text(MIXED, encoding="utf-8")
    started = time.monotonic()
    result = run("list", str(path), str(CATALOG))
    assert result.returncode == 0, result.stderr  # "wrong sign" is false, but nothing is checked
    assert time.monotonic() - started < 60
    table = result.stdout.split("\n\n", 1)[1].splitlines()
    header, rows = table[0], table[1:]
    assert header.split() == ["identity", "file", "vars", "sizes", "derive", "--identity"]
    by_name = {row.split("  ")[0]: row for row in rows}
    assert set(by_name) >= {"good", "wrong sign", "shift"}
    assert "z=n" in by_name["good"] and f"{path}" in by_name["good"]
    assert by_name["wrong sign"].rstrip().endswith("yes")
    assert "no (lhs is not grad/jacobian)" in by_name["shift"]
    from symgrad.identity_file import load_paths

    assert len(rows) == 3 + len(load_paths([CATALOG]))
    layer = [row for name, row in by_name.items() if name.startswith("softmax layer")]
    assert layer and all(row.rstrip().endswith("yes") for row in layer)  # matrix identities derive too
    assert all("(n = 3, p = 2, m = 2); (n = 2, p = 3, m = 1)" in row for row in layer)


def test_list_reports_a_bad_file_and_still_lists_the_rest(tmp_path):
    (tmp_path / "good.toml").write_text(identity("fine"), encoding="utf-8")
    (tmp_path / "bad.toml").write_text("[[identity]]\nname = 'x'\n", encoding="utf-8")
    result = run("list", str(tmp_path))
    assert result.returncode == 2
    assert "fine" in result.stdout and "bad.toml" in result.stderr and "missing key" in result.stderr


# -- verify -: standard input ---------------------------------------------------------------------
def test_verify_reads_stdin_and_calls_it_stdin(tmp_path):
    junit = tmp_path / "report.xml"
    result = run("verify", "-", "--junit", str(junit), input=identity("wrong", rhs="-softmax(z)"))
    assert result.returncode == 1, result.stderr
    assert "FAILS: wrong (<stdin>) at n = 2" in result.stdout
    assert {case.get("classname") for case in ET.parse(junit).iter("testcase")} == {"<stdin>"}
    data = json.loads(run("verify", "-", "-f", "json", input=identity("fine")).stdout)
    assert data["results"][0]["file"] == "<stdin>" and data["results"][0]["holds"] is True


def test_a_bad_stdin_is_located_as_stdin():
    result = run("verify", "-", input="[[identity]]\nname = 'x'\n")
    assert result.returncode == 2
    assert result.stderr.startswith("symgrad: error: <stdin>:1:1: ") and "symgrad-stdin" not in result.stderr


def test_stdin_and_files_together(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text(identity("from a file"), encoding="utf-8")
    result = run("verify", str(path), "-", input=identity("from stdin"))
    assert result.returncode == 0, result.stderr
    assert summary_of(result.stdout)[0] == [2, 0, 0, 0, 2]
    assert run("verify", "-", "-", input=identity()).returncode == 2


# -- the summary line and -q ----------------------------------------------------------------------
def test_summary_line_counts_what_the_json_report_counts(tmp_path):
    (tmp_path / "mixed.toml").write_text(MIXED, encoding="utf-8")
    (tmp_path / "bad.toml").write_text("[[identity]]\nname = 'x'\n", encoding="utf-8")
    text = run("verify", str(tmp_path))
    data = json.loads(run("verify", str(tmp_path), "-f", "json").stdout)["summary"]
    counts, seconds = summary_of(text.stdout)
    assert text.returncode == 2
    assert counts == [data["hold"], data["fail"], data["undecided"], data["errors"], 2]
    assert counts[:2] == [2, 1] and counts[3] == 1 and 0 <= seconds < 300


def test_quiet_prints_only_failures_and_the_summary(tmp_path):
    path = tmp_path / "mixed.toml"
    path.write_text(identity("good") + identity("wrong sign", rhs="-softmax(z)"), encoding="utf-8")
    loud, quiet = run("verify", str(path)), run("verify", "-q", str(path))
    assert loud.returncode == quiet.returncode == 1
    assert "good" in loud.stdout and "good" not in quiet.stdout
    lines = quiet.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("FAILS: wrong sign")
    assert summary_of(quiet.stdout)[0] == [1, 1, 0, 0, 1]
    assert run("verify", "--quiet", "-", input=identity()).stdout.strip().splitlines()[0].startswith("1 held")


# -- pre-commit support: only identity files, a .tex for its .toml --------------------------------
def test_only_identity_files_skips_other_toml_and_maps_tex_to_toml(tmp_path):
    other = tmp_path / "pyproject.toml"
    other.write_text('[project]\nname = "x"\n', encoding="utf-8")
    good = tmp_path / "ids.toml"
    good.write_text(identity(), encoding="utf-8")
    assert run("verify", str(other)).returncode == 2
    result = run("verify", "--only-identity-files", str(other), str(good))
    assert result.returncode == 0, result.stderr
    assert summary_of(result.stdout)[0] == [1, 0, 0, 0, 1]
    stale = tmp_path / "ids.tex"
    stale.write_text("old\n", encoding="utf-8")
    result = run("verify", "--only-identity-files", "--check-exports", str(stale))
    assert result.returncode == 1 and "out of date" in result.stdout
    assert run("verify", "--only-identity-files", str(tmp_path / "lonely.tex")).returncode == 0


# -- colour only on a terminal --------------------------------------------------------------------
def terminal_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE",
                                                             "COLUMNS", "LINES", "CLICOLOR_FORCE")}
    env.update(TERM="xterm-256color", **extra)
    return env


def run_in_terminal(args, env):
    """``python -m symgrad ARGS`` with stdin, stdout and stderr on a pseudo-terminal."""
    import pty  # noqa: F401 - POSIX only; os.openpty is what is used

    master, slave = os.openpty()
    process = subprocess.Popen([sys.executable, "-m", "symgrad", *args], stdin=slave, stdout=slave,
                               stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=300)
    os.close(master)
    return process.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_a_terminal_gets_colour_and_the_rich_table(tmp_path):
    path = tmp_path / "ids.toml"
    path.write_text(identity("good"), encoding="utf-8")
    code, screen = run_in_terminal(["verify", str(path)], terminal_env())
    assert code == 0, screen
    assert ESCAPE + "[" in screen and "━" in screen


@pytest.mark.parametrize("args", [["verify", "IDS"], ["list", "IDS"], ["derive", "--n", "2"]])
def test_no_color_on_a_terminal_and_a_pipe_get_plain_text(tmp_path, args):
    path = tmp_path / "ids.toml"
    path.write_text(identity("good") + identity("wrong", rhs="-softmax(z)"), encoding="utf-8")
    args = [str(path) if a == "IDS" else a for a in args]
    code, screen = run_in_terminal(args, terminal_env(NO_COLOR="1"))
    assert code in (0, 1) and screen.strip(), screen
    assert ESCAPE not in screen and "━" not in screen
    piped = run(*args, env=terminal_env())
    assert piped.returncode == code
    assert ESCAPE not in piped.stdout + piped.stderr and "━" not in piped.stdout


# -- the README's CI examples use only options that exist ------------------------------------------
def readme_yaml_blocks():
    import yaml

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", readme, re.S)]


def symgrad_commands(text):
    """Each ``symgrad COMMAND ARGS`` in a shell text, as (command, options); command None for
    options of symgrad itself (``symgrad --version``)."""
    found = []
    for part in re.split(r"&&|\|\||;|\n|\|", text):
        words = shlex.split(part.replace("\\\n", " "), comments=True)
        if words[:1] == ["symgrad"] and len(words) > 1:
            command, rest = (None, words[1:]) if words[1].startswith("-") else (words[1], words[2:])
            options = {w.split("=", 1)[0] for w in rest if w.startswith("-") and w != "-"}
            found.append((command, options))
    return found


def check_commands(commands):
    assert commands
    for command, options in commands:
        assert command is None or command in COMMANDS, command
        missing = options - help_options(*([command] if command else []))
        assert not missing, f"symgrad {command}: {sorted(missing)} not in its --help"


def test_readme_github_actions_job_uses_real_options():
    workflows = [b for b in readme_yaml_blocks() if isinstance(b, dict) and "jobs" in b]
    assert len(workflows) == 1
    (job,) = workflows[0]["jobs"].values()
    runs = "\n".join(step["run"] for step in job["steps"] if "run" in step)
    assert "pip install symgrad" not in runs  # not published yet
    assert re.search(r"pip install .*git\+", runs)
    check_commands(symgrad_commands(runs))
    assert any(step.get("uses", "").startswith("actions/checkout") for step in job["steps"])


def test_readme_pre_commit_configuration_names_real_hooks():
    import yaml

    configs = [b for b in readme_yaml_blocks() if isinstance(b, dict) and "repos" in b]
    assert len(configs) == 1
    hooks = {hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    used = [hook["id"] for repo in configs[0]["repos"] for hook in repo["hooks"]]
    assert used and set(used) <= set(hooks)
    check_commands([c for hook in hooks.values() for c in symgrad_commands(hook["entry"])])


def test_every_symgrad_command_in_the_readme_uses_real_options():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = re.findall(r"^(?: {4}|- run: )(symgrad .*?)$", readme, re.M)
    check_commands([c for line in lines for c in symgrad_commands(line.rstrip("\\"))])


def test_readme_installs_from_a_clone_not_from_an_unpublished_package():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install symgrad" not in readme
    assert "pip install -e ." in readme and "pip install 'git+" in readme


def test_an_ascii_terminal_gets_escapes_and_a_warning_not_a_crash():
    """PYTHONIOENCODING=ascii (an old code page): the derivation is still written, each symbol
    the encoding lacks as a \\u escape that decodes back to the UTF-8 run's text."""
    utf8 = run("derive", "--n", "2", "--no-cache", env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    ascii_run = run("derive", "--n", "2", "--no-cache", env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert utf8.returncode == 0 and ascii_run.returncode == 0, ascii_run.stderr
    assert ascii_run.stdout.isascii() and not utf8.stdout.isascii()
    assert "written as \\u escapes" in ascii_run.stderr and "Traceback" not in ascii_run.stderr
    last = ascii_run.stdout.strip().splitlines()[-1]
    assert last.encode().decode("unicode_escape") == utf8.stdout.strip().splitlines()[-1]


def test_json_on_an_ascii_terminal_is_still_json():
    """The escapes are JSON's own (\\u00d7 for ×, a surrogate pair beyond U+FFFF): the same
    certificate as in UTF-8, read back by json."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    ascii_run = run("derive", "softmax-layer", "-f", "json", "--no-cache", env=env)
    utf8 = run("derive", "softmax-layer", "-f", "json", "--no-cache", env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert ascii_run.returncode == 0 and ascii_run.stdout.isascii(), ascii_run.stderr
    assert json.loads(ascii_run.stdout) == json.loads(utf8.stdout)


def test_the_terminal_printer_ignores_sympys_ascii_flag():
    """SymPy sets its drawing flag from sys.stdout's encoding: printing into a StringIO or on an
    ASCII terminal must still draw the Unicode Σ the printer was asked for, not raise KeyError."""
    from sympy.printing.pretty.pretty_symbology import pretty_use_unicode

    from symgrad import api

    derivation = api.derive(n=2, check=False)
    expected = api.render(derivation, "text")
    previous = pretty_use_unicode(False)
    try:
        assert api.render(derivation, "text") == expected
    finally:
        pretty_use_unicode(previous)


@pytest.mark.parametrize("order", [("bad.toml", "missing.toml"), ("missing.toml", "bad.toml")])
def test_problems_are_reported_in_the_order_the_paths_were_given(tmp_path, order):
    (tmp_path / "bad.toml").write_text("not toml [[[", encoding="utf-8")
    good = tmp_path / "good.toml"
    good.write_text('[[identity]]\nname = "t"\nvars = { z = "n" }\nn = [2]\nlhs = "z"\nrhs = "z"\n', encoding="utf-8")
    result = run("verify", *(str(tmp_path / name) for name in order), str(good), "--no-cache")
    errors = [line for line in result.stderr.splitlines() if line.startswith("symgrad: error:")]
    assert result.returncode == 2 and len(errors) == 2, result.stderr
    assert [name for line in errors for name in order if name in line] == list(order), errors


@pytest.mark.parametrize("columns", ["40", "80"])
def test_piped_text_has_no_trailing_spaces(columns):
    """Rich keeps the space it wrapped a long line at; piped text must not end lines in spaces."""
    result = run("derive", "--n", "2", "--no-cache", env={**os.environ, "COLUMNS": columns, "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(len(line) > int(columns) // 2 for line in lines)
    assert [line for line in lines if line != line.rstrip()] == []
