"""Tests for coffea_f4f.metrics (numpy / scikit-learn / scipy / POT only; no torch)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm

from coffea_f4f import metrics


def _gauss(n: int, d: int, seed: int, shift: float | np.ndarray = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# ---------------------------------------------------------------------------------------------
# c2st_auc
# ---------------------------------------------------------------------------------------------
def test_c2st_identical_distributions_within_three_sigma():
    a = _gauss(3000, 2, seed=1)
    b = _gauss(3000, 2, seed=2)
    auc, sigma = metrics.c2st_auc(a, b, seed=0)
    assert sigma == pytest.approx(math.sqrt((3000 + 3000 + 1) / (12 * 3000 * 3000)))
    assert abs(auc - 0.5) < 3 * sigma, (auc, sigma)


def test_c2st_shifted_is_separated_symmetric_and_not_flipped():
    a = _gauss(1500, 2, seed=3)
    b = _gauss(1500, 2, seed=4, shift=1.5)
    auc_ab, _ = metrics.c2st_auc(a, b)
    auc_ba, _ = metrics.c2st_auc(b, a)
    assert auc_ab > 0.9
    # The classifier is retrained with swapped labels, so the AUC is symmetric, not 1 - AUC.
    assert auc_ba == pytest.approx(auc_ab, abs=0.01)
    # Raw AUC, never folded to max(auc, 1 - auc): the same events in both samples make the
    # out-of-fold classifier anti-predictive (each held-out event's twin sits in the training
    # folds with the other label), which a folded AUC would hide as a large separation.
    auc_dup, sigma = metrics.c2st_auc(a, a.copy())
    assert auc_dup < 0.5 - 10 * sigma, auc_dup


def test_c2st_weights_bring_auc_towards_half():
    rng = np.random.default_rng(5)
    a = rng.normal(0.0, 1.0, size=2500)  # 1D input is accepted as (N, 1)
    b = rng.normal(0.5, 1.0, size=2500)
    w = norm.pdf(a, loc=0.5) / norm.pdf(a, loc=0.0)
    auc_raw, sigma = metrics.c2st_auc(a, b)
    auc_w, _ = metrics.c2st_auc(a, b, weights_a=w)
    assert auc_raw > 0.5 + 5 * sigma, auc_raw
    assert abs(auc_w - 0.5) < 0.5 * abs(auc_raw - 0.5), (auc_raw, auc_w)
    assert abs(auc_w - 0.5) < 3 * sigma, auc_w


def test_c2st_subsamples_to_equal_sizes_and_is_seeded():
    a = _gauss(400, 3, seed=6)
    b = _gauss(700, 3, seed=7, shift=0.3)
    auc1, sigma = metrics.c2st_auc(a, b, folds=3, seed=11)
    auc2, _ = metrics.c2st_auc(a, b, folds=3, seed=11)
    assert auc1 == auc2
    # sizes used are 400 and 400, not 400 and 700
    assert sigma == pytest.approx(math.sqrt((400 + 400 + 1) / (12 * 400 * 400)))
    assert sigma != pytest.approx(math.sqrt((400 + 700 + 1) / (12 * 400 * 700)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"a": np.zeros((50, 2)), "b": np.zeros((50, 3))}, "features"),
        ({"a": np.zeros((5, 2)), "b": np.ones((50, 2))}, "at least"),
        ({"a": np.full((50, 2), np.nan), "b": np.ones((50, 2))}, "non-finite"),
        ({"a": np.zeros((50, 2, 2)), "b": np.ones((50, 2))}, "shape"),
        ({"a": np.zeros((50, 2)), "b": np.ones((50, 2)), "folds": 1}, "folds"),
        ({"a": np.zeros((50, 2)), "b": np.ones((50, 2)), "weights_a": np.ones(49)}, "weights_a"),
        ({"a": np.zeros((50, 2)), "b": np.ones((50, 2)), "weights_b": -np.ones(50)}, "negative"),
        ({"a": [["x", "y"]] * 50, "b": np.ones((50, 2))}, "numeric"),
    ],
)
def test_c2st_bad_input(kwargs, match):
    a, b = kwargs.pop("a"), kwargs.pop("b")
    with pytest.raises(ValueError, match=match):
        metrics.c2st_auc(a, b, **kwargs)


# ---------------------------------------------------------------------------------------------
# Wasserstein
# ---------------------------------------------------------------------------------------------
def test_wasserstein_shift_and_floor():
    delta = np.array([0.3, 1.0])
    b = _gauss(20000, 2, seed=8)
    a = _gauss(20000, 2, seed=9, shift=delta)
    w1 = metrics.wasserstein(a, b)
    assert w1.shape == (2,)
    np.testing.assert_allclose(w1, delta, atol=0.04)
    # in units of std(b): rescaling both samples changes nothing
    np.testing.assert_allclose(metrics.wasserstein(100 * a, 100 * b), w1, rtol=1e-9)
    floor = metrics.wasserstein_floor(b, seed=0)
    assert floor.shape == (2,)
    assert (floor < 0.04).all(), floor
    assert (floor > 0).all()
    assert (metrics.wasserstein(_gauss(20000, 2, seed=10), b) < 0.04).all()


def test_wasserstein_bad_input():
    with pytest.raises(ValueError, match="features"):
        metrics.wasserstein(np.zeros((10, 2)), np.ones((10, 3)))
    with pytest.raises(ValueError, match="zero spread"):
        metrics.wasserstein(np.zeros((10, 2)), np.ones((10, 2)))
    with pytest.raises(ValueError, match="at least 4"):
        metrics.wasserstein_floor(np.arange(3.0))
    with pytest.raises(ValueError, match="non-finite"):
        metrics.wasserstein_floor(np.array([1.0, 2.0, np.inf, 3.0, 4.0]))


# ---------------------------------------------------------------------------------------------
# correlations
# ---------------------------------------------------------------------------------------------
def test_correlation_difference():
    rng = np.random.default_rng(12)
    rho = 0.8
    cov = [[1.0, rho, 0.0], [rho, 1.0, 0.0], [0.0, 0.0, 1.0]]
    correlated = rng.multivariate_normal(np.zeros(3), cov, size=20000)
    independent = rng.normal(size=(20000, 3))
    out = metrics.correlation_difference(independent, correlated)
    assert set(out) == {"pearson", "spearman", "max_abs_pearson", "max_abs_spearman"}
    assert out["pearson"].shape == out["spearman"].shape == (3, 3)
    np.testing.assert_allclose(np.diag(out["pearson"]), 0.0, atol=1e-12)
    assert out["pearson"][0, 1] == pytest.approx(-rho, abs=0.03)
    assert out["pearson"][1, 0] == pytest.approx(-rho, abs=0.03)
    spearman_rho = 6 / np.pi * np.arcsin(rho / 2)  # rank correlation of a gaussian pair
    assert out["spearman"][0, 1] == pytest.approx(-spearman_rho, abs=0.03)
    assert out["max_abs_pearson"] == pytest.approx(rho, abs=0.03)
    assert isinstance(out["max_abs_spearman"], float)
    same = metrics.correlation_difference(independent, rng.normal(size=(20000, 3)))
    assert same["max_abs_pearson"] < 0.05
    assert same["max_abs_spearman"] < 0.05
    with pytest.raises(ValueError, match="features"):
        metrics.correlation_difference(independent, correlated[:, :2])
    with pytest.raises(ValueError, match="zero spread"):
        metrics.correlation_difference(np.zeros((10, 3)), correlated)


# ---------------------------------------------------------------------------------------------
# distance moved and transport ratio
# ---------------------------------------------------------------------------------------------
def test_distance_moved():
    x = _gauss(100, 2, seed=13)
    np.testing.assert_allclose(metrics.distance_moved(x, x + np.array([3.0, 4.0])), 5.0)
    np.testing.assert_array_equal(metrics.distance_moved(x, x), 0.0)
    with pytest.raises(ValueError, match="same shape"):
        metrics.distance_moved(x, x[:50])


def test_transport_ratio_identity_is_exactly_one():
    x = _gauss(500, 3, seed=14)
    assert metrics.transport_ratio(x, x.copy()) == 1.0


@pytest.mark.parametrize("mapping", [lambda x: 2.0 * x + 1.0, lambda x: np.exp(x) + x**3])
def test_transport_ratio_monotone_1d_is_one(mapping):
    x = np.random.default_rng(15).normal(size=1500)  # unsorted: the map is monotone, not the data
    ratio = metrics.transport_ratio(x, mapping(x))
    assert ratio >= 1.0
    assert ratio == pytest.approx(1.0, abs=1e-6)


def test_transport_ratio_translation_is_one():
    x = _gauss(800, 2, seed=16)
    assert metrics.transport_ratio(x, x + np.array([0.7, -0.2])) == pytest.approx(1.0, abs=1e-6)


def test_transport_ratio_random_pairing_is_well_above_one():
    x = _gauss(1000, 2, seed=17)
    target = _gauss(1000, 2, seed=18, shift=0.5)
    tx = target[np.random.default_rng(19).permutation(len(target))]
    ratio = metrics.transport_ratio(x, tx)
    assert ratio > 2.0, ratio
    # the same pairing but optimal: solve the assignment and pair accordingly
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    _, cols = linear_sum_assignment(cdist(x, target))
    assert metrics.transport_ratio(x, target[cols]) == pytest.approx(1.0, abs=1e-6)


def test_transport_ratio_is_never_below_one():
    rng = np.random.default_rng(20)
    x = rng.normal(size=(300, 2))
    maps = [
        lambda x: x @ rng.normal(size=(2, 2)),
        lambda x: x + 0.3 * np.sin(3.0 * x[:, ::-1]),
        lambda x: x + rng.normal(scale=0.5, size=x.shape),
        lambda x: x[::-1] * 0.5,
        lambda x: np.tanh(x) * 2.0,
    ]
    for mapping in maps:
        assert metrics.transport_ratio(x, mapping(x)) >= 1.0


def test_transport_ratio_permutation_subsample_and_errors():
    x = _gauss(3000, 2, seed=21)
    # moving the points onto themselves in another order: infinitely wasteful
    assert metrics.transport_ratio(x[:200], x[:200][::-1]) == math.inf
    tx = x + 0.1 * np.sin(5 * x)
    r1 = metrics.transport_ratio(x, tx, max_points=300, seed=1)
    assert r1 == metrics.transport_ratio(x, tx, max_points=300, seed=1)
    assert r1 >= 1.0
    with pytest.raises(ValueError, match="same shape"):
        metrics.transport_ratio(x, x[:, :1])
    with pytest.raises(ValueError, match="max_points"):
        metrics.transport_ratio(x, tx, max_points=1)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.transport_ratio(x[:1], tx[:1])
    with pytest.raises(ValueError, match="non-finite"):
        metrics.transport_ratio(np.where(x > 3, np.nan, x), tx)


# ---------------------------------------------------------------------------------------------
# summary and import hygiene
# ---------------------------------------------------------------------------------------------
def test_summary_is_json_and_sensible():
    source = _gauss(600, 2, seed=22)
    target = _gauss(600, 2, seed=23, shift=1.0)
    morphed = source + 1.0
    out = metrics.summary(source, morphed, target, seed=0)
    json.dumps(out, allow_nan=False)
    assert out["auc_before"] > 0.7
    assert abs(out["auc_after"] - 0.5) < 4 * out["sigma_after"]
    assert len(out["w1_before"]) == len(out["w1_after"]) == len(out["w1_floor"]) == 2
    assert out["w1_after"][0] < out["w1_before"][0]
    assert out["distance_mean"] == pytest.approx(math.sqrt(2.0))
    assert out["distance_std"] == pytest.approx(0.0, abs=1e-12)
    assert out["transport_ratio"] == pytest.approx(1.0, abs=1e-6)
    scaled = metrics.summary(source, morphed, 10 * target, standardize=True)
    assert scaled["distance_mean"] == pytest.approx(math.sqrt(2.0) / 10, rel=0.05)
    with pytest.raises(ValueError, match="same shape"):
        metrics.summary(source, morphed[:10], target)


def test_metrics_import_does_not_import_torch():
    code = "import sys, coffea_f4f.metrics; sys.exit(int('torch' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
