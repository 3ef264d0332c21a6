"""docs/tour.ipynb runs: every cell executed in a real Jupyter kernel (nbclient + ipykernel, both
in the ``test`` extra); a cell that raises fails the test with the cell and its error. The
notebook is committed without outputs (checked here too)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "tour.ipynb"


def test_the_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra: pip install -e '.[test]'")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    text = "\n".join(cell.source for cell in code)
    for name in ("symgrad.derive(", "expr=", ".to_latex(", ".to_markdown(", "verify_identity(", ".codegen(\"numpy\")",
                 "finite_differences"):
        assert name in text


def test_the_notebook_runs_in_a_kernel():
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra: pip install -e '.[test]'")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the test extra: pip install -e '.[test]'")
    pytest.importorskip("ipykernel", reason="ipykernel is in the test extra: pip install -e '.[test]'")
    if importlib.util.find_spec("symgrad.codegen") is None:
        pytest.skip("the notebook generates code with .codegen('numpy'): symgrad.codegen (issue 18's code "
                    "generation) has not landed yet")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # the kernel imports this checkout (conftest puts it first on PYTHONPATH; the kernel inherits it)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"a cell of {NOTEBOOK.name} failed:\n{error}", pytrace=False)
    ran = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in ran)
