"""Execute tutorials/01_toys.ipynb with tiny parameters (nbclient, kernel python3)."""

from __future__ import annotations

import ast

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("hist")
pytest.importorskip("mplhep")

import notebooks  # noqa: E402

NOTEBOOK = "01_toys.ipynb"

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


def test_committed_notebook_has_no_outputs():
    assert notebooks.has_no_outputs(NOTEBOOK)


def test_tutorial_01_runs_with_tiny_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's C2ST classifier: 1 thread
    nb = nbformat.read(notebooks.TUTORIALS / NOTEBOOK, as_version=4)
    assert _assigned(notebooks.parameters_cell(nb).source) == _assigned(TINY), \
        "TINY must override every parameter"
    nb = notebooks.run(NOTEBOOK, tmp_path, source=TINY, replace=True, timeout=120)
    text = notebooks.outputs_text(nb)
    assert "tutorial 1 checks passed" in text
    for name in VARIANTS:
        assert name in text
    assert "AUC vs target" in text and "transport ratio" in text
    # shapes, learned densities, four toy_panels, the distance histogram
    assert notebooks.image_count(nb) >= 7
