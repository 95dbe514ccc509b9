"""Bootstrap ensembles (``fit_morpher(..., ensemble=K)``) and ``Morpher.variations``."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import QUICK, TINY, gaussian_pair

import coffea_f4f as f4f
from coffea_f4f.train.ensemble import bootstrap, check_ensemble, member_config, member_seed


def _data(n=2000, seed=0):
    a, b = gaussian_pair(n, seed)
    return {"x": a[:, 0], "y": a[:, 1]}, {"x": b[:, 0], "y": b[:, 1]}


def _fit(source, target, **kwargs):
    """A tiny two-feature ensemble fit (two members, in this process) with ``kwargs`` on top."""
    options = {
        "features": ["x", "y"],
        "flow": TINY,
        "density": TINY,
        "train": QUICK,
        "ensemble": 2,
        "ensemble_jobs": 1,
        **kwargs,
    }
    return f4f.fit_morpher(source, target, **options)


# ----------------------------------------------------------------------------- replicas
def test_bootstrap_is_poisson_on_top_of_the_weights():
    w = np.linspace(-0.5, 2.0, 20000)
    rows, rw = bootstrap(len(w), w, seed=3, k=1, which=0)
    again = bootstrap(len(w), w, seed=3, k=1, which=0)
    np.testing.assert_array_equal(rows, again[0])
    counts = np.rint(rw / w[rows]).astype(int)
    np.testing.assert_allclose(rw, counts * w[rows], rtol=1e-12)
    assert counts.min() >= 1  # rows with count 0 are dropped
    # Poisson(1): P(0) = e^-1, mean 1, var 1
    assert abs(len(rows) / len(w) - (1 - np.exp(-1))) < 0.01
    full = np.zeros(len(w))
    full[rows] = counts
    assert abs(full.mean() - 1) < 0.02
    assert abs(full.var() - 1) < 0.04


def test_bootstrap_streams_differ_per_member_and_dataset():
    a = bootstrap(1000, None, 0, 1, 0)[0]
    assert not np.array_equal(a, bootstrap(1000, None, 0, 2, 0)[0])
    assert not np.array_equal(a, bootstrap(1000, None, 0, 1, 1)[0])
    assert not np.array_equal(a, bootstrap(1000, None, 1, 1, 0)[0])
    unweighted = bootstrap(1000, None, 0, 1, 0)[1]
    assert np.all(unweighted == np.rint(unweighted))


def test_member_seeds_are_distinct_and_checkpoints_separate():
    seeds = {member_seed(0, k) for k in range(1, 50)} | {member_seed(1, k) for k in range(1, 50)}
    assert len(seeds) == 98
    assert 0 not in seeds
    cfg = member_config(QUICK.replace(checkpoint="/tmp/ck"), 2, threads=1)
    assert cfg.checkpoint == "/tmp/ck.member2"
    assert cfg.num_threads == 1
    assert cfg.seed == member_seed(QUICK.seed, 2)
    assert not cfg.progress
    assert member_config(QUICK.replace(resume="/tmp/r"), 3, threads=None).resume == "/tmp/r.member3"


@pytest.mark.parametrize(
    ("ensemble", "jobs"), [(-1, None), (True, None), (1.5, None), ("3", None), (2, 0), (2, 1.0)]
)
def test_bad_ensemble_arguments_raise(ensemble, jobs):
    with pytest.raises(ValueError, match="ensemble"):
        check_ensemble(ensemble, jobs)
    src, tgt = _data(200)
    with pytest.raises(ValueError, match="ensemble"):
        f4f.fit_morpher(
            src, tgt, features=["x", "y"], train=QUICK, ensemble=ensemble, ensemble_jobs=jobs
        )


# ----------------------------------------------------------------------------- the ensemble
def test_members_are_distinct_fits(tiny_ensemble, tiny_morpher):
    m = tiny_ensemble
    assert m.ensemble_size == 3
    assert len(m.history["members"]) == 3
    assert m.info["ensemble"]["seeds"] == [member_seed(QUICK.seed, k) for k in (1, 2, 3)]
    # the nominal is the fit without an ensemble, bit for bit (same seeds, same data)
    x = np.random.default_rng(5).normal(size=(300, 2))
    np.testing.assert_array_equal(m.morph(x), tiny_morpher.morph(x))
    outs = m.variations(x, members=True)
    assert len(outs) == 3
    nominal = m.morph(x)
    for i, y in enumerate(outs):
        assert np.abs(y - nominal).mean() > 1e-3  # its own replica and seed
        for z in outs[i + 1 :]:
            assert np.abs(y - z).mean() > 1e-3
    assert "ensemble=3" in repr(m)


def test_band_is_nominal_plus_minus_member_std(tiny_ensemble):
    m = tiny_ensemble
    x = np.random.default_rng(6).normal(size=(500, 2))
    band = m.variations(x, with_nominal=True)
    np.testing.assert_array_equal(band["nominal"], m.morph(x))
    zs = np.stack([m.target_scaler.forward(y) for y in m.variations(x, members=True)])
    sigma = zs.std(axis=0, ddof=1)
    z0 = m.target_scaler.forward(band["nominal"])
    np.testing.assert_allclose(m.target_scaler.forward(band["up"]), z0 + sigma, rtol=1e-10)
    np.testing.assert_allclose(m.target_scaler.forward(band["down"]), z0 - sigma, rtol=1e-10)
    assert np.all(band["up"] > band["down"])
    plain = m.variations(x)
    assert set(plain) == {"up", "down"}
    np.testing.assert_array_equal(plain["up"], band["up"])


def test_variations_are_chunk_invariant(tiny_ensemble):
    x = np.random.default_rng(7).normal(size=(257, 2))
    whole = tiny_ensemble.variations(x)
    parts = tiny_ensemble.variations(x, batch_size=50)
    for key in ("up", "down"):
        np.testing.assert_allclose(parts[key], whole[key], rtol=1e-12, atol=1e-12)


def test_variations_keep_the_input_type(tiny_ensemble):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(40, 2))
    ref = tiny_ensemble.variations(x)
    records = ak.zip({"x": x[:, 0], "y": x[:, 1], "w": np.arange(40.0)})
    out = tiny_ensemble.variations(records)
    assert isinstance(out["up"], ak.Array)
    np.testing.assert_array_equal(ak.to_numpy(out["up"].x), ref["up"][:, 0])
    np.testing.assert_array_equal(ak.to_numpy(out["down"].w), np.arange(40.0))
    frame = pd.DataFrame({"y": x[:, 1], "x": x[:, 0]})  # columns read by name
    fout = tiny_ensemble.variations(frame)
    assert isinstance(fout["up"], pd.DataFrame)
    np.testing.assert_array_equal(fout["up"]["x"].to_numpy(), ref["up"][:, 0])
    members = tiny_ensemble.variations({"x": x[:, 0], "y": x[:, 1]}, members=True)
    assert all(isinstance(y, dict) for y in members)
    jagged = ak.unflatten(records, [10, 0, 30])
    jout = tiny_ensemble.variations(jagged)
    assert ak.num(jout["up"]).tolist() == [10, 0, 30]
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(jout["up"].y)), ref["up"][:, 1], rtol=1e-12)
    empty = tiny_ensemble.variations(np.zeros((0, 2)))
    assert empty["up"].shape == (0, 2)


def test_no_band_without_an_ensemble(tiny_morpher):
    with pytest.raises(ValueError, match="ensemble=K"):
        tiny_morpher.variations(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="ensemble=K"):
        tiny_morpher.variations(np.zeros((3, 2)), members=True)


def test_one_member_gives_members_but_no_band():
    src, tgt = _data(400)
    m = _fit(src, tgt, ensemble=1, variant="base_transfer")
    assert len(m.variations(np.zeros((3, 2)), members=True)) == 1
    with pytest.raises(ValueError, match="at least 2"):
        m.variations(np.zeros((3, 2)))


# ----------------------------------------------------------------------------- persistence
def test_save_load_and_payload_keep_the_members(tiny_ensemble, tmp_path):
    from safetensors.torch import load_file

    x = np.random.default_rng(9).normal(size=(100, 2))
    ref = tiny_ensemble.variations(x, with_nominal=True)
    tiny_ensemble.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["config.json", "weights.safetensors"]  # one weights file, no pickle
    names = load_file(str(tmp_path / "m" / "weights.safetensors"))
    assert any(k.startswith("members.3.") for k in names)
    assert not any(k.startswith("members.4.") for k in names)
    loaded = f4f.load(tmp_path / "m")
    assert loaded.ensemble_size == 3
    out = loaded.variations(x, with_nominal=True)
    for key in ref:
        np.testing.assert_array_equal(out[key], ref[key])
    worker = f4f.Morpher.from_payload(*tiny_ensemble.payload())
    out = worker.variations(x, with_nominal=True)
    for key in ref:
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-12)
    # a config claiming fewer members than the weights hold is refused
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["ensemble_size"] = 2
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="beyond ensemble_size"):
        f4f.load(tmp_path / "m")
    cfg["ensemble_size"] = 4
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="ensemble member 4"):
        f4f.load(tmp_path / "m")


def test_float32_applies_every_member(tiny_ensemble):
    x = np.random.default_rng(10).normal(size=(50, 2))
    ref = tiny_ensemble.variations(x)
    tiny_ensemble.to(precision="float32")
    try:
        out = tiny_ensemble.variations(x)
    finally:
        tiny_ensemble.to(precision="float64")
    np.testing.assert_allclose(out["up"], ref["up"], atol=1e-4)
    assert tiny_ensemble.members[0].state_dict()  # saved weights untouched
    assert next(tiny_ensemble.members[0].parameters()).dtype == torch.float32


# ----------------------------------------------------------------------------- kinds
def test_parallel_members_equal_sequential():
    src, tgt = _data(600)
    kw = {"features": ["x", "y"], "flow": TINY, "density": TINY, "train": QUICK, "ensemble": 2}
    one = f4f.fit_morpher(src, tgt, ensemble_jobs=1, **kw)
    two = f4f.fit_morpher(src, tgt, ensemble_jobs=2, **kw)
    x = np.random.default_rng(11).normal(size=(100, 2))
    for a, b in zip(one.variations(x, members=True), two.variations(x, members=True), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_zero_inflated_and_discrete_stay_valid_in_every_variation():
    rng = np.random.default_rng(12)
    n = 2000

    def sample(scale, p0):
        iso = np.where(rng.uniform(size=n) < p0, 0.0, rng.exponential(scale, n))
        hits = rng.poisson(3 * scale, n).astype(float)
        return {"x": rng.normal(size=n), "iso": iso, "hits": hits}

    m = _fit(
        sample(1.0, 0.4),
        sample(1.5, 0.3),
        features=["x", "iso", "hits"],
        scaling={"iso": "zero_inflated", "hits": "discrete"},
    )
    x = sample(1.0, 0.4)
    outs = [*m.variations(x).values(), *m.variations(x, members=True)]
    for y in outs:
        assert np.all(y["iso"] >= 0)
        assert np.any(y["iso"] == 0)
        np.testing.assert_array_equal(y["hits"], np.rint(y["hits"]))


def test_conditional_ensemble_uses_the_condition():
    rng = np.random.default_rng(13)
    n = 1500
    c = rng.uniform(0, 1, n)
    src = {"x": rng.normal(size=n), "y": rng.normal(size=n), "c": c}
    tgt = {"x": rng.normal(size=n) + c, "y": rng.normal(size=n), "c": c}
    m = _fit(src, tgt, condition="c")
    x = np.zeros((4, 2))
    lo = m.variations(x, condition=np.zeros(4), with_nominal=True)
    hi = m.variations(x, condition=np.ones(4), with_nominal=True)
    np.testing.assert_array_equal(lo["nominal"], m.morph(x, condition=np.zeros(4)))
    assert not np.allclose(lo["up"], hi["up"])
    with pytest.raises(ValueError, match="condition"):
        m.variations(x)


def test_condition_morpher_ensemble_keeps_a_to_a_exact():
    rng = np.random.default_rng(14)
    n = 1500
    c = rng.uniform(0, 1, n)
    data = {"x": rng.normal(size=n) + c, "y": rng.normal(size=n), "c": c}
    m = f4f.fit_condition_morpher(
        data,
        features=["x", "y"],
        condition="c",
        flow=TINY,
        density=TINY,
        train=QUICK,
        ensemble=2,
        ensemble_jobs=1,
    )
    assert m.ensemble_size == 2
    x = rng.normal(size=(6, 2))
    a = np.array([0.2, 0.2, 0.2, 0.8, 0.8, 0.8])
    b = np.array([0.2, 0.8, 0.5, 0.8, 0.2, 0.5])
    band = m.variations(x, condition=a, target_condition=b, with_nominal=True)
    np.testing.assert_array_equal(band["nominal"], m.morph(x, condition=a, target_condition=b))
    same = a == b
    for key in ("up", "down"):
        np.testing.assert_array_equal(band[key][same], x[same])
        assert np.all(band[key][~same] != band["nominal"][~same])


def test_member_checkpoints_are_their_own(tmp_path):
    src, tgt = _data(400)
    ck = str(tmp_path / "ck")
    _fit(src, tgt, train=QUICK.replace(checkpoint=ck))
    names = sorted(p.name for p in tmp_path.iterdir())
    for stage in ("source_density", "target_density", "morph"):
        assert f"ck.{stage}" in names
        assert f"ck.member1.{stage}" in names
        assert f"ck.member2.{stage}" in names


# ----------------------------------------------------------------------------- resources
def test_worker_count_and_shared_data(monkeypatch):
    from coffea_f4f.train import ensemble

    monkeypatch.setattr(ensemble.os, "sched_getaffinity", lambda _: set(range(4)), raising=False)
    assert ensemble.ensemble_jobs(None, 5, "cpu") == 3  # one core stays with the nominal
    assert ensemble.ensemble_jobs(None, 2, "cpu") == 2
    assert ensemble.ensemble_jobs(1, 5, "cpu") == 0  # one after the other, here
    assert ensemble.ensemble_jobs(8, 5, "cpu") == 5
    assert ensemble.ensemble_jobs(None, 0, "cpu") == 0
    small = ensemble.WORKER_MIN_WORK - 1  # a fit of seconds: starting workers costs more
    assert ensemble.ensemble_jobs(None, 5, "cpu", work=small) == 0
    assert ensemble.ensemble_jobs(2, 5, "cpu", work=small) == 2  # asked for: given
    data = ((np.arange(6.0).reshape(3, 2), None, np.ones(3)), (np.zeros((2, 2)), None, None))
    with ensemble.shared_data(data, 0) as same:
        assert same is data
    with ensemble.shared_data(data, 2) as stored:
        back = ensemble.unspill(stored)
        np.testing.assert_array_equal(back[0][0], data[0][0])
        assert back[0][1] is None
        np.testing.assert_array_equal(back[1][0], data[1][0])
        path = stored[0][0].path
        assert isinstance(back[0][0], np.memmap)
    import os

    assert not os.path.exists(path)  # removed with the fit


def test_a_failing_member_is_named(monkeypatch):
    from coffea_f4f.train import morph

    real = morph._fit_arrays

    def fails_for_members(*args, train, **kwargs):
        if train.seed != QUICK.seed:
            raise FloatingPointError("the training loss became nan")
        return real(*args, train=train, **kwargs)

    monkeypatch.setattr(morph, "_fit_arrays", fails_for_members)
    src, tgt = _data(300)
    with pytest.raises(f4f.train.ensemble.MemberError, match=r"ensemble member 1 \(training seed"):
        _fit(src, tgt, variant="base_transfer")


def test_density_seeds_are_recorded(tiny_ensemble):
    info = tiny_ensemble.info["ensemble"]
    assert info["density_seeds"] == info["seeds"]  # density_train defaults to train
    src, tgt = _data(300)
    m = _fit(src, tgt, variant="base_transfer", density_train=QUICK.replace(seed=7))
    assert m.info["ensemble"]["density_seeds"] == [member_seed(7, k) for k in (1, 2)]


def test_the_nominal_only_payload_leaves_the_members_out(tiny_ensemble):
    full = tiny_ensemble.payload()
    nominal = tiny_ensemble.payload(members=False)
    assert len(nominal[1]) * 3 < len(full[1])
    worker = f4f.Morpher.from_payload(*nominal)
    assert worker.ensemble_size == 0
    x = np.random.default_rng(15).normal(size=(20, 2))
    np.testing.assert_allclose(worker.morph(x), tiny_ensemble.morph(x), rtol=1e-12)
    plain = f4f.MorphTransform(tiny_ensemble, inputs={"x": "x", "y": "y"})
    banded = f4f.MorphTransform(tiny_ensemble, inputs={"x": "x", "y": "y"}, variations=True)
    assert len(plain._weights) * 3 < len(banded._weights)
    assert plain.model_hash != banded.model_hash
