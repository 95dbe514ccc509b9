"""Tests for coffea_f4f.transform.MorphTransform on NanoEvents (eager, virtual, dask, Runner).

The default input is a generated NanoAOD-schema file (tests/nanoaod_fixture.py). The real
NanoAOD files in ../shared/data run the same core tests on their ``Jet`` collection when present
(they hold few or no FatJets) and are skipped otherwise.

Models are tiny flows trained for two epochs on synthetic rows (a few seconds, module scope):

- ``mass_pt``: features ``["mass", "pt"]`` with log scaling (so ``mass <= 0`` is outside the
  model's domain);
- ``conditional``: features ``["msoftdrop", "tau21"]`` conditioned on ``mjj``, computed by
  :func:`dijet_mass` from the two leading FatJets. Events with fewer than two FatJets get
  ``mjj = NaN``, so (NaN policy) their FatJets' morphed values are NaN;
- ``ensemble`` / ``conditional_ensemble``: the same with bootstrap ensembles (3 and 2 members)
  for ``variations=True`` (the band and the coffea systematic).
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch

from coffea_f4f import transform as transform_module
from coffea_f4f.columns import MissingColumnError
from coffea_f4f.config import FlowConfig, TrainConfig
from coffea_f4f.morpher import Morpher
from coffea_f4f.transform import MorphTransform

sys.path.insert(0, str(Path(__file__).parent))
from nanoaod_fixture import write_nanoaod

pytestmark = [
    # schema warnings about collections the (generated or real) files do not have
    pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Branch .* already exists:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:You have set steps_per_file:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

coffea = pytest.importorskip("coffea")
dak = pytest.importorskip("dask_awkward")
from coffea import processor  # noqa: E402
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_FILES = ["nano_dy.root", "nano_dimuon.root", "nanoAOD_2015_CMS_Open_Data_ttbar.root"]
TINY = FlowConfig(layers=2, hidden=16)
QUICK = TrainConfig(epochs=2, progress=False, num_threads=1, seed=0)
N_EVENTS = 600


# ----------------------------------------------------------------------------- helpers
def dijet_mass(events):
    """mjj of the two leading FatJets (coffea vector behaviour); NaN with fewer than two."""
    fj = ak.pad_none(events.FatJet, 2)
    return ak.fill_none((fj[:, 0] + fj[:, 1]).mass, np.nan)


def tau21(events):
    """N-subjettiness ratio per FatJet. ``FatJet["tau2"]``, not ``FatJet.tau2``: in eager and
    virtual mode the attribute is the vector behaviour's tau**2 (= mass**2), not the field."""
    return events.FatJet["tau2"] / events.FatJet["tau1"]


def events_of(path, mode, *, only=None, **kwargs):
    """NanoEvents of ``path``; ``only``: read just these collections (faster eager loading of
    the real files, which hold ~1500 branches)."""
    if only is not None:
        keep = (
            "run",
            "luminosityBlock",
            "event",
            *(f"n{c}" for c in only),
            *(f"{c}_" for c in only),
        )
        kwargs["iteritems_options"] = {"filter_name": lambda name: name.startswith(keep)}
    return NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode, **kwargs
    ).events()


def field(arr, dotted):
    for part in dotted.split("."):
        arr = arr[part]
    return arr


def rows(events, fields):
    """{event number: (n_objects, n_fields) float64 array} of jagged ``fields`` of ``events``."""
    numbers = ak.to_numpy(events.event).astype(np.int64)
    cols = [field(events, f) for f in fields]
    counts = ak.to_numpy(ak.num(cols[0], axis=1))
    flat = np.stack([ak.to_numpy(ak.flatten(c)).astype(np.float64) for c in cols], axis=1)
    splits = np.split(flat, np.cumsum(counts)[:-1]) if len(counts) else []
    return {int(e): v for e, v in zip(numbers, splits, strict=True)}


def assert_same_rows(a, b, *, exact=True):
    assert a.keys() == b.keys()
    assert len(a) > 0
    for k in a:
        if exact:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"event {k}")
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=0, err_msg=f"event {k}")


class MorphProcessor(processor.ProcessorABC):
    """Applies a transform and returns the morphed values per event (for comparisons)."""

    def __init__(self, transform, fields):
        self.transform = transform
        self.fields = list(fields)

    def process(self, events):
        out = self.transform(events)
        transforms = getattr(self.transform, "transforms", [self.transform])
        return {
            "rows": sorted(rows(out, self.fields).items()),
            "n": len(events),
            "pids": {os.getpid()},
            # the cached models each process used (a rebuild would add another id)
            "models": {(os.getpid(), id(t.morpher)) for t in transforms},
        }

    def postprocess(self, accumulator):
        return accumulator


class Chain:
    """Apply transforms one after the other (picklable)."""

    def __init__(self, *transforms):
        self.transforms = transforms

    def __call__(self, events):
        for t in self.transforms:
            events = t(events)
        return events


class FlakyTransform(MorphTransform):
    """Fails on the first real chunk it sees (a flag file records it), then works."""

    flag: str = ""

    def numpy_call(self, *args, **kwargs):
        if not os.path.exists(self.flag):
            Path(self.flag).write_text("failed once")
            raise RuntimeError("simulated worker failure")
        return super().numpy_call(*args, **kwargs)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def nano_path(tmp_path_factory):
    """The generated NanoAOD-schema file (N_EVENTS events)."""
    return write_nanoaod(tmp_path_factory.mktemp("nano") / "gen.root", N_EVENTS, seed=1)


@pytest.fixture(scope="module", params=["generated", *REAL_FILES])
def any_nano(request, nano_path):
    """(path, collection) for the generated file and each real file present."""
    if request.param == "generated":
        return nano_path, "FatJet"
    path = DATA_DIR / request.param
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path, "Jet"


@pytest.fixture(scope="module")
def mass_pt_model():
    torch.set_num_threads(1)
    from coffea_f4f.train import fit_morpher

    rng = np.random.default_rng(0)
    n = 3000
    src = {"mass": rng.gamma(2.0, 30.0, n) + 10, "pt": 200 + rng.exponential(150.0, n)}
    tgt = {"mass": rng.gamma(2.0, 34.0, n) + 12, "pt": 210 + rng.exponential(140.0, n)}
    return fit_morpher(
        src, tgt, features=["mass", "pt"], flow=TINY, density=TINY, train=QUICK, scaling="log"
    )


