"""Issue 12, packaging: the sdist and wheel build without a deprecation warning, pass twine check
and validate-pyproject, and the wheel works in a fresh virtual environment from an empty folder;
the pre-commit hooks work as a user's `pre-commit run` runs them from a committed copy.

SLOW (marked `packaging`, about 1-2 minutes each): these install symgrad's dependencies from the
package registry into new virtual environments. They run by default (CI runs them); deselect
with `-m "not packaging"` while iterating. The tools come with the `test` extra; without them
the tests skip with a reason."""

import importlib.util
import re
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "derivations"
pytestmark = pytest.mark.packaging
IGNORED = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache",
                                 ".hypothesis", "*.pdf", "*.aux", "*.log", ".venv", "venv")


def needs_module(name):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[test]' installs it")


def call(args, cwd, timeout=600, env=None):
    """Run a command of a fresh environment: without conftest's PYTHONPATH, under which the
    venv's pip would take this checkout for an installed symgrad and install no script."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


# the tests that use the built wheel run on one pytest-xdist worker, which builds it once
uses_dist = pytest.mark.xdist_group("packaging-dist")


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """An sdist and a wheel built (as `python -m build` does) from a copy of the checkout."""
    needs_module("build")
    source = tmp_path_factory.mktemp("source") / "symgrad"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    built = call([sys.executable, "-m", "build", "--outdir", str(source / "dist"), str(source)], cwd=source)
    return source / "dist", built.stdout + built.stderr


@uses_dist
def test_build_makes_an_sdist_and_a_wheel_without_deprecation_warnings(dist):
    folder, log = dist
    assert len(list(folder.glob("symgrad-*.tar.gz"))) == 1 and len(list(folder.glob("symgrad-*.whl"))) == 1
    assert "deprecat" not in log.lower(), [line for line in log.splitlines() if "eprecat" in line]


@uses_dist
def test_twine_check_and_validate_pyproject_accept_it(dist):
    needs_module("twine")
    needs_module("validate_pyproject")
    folder, _ = dist
    checked = call([sys.executable, "-m", "twine", "check", "--strict", *map(str, folder.iterdir())], cwd=folder)
    assert checked.stdout.count("PASSED") == 2
    call([sys.executable, "-m", "validate_pyproject", str(ROOT / "pyproject.toml")], cwd=folder)


@uses_dist
def test_the_wheel_works_in_a_fresh_venv_from_an_empty_folder(dist, tmp_path):
    folder, _ = dist
    (wheel,) = folder.glob("symgrad-*.whl")
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True, system_site_packages=False, clear=True)
    python, symgrad = environment / "bin" / "python", environment / "bin" / "symgrad"
    call([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], cwd=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"PATH": f"{environment / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert call([str(symgrad), "--version"], cwd=empty, env=env).stdout == f"symgrad {version}\n"
    where = call([str(python), "-c", "import symgrad; print(symgrad.__file__)"], cwd=empty, env=env).stdout
    assert where.startswith(str(environment)), where  # the installed copy, not the checkout
    derived = call([str(symgrad), "derive", "--n", "3"], cwd=empty, env=env)
    assert "a - y" in derived.stdout and "✓" in derived.stdout
    listed = call([str(symgrad), "list"], cwd=empty, env=env)
    assert "softmax-cross-entropy" in listed.stdout and "softmax-layer" in listed.stdout
    shutil.copy(CATALOG / "classification.toml", empty / "classification.toml")
    verified = call([str(symgrad), "verify", "-q", "classification.toml"], cwd=empty, env=env)
    last = verified.stdout.strip().splitlines()[-1]
    assert re.match(r"^[1-9]\d* held, 0 failed, 0 undecided, 0 errors in 1 file \(", last), last
    assert call([str(python), "-m", "symgrad", "--version"], cwd=empty, env=env).stdout == f"symgrad {version}\n"


# -- pre-commit ------------------------------------------------------------------------------------
def git(*args, cwd):
    return call(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd)


GOOD = ('[[identity]]\nname = "logsumexp gradient"\nvars = { z = "n" }\nn = [2, 3]\n'
        'lhs = "grad(logsumexp(z), z)"\nrhs = "softmax(z)"\n')


@pytest.fixture(scope="module")
def hooks_repo(tmp_path_factory):
    """The hooks as a user's pre-commit sees them: a committed copy of this checkout, named by
    its commit in a configuration like the one `pre-commit try-repo` writes (every hook of
    .pre-commit-hooks.yaml), and one pre-commit home for the runs below. try-repo installs
    symgrad in a new hook environment on every run (its store is a temporary folder); with one
    home, the first run installs it from the copy and the next one uses that environment, as on
    a user's second commit: the same hooks of the same commit run on the files either way."""
    if shutil.which("pre-commit") is None:
        pytest.skip("pre-commit is not installed: pip install -e '.[test]' installs it")
    import yaml

    copy = tmp_path_factory.mktemp("hooks") / "symgrad"
    shutil.copytree(ROOT, copy, ignore=IGNORED)
    git("init", "-q", cwd=copy)
    git("add", "-A", cwd=copy)
    git("commit", "-q", "-m", "symgrad", cwd=copy)
    rev = git("rev-parse", "HEAD", cwd=copy).stdout.strip()
    manifest = yaml.safe_load((copy / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    hooks = [{"id": hook["id"]} for hook in sorted(manifest, key=lambda hook: hook["id"])]
    config = tmp_path_factory.mktemp("pre-commit-config") / "pre-commit-config.yaml"  # outside the project
    config.write_text(yaml.safe_dump({"repos": [{"repo": str(copy), "rev": rev, "hooks": hooks}]}), encoding="utf-8")
    home = tmp_path_factory.mktemp("pre-commit-home")
    return config, home


def run_hooks(hooks_repo, project):
    """`pre-commit run --all-files` in ``project`` with the configuration of ``hooks_repo``."""
    config, home = hooks_repo
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    env.pop("PYTHONPATH", None)
    return subprocess.run(["pre-commit", "run", "--config", str(config), "--all-files"], cwd=project,
                          capture_output=True, text=True, timeout=900, env=env)


def user_project(tmp_path, files):
    project = tmp_path / "project"
    project.mkdir()
    for name, text in files.items():
        (project / name).write_text(text, encoding="utf-8")
    git("init", "-q", cwd=project)
    git("add", "-A", cwd=project)
    return project


def test_pre_commit_hooks_check_identity_files_and_exports(hooks_repo, tmp_path):
    """Both hooks in one `pre-commit run` (the first run installs symgrad in a new environment):
    they pass on a good identity file with a fresh export beside a pyproject.toml (skipped), and
    fail on a false identity and on a stale export."""
    from symgrad.api import check_files
    from symgrad.output.identity_latex import render_identities

    project = user_project(tmp_path, {"ids.toml": GOOD, "pyproject.toml": '[project]\nname = "x"\n'})
    checked = check_files([project / "ids.toml"])
    (project / "ids.tex").write_text(render_identities(checked.results, title="ids"), encoding="utf-8")
    git("add", "-A", cwd=project)
    passed = run_hooks(hooks_repo, project)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"symgrad verify \(identity files\)\.+Passed", passed.stdout), passed.stdout
    assert re.search(r"symgrad check exports.*\.+Passed", passed.stdout), passed.stdout

    (project / "ids.toml").write_text(GOOD.replace('rhs = "softmax(z)"', 'rhs = "-softmax(z)"'), encoding="utf-8")
    (project / "notes.toml").write_text(GOOD.replace("logsumexp gradient", "notes"), encoding="utf-8")
    (project / "notes.tex").write_text("% edited by hand\n", encoding="utf-8")
    git("add", "-A", cwd=project)
    failed = run_hooks(hooks_repo, project)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert re.search(r"symgrad verify \(identity files\)\.+Failed", failed.stdout), failed.stdout
    assert "FAILS: logsumexp gradient" in failed.stdout
    assert re.search(r"symgrad check exports.*\.+Failed", failed.stdout), failed.stdout
    assert "out of date: notes.tex" in failed.stdout
