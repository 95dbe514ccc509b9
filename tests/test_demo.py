"""The end-to-end dijet demo at toy size: training, ROOT files, coffea processor, metrics."""

import json
import warnings

import awkward as ak
import numpy as np
import pytest

pytest.importorskip("coffea")

from coffea_f4f import demo  # noqa: E402

TINY = {"n_train": 2000, "n_test": 1200, "epochs": 1, "layers": 2, "hidden": 16,
        "chunksize": 500}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = demo.run(out, quick=True, progress=False, preset=TINY)
    return out, summary


def test_demo_writes_everything(demo_run):
    out, summary = demo_run
    for name in ("model/config.json", "sim.root", "data.root", "metrics.json",
                 "features.png", "loss_curves.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["features"] == demo.FEATURES and saved["n_source"] == TINY["n_test"]
    assert 0 <= saved["auc_before"] <= 1 and saved["sigma_after"] > 0
    assert summary["transport_ratio"] is None or summary["transport_ratio"] >= 1.0


def sim_events(out):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no Jet/SubJet cross-references
        return NanoEventsFactory.from_root({str(out / "sim.root"): "Events"},
                                           schemaclass=NanoAODSchema, mode="eager").events()


def test_processor_columns_equal_direct_morph(demo_run):
    """What the coffea processor added equals Morpher.morph on the same inputs."""
    import coffea_f4f as f4f

    out, _ = demo_run
    events = sim_events(out)
    x = np.stack([ak.to_numpy(fn(events)) for fn in demo.FEATURE_FUNCTIONS.values()], 1)
    direct = f4f.load(out / "model").morph(x, condition=ak.to_numpy(demo.feature_mjj(events)))
    transform = f4f.MorphTransform(out / "model", inputs=dict(demo.FEATURE_FUNCTIONS),
                                   condition=demo.feature_mjj)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        morphed = transform(events)
    via_coffea = np.stack([ak.to_numpy(morphed[f"{f}_morphed"]) for f in demo.FEATURES], 1)
    np.testing.assert_allclose(via_coffea, direct, rtol=1e-12)
    assert np.abs(direct - x).mean() > 0  # something moved


def test_tau2_field_is_not_the_four_vector_property(demo_run):
    """NanoEvents' four-vector behaviour defines tau2 = mass^2: the demo reads the field."""
    events = sim_events(demo_run[0])
    tau21 = ak.to_numpy(demo.feature_tau21_j1(events))
    assert ((tau21 > 0) & (tau21 < 1)).all()
