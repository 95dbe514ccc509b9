"""Several conditions (a condition vector per row): training, applying, saving, coffea."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import torch
from conftest import QUICK, TINY

import coffea_f4f as f4f
from coffea_f4f.metrics import c2st_auc

FEATURES = ["x", "y"]


def pair(n: int, seed: int) -> tuple[dict, dict]:
    """Source N(0, 1); target shifted by a + 0.5 b along x and by -a along y."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 1, n), rng.uniform(-1, 1, n)
    src = rng.normal(size=(n, 2))
    tgt = rng.normal(size=(n, 2)) + np.stack([a + 0.5 * b, -a], axis=1)
    a2, b2 = rng.uniform(0, 1, n), rng.uniform(-1, 1, n)
    return (
        {"x": src[:, 0], "y": src[:, 1], "a": a, "b": b},
        {"x": tgt[:, 0], "y": tgt[:, 1], "a": a2, "b": b2},
    )


@pytest.fixture(scope="module")
def two_condition_morpher():
    torch.set_num_threads(1)
    src, tgt = pair(4000, 0)
    flow = f4f.FlowConfig(layers=2, hidden=24, blocks=1, bins=6)
    train = QUICK.replace(epochs=6, lr=3e-3)
    return f4f.fit_morpher(
        src,
        tgt,
        features=FEATURES,
        condition=["a", "b"],
        flow=flow,
        density=flow,
        train=train,
        condition_scaling={"b": "minmax"},
    )


def test_several_conditions_are_learned(two_condition_morpher):
    m = two_condition_morpher
    assert m.conditions == ["a", "b"]
    assert m.condition == ["a", "b"]
    assert m.condition_scaler.kinds == ["standard", "minmax"]
    assert set(m.condition_ranges) == {"a", "b"}
    src, tgt = pair(3000, 1)
    # morph each source event at the target event's conditions (same condition both sides)
    at = {**src, "a": tgt["a"], "b": tgt["b"]}
    out = m.morph(at)
    t = np.stack([tgt["x"], tgt["y"]], 1)
    before, sigma = c2st_auc(
        np.stack([src["x"], src["y"], tgt["a"], tgt["b"]], 1),
        np.stack([tgt["x"], tgt["y"], tgt["a"], tgt["b"]], 1),
    )
    after, _ = c2st_auc(
        np.stack([out["x"], out["y"], tgt["a"], tgt["b"]], 1),
        np.stack([*t.T, tgt["a"], tgt["b"]], 1),
    )
    assert before > 0.6  # the identity morph fails: the conditions matter
    assert after < before - 0.05, (before, after, sigma)


def test_condition_vector_as_fields_or_as_array(two_condition_morpher):
    m = two_condition_morpher
    src, _ = pair(500, 2)
    x = np.stack([src["x"], src["y"]], 1)
    c = np.stack([src["a"], src["b"]], 1)
    by_fields = m.morph(src)
    by_array = m.morph(x, condition=c)
    np.testing.assert_array_equal(np.stack([by_fields["x"], by_fields["y"]], 1), by_array)
    np.testing.assert_allclose(m.inverse(by_array, condition=c), x, rtol=1e-9, atol=1e-9)
    swapped = m.morph(x, condition=c[:, ::-1].copy())  # the order is the model's
    assert not np.allclose(swapped, by_array)
    with pytest.raises(ValueError, match=r"pass \(N, 2\) values"):
        m.morph(x, condition=c[:, 0])
    with pytest.raises(ValueError, match="scalar condition is ambiguous"):
        m.morph(x, condition=0.5)


def test_each_condition_has_its_own_range_and_policy(two_condition_morpher):
    m = two_condition_morpher
    x = np.zeros((3, 2))
    c = np.array([[0.5, 0.0], [0.5, 3.0], [2.0, 0.0]])  # b too high, then a too high
    clamped = m.morph(x, condition=c)
    _, hi_b = m.condition_ranges["b"]
    at_edge = m.morph(x[1:2], condition=[[0.5, hi_b]])[0]
    np.testing.assert_allclose(clamped[1], at_edge, rtol=1e-12)  # other batch: not bitwise
    m.condition_policy = "error"
    try:
        with pytest.raises(ValueError, match=r"condition 'b': 1 of 2 values are outside"):
            m.morph(x[:2], condition=c[:2])
        with pytest.raises(ValueError, match=r"condition 'a': 1 of 3 values are outside"):
            m.morph(x, condition=c)
    finally:
        m.condition_policy = "clamp"


