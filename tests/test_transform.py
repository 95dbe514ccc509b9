"""Tests for coffea_f4f.transform.MorphTransform on NanoEvents (eager, virtual, dask, Runner).

The default input is a generated NanoAOD-schema file (tests/nanoaod_fixture.py). The real
NanoAOD files in ../shared/data run the same core tests on their ``Jet`` collection when present
(they hold few or no FatJets) and are skipped otherwise.

Models are tiny flows trained for two epochs on synthetic rows (a few seconds, module scope):

- ``mass_pt``: features ``["mass", "pt"]`` with log scaling (so ``mass <= 0`` is outside the
  model's domain);
- ``conditional``: features ``["msoftdrop", "tau21"]`` conditioned on ``mjj``, computed by
  :func:`dijet_mass` from the two leading FatJets. Events with fewer than two FatJets get
  ``mjj = NaN``, so (NaN policy) their FatJets' morphed values are NaN.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch

from coffea_f4f import transform as transform_module
from coffea_f4f.columns import MissingColumnError
from coffea_f4f.config import FlowConfig, TrainConfig
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
def conditional_model():
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
