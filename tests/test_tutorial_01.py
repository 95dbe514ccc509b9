"""Execute tutorials/01_toys.ipynb with tiny parameters (nbclient, kernel python3)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("hist")
pytest.importorskip("mplhep")

NOTEBOOK = Path(__file__).resolve().parents[1] / "tutorials" / "01_toys.ipynb"

TINY = """
# tiny values from tests/test_tutorial_01.py
SOURCE = "checkerboard"
TARGET = "star"
N_EVENTS = 1000
N_EVAL = 600
EPOCHS = 1
LAYERS = 2
HIDDEN = 16
PENALTY_WEIGHT = 0.5
NUM_THREADS = 1
PROGRESS = False
SEED = 0
"""

VARIANTS = ("base transfer", "unidirectional", "bidirectional", "bidirectional + L2")


def _assigned(source: str) -> set[str]:
    return {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def _outputs(nb) -> tuple[str, int]:
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(text), images


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


def test_tutorial_01_runs_with_tiny_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's C2ST classifier: 1 thread
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and params[0] is nb.cells[1], "the parameters cell comes second"
    assert _assigned(params[0].source) == _assigned(TINY), "TINY must override every parameter"
    params[0].source = TINY
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError if any cell (or its own checks) fails
    text, images = _outputs(nb)
    assert "tutorial 1 checks passed" in text
    for name in VARIANTS:
        assert name in text
    assert "AUC vs target" in text and "transport ratio" in text
    # shapes, learned densities, four toy_panels, the distance histogram
    assert images >= 7
