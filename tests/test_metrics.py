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


# ---------------------------------------------------------------------------------------------
# event weights
# ---------------------------------------------------------------------------------------------
RTOL = 1e-12


def _int_weighted(seed: int, n: int = 300, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Correlated events with integer weights 1..3 (and a few exact ties)."""
    rng = np.random.default_rng(seed)
    mix = np.array([[1.0, 0.6, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])[:d, :d]
    x = rng.normal(size=(n, d)) @ mix
    x[:20, 1] = x[20:40, 1]  # ties in one column
    return x, rng.integers(1, 4, size=n)


def _with_cancelling_pairs(x: np.ndarray, seed: int, k: int = 40) -> tuple[np.ndarray, ...]:
    """``x`` (unit weights) plus ``k`` events present twice, with weights +w and -w."""
    rng = np.random.default_rng(seed)
    extra = rng.normal(scale=2.0, size=(k, x.shape[1]))
    w_extra = rng.uniform(0.5, 3.0, size=k)
    xs = np.concatenate([x, extra, extra])
    ws = np.concatenate([np.ones(len(x)), w_extra, -w_extra])
    perm = rng.permutation(len(xs))
    return xs[perm], ws[perm]


def test_unit_weights_match_no_weights():
    a, _ = _int_weighted(30)
    b, _ = _int_weighted(31, n=400)
    b = b + 0.2
    ones_a, ones_b = np.ones(len(a)), np.ones(len(b))
    np.testing.assert_allclose(
        metrics.wasserstein(a, b, weights_a=ones_a, weights_b=ones_b),
        metrics.wasserstein(a, b),
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        metrics.wasserstein_floor(b, weights=ones_b, seed=3),
        metrics.wasserstein_floor(b, seed=3),
        rtol=RTOL,
    )
    got = metrics.correlation_difference(a, b, weights_a=ones_a, weights_b=ones_b)
    want = metrics.correlation_difference(a, b)
    for key in ("pearson", "spearman"):
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=1e-14)
    tx = np.tanh(a) * 2.0
    assert metrics.transport_ratio(a, tx, weights=ones_a) == pytest.approx(
        metrics.transport_ratio(a, tx), rel=1e-9
    )


def test_weighted_w1_matches_scipy_for_non_negative_weights():
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(32)
    a, b = rng.normal(size=(500, 2)), rng.normal(0.3, 1.5, size=(700, 2))
    wa, wb = rng.uniform(0.0, 2.0, size=500), rng.exponential(size=700)
    want = [wasserstein_distance(a[:, j], b[:, j], wa, wb) for j in range(2)]
    mean_b = wb @ b / wb.sum()
    std_b = np.sqrt(wb @ (b - mean_b) ** 2 / wb.sum())
    np.testing.assert_allclose(
        metrics.wasserstein(a, b, weights_a=wa, weights_b=wb), np.array(want) / std_b, rtol=RTOL
    )


def test_integer_weights_equal_duplicated_events():
    a, wa = _int_weighted(33)
    b, wb = _int_weighted(34, n=350)
    b = 1.3 * b + 0.4
    a_dup, b_dup = np.repeat(a, wa, axis=0), np.repeat(b, wb, axis=0)

    np.testing.assert_allclose(
        metrics.wasserstein(a, b, weights_a=wa, weights_b=wb),
        metrics.wasserstein(a_dup, b_dup),
        rtol=RTOL,
    )
    got = metrics.correlation_difference(a, b, weights_a=wa, weights_b=wb)
    want = metrics.correlation_difference(a_dup, b_dup)
    for key in ("pearson", "spearman"):
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=1e-14)
    assert got["max_abs_spearman"] == pytest.approx(want["max_abs_spearman"], rel=RTOL)

    tx = a + 0.3 * np.sin(3.0 * a[:, ::-1])
    assert metrics.transport_ratio(a, tx, weights=wa) == pytest.approx(
        metrics.transport_ratio(a_dup, np.repeat(tx, wa, axis=0), max_points=len(a_dup)),
        rel=RTOL,
    )
    dist = metrics.distance_moved(a, tx)
    assert np.average(dist, weights=wa) == pytest.approx(
        metrics.distance_moved(a_dup, np.repeat(tx, wa, axis=0)).mean(), rel=RTOL
    )


def test_summary_integer_weights_equal_duplicated_events_where_exact():
    # C2ST excluded here: literally duplicated rows leak across the cross-validation folds
    # (a held-out event's twin is in the training folds), so only the weighted form is right.
    a, wa = _int_weighted(35, n=200, d=2)
    t, wt = _int_weighted(36, n=220, d=2)
    t = t + 0.5
    morphed = a + 0.5
    got = metrics.summary(a, morphed, t, source_weights=wa, target_weights=wt, standardize=True)
    want = metrics.summary(
        np.repeat(a, wa, axis=0),
        np.repeat(morphed, wa, axis=0),
        np.repeat(t, wt, axis=0),
        standardize=True,
    )
    json.dumps(got, allow_nan=False)
    assert got["weighted"] is True
    assert want["weighted"] is False
    assert got["n_source"] == len(a)
    assert got["n_eff_source"] == pytest.approx(wa.sum() ** 2 / (wa**2).sum(), rel=RTOL)
    assert want["n_eff_target"] == wt.sum()
    for key in ("w1_before", "w1_after"):
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL)
    for key in ("max_abs_pearson_after", "max_abs_spearman_before", "distance_mean"):
        assert got[key] == pytest.approx(want[key], rel=RTOL), key
    assert got["distance_std"] == pytest.approx(want["distance_std"], rel=1e-9, abs=1e-12)
    assert got["transport_ratio"] == pytest.approx(want["transport_ratio"], rel=1e-9)
    rows = dict(metrics.summary_rows(got, ["x", "y"]))
    assert "effective events (weighted)" in rows
    assert "effective events (weighted)" not in dict(metrics.summary_rows(want, ["x", "y"]))


def test_c2st_integer_weights_act_like_the_weighted_distribution():
    rng = np.random.default_rng(200)
    a = rng.normal(size=(1500, 2))
    w = np.where(a[:, 0] > 0, 2, 1)  # weighted density: N(0, 1) with twice the mass at x0 > 0
    fresh = rng.normal(size=(4000, 2))  # a fresh sample of that density, by rejection
    fresh = fresh[(fresh[:, 0] > 0) | (rng.uniform(size=4000) < 0.5)][:1500]
    auc_w, sigma_w = metrics.c2st_auc(a, fresh, weights_a=w)
    auc_raw, sigma = metrics.c2st_auc(a, fresh)
    assert auc_raw > 0.5 + 5 * sigma, auc_raw
    assert abs(auc_w - 0.5) < 2 * sigma_w, (auc_w, sigma_w)


def test_c2st_weighted_sigma_uses_effective_sizes():
    rng = np.random.default_rng(37)
    a, b = rng.normal(size=(200, 2)), rng.normal(size=(200, 2))
    wa = rng.uniform(0.0, 3.0, size=200)
    n_a = wa.sum() ** 2 / (wa**2).sum()
    _, sigma = metrics.c2st_auc(a, b, weights_a=wa, folds=2)
    assert sigma == pytest.approx(math.sqrt((n_a + 200 + 1) / (12 * n_a * 200)), rel=RTOL)
    # unit weights: the effective sizes are the counts
    _, sigma_1 = metrics.c2st_auc(a, b, weights_b=np.ones(200), folds=2)
    assert sigma_1 == pytest.approx(math.sqrt(401 / (12 * 200 * 200)), rel=RTOL)


def test_cancelling_signed_weights_leave_statistics_unchanged():
    a, _ = _int_weighted(38)
    b, _ = _int_weighted(39, n=400)
    b = 0.8 * b - 0.3
    a_s, wa_s = _with_cancelling_pairs(a, seed=40)
    b_s, wb_s = _with_cancelling_pairs(b, seed=41)
    assert (wa_s < 0).any()
    assert (wb_s < 0).any()
    np.testing.assert_allclose(
        metrics.wasserstein(a_s, b_s, weights_a=wa_s, weights_b=wb_s),
        metrics.wasserstein(a, b),
        rtol=RTOL,
    )
    got = metrics.correlation_difference(a_s, b_s, weights_a=wa_s, weights_b=wb_s)
    want = metrics.correlation_difference(a, b)
    for key in ("pearson", "spearman"):
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=1e-13)
    dist = metrics.distance_moved(a_s, a_s * 1.5)
    assert np.average(dist, weights=wa_s) == pytest.approx(
        metrics.distance_moved(a, a * 1.5).mean(), rel=RTOL
    )
    floor = metrics.wasserstein_floor(b_s, weights=wb_s, seed=0)  # defined, if noisier
    assert floor.shape == (3,)
    assert np.isfinite(floor).all()


def test_weighted_w1_of_a_reweighted_sample_matches_its_target():
    rng = np.random.default_rng(42)
    a = rng.normal(0.0, 1.0, size=20000)
    target = rng.normal(0.5, 1.0, size=20000)
    w = norm.pdf(a, loc=0.5) / norm.pdf(a, loc=0.0)
    raw = metrics.wasserstein(a, target)[0]
    weighted = metrics.wasserstein(a, target, weights_a=w)[0]
    assert raw == pytest.approx(0.5, abs=0.04)
    assert weighted < 0.05, weighted
    assert weighted < raw / 5, (raw, weighted)
    # reweighting the target instead, back to N(0, 1)
    back = metrics.wasserstein(a, target, weights_b=norm.pdf(target) / norm.pdf(target, loc=0.5))
    assert back[0] < 0.05


def test_signed_weights_w1_and_correlations_subtract_a_component():
    # N(0, 1) written as [N(0, 1) + N(4, 1)] - N(4, 1): the signed sample is N(0, 1) again
    rng = np.random.default_rng(43)
    core = rng.normal(size=(20000, 2))
    bump_plus = rng.normal(size=(10000, 2)) + 4.0
    bump_minus = rng.normal(size=(10000, 2)) + 4.0
    x = np.concatenate([core, bump_plus, bump_minus])
    w = np.concatenate([np.ones(30000), -np.ones(10000)])
    target = rng.normal(size=(20000, 2))
    signed = metrics.wasserstein(x, target, weights_a=w)
    absolute = metrics.wasserstein(x, target, weights_a=np.abs(w))
    assert (signed < 0.06).all(), signed
    assert (absolute > 1.0).all(), absolute
    corr = metrics.correlation_difference(x, target, weights_a=w)
    assert corr["max_abs_pearson"] < 0.06
    assert corr["max_abs_spearman"] < 0.06


def _signed(n: int) -> np.ndarray:
    w = np.ones(n)
    w[::7] = -0.5
    return w


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda w: metrics.c2st_auc(_gauss(60, 2, 1), _gauss(60, 2, 2), weights_a=w), "weights_a"),
        (lambda w: metrics.c2st_auc(_gauss(60, 2, 1), _gauss(60, 2, 2), weights_b=w), "weights_b"),
        (
            lambda w: metrics.transport_ratio(_gauss(60, 2, 1), _gauss(60, 2, 2), weights=w),
            "weights",
        ),
        (
            lambda w: metrics.summary(
                _gauss(60, 2, 1), _gauss(60, 2, 2), _gauss(60, 2, 3), source_weights=w
            ),
            "source_weights",
        ),
        (
            lambda w: metrics.summary(
                _gauss(60, 2, 1), _gauss(60, 2, 2), _gauss(60, 2, 3), target_weights=w
            ),
            "target_weights",
        ),
    ],
)
def test_negative_weights_raise_with_advice_where_undefined(call, name):
    with pytest.raises(ValueError, match=rf"^{name} has 9 negative weights") as err:
        call(_signed(60))
    msg = str(err.value)
    assert "np.abs(w)" in msg, msg
    assert "metrics.wasserstein" in msg, msg


_BAD_WEIGHTS = [
    (np.ones(59), "shape"),
    (np.ones((60, 1)), "shape"),
    (np.where(np.arange(60) == 3, np.nan, 1.0), "NaN/inf"),
    (np.where(np.arange(60) == 3, np.inf, 1.0), "NaN/inf"),
    (np.zeros(60), "sums to 0"),
    (np.concatenate([np.ones(30), -np.ones(30)]), "sums to 0"),
    (np.concatenate([np.ones(20), -np.ones(40)]), "sums to -20"),
    (["a"] * 60, "numeric"),
]
_WEIGHTED_CALLS = {  # id: (call, argument name, whether signed weights are allowed)
    "wasserstein-a": (
        lambda w: metrics.wasserstein(_gauss(60, 2, 1), _gauss(60, 2, 2), weights_a=w),
        "weights_a",
        True,
    ),
    "wasserstein-b": (
        lambda w: metrics.wasserstein(_gauss(60, 2, 1), _gauss(60, 2, 2), weights_b=w),
        "weights_b",
        True,
    ),
    "floor": (lambda w: metrics.wasserstein_floor(_gauss(60, 2, 1), weights=w), "weights", True),
    "corr-a": (
        lambda w: metrics.correlation_difference(_gauss(60, 2, 1), _gauss(60, 2, 2), weights_a=w),
        "weights_a",
        True,
    ),
    "corr-b": (
        lambda w: metrics.correlation_difference(_gauss(60, 2, 1), _gauss(60, 2, 2), weights_b=w),
        "weights_b",
        True,
    ),
    "c2st-b": (
        lambda w: metrics.c2st_auc(_gauss(60, 2, 1), _gauss(60, 2, 2), weights_b=w),
        "weights_b",
        False,
    ),
    "transport": (
        lambda w: metrics.transport_ratio(_gauss(60, 2, 1), _gauss(60, 2, 2), weights=w),
        "weights",
        False,
    ),
    "summary-target": (
        lambda w: metrics.summary(
            _gauss(60, 2, 1), _gauss(60, 2, 2), _gauss(60, 2, 3), target_weights=w
        ),
        "target_weights",
        False,
    ),
}


@pytest.mark.parametrize(("weights", "match"), _BAD_WEIGHTS)
@pytest.mark.parametrize("which", list(_WEIGHTED_CALLS))
def test_bad_weights_raise_naming_the_argument(which, weights, match):
    call, name, signed = _WEIGHTED_CALLS[which]
    if not signed and isinstance(weights, np.ndarray) and (weights < 0).any():
        match = "negative weights"  # refused before the sum is looked at
    with pytest.raises(ValueError, match=rf"^{name} .*{match}"):
        call(weights)


def test_weighted_spread_errors():
    x = _gauss(50, 2, seed=44)
    x[:, 1] = np.where(np.arange(50) < 10, 7.0, x[:, 1])
    w = np.where(np.arange(50) < 10, 1.0, 0.0)  # only events with a constant column 1 count
    with pytest.raises(ValueError, match=r"zero spread in feature column\(s\) \[1\]"):
        metrics.wasserstein(_gauss(50, 2, seed=45), x, weights_b=w)
    with pytest.raises(ValueError, match="zero spread"):
        metrics.correlation_difference(x, x, weights_a=w)
    # signed weights with a negative weighted variance: the spread is undefined
    y = np.array([[-1.0], [1.0], [0.0], [0.1]])
    with pytest.raises(ValueError, match="variance <= 0"):
        metrics.wasserstein(y, y, weights_b=np.array([-1.0, -1.0, 2.5, 1.0]))
    # one half of a signed sample with no positive total: the floor is undefined
    z = np.arange(8.0)
    with pytest.raises(ValueError, match="half of b has a total weight <= 0"):
        metrics.wasserstein_floor(z, weights=np.array([1, 1, 1, 1, -1, -1, -1, 4.0]), seed=0)


# ---------------------------------------------------------------------------------------------
# summary with an ensemble's band and members
# ---------------------------------------------------------------------------------------------
def _band_triple(n: int = 400) -> tuple[np.ndarray, ...]:
    source = _gauss(n, 2, seed=60)
    target = _gauss(n, 2, seed=61, shift=1.0)
    return source, source + 1.1, target


def test_summary_without_a_band_is_unchanged():
    source, morphed, target = _band_triple(300)
    plain = metrics.summary(source, morphed, target, seed=3)
    explicit = metrics.summary(source, morphed, target, seed=3, up=None, down=None, members=None)
    assert explicit == plain
    assert not {k for k in plain if k.startswith(("w1_up", "w1_down", "auc_members"))}


def test_summary_band_w1_orders_as_the_variations_do():
    source, morphed, target = _band_triple()
    up = source + 1.0  # distributed as the target
    down = source + 1.6  # shifted by 0.6 std past it
    w = np.random.default_rng(62).uniform(0.5, 1.5, len(source))
    out = metrics.summary(source, morphed, target, up=up, down=down, source_weights=w)
    json.dumps(out, allow_nan=False)
    for j in range(2):
        assert out["w1_up"][j] < out["w1_after"][j] < out["w1_down"][j], j
        assert out["w1_down"][j] > out["w1_up"][j] + 0.3  # 0.6 std apart
    # weighted as w1_after: the morphed events carry the source weights
    assert out["w1_up"] == pytest.approx(metrics.wasserstein(up, target, weights_a=w).tolist())
    assert "auc_members" not in out
    rows = dict(metrics.summary_rows(out, ["x", "y"]))
    assert f"(up {out['w1_up'][0]:.3f}, down {out['w1_down'][0]:.3f}; floor" in rows["W1/std x"]


def test_summary_member_aucs_and_their_spread():
    source, morphed, target = _band_triple()
    members = [source + 1.0, source + 1.05, source + 2.5]  # the last member is far off
    out = metrics.summary(source, morphed, target, members=members, seed=4)
    json.dumps(out, allow_nan=False)
    aucs = out["auc_members"]
    assert len(aucs) == 3
    assert aucs[0] == metrics.c2st_auc(members[0], target, seed=4)[0]
    assert aucs[2] > 0.85 > 0.65 > max(aucs[:2])
    assert out["auc_members_mean"] == pytest.approx(np.mean(aucs))
    assert out["auc_members_std"] == pytest.approx(np.std(aucs, ddof=1))
    assert "w1_up" not in out
    rows = dict(metrics.summary_rows(out, ["x", "y"]))
    after = rows["C2ST AUC morphed vs target"]
    assert after.startswith(f"{out['auc_after']:.3f} +- {out['sigma_after']:.3f} (members ")
    assert after.endswith(f"std {out['auc_members_std']:.3f}, K=3)")
    # a (K, N, D) array is K members; one member has no spread
    stacked = metrics.summary(source, morphed, target, members=np.stack(members[:1]), seed=4)
    assert stacked["auc_members"] == aucs[:1]
    assert stacked["auc_members_std"] is None
    assert "K=1)" in dict(metrics.summary_rows(stacked, ["x", "y"]))["C2ST AUC morphed vs target"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"up": "ok"}, r"^up was given without down"),
        ({"down": "ok"}, r"^down was given without up"),
        ({"up": "ok", "down": "short"}, r"^down must have the shape of morphed \(50, 2\)"),
        ({"up": "3d", "down": "ok"}, r"^up must have shape \(N, D\)"),
        ({"members": ["ok", "short"]}, r"^members\[1\] must have the shape of morphed"),
        ({"members": ["ok", "nan"]}, r"^members\[1\] contains 1 non-finite"),
        ({"members": "ok"}, r"^members must be a list of the K member morphs.*shape \(50, 2\)"),
        ({"members": {"up": "ok"}}, r"^members must be a list .*got dict"),
        ({"members": []}, r"^members is empty"),
    ],
)
def test_summary_band_bad_input_names_the_argument(kwargs, match):
    source, morphed, target = _band_triple(50)
    arrays = {
        "ok": morphed,
        "short": morphed[:40],
        "3d": morphed[None],
        "nan": morphed.copy(),
    }
    arrays["nan"][7, 0] = np.nan

    def resolve(v):
        if isinstance(v, str):
            return arrays[v]
        if isinstance(v, list):
            return [resolve(i) for i in v]
        return {k: resolve(i) for k, i in v.items()}

    with pytest.raises(ValueError, match=match):
        metrics.summary(source, morphed, target, **{k: resolve(v) for k, v in kwargs.items()})
