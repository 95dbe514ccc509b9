"""Execute tutorials/03_coffea_processor.ipynb with small parameters (nbclient, kernel python3)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("coffea")
pytest.importorskip("distributed")
pytest.importorskip("hist")

NOTEBOOK = Path(__file__).resolve().parents[1] / "tutorials" / "03_coffea_processor.ipynb"

SMALL = """
# overrides from tests/test_tutorial_03.py
N_EVENTS = 400
N_FILES = 1
EPOCHS = 1
FLOW_LAYERS = 2
HIDDEN = 16
CHUNKSIZE = 150
N_WORKERS = 1
WORKDIR = {workdir!r}
"""


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def test_tutorial_03_runs_with_small_parameters(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and params[0] is nb.cells[1], "the parameters cell comes first"
    params[0].source += SMALL.format(workdir=str(tmp_path))
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError if any cell (or its own checks) fails
    text = _outputs_text(nb)
    assert "local and LocalCluster histograms are identical" in text
    assert "dask and eager results agree" in text
    assert "'FatJet_mass'" in text and "'FatJet_msoftdrop'" in text
    assert (tmp_path / "model" / "config.json").is_file()
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in nb.cells for o in c.get("outputs", []))