@pytest.fixture(scope="module")
def ensemble_model():
    """``mass_pt``'s kind of model with a bootstrap ensemble of three members."""
    torch.set_num_threads(1)
    from coffea_f4f.train import fit_morpher

    rng = np.random.default_rng(4)
    n = 1500
    src = {"mass": rng.gamma(2.0, 30.0, n) + 10, "pt": 200 + rng.exponential(150.0, n)}
    tgt = {"mass": rng.gamma(2.0, 34.0, n) + 12, "pt": 210 + rng.exponential(140.0, n)}
    return fit_morpher(
        src,
        tgt,
        features=["mass", "pt"],
        flow=TINY,
        density=TINY,
        train=QUICK,
        scaling="log",
        ensemble=3,
        ensemble_jobs=1,
    )


@pytest.fixture(scope="module")
def conditional_ensemble():
    return _conditional_fit(ensemble=2)


@pytest.fixture(scope="module")
def conditional_model():
    return _conditional_fit()


def _conditional_fit(**kwargs):
    torch.set_num_threads(1)
    from coffea_f4f.train import fit_morpher

    rng = np.random.default_rng(1)
    n = 3000
    mjj = rng.uniform(300.0, 2500.0, n)
    src = {"msoftdrop": rng.gamma(2.0, 25.0, n) + 5, "tau21": rng.beta(5, 3, n), "mjj": mjj}
    tgt = {
        "msoftdrop": rng.gamma(2.0, 27.0, n) + 5 + mjj / 200,
        "tau21": rng.beta(5, 3.5, n),
        "mjj": mjj,
    }
    return fit_morpher(
        src,
        tgt,
        features=["msoftdrop", "tau21"],
        condition="mjj",
        flow=TINY,
        density=TINY,
        train=QUICK,
        ensemble_jobs=1,
        **kwargs,
    )


def mass_pt_transform(model, collection="FatJet", **kwargs):
    return MorphTransform(
        model, inputs={"mass": f"{collection}.mass", "pt": f"{collection}.pt"}, **kwargs
    )


def conditional_transform(model, **kwargs):
    return MorphTransform(
        model,
        inputs={"msoftdrop": "FatJet.msoftdrop", "tau21": tau21},
        condition=dijet_mass,
        **kwargs,
    )


COND_FIELDS = ["FatJet.msoftdrop_morphed", "tau21_morphed"]


