"""Applying, saving and loading a Morpher: types, batching, determinism, errors."""

import json
import pickle

import awkward as ak
import numpy as np
import pytest
import torch

import coffea_f4f as f4f
from coffea_f4f.morpher import FORMAT_VERSION


def held_out(n=1001, seed=5):
    return np.random.default_rng(seed).normal(size=(n, 2))


def test_morph_array_is_deterministic_and_moves_points(tiny_morpher):
    x = held_out()
    y = tiny_morpher.morph(x)
    assert y.shape == x.shape
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, tiny_morpher.morph(x))
    assert np.abs(y - x).mean() > 0.1


@pytest.mark.parametrize("batch_size", [1, 7, 100, 1000, 5000])
def test_batching_does_not_change_results(tiny_morpher, batch_size):
    x = held_out()
    ref = tiny_morpher.morph(x)
    np.testing.assert_allclose(
        tiny_morpher.morph(x, batch_size=batch_size), ref, rtol=0, atol=1e-12
    )
    # and each event alone gives the same as in a batch
    np.testing.assert_allclose(tiny_morpher.morph(x[500:501]), ref[500:501], rtol=0, atol=1e-12)


def test_empty_inputs_return_empty_of_the_right_type(tiny_morpher):
    out = tiny_morpher.morph(np.zeros((0, 2)))
    assert out.shape == (0, 2)
    rec = tiny_morpher.morph(ak.Array({"x": np.zeros(0), "y": np.zeros(0), "w": np.zeros(0)}))
    assert isinstance(rec, ak.Array)
    assert len(rec) == 0
    assert set(rec.fields) == {"x", "y", "w"}


def test_inverse_undoes_morph(tiny_morpher):
    x = held_out()
    np.testing.assert_allclose(tiny_morpher.inverse(tiny_morpher.morph(x)), x, atol=1e-9)


def test_records_and_mappings_keep_other_fields(tiny_morpher):
    x = held_out(50)
    ref = tiny_morpher.morph(x)
    w = np.arange(50.0)
    rec = ak.Array({"w": w, "y": x[:, 1], "x": x[:, 0]})
    out = tiny_morpher.morph(rec)
    np.testing.assert_allclose(ak.to_numpy(out.x), ref[:, 0], atol=1e-12)
    np.testing.assert_allclose(ak.to_numpy(out.y), ref[:, 1], atol=1e-12)
    np.testing.assert_array_equal(ak.to_numpy(out.w), w)
    mp = tiny_morpher.morph({"x": x[:, 0], "y": x[:, 1], "w": w})
    assert set(mp) == {"x", "y", "w"}
    np.testing.assert_allclose(mp["y"], ref[:, 1], atol=1e-12)


def test_jagged_records_morph_per_object(tiny_morpher):
    x = held_out(6)
    ref = tiny_morpher.morph(x)
    jets = ak.unflatten(ak.Array({"x": x[:, 0], "y": x[:, 1]}), [2, 0, 3, 1])
    with pytest.raises(f4f.MissingColumnError, match=r"Did you mean 'Jet\.x'"):
        tiny_morpher.morph(ak.Array({"Jet": jets}))  # features are "x", "y": pass the collection
    out = tiny_morpher.morph(jets, batch_size=2)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(out.x)), ref[:, 0], atol=1e-12)
    assert ak.to_list(ak.num(out)) == [2, 0, 3, 1]


def test_far_outside_the_training_range_is_identity_and_finite(tiny_morpher):
    z = np.array([[60.0, -60.0], [80.0, 90.0]])
    x = tiny_morpher.scaler.inverse(z)
    np.testing.assert_allclose(tiny_morpher.morph(x), x, rtol=1e-12)
    partly = tiny_morpher.scaler.inverse(np.array([[60.0, 0.3], [0.2, -70.0]]))
    assert np.isfinite(tiny_morpher.morph(partly)).all()


