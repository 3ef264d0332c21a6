"""The public modules pass ``mypy --strict`` (the configuration, ``[tool.mypy]`` in pyproject.toml,
lists them), and the package ships ``py.typed`` so that users' type checkers read the annotations."""

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ["symgrad/__init__.py", "symgrad/api.py", "symgrad/steps.py", "symgrad/verdict.py"]


def test_the_public_modules_pass_mypy_strict(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it is in the test extra: pip install -e '.[test]')")
    checked = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
                              *PUBLIC], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found in 4 source files" in checked.stdout


def test_the_configuration_names_the_public_modules_and_ships_py_typed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["tool"]["mypy"]["files"] == PUBLIC and project["tool"]["mypy"]["strict"] is True
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["symgrad"]
    assert (ROOT / "symgrad" / "py.typed").is_file()


def test_type_checkers_see_the_public_names():
    """``symgrad.derive`` and friends are imported lazily at run time, and statically under
    TYPE_CHECKING: every name in ``__all__`` is both."""
    import symgrad

    source = (ROOT / "symgrad" / "__init__.py").read_text(encoding="utf-8")
    for name in symgrad.__all__:
        assert getattr(symgrad, name) is not None
        assert name == "__version__" or f" {name}" in source.split("if TYPE_CHECKING:")[1]
