"""Execute each tutorial notebook with small parameters (nbclient, kernel python3).

One parametrised test per notebook (``tests/notebooks.py`` runs them): the override must
assign every name of the notebook's ``parameters`` cell (so a new parameter cannot silently run
at full size), the notebook's own checks must pass, and its printed output and image count are
checked. The committed notebooks carry no outputs.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

import notebooks  # noqa: E402


def _check_01(text: str, nb: Any, workdir: Path) -> None:
    assert "tutorial 1 checks passed" in text
    for name in ("base transfer", "unidirectional", "bidirectional", "bidirectional + L2"):
        assert name in text, name
    assert "AUC vs target" in text
    assert "transport ratio" in text
    # shapes, learned densities, four toy_panels, the distance histogram
    assert notebooks.image_count(nb) >= 7


def _check_02(text: str, nb: Any, workdir: Path) -> None:
    for expected in (
        "C2ST AUC before:",
        "C2ST AUC after:",
        "distance moved (scaled space)",
        "reloaded morph identical: True",
        "round trip SB -> SR -> SB",
        "trained on mjj in",
    ):
        assert expected in text, expected
    line = next(ln for ln in text.splitlines() if ln.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS ") :])
    assert set(results) == {
        "sr_auc_before",
        "sr_auc_after",
        "sr_sigma",
        "distance_moved",
        "random_pairing",
        "curtains_auc_before",
        "curtains_auc_after",
        "curtains_round_trip",
    }
    assert all(isinstance(v, float) and math.isfinite(v) for v in results.values())
    for key in ("sr_auc_before", "sr_auc_after", "curtains_auc_before", "curtains_auc_after"):
        assert 0.0 <= results[key] <= 1.0, key
    assert 0 < results["sr_sigma"] < 0.05
    assert results["curtains_round_trip"] < 1e-9  # the SB -> SR map is exactly invertible
    assert 0 < results["distance_moved"] < results["random_pairing"]
    assert (workdir / "dijet_sim_to_data" / "config.json").is_file()
    # mjj bands, SR comparison, distances, SB -> SR comparison
    assert notebooks.image_count(nb) >= 4


def _check_03(text: str, nb: Any, workdir: Path) -> None:
    assert "local and LocalCluster histograms are identical" in text
    assert "dask and eager results agree" in text
    assert "'FatJet_mass'" in text
    assert "'FatJet_msoftdrop'" in text
    assert (workdir / "model" / "config.json").is_file()
    assert notebooks.image_count(nb) >= 1


def _check_04(text: str, nb: Any, workdir: Path) -> None:
    assert "cluster and local results agree" in text
    assert "'FatJet_msoftdrop'" in text
    assert "'FatJet_tau2'" in text
    assert (workdir / "model" / "config.json").is_file()
    assert notebooks.image_count(nb) >= 1


def _check_05(text: str, nb: Any, workdir: Path) -> None:
    assert "tutorial 5 checks passed" in text
    assert "conditions, in the model's order: ['pt', 'eta', 'rho', 'era']" in text
    assert "Photon_pfPhoIso03" in text  # the NanoAOD-like branches
    for name in ("zero fraction", "pho_iso", "ch_iso", "sim morphed"):
        assert name in text, name
    assert (workdir / "photon_model" / "config.json").is_file()
    assert (workdir / "sim.root").is_file()
    assert (workdir / "data.root").is_file()
    # the feature comparison and the profiles
    assert notebooks.image_count(nb) >= 2


@dataclass(frozen=True)
class Tutorial:
    notebook: str
    #: new values for every parameter; ``{workdir}`` is filled in with the test's tmp_path
    overrides: str
    check: Callable[[str, Any, Path], None]
    #: optional packages the notebook imports (skipped without them)
    needs: tuple[str, ...]
    #: replace the parameters cell (True) or append the overrides to it (False)
    replace: bool = False
    timeout: int = 240
    env: dict[str, str] = field(default_factory=dict)


TUTORIALS = [
    Tutorial(
        "01_toys.ipynb",
        """
# tiny values from tests/test_tutorials.py
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
""",
        _check_01,
        needs=("hist", "mplhep"),
        replace=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "1"},  # the kernel's C2ST classifier: 1 thread
    ),
    Tutorial(
        "02_dijet_conditional.ipynb",
        """
# overrides from tests/test_tutorials.py
N_EVENTS = 6000
N_EVAL = 5000
EPOCHS = 1
FLOW_LAYERS = 1
HIDDEN = 8
WORKDIR = {workdir!r}
""",
        _check_02,
        needs=("ipykernel", "mplhep"),
        timeout=120,
    ),
    Tutorial(
        "03_coffea_processor.ipynb",
        """
# overrides from tests/test_tutorials.py
N_EVENTS = 400
N_FILES = 1
EPOCHS = 1
FLOW_LAYERS = 2
HIDDEN = 16
CHUNKSIZE = 150
N_WORKERS = 1
WORKDIR = {workdir!r}
""",
        _check_03,
        needs=("coffea", "distributed", "hist"),
    ),
    Tutorial(
        "04_dask_distributed.ipynb",
        """
# overrides from tests/test_tutorials.py
N_EVENTS = 600
N_FILES = 2
EPOCHS = 1
FLOW_LAYERS = 2
HIDDEN = 16
N_WORKERS = 1
CHUNKSIZE = 300
WORKDIR = {workdir!r}
""",
        _check_04,
        needs=("coffea", "distributed", "hist"),
    ),
    Tutorial(
        "05_production_corrections.ipynb",
        """
# overrides from tests/test_tutorials.py
N_TRAIN = 4000
N_EVENTS = 500
EPOCHS = 4
BATCH_SIZE = 128
FLOW_LAYERS = 1
HIDDEN = 16
NUM_THREADS = 1
CHUNKSIZE = 300
WORKDIR = {workdir!r}
""",
        _check_05,
        needs=("coffea", "hist", "mplhep"),
        timeout=120,
    ),
]
IDS = [t.notebook.split("_")[0] for t in TUTORIALS]


def _assigned(source: str) -> set[str]:
    return {
        t.id
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def test_every_tutorial_is_tested():
    assert sorted(p.name for p in notebooks.TUTORIALS.glob("*.ipynb")) == sorted(
        t.notebook for t in TUTORIALS
    )


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=IDS)
def test_committed_notebook_has_no_outputs(tutorial):
    nb = nbformat.read(notebooks.TUTORIALS / tutorial.notebook, as_version=4)
    nbformat.validate(nb)
    assert notebooks.has_no_outputs(tutorial.notebook)
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=IDS)
def test_override_sets_every_parameter(tutorial):
    nb = nbformat.read(notebooks.TUTORIALS / tutorial.notebook, as_version=4)
    overrides = tutorial.overrides.format(workdir="/tmp")
    assert _assigned(notebooks.parameters_cell(nb).source) == _assigned(overrides), (
        "the override must set every parameter of the notebook (and no other name)"
    )


@pytest.mark.parametrize("tutorial", TUTORIALS, ids=IDS)
def test_tutorial_runs_with_small_parameters(tutorial, tmp_path, monkeypatch):
    for module in tutorial.needs:
        pytest.importorskip(module)
    for key, value in tutorial.env.items():
        monkeypatch.setenv(key, value)
    source = tutorial.overrides.format(workdir=str(tmp_path))
    nb = notebooks.run(
        tutorial.notebook,
        tmp_path,
        source=source,
        replace=tutorial.replace,
        timeout=tutorial.timeout,
    )
    tutorial.check(notebooks.outputs_text(nb), nb, tmp_path)
