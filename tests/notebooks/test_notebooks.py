"""Every notebook under ``notebooks/`` runs top to bottom without a cell error.

Each notebook is executed with nbclient against a kernel that runs this
interpreter (the venv's), declared in a temporary kernelspec found through
``JUPYTER_PATH``, with a fresh ``ICEFEED_HOME``. Kernels start their own small
SparkSession in their own process, one notebook at a time. Notebooks are
committed without outputs; a fast test checks that.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "icefeed-tests"
#: Seconds one cell may run (a Spark clean of a sample, a feeder start).
CELL_TIMEOUT = 600


def test_the_three_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01_explore_table.ipynb",
        "02_clean_interactively.ipynb",
        "03_feed_pytorch.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert dirty == [], f"{path.name}: clear the outputs of cells {dirty} before committing"


@pytest.fixture()
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs ``sys.executable``, visible to jupyter_client via JUPYTER_PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "icefeed (tests)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # Kernels inherit the environment: Spark's workers must run the venv's Python.
    # No MPLBACKEND: the kernel's inline backend turns figures into PNG outputs.
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    return KERNEL_NAME


#: Figures each notebook must show (PNG outputs), by file name.
EXPECTED_FIGURES = {"01_explore_table.ipynb": 2}


def _figures(nb: nbformat.NotebookNode) -> int:
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type in ("display_data", "execute_result") and "image/png" in out.data
    )


def _error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [
        f"{out.get('ename')}: {out.get('evalue')}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_without_errors(path: Path, venv_kernel: str, icefeed_home: Path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=venv_kernel,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    assert _error_outputs(nb) == []
    executed = [c for c in nb.cells if c.cell_type == "code"]
    assert executed and all(c.execution_count is not None for c in executed)
    # Each notebook ends by checking its own story held (its last cell prints OK: ...).
    last = "".join(out.get("text", "") for out in executed[-1].outputs if "text" in out)
    assert "OK" in last, f"{path.name}: the last cell did not report OK:\n{last}"
    assert _figures(nb) >= EXPECTED_FIGURES.get(path.name, 0)
    # The notebook wrote its tables into this test's fresh catalog, nowhere else.
    assert (icefeed_home / "catalog.db").is_file()
