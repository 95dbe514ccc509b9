"""Execute tutorials/02_dijet_conditional.ipynb with tiny parameters (nbclient, kernel python3)."""

from __future__ import annotations

import json
import math

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("mplhep")

import notebooks  # noqa: E402

NOTEBOOK = "02_dijet_conditional.ipynb"

SMALL = """
# overrides from tests/test_tutorial_02.py
N_EVENTS = 6000
N_EVAL = 5000
EPOCHS = 1
FLOW_LAYERS = 1
HIDDEN = 8
WORKDIR = {workdir!r}
"""


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(notebooks.TUTORIALS / NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert notebooks.has_no_outputs(NOTEBOOK)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_tutorial_02_runs_with_small_parameters(tmp_path):
    nb = notebooks.run(NOTEBOOK, tmp_path, source=SMALL.format(workdir=str(tmp_path)),
                       timeout=120)
    text = notebooks.outputs_text(nb)
    for expected in ("C2ST AUC before:", "C2ST AUC after:", "distance moved (scaled space)",
                     "reloaded morph identical: True", "round trip SB -> SR -> SB",
                     "trained on mjj in"):
        assert expected in text, expected

    line = next(ln for ln in text.splitlines() if ln.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    assert set(results) == {
        "sr_auc_before", "sr_auc_after", "sr_sigma", "distance_moved", "random_pairing",
        "curtains_auc_before", "curtains_auc_after", "curtains_round_trip",
    }
    assert all(isinstance(v, float) and math.isfinite(v) for v in results.values())
    for key in ("sr_auc_before", "sr_auc_after", "curtains_auc_before", "curtains_auc_after"):
        assert 0.0 <= results[key] <= 1.0
    assert 0 < results["sr_sigma"] < 0.05
    assert results["curtains_round_trip"] < 1e-9  # the SB -> SR map is exactly invertible
    assert 0 < results["distance_moved"] < results["random_pairing"]
    assert (tmp_path / "dijet_sim_to_data" / "config.json").is_file()
    # mjj bands, SR comparison, distances, SB -> SR comparison
    assert notebooks.image_count(nb) >= 4
