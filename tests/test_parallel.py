"""Issue 17, parallel verification and start-up: ``verify -j 2`` says byte for byte what ``-j 1``
says (results in input order, the same errors, the same exit code), a time limit still bounds
each identity at each size in the workers, and neither ``import symgrad`` nor ``--help`` imports
SymPy. (Speed itself is measured by bench/bench_speed.py, not asserted here.)"""

import json
import os
import re
import subprocess
import sys

import pytest

from symgrad.batch import default_jobs
from support import WRONG_SIGN, run

CATALOG = {
    "a.toml": '''
[[identity]]
name = "logsumexp gradient"
vars = { z = "n" }
n = [1, 2, "symbolic"]
lhs = "grad(logsumexp(z), z)"
rhs = "softmax(z)"
''' + WRONG_SIGN + '''
[[identity]]
name = "a mistake that shows only at n = 3"
vars = { z = "n", w = 2 }
n = [2, 3]
lhs = "z + w"
rhs = "w + z"

[[identity]]
name = "sigmoid"
vars = { z = "n" }
n = [1, 2, 3]
lhs = "jacobian(sigmoid(z), z)"
rhs = "diag(sigmoid(z) * (1 - sigmoid(z)))"
''',
    "b.toml": '''
[[identity]]
name = "layer bias gradient"
vars = { W = "n x p", X = "p x m", b = "n", Y = "n x m" }
sizes = [{ n = 2, p = 1, m = 1 }, { n = 2, p = 2, m = 1 }]
assume = ["colsum(Y) == 1"]
lhs = "grad(cross_entropy(softmax(W @ X + b), Y) / m, b)"
rhs = "rowsum(softmax(W @ X + b) - Y) / m"
''',
    "c.toml": '[[identity]]\nname = "no vars"\nlhs = "z"\nrhs = "z"\n',
}
TIMES = re.compile(r"\d+\.\d\d s\b")  # the time column and the summary's wall time


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalog")
    for name, text in CATALOG.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_two_jobs_say_byte_for_byte_what_one_job_says(catalog, fmt, tmp_path):
    outputs = []
    for jobs in ("1", "2"):
        junit = tmp_path / f"junit-{jobs}.xml"
        result = run("verify", str(catalog), "-j", jobs, "-f", fmt, "--junit", str(junit), "--no-cache")
        outputs.append((result.returncode, TIMES.sub("T", result.stdout), result.stderr, junit.read_bytes()))
    assert outputs[0] == outputs[1]
    code, stdout, stderr, _ = outputs[0]
    assert code == 2  # c.toml and the mistake at n = 3 are input errors; everything else is reported
    assert stderr.splitlines() == [
        f"symgrad: error: {catalog / 'c.toml'}:1:1: identity 'no vars': missing key 'vars'",
        f"symgrad: error: {catalog / 'a.toml'}:21:8: identity 'a mistake that shows only at n = 3' at n = 3: "
        "shapes a vector of length 3 and a vector of length 2 do not match"]
    if fmt == "json":
        report = json.loads(stdout)
        assert [(r["name"], r["holds"]) for r in report["results"]] == [
            ("logsumexp gradient", True), ("wrong sign", False), ("sigmoid", True), ("layer bias gradient", True)]


def test_the_time_limit_bounds_each_size_in_the_workers(tmp_path):
    slow = "jacobian(softmax(softmax(z)), z)"
    path = tmp_path / "slow.toml"
    path.write_text(f'[[identity]]\nname = "slow"\nvars = {{ z = "n" }}\nn = [11, 1]\nlhs = "{slow}"\n'
                    f'rhs = "{slow} + 0"\n', encoding="utf-8")
    result = run("verify", str(path), "-j", "2", "--time-limit", "1", "-f", "json", "--no-cache")
    assert result.returncode == 1, result.stderr
    (sizes,) = [r["sizes"] for r in json.loads(result.stdout)["results"]]
    assert sizes[0]["holds"] is None and sizes[0]["detail"].startswith("time limit reached after 1 s")
    assert sizes[1]["holds"] is True


@pytest.mark.parametrize("jobs", ["0", "-2", "abc", "1.5"])
def test_jobs_must_be_a_positive_number(jobs):
    """One line that says what -j wants, not the name of a type ("not a valid int range")."""
    result = run("verify", "-j", jobs, "derivations")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "'-j'" in result.stderr, result.stderr
    assert f"'{jobs}' is not a number of worker processes" in result.stderr, result.stderr


def test_default_jobs_are_the_cores_this_process_may_use():
    import os

    assert 1 <= default_jobs() <= (os.cpu_count() or 1)


@pytest.mark.parametrize("code", [
    "import symgrad",
    "import symgrad.cli",
    "from symgrad import __version__",
])
def test_importing_symgrad_does_not_import_sympy(code):
    found = subprocess.run([sys.executable, "-c", f"{code}; import sys; print('sympy' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert found.stdout == "False\n"


@pytest.mark.parametrize("args", [["--help"], ["verify", "--help"], ["derive", "--help"], ["--version"]])
def test_help_and_version_do_not_import_sympy(args):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "symgrad", *args],
                            capture_output=True, text=True)
    assert result.returncode == 0
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "symgrad.cli" in imported  # the measurement saw the program's imports
    assert not {name for name in imported if name.split(".")[0] in ("sympy", "mpmath")}


def test_an_unchanged_catalog_is_served_without_importing_sympy(tmp_path, monkeypatch):
    """The pre-commit case (under a second): every verdict from the result cache, so neither
    SymPy nor mpmath is imported — the second run of verify on a copy of one catalog file."""
    import shutil
    from pathlib import Path

    source = Path(__file__).resolve().parent.parent / "derivations" / "softmax_and_activations.toml"
    shutil.copy(source, tmp_path / source.name)
    env = {key: value for key, value in os.environ.items() if key != "SYMGRAD_NO_CACHE"}
    command = [sys.executable, "-X", "importtime", "-m", "symgrad", "verify", source.name]
    first = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    second = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-500:]
    imported = {line.split("|")[-1].strip() for line in second.stderr.splitlines() if line.startswith("import time:")}
    assert "symgrad.batch" in imported  # the measurement saw the checking code's imports
    assert not {name for name in imported if name.split(".")[0] in ("sympy", "mpmath")}


def test_ci_runs_exactly_the_readme_test_command_on_every_core():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Install and run the tests (one command)", 1)[1]
    command = next(line.strip() for line in section.splitlines() if line.startswith("    "))
    assert "-n auto" in command and command.startswith("pip install -e '.[test]' && python -m pytest")
    ci = [line.strip() for line in (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert ci[-1] == command