def test_several_conditions_survive_save_and_load(two_condition_morpher, tmp_path):
    m = two_condition_morpher
    loaded = f4f.load(m.save(tmp_path / "m"))
    assert loaded.conditions == ["a", "b"]
    assert loaded.condition_ranges == m.condition_ranges
    src, _ = pair(200, 3)
    np.testing.assert_array_equal(loaded.morph(src)["x"], m.morph(src)["x"])


def test_density_and_condition_morpher_take_several_conditions():
    src, _ = pair(1500, 4)
    d = f4f.fit_density(src, features=FEATURES, condition=["a", "b"], flow=TINY, train=QUICK)
    assert d.conditions == ["a", "b"]
    lp = d.log_prob(src)
    np.testing.assert_allclose(
        lp,
        d.log_prob({"x": src["x"], "y": src["y"]}, condition=np.stack([src["a"], src["b"]], 1)),
        rtol=1e-12,
    )
    assert d.sample(10, condition=np.tile([0.5, 0.0], (10, 1)), seed=1).shape == (10, 2)
    cm = f4f.fit_condition_morpher(
        src, features=FEATURES, condition=["a", "b"], flow=TINY, density=TINY, train=QUICK
    )
    x = np.stack([src["x"], src["y"]], 1)[:50]
    ca = np.tile([0.2, -0.5], (50, 1))
    cb = np.tile([0.8, 0.5], (50, 1))
    there = cm.morph(x, condition=ca, target_condition=cb)
    back = cm.morph(there, condition=cb, target_condition=ca)
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)  # exact inverse, vectors
    np.testing.assert_array_equal(cm.morph(x, condition=ca, target_condition=ca), x)


def test_transform_takes_a_condition_mapping(two_condition_morpher):
    m = two_condition_morpher
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, 200)
    n = int(counts.sum())
    events = ak.zip(
        {
            "Obj": ak.unflatten(
                ak.zip(
                    {
                        "x": rng.normal(size=n),
                        "y": rng.normal(size=n),
                        "b": rng.uniform(-1, 1, n),
                        "z": rng.normal(size=n),  # not read
                    }
                ),
                counts,
            ),
            "a": rng.uniform(0, 1, 200),
            "other": rng.uniform(0, 1, 200),  # not read
        },
        depth_limit=1,
    )
    t = f4f.MorphTransform(
        m, inputs={"x": "Obj.x", "y": "Obj.y"}, condition={"a": "a", "b": lambda ev: ev.Obj.b}
    )
    out = t(events)
    c = np.stack(
        [np.repeat(ak.to_numpy(events.a), counts), ak.to_numpy(ak.flatten(events.Obj.b))], 1
    )
    x = np.stack([ak.to_numpy(ak.flatten(events.Obj[f])) for f in FEATURES], 1)
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(out.Obj.x_morphed)), m.morph(x, condition=c)[:, 0], rtol=1e-12
    )
    with pytest.raises(ValueError, match="as a mapping"):
        f4f.MorphTransform(m, inputs={"x": "Obj.x", "y": "Obj.y"}, condition="a")
    with pytest.raises(ValueError, match=r"missing: \['b'\]"):
        f4f.MorphTransform(m, inputs={"x": "Obj.x", "y": "Obj.y"}, condition={"a": "a"})
    pytest.importorskip("dask_awkward")
    import dask_awkward as dak

    lazy = t(dak.from_awkward(events, npartitions=3))
    got = ak.to_numpy(ak.flatten(lazy.Obj.x_morphed.compute()))
    np.testing.assert_allclose(got, ak.to_numpy(ak.flatten(out.Obj.x_morphed)), rtol=1e-12)
    (columns,) = dak.necessary_columns(lazy.Obj.x_morphed).values()
    assert set(columns) == {"Obj.x", "Obj.y", "Obj.b", "a"}  # the inputs and conditions only


