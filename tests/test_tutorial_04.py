"""Execute tutorials/04_dask_distributed.ipynb with small parameters (nbclient, kernel python3)."""

from __future__ import annotations

import pytest

pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("coffea")
pytest.importorskip("distributed")
pytest.importorskip("hist")

import notebooks  # noqa: E402

NOTEBOOK = "04_dask_distributed.ipynb"

SMALL = """
# overrides from tests/test_tutorial_04.py
N_EVENTS = 600
N_FILES = 2
EPOCHS = 1
FLOW_LAYERS = 2
HIDDEN = 16
N_WORKERS = 1
CHUNKSIZE = 300
WORKDIR = {workdir!r}
"""


def test_tutorial_04_runs_with_small_parameters(tmp_path):
    nb = notebooks.run(NOTEBOOK, tmp_path, source=SMALL.format(workdir=str(tmp_path)))
    text = notebooks.outputs_text(nb)
    assert "cluster and local results agree" in text
    assert "'FatJet_msoftdrop'" in text and "'FatJet_tau2'" in text
    assert (tmp_path / "model" / "config.json").is_file()
    assert notebooks.image_count(nb) >= 1


def test_committed_notebook_has_no_outputs():
    assert notebooks.has_no_outputs(NOTEBOOK)