@pytest.fixture(scope="module")
def client():
    """A small LocalCluster: one worker process, one thread."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


# ----------------------------------------------------------------------------- construction
def test_construction_validates_arguments(mass_pt_model, conditional_model, tmp_path):
    with pytest.raises(ValueError, match="missing: \\['pt'\\]"):
        MorphTransform(mass_pt_model, inputs={"mass": "FatJet.mass"})
    with pytest.raises(ValueError, match="not features of the model: \\['eta'\\]"):
        MorphTransform(mass_pt_model, inputs={"mass": "a", "pt": "b", "eta": "c"})
    with pytest.raises(ValueError, match="not conditional"):
        mass_pt_transform(mass_pt_model, condition="mjj")
    with pytest.raises(ValueError, match="conditional on 'mjj'"):
        MorphTransform(conditional_model, inputs={"msoftdrop": "a", "tau21": "b"})
    with pytest.raises(ValueError, match="suffix"):
        mass_pt_transform(mass_pt_model, suffix="")
    with pytest.raises(ValueError, match="batch_size"):
        mass_pt_transform(mass_pt_model, batch_size=0)
    with pytest.raises(ValueError, match="num_threads"):
        mass_pt_transform(mass_pt_model, num_threads=0)
    with pytest.raises(ValueError, match="precision"):
        mass_pt_transform(mass_pt_model, precision="float16")
    with pytest.raises(TypeError, match="field path"):
        MorphTransform(mass_pt_model, inputs={"mass": "FatJet..mass", "pt": "FatJet.pt"})
    with pytest.raises(ValueError, match="same output field"):
        MorphTransform(mass_pt_model, inputs={"mass": "FatJet.mass", "pt": "FatJet.mass"})
    with pytest.raises(TypeError, match="Morpher or the path"):
        MorphTransform(object(), inputs={"mass": "a", "pt": "b"})
    with pytest.raises(FileNotFoundError):
        MorphTransform(tmp_path / "nope", inputs={"mass": "a", "pt": "b"})
    t = mass_pt_transform(mass_pt_model)
    assert t.outputs == {"mass": "FatJet.mass_morphed", "pt": "FatJet.pt_morphed"}


def test_pickle_is_small_carries_the_model_and_no_path(mass_pt_model, nano_path, tmp_path):
    model_dir = mass_pt_model.save(tmp_path / "model")
    t = mass_pt_transform(str(model_dir))
    blob = pickle.dumps(t)
    assert str(model_dir).encode() not in blob
    weights = sum(
        v.numel() * 4
        for k, v in mass_pt_model.state_dict().items()
        if k.startswith("map.") and v.is_floating_point()
    )
    assert len(blob) < weights + 20_000  # float32 map weights plus a small config; no densities
    mass_pt_model.morph(np.ones((2, 2)))  # moves the module to float64: same content, same hash
    assert mass_pt_transform(mass_pt_model).model_hash == t.model_hash
    for name in os.listdir(model_dir):
        os.remove(model_dir / name)
    os.rmdir(model_dir)  # the unpickled copy must not need the file
    t2 = pickle.loads(blob)
    transform_module.clear_model_cache()
    rebuilt, original = t2.morpher.module.state_dict(), mass_pt_model.module.state_dict()
    assert rebuilt.keys() == original.keys()  # architecture buffers restored, weights exact
    assert all(torch.equal(rebuilt[k].double(), original[k].double()) for k in original)
    ev = events_of(nano_path, "eager")
    fields = ["FatJet.mass_morphed", "FatJet.pt_morphed"]
    assert_same_rows(rows(t2(ev), fields), rows(mass_pt_transform(mass_pt_model)(ev), fields))


def test_model_built_once_per_process(mass_pt_model, nano_path, monkeypatch):
    transform_module.clear_model_cache()
    builds = []
    original = MorphTransform._build

    def counting(self):
        builds.append(1)
        return original(self)

    monkeypatch.setattr(MorphTransform, "_build", counting)
    t = mass_pt_transform(mass_pt_model)
    ev = events_of(nano_path, "virtual")
    for chunk in (ev[:100], ev[100:300], ev[300:]):
        t(chunk).FatJet.mass_morphed  # noqa: B018 - evaluated for the side effect
        pickle.loads(pickle.dumps(t))(chunk).FatJet.mass_morphed  # noqa: B018
    assert len(builds) == 1
    assert transform_module.cache_info().currsize == 1
    assert pickle.loads(pickle.dumps(t)).morpher is t.morpher
    # another thread setting or precision is another cache entry; the content hash is shared
    t1 = mass_pt_transform(mass_pt_model, precision="float32")
    assert t1.model_hash == t.model_hash
    assert t1.morpher is not t.morpher
    assert t1.morpher.precision == "float32"
    assert t.morpher.num_threads == 1


def test_torch_threads_set_while_morphing_and_restored(mass_pt_model, nano_path, monkeypatch):
    seen = []
    t = mass_pt_transform(mass_pt_model, num_threads=1)
    m = t.morpher
    module = m._applied(torch.float64 if m.precision == "float64" else torch.float32)
    original = module.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "forward", spy)
    torch.set_num_threads(2)
    t(events_of(nano_path, "eager")).FatJet.mass_morphed  # noqa: B018
    assert seen
    assert set(seen) == {1}
    assert torch.get_num_threads() == 2


# ----------------------------------------------------------------------------- core behaviour
def test_same_result_in_eager_virtual_and_dask(any_nano, mass_pt_model, client):
    path, coll = any_nano
    t = mass_pt_transform(mass_pt_model, coll)
    fields = [f"{coll}.mass_morphed", f"{coll}.pt_morphed"]
    eager_events = events_of(path, "eager", only=[coll])
    eager = rows(t(eager_events), fields)
    virtual = rows(t(events_of(path, "virtual")), fields)
    out = t(events_of(path, "dask", steps_per_file=3))
    assert out.npartitions == 3
    computed = client.compute(out[["event", coll]], sync=True)
    dask_rows = rows(computed, fields)
    assert_same_rows(eager, virtual)  # same chunk: bitwise
    assert_same_rows(eager, dask_rows, exact=False)  # 3 partitions: to rounding
    # and equal to Morpher.morph on the flat numpy array of the same objects
    ev = eager_events
    x = np.stack(
        [ak.to_numpy(ak.flatten(ev[coll][f])).astype(np.float64) for f in ("mass", "pt")], axis=1
    )
    good = np.isfinite(x).all(1) & (x > 0).all(1)
    flat = np.concatenate(list(eager.values())) if eager else np.zeros((0, 2))
    if len(x):
        np.testing.assert_allclose(flat[good], mass_pt_model.morph(x[good]), rtol=1e-12)
        assert np.isnan(flat[~good]).all()


def test_behaviour_and_cross_references_intact(nano_path, mass_pt_model):
    t = mass_pt_transform(mass_pt_model)
    for mode in ("eager", "virtual"):
        ev = events_of(nano_path, mode)
        out = t(ev)
        fj = out.FatJet
        assert type(fj).__name__ == "FatJetArray"
        assert {"mass_morphed", "pt_morphed", "msoftdrop", "subJetIdx1"} <= set(fj.fields)
        assert str(ak.type(fj.mass_morphed)).endswith("var * float64")
        # vector behaviour and methods
        two = ak.pad_none(fj, 2)
        mjj = (two[:, 0] + two[:, 1]).mass
        assert ak.all(ak.fill_none(mjj == dijet_mass(ev), True) | ak.is_none(mjj))
        assert ak.all(fj.delta_r(fj) == 0)
        # cross-references (global index into SubJet) still resolve
        assert ak.all(
            ak.flatten(out.FatJet.subjets.pt, axis=None)
            == ak.flatten(ev.FatJet.subjets.pt, axis=None)
        )
        # nothing else changed
        assert ak.all(ak.flatten(out.FatJet.mass) == ak.flatten(ev.FatJet.mass))
        assert set(out.fields) == set(ev.fields)
    dev = t(events_of(nano_path, "dask"))
    assert "mass_morphed" in dev.FatJet.fields
    assert type(dev.FatJet._meta).__name__ == "FatJetArray"
    sub = dev.FatJet.subjets.pt.compute()
    assert ak.all(
        ak.flatten(sub, axis=None)
        == ak.flatten(events_of(nano_path, "eager").FatJet.subjets.pt, axis=None)
    )


def test_necessary_columns_are_the_inputs_and_condition(
    any_nano, nano_path, mass_pt_model, conditional_model
):
    path, coll = any_nano
    out = mass_pt_transform(mass_pt_model, coll)(events_of(path, "dask"))
    for name in ("mass_morphed", "pt_morphed"):
        (cols,) = dak.necessary_columns(out[coll][name]).values()
        assert set(cols) == {f"n{coll}", f"{coll}_mass", f"{coll}_pt"}
    out = conditional_transform(conditional_model)(events_of(nano_path, "dask"))
    expected = {
        "nFatJet",
        "FatJet_msoftdrop",
        "FatJet_tau1",
        "FatJet_tau2",  # inputs
        "FatJet_pt",
        "FatJet_eta",
        "FatJet_phi",
        "FatJet_mass",
    }  # mjj condition
    for arr in (out.FatJet.msoftdrop_morphed, out.tau21_morphed):
        (cols,) = dak.necessary_columns(arr).values()
        assert set(cols) == expected


def test_conditional_broadcast_and_fewer_than_two_fatjets(nano_path, conditional_model):
    ev = events_of(nano_path, "eager")
    out = conditional_transform(conditional_model)(ev)
    counts = ak.to_numpy(ak.num(ev.FatJet))
    assert (counts < 2).any()
    assert (counts >= 2).any()
    mjj = np.repeat(ak.to_numpy(dijet_mass(ev)), counts)
    x = np.stack(
        [
            ak.to_numpy(ak.flatten(ev.FatJet.msoftdrop)).astype(np.float64),
            ak.to_numpy(ak.flatten(tau21(ev))).astype(np.float64),
        ],
        axis=1,
    )
    y = np.stack([ak.to_numpy(ak.flatten(field(out, f))) for f in COND_FIELDS], axis=1)
    good = np.isfinite(mjj)
    assert good.any()
    assert (~good).any()
    np.testing.assert_allclose(
        y[good], conditional_model.morph(x[good], condition=mjj[good]), rtol=1e-12
    )
    assert np.isnan(y[~good]).all()  # events with < 2 FatJets: mjj is NaN -> outputs NaN
    # the morph is conditional: another mjj gives other values
    other = conditional_model.morph(x[good], condition=mjj[good] * 2)
    assert not np.allclose(other, y[good])


def test_event_level_inputs(nano_path, mass_pt_model):
    ev = events_of(nano_path, "eager")
    lead = ak.firsts(ev.FatJet)
    ev = ak.with_field(ev, ak.fill_none(lead.mass, np.nan), "lead_mass")
    t = MorphTransform(
        mass_pt_model,
        inputs={"mass": "lead_mass", "pt": lambda e: ak.fill_none(ak.firsts(e.FatJet).pt, np.nan)},
    )
    out = t(ev)
    assert out.lead_mass_morphed.ndim == 1
    assert out.pt_morphed.ndim == 1
    x = np.stack([ak.to_numpy(ev.lead_mass), ak.to_numpy(ak.fill_none(lead.pt, np.nan))], 1)
    y = np.stack([ak.to_numpy(out.lead_mass_morphed), ak.to_numpy(out.pt_morphed)], 1)
    good = np.isfinite(x).all(1)
    assert good.any()
    assert (~good).any()
    np.testing.assert_allclose(y[good], mass_pt_model.morph(x[good]), rtol=1e-12)
    assert np.isnan(y[~good]).all()


def test_empty_chunks_give_empty_typed_columns(nano_path, mass_pt_model, conditional_model):
    t = mass_pt_transform(mass_pt_model)
    tc = conditional_transform(conditional_model)
    for mode in ("eager", "virtual"):
        ev = events_of(nano_path, mode)
        no_fatjet = ev[ak.num(ev.FatJet) == 0]
        assert len(no_fatjet) > 0
        for chunk in (ev[:0], no_fatjet):
            out = tc(t(chunk))
            assert len(out) == len(chunk)
            for name in ("mass_morphed", "pt_morphed", "msoftdrop_morphed"):
                col = out.FatJet[name]
                assert str(ak.type(col)) == f"{len(chunk)} * var * float64"
                assert ak.sum(ak.num(col)) == 0
            assert str(ak.type(out.tau21_morphed)) == f"{len(chunk)} * var * float64"


def test_batch_size_does_not_change_results(nano_path, mass_pt_model):
    ev = events_of(nano_path, "eager")
    fields = ["FatJet.mass_morphed", "FatJet.pt_morphed"]
    a = rows(mass_pt_transform(mass_pt_model, batch_size=7)(ev), fields)
    b = rows(mass_pt_transform(mass_pt_model, batch_size=100_000)(ev), fields)
    assert_same_rows(a, b, exact=False)


def test_between_condition_model_with_target_condition(nano_path):
    from coffea_f4f.train import fit_condition_morpher

    rng = np.random.default_rng(2)
    n = 2000
    c = rng.uniform(300.0, 2500.0, n)
    data = {
        "mass": rng.gamma(2.0, 30.0, n) + 10 + c / 100,
        "pt": 200 + rng.exponential(150, n),
        "mjj": c,
    }
    model = fit_condition_morpher(
        data, features=["mass", "pt"], condition="mjj", flow=TINY, density=TINY, train=QUICK
    )
    with pytest.raises(ValueError, match="target_condition"):
        MorphTransform(
            model, inputs={"mass": "FatJet.mass", "pt": "FatJet.pt"}, condition=dijet_mass
        )
    t = MorphTransform(
        model,
        inputs={"mass": "FatJet.mass", "pt": "FatJet.pt"},
        condition=dijet_mass,
        target_condition=1000.0,
    )
    ev = events_of(nano_path, "eager")
    out = t(ev)
    counts = ak.to_numpy(ak.num(ev.FatJet))
    mjj = np.repeat(ak.to_numpy(dijet_mass(ev)), counts)
    x = np.stack(
        [ak.to_numpy(ak.flatten(ev.FatJet[f])).astype(np.float64) for f in ("mass", "pt")], 1
    )
    y = np.stack([ak.to_numpy(ak.flatten(out.FatJet[f"{f}_morphed"])) for f in ("mass", "pt")], 1)
    good = np.isfinite(mjj)
    np.testing.assert_allclose(
        y[good], model.morph(x[good], condition=mjj[good], target_condition=1000.0), rtol=1e-12
    )


# ----------------------------------------------------------------------------- bad input
def test_missing_field_names_close_matches(nano_path, mass_pt_model):
    for mode in ("eager", "virtual", "dask"):
        ev = events_of(nano_path, mode)
        t = MorphTransform(mass_pt_model, inputs={"mass": "FatJet.msas", "pt": "FatJet.pt"})
        with pytest.raises(MissingColumnError, match=r"'FatJet\.mass'") as err:
            t(ev)
        assert isinstance(err.value, KeyError)
        t = MorphTransform(mass_pt_model, inputs={"mass": "FatJets.mass", "pt": "FatJet.pt"})
        with pytest.raises(MissingColumnError, match=r"Did you mean.*'FatJet"):
            t(ev)


def test_mismatched_structure_raises_clear_errors(nano_path, mass_pt_model, conditional_model):
    ev = events_of(nano_path, "eager")
    ev = ak.with_field(ev, ak.fill_none(ak.firsts(ev.FatJet.pt), np.nan), "lead_pt")
    t = MorphTransform(mass_pt_model, inputs={"mass": "FatJet.mass", "pt": "lead_pt"})
    with pytest.raises(ValueError, match=r"mix jagged.*event-level"):
        t(ev)
    t = MorphTransform(mass_pt_model, inputs={"mass": "FatJet.mass", "pt": "Jet.pt"})
    with pytest.raises(ValueError, match="different numbers of objects"):
        t(ev)
    t = MorphTransform(
        conditional_model,
        inputs={"msoftdrop": "lead_pt", "tau21": "lead_pt_2"},
        condition="FatJet.pt",
    )
    ev = ak.with_field(ev, ev.lead_pt, "lead_pt_2")
    with pytest.raises(ValueError, match=r"jagged.*inputs are event-level"):
        t(ev)
    t = MorphTransform(
        conditional_model,
        inputs={"msoftdrop": "FatJet.msoftdrop", "tau21": tau21},
        condition="Jet.pt",
    )
    with pytest.raises(ValueError, match="per-object condition"):
        t(ev)
    t = MorphTransform(mass_pt_model, inputs={"mass": "FatJet", "pt": "FatJet.pt"})
    with pytest.raises(TypeError, match="record"):
        t(ev)
    with pytest.raises(TypeError, match="awkward"):
        t({"FatJet": 1})
    # dask: structure errors surface when the graph is built, before anything runs
    t = MorphTransform(
        mass_pt_model, inputs={"mass": "FatJet.mass", "pt": lambda e: ak.firsts(e.Jet.pt)}
    )
    with pytest.raises(ValueError, match="mix jagged"):
        t(events_of(nano_path, "dask"))


def test_nan_inf_and_out_of_domain_rows_pass_through_as_nan(nano_path, mass_pt_model):
    ev = events_of(nano_path, "eager")
    counts = ak.num(ev.FatJet)
    mass = ak.to_numpy(ak.flatten(ev.FatJet.mass)).astype(np.float64)
    n = len(mass)
    bad = np.zeros(n, dtype=bool)
    bad[[0, 5, 17]] = True
    mass_bad = mass.copy()
    mass_bad[0], mass_bad[5], mass_bad[17] = np.nan, np.inf, -3.0  # -3: outside log domain
    ev_bad = ak.with_field(ev, ak.unflatten(mass_bad, counts), ("FatJet", "mass"))
    t = mass_pt_transform(mass_pt_model)
    fields = ["FatJet.mass_morphed", "FatJet.pt_morphed"]
    y_bad = np.concatenate(list(rows(t(ev_bad), fields).values()))
    y = np.concatenate(list(rows(t(ev), fields).values()))
    assert np.isnan(y_bad[bad]).all()
    # the good rows are morphed in a batch without the bad ones (another batch layout): equal
    # to rounding, not bitwise (other CPU kernels differ by ~1e-15); masses and pTs are O(10+)
    np.testing.assert_allclose(y_bad[~bad], y[~bad], rtol=1e-12, atol=0)
    assert np.isfinite(y).all()
    # None values (option type) are treated like NaN
    opt = ak.mask(ev.FatJet.pt, ev.FatJet.pt > 300)
    t2 = MorphTransform(mass_pt_model, inputs={"mass": "FatJet.mass", "pt": lambda e: opt})
    y2 = np.stack([ak.to_numpy(ak.flatten(t2(ev).FatJet.mass_morphed))], 1)[:, 0]
    keep = ak.to_numpy(ak.flatten(ev.FatJet.pt > 300))
    assert np.isnan(y2[~keep]).all()
    np.testing.assert_allclose(y2[keep], y[keep, 0], rtol=1e-12, atol=0)  # a row subset


# ----------------------------------------------------------------------------- Runner + dask
def _run(path, proc, executor, chunksize):
    runner = processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=chunksize)
    return runner({"gen": {"files": {str(path): "Events"}}}, proc, treename="Events")


def test_runner_all_executors_and_chunk_sizes_agree(
    nano_path, mass_pt_model, conditional_model, client
):
    t = mass_pt_transform(mass_pt_model)
    tc = conditional_transform(conditional_model)
    fields = ["FatJet.mass_morphed", "FatJet.pt_morphed", *COND_FIELDS]

    reference = rows(tc(t(events_of(nano_path, "eager"))), fields)
    proc = MorphProcessor(Chain(t, tc), fields)
    results = {
        "iterative/7": _run(nano_path, proc, processor.IterativeExecutor(status=False), 7),
        "iterative/1000": _run(nano_path, proc, processor.IterativeExecutor(status=False), 1000),
        "futures/loky": _run(
            nano_path, proc, processor.FuturesExecutor(workers=1, status=False), 150
        ),
        "dask/LocalCluster": _run(
            nano_path, proc, processor.DaskExecutor(client=client, status=False), 100
        ),
    }
    for name, res in results.items():
        assert res["n"] == N_EVENTS, name
        # float64 everywhere; the flow's matrix products may round differently for other
        # batch lengths (~1e-16 relative), so chunkings agree to rtol 1e-12, not bitwise
        assert_same_rows(dict(res["rows"]), reference, exact=False)
    for name in ("futures/loky", "dask/LocalCluster"):
        assert os.getpid() not in results[name]["pids"], name  # really another process
    for name, res in results.items():  # each model built once per process, for all chunks
        for pid in res["pids"]:
            assert len({m for p, m in res["models"] if p == pid}) == 2, name


def test_dask_mode_with_distributed_client(nano_path, mass_pt_model, conditional_model, client):
    fields = ["FatJet.mass_morphed", "FatJet.pt_morphed", *COND_FIELDS]
    t = mass_pt_transform(mass_pt_model)
    tc = conditional_transform(conditional_model)
    reference = rows(tc(t(events_of(nano_path, "eager"))), fields)
    out = tc(t(events_of(nano_path, "dask", steps_per_file=4)))
    got = client.compute(out[["event", "FatJet", "tau21_morphed"]], sync=True)
    assert_same_rows(rows(got, fields), reference, exact=False)


def test_dask_task_retry_gives_the_same_result(nano_path, mass_pt_model, client, tmp_path):
    fields = ["FatJet.mass_morphed", "FatJet.pt_morphed"]
    reference = rows(mass_pt_transform(mass_pt_model)(events_of(nano_path, "eager")), fields)
    flaky = FlakyTransform(mass_pt_model, inputs={"mass": "FatJet.mass", "pt": "FatJet.pt"})
    flaky.flag = str(tmp_path / "failed-once")
    out = flaky(events_of(nano_path, "dask", steps_per_file=2))[["event", "FatJet"]]
    got = client.compute(out, retries=2, sync=True)
    assert Path(flaky.flag).exists()  # it did fail once
    assert_same_rows(rows(got, fields), reference, exact=False)
    # without retries the same failure is fatal: the injection is real
    os.remove(flaky.flag)
    with pytest.raises(RuntimeError, match="simulated worker failure"):
        client.compute(out, retries=0, sync=True)


def test_one_model_copy_per_process_and_a_bounded_cache(mass_pt_model):
    transform_module.clear_model_cache()
    t = mass_pt_transform(mass_pt_model)
    m = t.morpher
    assert m._applied(torch.float64) is m.module  # the map is held once, in float64
    assert next(m.module.parameters()).dtype == torch.float64
    # not shipped to workers
    assert m.source_density is None
    assert m.target_density is None
    info = transform_module.cache_info()
    assert (info.misses, info.currsize) == (1, 1)
    assert t.morpher is m
    assert transform_module.cache_info().hits == info.hits + 1
    size = transform_module.CACHE_SIZE
    for threads in range(2, size + 3):  # more distinct keys than the bound
        assert mass_pt_transform(mass_pt_model, num_threads=threads).morpher is not None
    assert transform_module.cache_info().currsize == size  # least recently used dropped
    transform_module.clear_model_cache()
    assert transform_module.cache_info() == (0, 0, size, 0)


def test_misspelt_collection_suggests_the_repaired_path_first(nano_path, mass_pt_model):
    suggestions = []
    for mode in ("eager", "virtual", "dask"):
        ev = events_of(nano_path, mode)
        t = MorphTransform(mass_pt_model, inputs={"mass": "FatJets.mass", "pt": "FatJets.pt"})
        with pytest.raises(MissingColumnError) as err:
            t(ev)
        suggestions.append(err.value.suggestions)
        assert err.value.suggestions[0] == "FatJet.mass"
        assert len(str(err.value)) < 600  # a short list of available fields, not thousands
    assert suggestions[0] == suggestions[1] == suggestions[2]  # stable across modes and runs


def test_morpher_morphs_a_nanoevents_collection_as_training_reads_it(any_nano, mass_pt_model):
    path, coll = any_nano
    for mode in ("eager", "virtual"):
        fatjets = events_of(path, mode, only=[coll])[coll]
        fatjets = fatjets[fatjets.mass > 0]  # the model's log scaling needs a positive mass
        out = mass_pt_model.morph(fatjets)  # features "mass", "pt" are fields of the jets
        flat = np.stack([ak.to_numpy(ak.flatten(fatjets[f])) for f in ("mass", "pt")], axis=1)
        ref = mass_pt_model.morph(flat.astype(np.float64))
        got = np.stack([ak.to_numpy(ak.flatten(out[f])) for f in ("mass", "pt")], axis=1)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
        assert ak.to_list(ak.num(out.mass)) == ak.to_list(ak.num(fatjets.mass))
        assert ak.to_list(out.eta) == ak.to_list(fatjets.eta)  # other fields kept


# ----------------------------------------------------------------------------- variations
MASS_PT = ("mass", "pt")


def flat_inputs(ev, fields=MASS_PT):
    return np.stack([ak.to_numpy(ak.flatten(ev.FatJet[f])).astype(np.float64) for f in fields], 1)


def flat_outputs(out, names):
    return np.stack([ak.to_numpy(ak.flatten(out.FatJet[n])) for n in names], axis=1)


def necessary(arr):
    (cols,) = dak.necessary_columns(arr).values()
    return set(cols)


def vectors(pt, eta, phi, mass):
    from coffea.nanoevents.methods import vector

    return ak.zip(
        {"pt": pt, "eta": eta, "phi": phi, "mass": mass},
        with_name="PtEtaPhiMLorentzVector",
        behavior=vector.behavior,
    )


def test_variations_and_replace_arguments_are_checked(mass_pt_model, ensemble_model):
    assert mass_pt_model.ensemble_size == 0
    with pytest.raises(ValueError, match=r"has 0: train it with fit_morpher\(\.\.\., ensemble=K\)"):
        mass_pt_transform(mass_pt_model, variations=True)
    with pytest.raises(ValueError, match="systematic must be an identifier"):
        mass_pt_transform(ensemble_model, variations=True, systematic="")
    with pytest.raises(TypeError, match="True or False"):
        mass_pt_transform(ensemble_model, variations="yes")
    with pytest.raises(ValueError, match="input 'pt' is a callable"):
        MorphTransform(
            mass_pt_model, inputs={"mass": "FatJet.mass", "pt": lambda e: e.FatJet.pt}, replace=True
        )
    t = mass_pt_transform(ensemble_model, variations=True, replace=True)
    assert t.outputs == {"mass": "FatJet.mass", "pt": "FatJet.pt"}
    assert "variations=True, replace=True" in repr(t)
    with pytest.raises(ValueError, match="same output field"):  # mass's band is the pt input
        MorphTransform(
            ensemble_model,
            inputs={"mass": "FatJet.mass", "pt": "FatJet.mass_morphed_up"},
            variations=True,
            replace=True,
        )


def test_variations_equal_morpher_variations_in_all_modes(nano_path, ensemble_model, monkeypatch):
    calls = []
    original = Morpher.variations

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("with_nominal"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Morpher, "variations", counting)
    t = mass_pt_transform(ensemble_model, variations=True)
    names = {
        "nominal": ["mass_morphed", "pt_morphed"],
        "up": ["mass_morphed_up", "pt_morphed_up"],
        "down": ["mass_morphed_down", "pt_morphed_down"],
    }
    ev = events_of(nano_path, "eager")
    x = flat_inputs(ev)
    bad = np.zeros(len(x), dtype=bool)
    bad[[1, 8, 20]] = True
    x[1, 0], x[8, 1], x[20, 0] = np.nan, np.inf, -3.0  # -3: outside the log scaling's domain
    counts = ak.num(ev.FatJet)
    ev = ak.with_field(ev, ak.unflatten(x[:, 0], counts), ("FatJet", "mass"))
    ev = ak.with_field(ev, ak.unflatten(x[:, 1], counts), ("FatJet", "pt"))
    out = t(ev)
    assert calls == [True]  # one pass per chunk gives the nominal and the band
    ref = ensemble_model.variations(x[~bad], with_nominal=True)
    for v, fields in names.items():
        y = flat_outputs(out, fields)
        np.testing.assert_allclose(y[~bad], ref[v], rtol=1e-12, atol=0, err_msg=v)
        assert np.isnan(y[bad]).all(), v  # the NaN policy holds for the band too
    assert (ref["up"] > ref["nominal"]).all()
    assert (ref["down"] < ref["nominal"]).all()
    np.testing.assert_allclose(ref["nominal"], ensemble_model.morph(x[~bad]), rtol=1e-12)
    # the systematic holds the same values; the other fields keep the nominal ones
    fj = out.FatJet
    assert fj.behavior[("__typestr__", "f4fSystematics")] == "UpDownMultiSystematic"
    for v in ("up", "down"):
        varied = fj.systematics.f4f[v]
        assert type(varied).__name__ == "FatJetArray"
        for nominal, band in zip(names["nominal"], names[v], strict=True):
            np.testing.assert_array_equal(
                ak.to_numpy(ak.flatten(varied[nominal])), ak.to_numpy(ak.flatten(fj[band]))
            )
        for other in ("mass", "pt", "eta", "pt_morphed_up"):
            assert ak.all(ak.fill_none(varied[other] == fj[other], True) | np.isnan(fj[other]))
    # eager == virtual (bitwise) == dask (to rounding), band and systematic alike
    fields = [f"FatJet.{n}" for v in names.values() for n in v]
    clean = events_of(nano_path, "eager")
    eager_out = t(clean)
    eager = rows(eager_out, fields)
    assert_same_rows(eager, rows(t(events_of(nano_path, "virtual")), fields))
    dask_out = t(events_of(nano_path, "dask", steps_per_file=3))
    assert_same_rows(eager, rows(dask_out[["event", "FatJet"]].compute(), fields), exact=False)
    for v in ("up", "down"):
        got = dask_out.FatJet.systematics.f4f[v].mass_morphed.compute()
        ref_v = eager_out.FatJet.systematics.f4f[v].mass_morphed
        np.testing.assert_allclose(
            ak.to_numpy(ak.flatten(got)), ak.to_numpy(ak.flatten(ref_v)), rtol=1e-12
        )
    # the same one task per partition computes the band: no second morph layer
    layers = [k for k in dask_out.dask.layers if k.startswith("f4f-morph")]
    assert len(layers) == 1


def test_variations_necessary_columns_are_the_inputs_and_condition(
    nano_path, ensemble_model, conditional_ensemble
):
    inputs = {"nFatJet", "FatJet_mass", "FatJet_pt"}
    out = mass_pt_transform(ensemble_model, variations=True)(events_of(nano_path, "dask"))
    fj = out.FatJet
    up, down = fj.systematics.f4f.up, fj.systematics.f4f.down
    for arr in (fj.mass_morphed, fj.pt_morphed_up, fj.mass_morphed_down, up.mass_morphed):
        assert necessary(arr) == inputs
    assert necessary(down.pt_morphed) == inputs
    # an unrelated field needs what it needed with the plain transform: itself and the inputs
    plain = mass_pt_transform(ensemble_model)(events_of(nano_path, "dask"))
    assert necessary(fj.eta) == necessary(plain.FatJet.eta) == inputs | {"FatJet_eta"}
    assert necessary(up.eta) == inputs | {"FatJet_eta"}
    assert necessary(up.delta_r(fj)) == inputs | {"FatJet_eta", "FatJet_phi"}
    # conditional: FatJet.msoftdrop (one field: UpDownSystematic) and tau21 (a callable input:
    # on the events record)
    cond = {"FatJet_eta", "FatJet_phi"}  # with mass, pt: the mjj condition
    expected = inputs | cond | {"FatJet_msoftdrop", "FatJet_tau1", "FatJet_tau2"}
    out = conditional_transform(conditional_ensemble, variations=True)(events_of(nano_path, "dask"))
    for arr in (
        out.FatJet.msoftdrop_morphed_up,
        out.FatJet.systematics.f4f.up.msoftdrop_morphed,
        out.tau21_morphed_down,
        out.systematics.f4f.down.tau21_morphed,
        out.systematics.f4f.up.FatJet.msoftdrop_morphed,
    ):
        assert necessary(arr) == expected
    assert necessary(out.run) == expected | {"run"}


def test_conditional_variations_on_the_collection_and_the_events(nano_path, conditional_ensemble):
    t = conditional_transform(conditional_ensemble, variations=True)
    ev = events_of(nano_path, "virtual")
    out = t(ev)
    assert out.FatJet.behavior[("__typestr__", "f4fSystematics")] == "UpDownSystematic"
    counts = ak.to_numpy(ak.num(ev.FatJet))
    mjj = np.repeat(ak.to_numpy(dijet_mass(ev)), counts)
    x = np.stack(
        [ak.to_numpy(ak.flatten(ev.FatJet.msoftdrop)), ak.to_numpy(ak.flatten(tau21(ev)))], 1
    )
    x = x.astype(np.float64)
    good = np.isfinite(mjj)
    assert good.any()
    assert (~good).any()
    ref = conditional_ensemble.variations(x[good], condition=mjj[good])
    for v in ("up", "down"):
        got = np.stack(
            [
                ak.to_numpy(ak.flatten(out.FatJet.systematics.f4f[v].msoftdrop_morphed)),
                ak.to_numpy(ak.flatten(out.systematics.f4f[v].tau21_morphed)),
            ],
            1,
        )
        np.testing.assert_allclose(got[good], ref[v], rtol=1e-12, atol=0)
        assert np.isnan(got[~good]).all()
        assert type(out.systematics.f4f[v]).__name__ == "NanoEventsArray"
        np.testing.assert_array_equal(
            ak.to_numpy(ak.flatten(out[f"tau21_morphed_{v}"])),
            ak.to_numpy(ak.flatten(out.systematics.f4f[v].tau21_morphed)),
        )
    # the events' variations see the FatJets with their outputs (collections written first)
    assert "msoftdrop_morphed_up" in out.systematics.f4f.up.FatJet.fields


def test_a_second_systematic_needs_another_name(nano_path, ensemble_model, conditional_ensemble):
    ev = events_of(nano_path, "eager")
    first = mass_pt_transform(ensemble_model, variations=True)(ev)
    again = MorphTransform(
        conditional_ensemble,
        inputs={"msoftdrop": "FatJet.msoftdrop", "tau21": "FatJet.tau1"},
        condition=dijet_mass,
        variations=True,
    )
    with pytest.raises(
        ValueError, match=r"FatJet already has a systematic named 'f4f'.*systematic="
    ):
        again(first)
    dask_first = mass_pt_transform(ensemble_model, variations=True)(events_of(nano_path, "dask"))
    with pytest.raises(ValueError, match="FatJet already has a systematic"):  # building the graph
        mass_pt_transform(ensemble_model, variations=True, suffix="_b")(dask_first)
    other = MorphTransform(
        conditional_ensemble,
        inputs={"msoftdrop": "FatJet.msoftdrop", "tau21": "FatJet.tau1"},
        condition=dijet_mass,
        variations=True,
        systematic="second",
    )
    both = other(first)
    assert set(ak.fields(both.FatJet.systematics)) == {"f4f", "second"}
    assert ak.all(both.FatJet.systematics.f4f.up.mass_morphed == first.FatJet.mass_morphed_up)
    np.testing.assert_array_equal(
        ak.to_numpy(ak.flatten(both.FatJet.systematics.second.down.tau1_morphed)),
        ak.to_numpy(ak.flatten(both.FatJet.tau1_morphed_down)),
    )


def test_variations_on_plain_records_add_columns_only(ensemble_model):
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, 50)
    n = int(counts.sum())
    jets = ak.zip(
        {"mass": rng.gamma(2.0, 30.0, n) + 10, "pt": 200 + rng.exponential(150.0, n)},
        depth_limit=1,
    )
    events = ak.zip({"FatJet": ak.unflatten(jets, counts)}, depth_limit=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        out = mass_pt_transform(ensemble_model, variations=True)(events)
    assert out.FatJet.fields == [
        "mass",
        "pt",
        "mass_morphed",
        "mass_morphed_up",
        "mass_morphed_down",
        "pt_morphed",
        "pt_morphed_up",
        "pt_morphed_down",
    ]
    x = np.stack([ak.to_numpy(jets.mass), ak.to_numpy(jets.pt)], 1)
    ref = ensemble_model.variations(x)
    np.testing.assert_allclose(
        flat_outputs(out, ["mass_morphed_up", "pt_morphed_up"]), ref["up"], rtol=1e-12
    )
    assert out.fields == ["FatJet"]


def test_replace_writes_the_morph_into_the_input_fields(nano_path, mass_pt_model):
    t = mass_pt_transform(mass_pt_model, replace=True)
    beside = mass_pt_transform(mass_pt_model)
    for mode in ("eager", "virtual"):
        ev = events_of(nano_path, mode)
        out, ref = t(ev), beside(ev)
        fj = out.FatJet
        assert type(fj).__name__ == "FatJetArray"
        assert "mass_morphed" not in fj.fields
        for f in MASS_PT:
            np.testing.assert_array_equal(
                ak.to_numpy(ak.flatten(fj[f])), ak.to_numpy(ak.flatten(ref.FatJet[f"{f}_morphed"]))
            )
            assert ak.all(fj[f"{f}_unmorphed"] == ev.FatJet[f])
        assert str(ak.type(fj.mass_unmorphed)) == str(ak.type(ev.FatJet.mass))  # float32 kept
        # behaviours see the morphed values: the dijet mass of the two leading FatJets
        two = ak.pad_none(fj, 2)
        mjj = ak.to_numpy(ak.fill_none((two[:, 0] + two[:, 1]).mass, np.nan))
        r = ak.pad_none(ref.FatJet, 2)
        lead = vectors(r.pt_morphed[:, 0], r.eta[:, 0], r.phi[:, 0], r.mass_morphed[:, 0])
        sub = vectors(r.pt_morphed[:, 1], r.eta[:, 1], r.phi[:, 1], r.mass_morphed[:, 1])
        expected = ak.to_numpy(ak.fill_none((lead + sub).mass, np.nan))
        # eta and phi are float32: the vector sums agree to float32 rounding
        np.testing.assert_allclose(mjj, expected, rtol=1e-5, equal_nan=True)
        original = ak.to_numpy(dijet_mass(ev))
        finite = np.isfinite(original)
        assert finite.any()
        assert not np.allclose(mjj[finite], original[finite], rtol=1e-3)
        assert ak.all(fj.delta_r(fj) == 0)
        assert ak.all(out.FatJet.subjets.pt == ev.FatJet.subjets.pt)  # cross-references
        with pytest.raises(ValueError, match="FatJet already has a field 'mass_unmorphed'"):
            t(out)
    out = t(events_of(nano_path, "dask", steps_per_file=2))
    inputs = {"nFatJet", "FatJet_mass", "FatJet_pt"}
    assert necessary(out.FatJet.mass) == necessary(out.FatJet.pt) == inputs
    assert necessary(out.FatJet.mass_unmorphed) == inputs
    eager = t(events_of(nano_path, "eager"))
    fields = ["FatJet.mass", "FatJet.pt", "FatJet.mass_unmorphed"]
    got = out[["event", "FatJet"]].compute()
    assert_same_rows(rows(got, fields), rows(eager, fields), exact=False)
    with pytest.raises(ValueError, match="FatJet already has a field 'mass_unmorphed'"):
        t(out)


def test_replace_with_variations_varies_the_input_fields(nano_path, ensemble_model):
    t = mass_pt_transform(ensemble_model, replace=True, variations=True)
    for mode in ("eager", "dask"):
        out = t(events_of(nano_path, mode))
        fj = out.FatJet
        up = fj.systematics.f4f.up
        if mode == "dask":
            inputs = {"nFatJet", "FatJet_mass", "FatJet_pt"}
            assert necessary(up.mass) == necessary(fj.mass_morphed_up) == inputs
            assert necessary(up.delta_r(fj)) == inputs | {"FatJet_eta", "FatJet_phi"}
            fj = fj.compute()
            up = fj.systematics.f4f.up
        assert fj.behavior[("__typestr__", "f4fSystematics")] == "UpDownMultiSystematic"
        assert ak.all(up.mass == fj.mass_morphed_up)
        assert ak.all(up.pt == fj.pt_morphed_up)
        assert ak.all(fj.systematics.f4f.down.mass == fj.mass_morphed_down)
        assert ak.all(up.mass_unmorphed == fj.mass_unmorphed)
        # four-vectors of the variation use the varied pt and mass
        two = ak.pad_none(up, 2)
        mjj = ak.to_numpy(ak.fill_none((two[:, 0] + two[:, 1]).mass, np.nan))
        f = ak.pad_none(fj, 2)
        lead = vectors(f.pt_morphed_up[:, 0], f.eta[:, 0], f.phi[:, 0], f.mass_morphed_up[:, 0])
        sub = vectors(f.pt_morphed_up[:, 1], f.eta[:, 1], f.phi[:, 1], f.mass_morphed_up[:, 1])
        expected = ak.to_numpy(ak.fill_none((lead + sub).mass, np.nan))
        # eta and phi are float32: the vector sums agree to float32 rounding
        np.testing.assert_allclose(mjj, expected, rtol=1e-5, equal_nan=True)
        nominal = ak.to_numpy(ak.fill_none((f[:, 0] + f[:, 1]).mass, np.nan))
        finite = np.isfinite(nominal)
        assert (mjj[finite] > nominal[finite]).all()  # pt and mass up: the pair mass up


def test_variations_pickle_tokenize_and_distributed(nano_path, ensemble_model, client):
    t = mass_pt_transform(ensemble_model, variations=True)
    t2 = pickle.loads(pickle.dumps(t))
    transform_module.clear_model_cache()
    assert t2.morpher.ensemble_size == 3  # the members travel in the payload
    fields = ["FatJet.mass_morphed_up", "FatJet.pt_morphed_down"]
    ev = events_of(nano_path, "eager")
    reference = rows(t(ev), fields)
    assert_same_rows(rows(t2(ev), fields), reference)
    from dask.base import tokenize

    fn = transform_module._MorphPartition
    tokens = {
        tokenize(fn(x, (1, 1), 2, ()))
        for x in (
            t,
            mass_pt_transform(ensemble_model),
            mass_pt_transform(ensemble_model, variations=True, systematic="other"),
            mass_pt_transform(ensemble_model, variations=True, replace=True),
        )
    }
    assert len(tokens) == 4
    assert tokenize(fn(t, (1, 1), 2, ())) == tokenize(fn(t2, (1, 1), 2, ()))
    out = t(events_of(nano_path, "dask", steps_per_file=3))
    got = client.compute(out[["event", "FatJet"]], sync=True)  # another process
    assert_same_rows(rows(got, fields), reference, exact=False)
    up = client.compute(out.FatJet.systematics.f4f.up.mass_morphed, sync=True)
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(up)),
        np.concatenate([v[:, 0] for v in reference.values()]),
        rtol=1e-12,
    )


def test_variations_on_empty_chunks(nano_path, ensemble_model):
    t = mass_pt_transform(ensemble_model, variations=True)
    ev = events_of(nano_path, "eager")
    for chunk in (ev[:0], ev[ak.num(ev.FatJet) == 0]):
        out = t(chunk)
        for name in ("mass_morphed_up", "pt_morphed_down"):
            assert str(ak.type(out.FatJet[name])) == f"{len(chunk)} * var * float64"
        assert ak.sum(ak.num(out.FatJet.systematics.f4f.up.mass_morphed)) == 0
