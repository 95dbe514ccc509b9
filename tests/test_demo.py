"""The demos: the dijet chain at toy size (training, ROOT files, coffea processor, metrics),
the module's lazy coffea import, and the shared table printer. The toy demo runs through the
command line in test_cli.py."""

import json
import pickle
import subprocess
import sys
import warnings

import awkward as ak
import numpy as np
import pytest

from coffea_f4f import demo

TINY = {"n_train": 2000, "n_test": 1200, "epochs": 1, "layers": 2, "hidden": 16, "chunksize": 500}


def test_import_pulls_no_coffea_or_torch():
    code = (
        "import sys, coffea_f4f.demo; "
        "print(sorted(m for m in ('coffea', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_processor_class_is_created_once_and_pickles():
    """``demo.DijetMorphProcessor`` appears on first access; dask workers unpickle it by name."""
    processor = pytest.importorskip("coffea.processor")
    cls = demo.DijetMorphProcessor
    assert cls is demo.DijetMorphProcessor
    assert issubclass(cls, processor.ProcessorABC)
    assert "DijetMorphProcessor" in dir(demo)
    copy = pickle.loads(pickle.dumps(cls(transform=None)))
    assert type(copy) is cls
    assert copy.transform is None
    with pytest.raises(AttributeError, match="no_such_name"):
        demo.no_such_name  # noqa: B018


def test_print_table_aligns_the_labels(capsys):
    demo.print_table([("a", "1"), ("longer label", "2")])
    assert capsys.readouterr().out == "  a             1\n  longer label  2\n"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    pytest.importorskip("coffea")
    out = tmp_path_factory.mktemp("demo")
    summary = demo.run(out, quick=True, progress=False, preset=TINY)
    return out, summary


def test_demo_writes_everything(demo_run):
    out, summary = demo_run
    for name in (
        "model/config.json",
        "sim.root",
        "data.root",
        "metrics.json",
        "features.png",
        "loss_curves.png",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["features"] == demo.FEATURES
    assert saved["n_source"] == TINY["n_test"]
    assert 0 <= saved["auc_before"] <= 1
    assert saved["sigma_after"] > 0
    assert summary["transport_ratio"] is None or summary["transport_ratio"] >= 1.0


def sim_events(out):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no Jet/SubJet cross-references
        return NanoEventsFactory.from_root(
            {str(out / "sim.root"): "Events"}, schemaclass=NanoAODSchema, mode="eager"
        ).events()


def test_processor_columns_equal_direct_morph(demo_run):
    """What the coffea processor added equals Morpher.morph on the same inputs."""
    import coffea_f4f as f4f

    out, _ = demo_run
    events = sim_events(out)
    x = np.stack([ak.to_numpy(fn(events)) for fn in demo.FEATURE_FUNCTIONS.values()], 1)
    direct = f4f.load(out / "model").morph(x, condition=ak.to_numpy(demo.feature_mjj(events)))
    transform = f4f.MorphTransform(
        out / "model", inputs=dict(demo.FEATURE_FUNCTIONS), condition=demo.feature_mjj
    )
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
