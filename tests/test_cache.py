"""Issue 17, the result cache (``symgrad/cache.py``): a warm run is served from
``.symgrad_cache/``, a changed identity never is, only definite verdicts are kept, a corrupted or
foreign entry is a warning and a new check, and ``--no-cache`` (or SYMGRAD_NO_CACHE) bypasses it.

Every test works in its own ``tmp_path`` as the working directory (where the cache lives), with
the cache turned back on (tests/conftest.py turns it off for the rest of the suite). Whether a
verdict came from the cache is seen through a counter on the checker, or through a planted entry
whose verdict no check would give: never through timing."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symgrad import batch
from symgrad.api import check_files
from symgrad.cache import DIRECTORY, ResultCache, entry_input, fingerprint
from symgrad.cli import app
from support import run

ROOT = Path(__file__).resolve().parent.parent
TRUE = "softmax(z)"
FALSE = "-softmax(z)"


def identities(rhs=TRUE, sizes="[1, 2]"):
    return (f'[[identity]]\nname = "logsumexp gradient"\nvars = {{ z = "n" }}\nn = {sizes}\n'
            f'lhs = "grad(logsumexp(z), z)"\nrhs = "{rhs}"\n'
            '[[identity]]\nname = "sigmoid"\nvars = { z = "n" }\nn = [2]\n'
            'lhs = "sigmoid(z)"\nrhs = "1 / (1 + exp(-z))"\n')


@pytest.fixture
def here(tmp_path, monkeypatch):
    """tmp_path as the working directory, the cache on, and ids.toml in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYMGRAD_NO_CACHE", raising=False)
    (tmp_path / "ids.toml").write_text(identities(), encoding="utf-8")
    return tmp_path


@pytest.fixture
def checks(monkeypatch):
    """Every (identity, size) the real checker is asked about, in order."""
    asked = []
    real = batch.check_size

    def counting(identity, size, time_limit):
        asked.append((identity.name, size))
        return real(identity, size, time_limit)
    monkeypatch.setattr(batch, "check_size", counting)
    return asked


