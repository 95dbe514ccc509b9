"""Production-style corrections on the photon-like data: zero-inflated features, weights,
several conditions, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import QUICK

import coffea_f4f as f4f

FEATURES = ["r9", "pho_iso"]


@pytest.fixture(scope="module")
def iso_morpher():
    torch.set_num_threads(1)
    sim = f4f.datasets.photons(6000, kind="sim", seed=1)
    data = f4f.datasets.photons(6000, kind="data", seed=2)
    flow = f4f.FlowConfig(layers=2, hidden=24, blocks=1, bins=8)
    return f4f.fit_morpher(
        sim,
        data,
        features=FEATURES,
        condition=["pt", "eta"],
        source_weights="weight",
        scaling={"pho_iso": "zero_inflated"},
        condition_scaling={"pt": "log"},
        flow=flow,
        density=flow,
        train=QUICK.replace(epochs=6, lr=3e-3),
    )


def _zero_fraction(values: np.ndarray, w: np.ndarray | None = None) -> float:
    w = np.ones(len(values)) if w is None else w
    return float(w[values == 0].sum() / w.sum())


def test_zero_fraction_morphs_to_the_targets(iso_morpher):
    held = f4f.datasets.photons(10_000, kind="sim", seed=3)
    ref = f4f.datasets.photons(10_000, kind="data", seed=4)
    out = iso_morpher.morph(held)
    iso = np.asarray(out["pho_iso"])
    w = np.asarray(held["weight"])
    before = _zero_fraction(np.asarray(held["pho_iso"]), w)
    target = _zero_fraction(np.asarray(ref["pho_iso"]))
    after = _zero_fraction(iso, w)
    sigma = np.sqrt(target * (1 - target) / 10_000)
    assert abs(before - target) > 10 * sigma  # the identity morph fails this test
    assert abs(after - target) < abs(before - target) / 3, (before, after, target)
    assert iso.min() >= 0.0  # never negative
    kept = np.asarray(held["pho_iso"]) > 0
    assert (iso[kept] > 0).mean() > 0.8  # positives mostly stay positive: a morph, not noise


def test_dequantised_morph_is_deterministic_and_chunk_invariant(iso_morpher):
    held = f4f.datasets.photons(3000, kind="sim", seed=5)
    a = iso_morpher.morph(held)
    b = iso_morpher.morph(held, batch_size=337)
    c = iso_morpher.morph(held[::-1])[::-1]  # another order: the noise follows the row
    for other in (b, c):
        for f in FEATURES:
            x, y = np.asarray(a[f]), np.asarray(other[f])
            np.testing.assert_array_equal(x == 0, y == 0)  # the same rows are zeros
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(
        np.asarray(a["pho_iso"]), np.asarray(iso_morpher.morph(held)["pho_iso"])
    )


def test_saved_production_morph_is_the_same(iso_morpher, tmp_path):
    loaded = f4f.load(iso_morpher.save(tmp_path / "iso"))
    held = f4f.datasets.photons(500, kind="sim", seed=6)
    assert loaded.conditions == ["pt", "eta"]
    assert loaded.scaler.kinds == ["standard", "zero_inflated"]
    np.testing.assert_array_equal(
        np.asarray(loaded.morph(held)["pho_iso"]), np.asarray(iso_morpher.morph(held)["pho_iso"])
    )