def test_switch_protocol_morphs_with_one_density(tmp_path):
    src, tgt = pair(4000, 6)
    flow = f4f.FlowConfig(layers=3, hidden=24, blocks=1, bins=6)
    m = f4f.fit_morpher(
        src,
        tgt,
        features=FEATURES,
        condition=["a", "b"],
        variant="switch",
        density=flow,
        train=QUICK.replace(epochs=6, lr=3e-3),
    )
    assert m.variant == "switch"
    assert m.target_density is None
    assert m.source_density.conditions == ["a", "b", "f4f_sample"]
    held, ref = pair(3000, 7)
    at = {**held, "a": ref["a"], "b": ref["b"]}
    out = m.morph(at)
    cols = [ref["a"], ref["b"]]
    before, _ = c2st_auc(
        np.stack([held["x"], held["y"], *cols], 1), np.stack([ref["x"], ref["y"], *cols], 1)
    )
    after, sigma = c2st_auc(
        np.stack([out["x"], out["y"], *cols], 1), np.stack([ref["x"], ref["y"], *cols], 1)
    )
    assert after < before - 0.05, (before, after, sigma)
    x = np.stack([held["x"], held["y"]], 1)[:200]
    c = np.stack([held["a"], held["b"]], 1)[:200]
    y = m.morph(x, condition=c)
    np.testing.assert_allclose(m.inverse(y, condition=c), x, rtol=1e-9, atol=1e-9)
    loaded = f4f.load(m.save(tmp_path / "switch"))
    np.testing.assert_array_equal(loaded.morph(x, condition=c), y)
    with pytest.raises(ValueError, match="no effect on switch"):
        f4f.fit_morpher(
            src, tgt, features=FEATURES, variant="switch", penalty="l1", penalty_weight=1.0
        )


def test_categorical_condition_is_one_hot_and_refuses_unseen_codes(tmp_path):
    rng = np.random.default_rng(8)
    n = 3000
    era_s, era_t = rng.integers(0, 3, n), rng.integers(0, 3, n)
    shift = np.array([0.0, 1.0, -1.0])  # the target moves differently in each era
    src = {"x": rng.normal(size=n), "y": rng.normal(size=n), "era": era_s}
    tgt = {"x": rng.normal(size=n) + shift[era_t], "y": rng.normal(size=n), "era": era_t}
    flow = f4f.FlowConfig(layers=2, hidden=24, blocks=1, bins=6)
    m = f4f.fit_morpher(
        src,
        tgt,
        features=FEATURES,
        condition="era",
        flow=flow,
        density=flow,
        condition_scaling={"era": "categorical"},
        train=QUICK.replace(epochs=6, lr=3e-3),
    )
    assert m.condition_scaler.kinds == ["categorical"]
    assert m.module.context_dim == 3  # one-hot inside the flow
    x = rng.normal(size=(2000, 2))
    means = [m.morph(x, condition=np.full(2000, e))[:, 0].mean() for e in (0, 1, 2)]
    assert means[1] - means[0] > 0.5  # each era gets its own morph
    assert means[0] - means[2] > 0.5
    for bad in (np.full(2000, 5), np.full(2000, 1.5)):
        with pytest.raises(ValueError, match=r"categorical 'era': code\(s\) (5|1\.5) not seen"):
            m.morph(x, condition=bad)
    loaded = f4f.load(m.save(tmp_path / "era"))
    np.testing.assert_array_equal(
        loaded.morph(x[:10], condition=np.ones(10)), m.morph(x[:10], condition=np.ones(10))
    )
    with pytest.raises(ValueError, match="not seen"):
        loaded.morph(x[:10], condition=np.full(10, 3))
    events = ak.zip({"x": x[:, 0], "y": x[:, 1], "era": np.r_[np.zeros(1999), 7.0]})
    with pytest.raises(ValueError, match=r"code\(s\) 7 not seen"):  # in coffea too: no NaN rows
        f4f.MorphTransform(m, inputs={"x": "x", "y": "y"}, condition="era")(events)
    with pytest.raises(ValueError, match="not integer codes"):
        f4f.fit_morpher(
            {**src, "era": era_s + 0.5},
            tgt,
            features=FEATURES,
            condition="era",
            condition_scaling={"era": "categorical"},
            train=QUICK,
        )
    with pytest.raises(ValueError, match="a flow cannot model a category"):
        f4f.fit_density(src, features=["x", "era"], scaling={"era": "categorical"}, train=QUICK)