def verify(*args):
    """``symgrad verify`` in this process (one job, so the counter sees every check)."""
    result = CliRunner().invoke(app, ["verify", "-j", "1", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def entries(folder=None, kind="verdict"):
    """The cache's entries of one kind: "verdict" (an identity at a size) or "read" (what reading
    a file found)."""
    return sorted(path for path in (Path(folder or ".") / DIRECTORY).glob("*.json")
                  if kind in json.loads(path.read_text(encoding="utf-8")))


def plant(path: Path, verdict: dict) -> None:
    """Rewrite a cache entry with another verdict, keeping it well formed and its input right."""
    entry = json.loads(path.read_text(encoding="utf-8"))
    entry["verdict"] = verdict
    path.write_text(json.dumps(entry), encoding="utf-8")


def test_a_warm_run_is_served_from_the_cache_with_the_same_output(here, checks):
    cold = verify("ids.toml", "-f", "json")
    assert cold.exit_code == 0 and len(checks) == 3
    assert len(entries()) == 3
    assert (here / DIRECTORY / "CACHEDIR.TAG").is_file() and (here / DIRECTORY / ".gitignore").read_text().endswith("*\n")
    checks.clear()
    warm = verify("ids.toml", "-f", "json")
    assert checks == []
    assert warm.exit_code == 0 and warm.stdout == cold.stdout


def test_a_changed_identity_is_never_served_from_the_cache_and_is_refuted(here, checks):
    assert verify("ids.toml").exit_code == 0
    (here / "ids.toml").write_text(identities(rhs=FALSE), encoding="utf-8")
    checks.clear()
    edited = verify("ids.toml", "-f", "json")
    assert edited.exit_code == 1
    assert checks == [("logsumexp gradient", 1), ("logsumexp gradient", 2)]  # the unchanged one is cached
    report = json.loads(edited.stdout)
    assert [r["holds"] for r in report["results"]] == [False, True]
    assert "refuted" in report["results"][0]["sizes"][0]["detail"]
    # a refutation is a definite verdict too: kept, and served for the same text
    checks.clear()
    assert verify("ids.toml").exit_code == 1 and checks == []
    # back to the true identity: its old entries serve again
    (here / "ids.toml").write_text(identities(), encoding="utf-8")
    assert verify("ids.toml").exit_code == 0 and checks == []


@pytest.mark.parametrize("change", ["sizes", "assumption", "name", "file"])
def test_every_part_of_the_key_matters(here, change):
    identity_file = here / "ids.toml"
    (first,) = [i for i in check_files([identity_file]).results[:1]]
    identity = first.identity
    size = identity.sizes[0]
    import dataclasses

    changed = {"sizes": dataclasses.replace(identity, sizes=(1, 2, 3)),
               "assumption": dataclasses.replace(identity, assume=("sum(z) == 1",)),
               "name": dataclasses.replace(identity, name="other"),
               "file": dataclasses.replace(identity, path=Path("elsewhere.toml"))}[change]
    cache = ResultCache()
    cache.put(identity, size, first.results[0])
    assert cache.get(identity, size) is not None
    assert cache.get(changed, size) is None
    assert entry_input(identity, size) != entry_input(changed, size)


def test_only_definite_verdicts_are_kept(here, checks):
    slow = '[[identity]]\nname = "slow"\nvars = { z = "n" }\nn = [11]\n' \
           'lhs = "jacobian(softmax(softmax(z)), z)"\nrhs = "jacobian(softmax(softmax(z)), z) + 0"\n'
    (here / "slow.toml").write_text(slow, encoding="utf-8")
    result = verify("slow.toml", "--time-limit", "0.5")
    assert result.exit_code == 1 and "time limit reached" in result.stdout
    assert entries() == []
    checks.clear()
    assert verify("slow.toml", "--time-limit", "0.5").exit_code == 1 and checks == [("slow", 11)]


def test_a_corrupted_or_foreign_entry_is_a_warning_and_a_new_check(here):
    assert run("verify", "ids.toml").returncode == 0
    first, second, third = entries()
    first.write_bytes(b"\x00garbage{")
    plant(second, {"holds": "yes", "method": "exact", "detail": "wrong type"})
    foreign = json.loads(third.read_text(encoding="utf-8"))
    foreign["input"]["rhs"] = "something else"  # another identity's entry under this name
    foreign["verdict"]["holds"] = False
    third.write_text(json.dumps(foreign), encoding="utf-8")
    result = run("verify", "ids.toml", "-f", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["summary"]["hold"] == 2
    warnings = result.stderr.splitlines()
    assert len(warnings) == 3 and all(line.startswith("symgrad: warning: ignoring a corrupted or foreign "
                                                      f"cache entry {DIRECTORY}/") for line in warnings)
    assert "Traceback" not in result.stderr
    # checked again and rewritten: the next run is quiet
    again = run("verify", "ids.toml")
    assert again.returncode == 0 and again.stderr == ""


def test_a_well_formed_entry_is_used_and_no_cache_bypasses_it(here):
    """A planted verdict no check gives (the true identity "fails") is what a cached run reports:
    the entry is read. --no-cache and SYMGRAD_NO_CACHE check again, and write nothing."""
    assert run("verify", "ids.toml").returncode == 0
    for path in entries():
        plant(path, {"holds": False, "method": "planted", "detail": "planted verdict"})
    assert "planted verdict" in run("verify", "ids.toml").stdout
    bypassed = run("verify", "ids.toml", "--no-cache")
    assert bypassed.returncode == 0 and "planted" not in bypassed.stdout
    by_environment = run("verify", "ids.toml", env={**os.environ, "SYMGRAD_NO_CACHE": "1"})
    assert by_environment.returncode == 0 and "planted" not in by_environment.stdout
    shutil.rmtree(here / DIRECTORY)
    assert run("verify", "ids.toml", "--no-cache").returncode == 0
    assert not (here / DIRECTORY).exists()


def test_an_unwritable_cache_is_one_warning_and_the_check_goes_on(here):
    (here / DIRECTORY).write_text("a file where the directory should be\n")
    result = run("verify", "ids.toml")
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("symgrad: warning: cannot ")
    assert f"the cache {DIRECTORY}/ (Not a directory); going on without it" in lines[0]


def test_concurrent_runs_share_the_cache(here):
    """Two runs at once write the same entries (each atomically): both succeed and agree, and
    every entry is whole."""
    command = [sys.executable, "-m", "symgrad", "verify", "-f", "json", "-j", "1", "ids.toml"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0] and outputs[0][1] == outputs[1][1] == ""
    assert len(entries()) == 3
    for path in entries():
        assert json.loads(path.read_text(encoding="utf-8"))["verdict"]["holds"] is True
    assert not list((here / DIRECTORY).glob("*.tmp")) and not list((here / DIRECTORY).glob(".*.tmp"))


def test_the_fingerprint_changes_with_the_source(tmp_path):
    """A code change during development never serves a verdict the old code reached."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "symgrad", copy / "symgrad", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")

    def fingerprint_of_copy():
        return subprocess.run([sys.executable, "-c", "from symgrad.cache import fingerprint; print(fingerprint())"],
                              capture_output=True, text=True, check=True, cwd=copy,
                              env={**os.environ, "PYTHONPATH": str(copy)}).stdout
    before = fingerprint_of_copy()
    assert before.strip() == fingerprint()  # the same source, the same fingerprint
    with open(copy / "symgrad" / "steps.py", "a", encoding="utf-8") as source:
        source.write("\n# an edit\n")
    assert fingerprint_of_copy() != before


def test_the_pytest_plugin_uses_the_cache_and_can_bypass_it(here):
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "ids.toml"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and "2 passed" in first.stdout, first.stdout
    assert len(entries()) == 3
    for path in entries():
        plant(path, {"holds": False, "method": "planted", "detail": "planted verdict"})
    served = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert served.returncode == 1 and "planted verdict" in served.stdout, served.stdout
    bypassed = subprocess.run([*command, "--symgrad-no-cache"], capture_output=True, text=True, timeout=300)
    assert bypassed.returncode == 0 and "2 passed" in bypassed.stdout, bypassed.stdout


def test_an_unchanged_file_is_not_parsed_again_and_a_changed_one_always_is(here, monkeypatch):
    from symgrad import identity_file

    parsed = []
    real = identity_file._parse_file
    monkeypatch.setattr(identity_file, "_parse_file", lambda path, text: parsed.append(path) or real(path, text))
    assert verify("ids.toml").exit_code == 0 and len(parsed) == 1
    assert len(entries(kind="read")) == 1
    warm = verify("ids.toml")
    assert warm.exit_code == 0 and len(parsed) == 1, "an unchanged file was parsed again"
    # the same identities, one of them now ill-formed: read (and refused) again, never served
    (here / "ids.toml").write_text(identities(rhs="softmax(q)"), encoding="utf-8")
    changed = verify("ids.toml")
    assert len(parsed) == 2 and changed.exit_code == 2 and "unknown name 'q'" in changed.output


def test_a_file_with_a_problem_is_never_kept(here):
    (here / "ids.toml").write_text(identities(rhs="softmax(z) +"), encoding="utf-8")
    assert verify("ids.toml").exit_code == 2
    assert entries(kind="read") == []


def test_an_entry_a_power_cut_left_empty_or_cut_short_is_checked_again(here):
    """Entries are not fsynced (a cache, not a user's file): what a crash can leave behind — an
    empty file, or the first half of one — is ignored with a warning and rebuilt."""
    assert run("verify", "ids.toml").returncode == 0
    first, second, _ = entries()
    first.write_bytes(b"")
    second.write_bytes(second.read_bytes()[: len(second.read_bytes()) // 2])
    result = run("verify", "ids.toml", "-f", "json")
    assert result.returncode == 0 and json.loads(result.stdout)["summary"]["hold"] == 2
    assert result.stderr.count("ignoring a corrupted or foreign cache entry") == 2, result.stderr
    assert run("verify", "ids.toml").stderr == ""


def test_a_corrupted_file_entry_is_a_warning_and_the_file_is_read_again(here):
    assert verify("ids.toml").exit_code == 0
    [path] = entries(kind="read")
    entry = json.loads(path.read_text(encoding="utf-8"))
    entry["read"]["identities"][0]["vars"] = "z"  # well-formed JSON, not what reading a file gives
    path.write_text(json.dumps(entry), encoding="utf-8")
    again = verify("ids.toml")
    assert again.exit_code == 0 and "corrupted or foreign" in again.output


# -- derive's output ---------------------------------------------------------------------------------
def derive(*args):
    result = CliRunner().invoke(app, ["derive", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def plant_output(text: str) -> None:
    [path] = entries(kind="derived")
    entry = json.loads(path.read_text(encoding="utf-8"))
    entry["derived"]["output"] = text
    path.write_text(json.dumps(entry), encoding="utf-8")


@pytest.mark.parametrize("options", [["--n", "2"], ["--n", "2", "--format", "json"]])
def test_derive_prints_a_proven_derivation_again_from_the_cache(here, options):
    cold = derive(*options)
    assert cold.exit_code == 0 and len(entries(kind="derived")) == 1
    assert derive(*options).stdout == cold.stdout  # served, byte for byte
    plant_output("planted output\n")  # proof that it was served: no derivation prints this
    assert derive(*options).stdout == "planted output\n"
    # any other option, and --no-cache, derive again
    assert derive(*options, "--no-cache").stdout == cold.stdout
    assert "planted" not in derive(*options, "--no-normalized-labels").stdout
    assert "planted" not in derive("--n", "3", *options[2:]).stdout


def test_derive_serves_an_identity_file_only_while_it_is_unchanged(here):
    args = ["ids.toml", "--identity", "logsumexp gradient", "--format", "latex"]
    assert derive(*args).exit_code == 0
    plant_output("planted\n")
    assert derive(*args).stdout == "planted\n"
    (here / "ids.toml").write_text(identities().replace("logsumexp gradient", "logsumexp gradient") + "\n",
                                   encoding="utf-8")
    assert "planted" not in derive(*args).stdout


def test_derive_never_keeps_a_derivation_that_is_not_proven(here):
    (here / "bad.toml").write_text(identities(rhs=FALSE), encoding="utf-8")
    refuted = derive("bad.toml", "--identity", "logsumexp gradient", "--format", "latex")
    assert refuted.exit_code == 1 and entries(kind="derived") == []
    assert derive("bad.toml", "--identity", "logsumexp gradient", "--format", "latex").exit_code == 1


def test_a_proof_and_its_instances_are_served_whole_or_checked_whole(here, checks):
    """n = 1 beside "symbolic" is an instance of the proof only when the proof is checked in the
    same run: with its entry lost (and the proof's kept), serving the proof while checking n = 1
    alone would print another method. The group is checked again whole, and the output is byte
    for byte that of a run without the cache."""
    (here / "ids.toml").write_text(identities(sizes='[1, 2, "symbolic"]'), encoding="utf-8")
    cold = verify("ids.toml", "-f", "json")
    assert cold.exit_code == 0 and "an instance" in cold.stdout
    (one,) = [path for path in entries()
              if json.loads(path.read_text(encoding="utf-8"))["input"]["size"] == 1]
    one.write_bytes(b"")
    checks.clear()
    again = verify("ids.toml", "-f", "json")
    assert sorted(str(size) for name, size in checks if name == "logsumexp gradient") == ["1", "2", "symbolic"]
    assert again.stdout == verify("ids.toml", "-f", "json", "--no-cache").stdout == cold.stdout