def test_bad_inputs_raise_clear_errors(tiny_morpher):
    with pytest.raises(ValueError, match=r"'y': 1 of 3"):
        tiny_morpher.morph(np.array([[0.0, 0.0], [1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        tiny_morpher.morph(np.zeros((4, 3)))
    with pytest.raises(f4f.MissingColumnError, match=r"'y' not found\. Did you mean 'yy'"):
        tiny_morpher.morph({"x": np.zeros(2), "yy": np.zeros(2)})
    with pytest.raises(ValueError, match="not conditional"):
        tiny_morpher.morph(held_out(3), condition=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_morpher.morph(held_out(3), batch_size=0)


def test_float32_precision_is_close(tiny_morpher):
    x = held_out()
    ref = tiny_morpher.morph(x)
    tiny_morpher.to(precision="float32")
    try:
        np.testing.assert_allclose(tiny_morpher.morph(x), ref, atol=1e-4)
    finally:
        tiny_morpher.to(precision="float64")
    with pytest.raises(ValueError, match="precision must be 'float32' or 'float64'"):
        tiny_morpher.to(precision="float16")


def test_save_load_is_bit_identical_and_never_unpickles(tiny_morpher, tmp_path, monkeypatch):
    x = held_out()
    ref = tiny_morpher.morph(x)
    path = tiny_morpher.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.safetensors"]
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["format_version"] == FORMAT_VERSION
    assert cfg["package_version"] == f4f.__version__
    assert cfg["features"] == ["x", "y"]

    def no_unpickling(*a, **k):
        raise AssertionError("loading must not unpickle")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded = f4f.load(path)
    np.testing.assert_array_equal(loaded.morph(x), ref)
    np.testing.assert_array_equal(loaded.inverse(ref), tiny_morpher.inverse(ref))
    assert loaded.features == ["x", "y"]
    assert loaded.condition is None
    # the densities come back too
    np.testing.assert_array_equal(
        loaded.target_density.log_prob(x), tiny_morpher.target_density.log_prob(x)
    )


def test_conditional_save_load(tiny_conditional_morpher, tmp_path):
    m = tiny_conditional_morpher
    x = held_out(200)
    c = np.linspace(0, 1, 200)
    ref = m.morph(x, condition=c)
    loaded = f4f.load(m.save(tmp_path / "cm"))
    assert loaded.condition == "c"
    np.testing.assert_array_equal(loaded.morph(x, condition=c), ref)
    np.testing.assert_array_equal(loaded.condition_scaler.params, m.condition_scaler.params)


def test_load_rejects_what_is_not_a_model(tmp_path, tiny_morpher):
    with pytest.raises(FileNotFoundError):
        f4f.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a coffea-f4f model"):
        f4f.load(tmp_path / "empty")
    path = tiny_morpher.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg["format_version"] = FORMAT_VERSION + 1
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format version"):
        f4f.load(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        f4f.load(path)
    path = tiny_morpher.save(tmp_path / "m2")
    (path / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="safetensors"):
        f4f.load(path)


def test_conditional_morph_condition_sources(tiny_conditional_morpher):
    m = tiny_conditional_morpher
    x = held_out(30)
    c = np.full(30, 0.7)
    ref = m.morph(x, condition=c)
    np.testing.assert_array_equal(m.morph(x, condition=0.7), ref)
    rec = {"x": x[:, 0], "y": x[:, 1], "c": c}
    np.testing.assert_allclose(m.morph(rec)["x"], ref[:, 0], atol=1e-12)
    assert not np.allclose(m.morph(x, condition=0.0), ref)  # the condition matters
    with pytest.raises(ValueError, match="condition"):
        m.morph(x)  # plain array: no condition field to read
    with pytest.raises(ValueError, match="target_condition"):
        m.morph(x, condition=c, target_condition=c)
    with pytest.raises(ValueError, match="3 values for 30"):
        m.morph(x, condition=np.ones(3))
    with pytest.raises(ValueError, match="multi-dimensional"):
        m.morph(x, condition=np.ones((30, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        m.morph(x, condition=np.full(30, np.nan))


def test_jagged_records_with_event_level_condition(tiny_conditional_morpher):
    m = tiny_conditional_morpher
    x = held_out(6)
    per_event = np.array([0.1, 0.5, 0.9, 0.3])
    counts = [2, 0, 3, 1]
    per_object = np.repeat(per_event, counts)
    ref = m.morph(x, condition=per_object)
    jets = ak.unflatten(ak.Array({"x": x[:, 0], "y": x[:, 1]}), counts)
    # a flat array is one value per event, a jagged one one value per object
    for cond in (per_event, ak.unflatten(per_object, counts)):
        out = m.morph(jets, condition=cond)
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(out.y)), ref[:, 1], atol=1e-12)
    with pytest.raises(ValueError, match="6 values for 4 events"):
        m.morph(jets, condition=per_object)  # per-object values must come jagged


def test_applying_does_not_change_the_saved_weights(tiny_morpher, tmp_path):
    before = {k: v.clone() for k, v in tiny_morpher.state_dict().items()}
    tiny_morpher.morph(held_out(10))
    after = tiny_morpher.state_dict()
    assert all(
        after[k].dtype == before[k].dtype and torch.equal(after[k], before[k]) for k in before
    )
