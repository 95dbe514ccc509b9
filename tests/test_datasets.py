"""Tests for :mod:`coffea_f4f.datasets`: toy shapes, the dijet sampler and the mjj bands."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from coffea_f4f import datasets

PAPER_TOYS = ("star", "fourcircles", "checkerboard", "concentricrings", "gaussian")


def _columns(events: ak.Array) -> dict[str, np.ndarray]:
    return {f: ak.to_numpy(events[f]) for f in datasets.DIJET_FIELDS}


def _matrix(events: ak.Array) -> np.ndarray:
    return np.column_stack([ak.to_numpy(events[f]) for f in datasets.DIJET_FIELDS])


@pytest.fixture(scope="module")
def sim() -> dict[str, np.ndarray]:
    return _columns(datasets.dijet(200_000, kind="sim", seed=11))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return _columns(datasets.dijet(200_000, kind="data", seed=12))


# --------------------------------------------------------------------------------------------
# toy: contract
# --------------------------------------------------------------------------------------------


def test_toy_names_cover_the_paper_shapes():
    assert set(PAPER_TOYS) <= set(datasets.TOY_NAMES)
    assert "shifted_gaussian" in datasets.TOY_NAMES
    assert isinstance(datasets.TOY_NAMES, tuple)
    assert len(set(datasets.TOY_NAMES)) == len(datasets.TOY_NAMES)


@pytest.mark.parametrize("name", datasets.TOY_NAMES)
def test_toy_shape_dtype_scale(name):
    x = datasets.toy(name, 5000, seed=3)
    assert isinstance(x, np.ndarray)
    assert x.shape == (5000, 2)
    assert x.dtype == np.float64
    assert np.isfinite(x).all()
    # roughly standardized: order-one spread, values within about [-4, 4]
    assert np.all(np.abs(x) < 6.0)
    assert np.mean(np.abs(x) <= 4.0) > 0.999
    assert np.all((x.std(axis=0) > 0.4) & (x.std(axis=0) < 2.5))


@pytest.mark.parametrize("name", datasets.TOY_NAMES)
def test_toy_seeding(name):
    a = datasets.toy(name, 1000, seed=7)
    b = datasets.toy(name, 1000, seed=7)
    c = datasets.toy(name, 1000, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(datasets.toy(name, 1000), c)  # default seed 0


@pytest.mark.parametrize("name", datasets.TOY_NAMES)
def test_toy_empty_and_single(name):
    empty = datasets.toy(name, 0)
    assert empty.shape == (0, 2)
    assert empty.dtype == np.float64
    assert datasets.toy(name, 1, seed=1).shape == (1, 2)
    assert datasets.toy(name, np.int64(3), seed=1).shape == (3, 2)


def test_toy_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(ValueError, match="star") as info:
        datasets.toy("strar", 10)
    message = str(info.value)
    assert "Did you mean 'star'" in message
    for name in datasets.TOY_NAMES:
        assert name in message
    with pytest.raises(ValueError, match="fourcircles"):
        datasets.toy("four_circles", 10)
    with pytest.raises(ValueError, match="checkerboard"):
        datasets.toy("no-such-shape", 10)
    with pytest.raises(ValueError, match="unknown toy name None"):
        datasets.toy(None, 10)  # type: ignore[arg-type]


def test_toy_name_is_case_insensitive():
    np.testing.assert_array_equal(datasets.toy("Star", 50), datasets.toy("star", 50))


@pytest.mark.parametrize("bad", [-1, 2.5, 10.0, "10", None, True])
def test_toy_bad_n(bad):
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        datasets.toy("gaussian", bad)


# --------------------------------------------------------------------------------------------
# toy: the characteristic property of each shape
# --------------------------------------------------------------------------------------------


def test_star_points_lie_along_five_arms():
    x = datasets.toy("star", 20_000, seed=1)
    r = np.hypot(x[:, 0], x[:, 1])
    phi = np.arctan2(x[:, 1], x[:, 0])
    outer = r > 1.2
    assert outer.mean() > 0.4
    # angular distance to the nearest arm (arms at pi/2 + 2 pi k / 5)
    step = 2 * math.pi / 5
    offset = np.mod(phi - math.pi / 2 + step / 2, step) - step / 2
    assert np.mean(np.abs(offset[outer]) < 0.25) > 0.95
    # each arm is populated about equally
    arm = np.round((phi[outer] - math.pi / 2) / step).astype(int) % 5
    frac = np.bincount(arm, minlength=5) / outer.sum()
    assert np.all(np.abs(frac - 0.2) < 0.03)
    # arms reach out to about r ~ 3 but not beyond ~3.5
    assert np.quantile(r, 0.99) > 2.8
    assert r.max() < 3.6


def test_fourcircles_are_four_rings():
    x = datasets.toy("fourcircles", 20_000, seed=2)
    centres = np.array([[sx, sy] for sx in (-1.6, 1.6) for sy in (-1.6, 1.6)])
    quadrant = (x[:, 0] > 0).astype(int) * 2 + (x[:, 1] > 0).astype(int)
    counts = np.bincount(quadrant, minlength=4) / len(x)
    assert np.all(np.abs(counts - 0.25) < 0.02)
    for q in range(4):
        pts = x[quadrant == q]
        # the cluster is centred on its ring centre ...
        np.testing.assert_allclose(pts.mean(axis=0), centres[q], atol=0.05)
        # ... and is a ring: the distance to the centre is ~0.8, the centre itself is empty
        d = np.hypot(*(pts - centres[q]).T)
        assert abs(np.median(d) - 0.8) < 0.05
        assert np.mean(np.abs(d - 0.8) < 0.25) > 0.99
        assert np.mean(d < 0.4) < 0.001


def test_checkerboard_occupies_alternating_squares():
    x = datasets.toy("checkerboard", 20_000, seed=3)
    assert x.min() >= -4.0
    assert x.max() <= 4.0
    cell = np.floor((x + 4.0) / 2.0).astype(int)
    cell = np.clip(cell, 0, 3)
    assert np.all((cell[:, 0] + cell[:, 1]) % 2 == 0)
    occupancy = np.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16).reshape(4, 4)
    white = (np.add.outer(np.arange(4), np.arange(4)) % 2) == 0
    assert np.all(occupancy[~white] == 0)
    frac = occupancy[white] / len(x)
    assert np.all(np.abs(frac - 1 / 8) < 0.015)
    # uniform within the squares: both coordinates are uniform on [-4, 4]
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=0.08)
    np.testing.assert_allclose(x.std(axis=0), 8 / math.sqrt(12), rtol=0.03)


def test_concentricrings_radii_cluster_at_distinct_values():
    x = datasets.toy("concentricrings", 20_000, seed=4)
    r = np.hypot(x[:, 0], x[:, 1])
    radii = np.array([0.75, 1.5, 2.25, 3.0])
    nearest = np.argmin(np.abs(r[:, None] - radii[None, :]), axis=1)
    assert np.mean(np.abs(r - radii[nearest]) < 0.25) > 0.99
    share = np.bincount(nearest, minlength=4) / len(r)
    np.testing.assert_allclose(share, radii / radii.sum(), atol=0.02)
    # the gaps between rings are empty
    for gap in (radii[:-1] + radii[1:]) / 2:
        assert np.mean(np.abs(r - gap) < 0.1) < 0.002
    # and the angle is uniform
    phi = np.arctan2(x[:, 1], x[:, 0])
    counts = np.histogram(phi, bins=8, range=(-math.pi, math.pi))[0] / len(phi)
    assert np.all(np.abs(counts - 1 / 8) < 0.015)


def test_gaussian_is_standard_normal():
    x = datasets.toy("gaussian", 50_000, seed=5)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_allclose(np.cov(x.T), np.eye(2), atol=0.03)


def test_shifted_gaussian_is_shifted_and_correlated():
    x = datasets.toy("shifted_gaussian", 50_000, seed=6)
    assert np.linalg.norm(x.mean(axis=0)) > 0.8
    corr = np.corrcoef(x.T)[0, 1]
    assert 0.4 < corr < 0.7
    # still a gaussian: no excess kurtosis along either axis
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    np.testing.assert_allclose((z**4).mean(axis=0), 3.0, atol=0.1)


def test_eightgaussians_has_eight_modes_on_a_circle():
    x = datasets.toy("eightgaussians", 16_000, seed=7)
    r = np.hypot(x[:, 0], x[:, 1])
    assert abs(np.median(r) - 2.5) < 0.1
    phi = np.arctan2(x[:, 1], x[:, 0])
    mode = np.round(phi / (2 * math.pi / 8)).astype(int) % 8
    frac = np.bincount(mode, minlength=8) / len(x)
    assert np.all(np.abs(frac - 1 / 8) < 0.02)


def _half_arc_distance(x: np.ndarray, centre: tuple[float, float], above: bool) -> np.ndarray:
    """Distance of each point to a radius-2 half circle (above or below its centre)."""
    rel = x - np.asarray(centre)
    on_side = rel[:, 1] >= 0 if above else rel[:, 1] <= 0
    to_arc = np.abs(np.hypot(rel[:, 0], rel[:, 1]) - 2.0)
    to_ends = np.minimum(np.hypot(rel[:, 0] - 2.0, rel[:, 1]), np.hypot(rel[:, 0] + 2.0, rel[:, 1]))
    return np.where(on_side, to_arc, to_ends)


def test_moons_are_two_half_circles():
    x = datasets.toy("moons", 10_000, seed=8)
    # upper moon: the half circle of radius 2 above (-1, -0.5); lower moon: below (1, 0.5)
    d_upper = _half_arc_distance(x, (-1.0, -0.5), above=True)
    d_lower = _half_arc_distance(x, (1.0, 0.5), above=False)
    assert np.mean(np.minimum(d_upper, d_lower) < 0.4) > 0.99
    assert 0.45 < np.mean(d_upper < d_lower) < 0.55
    # a thin band: nothing far from both arcs
    assert np.minimum(d_upper, d_lower).max() < 0.8


def test_spirals_follow_two_arms():
    x = datasets.toy("spirals", 10_000, seed=9)
    r = np.hypot(x[:, 0], x[:, 1])
    phi = np.arctan2(x[:, 1], x[:, 0])
    # arms r = theta / pi at polar angle theta or theta + pi: pi r - phi is a multiple of pi
    residual = np.mod(math.pi * r - phi + math.pi / 2, math.pi) - math.pi / 2
    outer = r > 1.0
    assert np.mean(np.abs(residual[outer]) < 1.0) > 0.97  # uniform would give ~0.64
    assert r.max() < 3.6


# --------------------------------------------------------------------------------------------
# dijet: contract
# --------------------------------------------------------------------------------------------


def test_dijet_fields_types_and_constants():
    assert datasets.DIJET_FIELDS == (
        "mjj",
        "mj1",
        "delta_mj",
        "tau21_j1",
        "tau21_j2",
        "delta_r",
    )
    assert set(datasets.DIJET_KINDS) == {"sim", "data"}
    for kind in datasets.DIJET_KINDS:
        events = datasets.dijet(1000, kind=kind, seed=1)
        assert isinstance(events, ak.Array)
        assert len(events) == 1000
        assert events.fields == list(datasets.DIJET_FIELDS)
        for field in datasets.DIJET_FIELDS:
            values = ak.to_numpy(events[field])
            assert values.dtype == np.float64
            assert values.shape == (1000,)
            assert np.isfinite(values).all()
    assert datasets.dijet(10).fields == list(datasets.DIJET_FIELDS)  # default kind "sim"


def test_dijet_seeding():
    a = _matrix(datasets.dijet(2000, kind="sim", seed=5))
    b = _matrix(datasets.dijet(2000, kind="sim", seed=5))
    c = _matrix(datasets.dijet(2000, kind="sim", seed=6))
    d = _matrix(datasets.dijet(2000, kind="data", seed=5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)
    np.testing.assert_array_equal(_matrix(datasets.dijet(2000)), _matrix(datasets.dijet(2000)))


@pytest.mark.parametrize("kind", ["sim", "data"])
def test_dijet_empty(kind):
    events = datasets.dijet(0, kind=kind)
    assert len(events) == 0
    assert events.fields == list(datasets.DIJET_FIELDS)
    for field in datasets.DIJET_FIELDS:
        assert ak.to_numpy(events[field]).dtype == np.float64


def test_dijet_bad_kind_and_n():
    with pytest.raises(ValueError, match="sim") as info:
        datasets.dijet(10, kind="mc")
    assert "data" in str(info.value)
    with pytest.raises(ValueError, match="Did you mean 'data'"):
        datasets.dijet(10, kind="Data ")
    for bad in (-5, 1.5, None):
        with pytest.raises(ValueError, match="n must be a non-negative integer"):
            datasets.dijet(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# dijet: physics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["sim", "data"])
def test_dijet_physical_ranges(fixture, request):
    ev = request.getfixturevalue(fixture)
    assert np.all(ev["delta_mj"] >= 0.0)
    assert np.all(ev["mj1"] > 0.0)
    assert np.all(ev["mj1"] + ev["delta_mj"] < ev["mjj"] / 2)  # m < pT R with pT <= mjj / 2
    for tau in (ev["tau21_j1"], ev["tau21_j2"]):
        assert np.all((tau > 0.0) & (tau < 1.0))
    assert np.all(ev["delta_r"] > 2.0)
    assert 2.9 < np.median(ev["delta_r"]) < 3.4
    assert np.quantile(ev["delta_r"], 0.99) < 4.5
    # mjj covers 2.5-4.5 TeV and beyond, starting near 2.2-2.5 TeV
    mjj = ev["mjj"]
    assert 2000.0 < mjj.min() < 2500.0
    assert mjj.max() > 5000.0
    assert np.mean((mjj > 2500.0) & (mjj < 4500.0)) > 0.5
    assert np.mean(mjj > 4500.0) > 0.01


@pytest.mark.parametrize("fixture", ["sim", "data"])
def test_dijet_mjj_spectrum_falls(fixture, request):
    mjj = request.getfixturevalue(fixture)["mjj"]
    counts = np.histogram(mjj, bins=np.arange(3000.0, 5001.0, 250.0))[0]
    assert np.all(np.diff(counts) < 0), counts
    assert counts[0] > 5 * counts[-1]
    # and the signal region and sidebands hold plenty of events
    assert datasets.in_bands(mjj, datasets.SIGNAL_REGION).mean() > 0.05
    assert datasets.in_bands(mjj, datasets.SIDEBANDS).mean() > 0.15


@pytest.mark.parametrize("fixture", ["sim", "data"])
def test_dijet_medians(fixture, request):
    ev = request.getfixturevalue(fixture)
    expected = {"mj1": 110.0, "delta_mj": 130.0, "tau21_j1": 0.60, "tau21_j2": 0.49}
    for field, target in expected.items():
        median = float(np.median(ev[field]))
        assert abs(median / target - 1) < 0.15, (field, median, target)


@pytest.mark.parametrize("fixture", ["sim", "data"])
def test_dijet_correlations(fixture, request):
    ev = request.getfixturevalue(fixture)
    mj2 = ev["mj1"] + ev["delta_mj"]

    def corr(a, b):
        return np.corrcoef(a, b)[0, 1]

    assert corr(ev["mj1"], ev["mjj"]) > 0.05  # jet mass grows with jet pT ~ mjj / 2
    assert corr(mj2, ev["mjj"]) > 0.05
    assert corr(ev["tau21_j1"], ev["mj1"]) < -0.3  # heavier jets have lower tau21
    assert corr(ev["tau21_j2"], mj2) < -0.3
    assert corr(ev["mj1"], mj2) > 0.3  # the two jets' masses are positively correlated
    assert corr(ev["tau21_j1"], ev["tau21_j2"]) > 0.1
    # the jet-mass scale rises with mjj
    low = datasets.in_bands(ev["mjj"], (2300.0, 2700.0))
    high = datasets.in_bands(ev["mjj"], (3700.0, 4100.0))
    assert np.median(ev["mj1"][high]) > 1.08 * np.median(ev["mj1"][low])


def test_dijet_kinds_differ_with_mjj(sim, data):
    """The data/sim jet-mass ratio grows with mjj: the difference is mjj dependent."""

    def slope(ev):
        # least-squares slope of ln(m) against ln(mjj), for both jets
        x = np.log(ev["mjj"])
        return [np.polyfit(x, np.log(m), 1)[0] for m in (ev["mj1"], ev["mj1"] + ev["delta_mj"])]

    assert np.all(np.subtract(slope(data), slope(sim)) > 0.03)


# --------------------------------------------------------------------------------------------
# dijet: sim vs data separability (C2ST)
# --------------------------------------------------------------------------------------------


def _c2st_auc(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.vstack([a, b])
    y = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    clf = HistGradientBoostingClassifier(random_state=seed)
    proba = cross_val_predict(clf, x, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def _quantile_map(x: np.ndarray, ref_from: np.ndarray, ref_to: np.ndarray) -> np.ndarray:
    """Map each column of ``x`` by the 1D CDF of ``ref_from`` onto the quantiles of ``ref_to``."""
    out = np.empty_like(x)
    levels = (np.arange(len(ref_from)) + 0.5) / len(ref_from)
    for j in range(x.shape[1]):
        u = np.interp(x[:, j], np.sort(ref_from[:, j]), levels)
        out[:, j] = np.quantile(ref_to[:, j], u)
    return out


def test_c2st_sim_vs_data_is_moderate():
    a = _matrix(datasets.dijet(10_000, kind="sim", seed=21))
    b = _matrix(datasets.dijet(10_000, kind="data", seed=22))
    auc = _c2st_auc(a, b)
    print(f"C2ST AUC sim vs data: {auc:.4f}")
    assert 0.53 < auc < 0.75


def test_c2st_after_marginal_quantile_mapping_stays_above_half():
    """Fixing each 1D marginal separately does not make sim look like data."""
    # the 1D maps come from independent reference samples, so the test samples stay independent
    ref_sim = _matrix(datasets.dijet(100_000, kind="sim", seed=31))
    ref_data = _matrix(datasets.dijet(100_000, kind="data", seed=32))
    a = _matrix(datasets.dijet(10_000, kind="sim", seed=33))
    b = _matrix(datasets.dijet(10_000, kind="data", seed=34))
    mapped = _quantile_map(a, ref_sim, ref_data)
    # the marginals now agree ...
    for j in range(a.shape[1]):
        assert abs(np.median(mapped[:, j]) / np.median(b[:, j]) - 1) < 0.03
    # ... but the joint distributions do not
    auc = _c2st_auc(mapped, b)
    print(f"C2ST AUC quantile-mapped sim vs data: {auc:.4f}")
    assert auc > 0.52


# --------------------------------------------------------------------------------------------
# mjj bands and import hygiene
# --------------------------------------------------------------------------------------------


def test_band_constants_and_in_bands():
    lo, hi = datasets.SIGNAL_REGION
    (sb1_lo, sb1_hi), (sb2_lo, sb2_hi) = datasets.SIDEBANDS
    assert (lo, hi) == (3300.0, 3700.0)
    assert sb1_hi == lo
    assert sb2_lo == hi
    assert (sb1_lo, sb2_hi) == (2900.0, 4100.0)
    mjj = np.array([2899.0, 2900.0, 3299.9, 3300.0, 3500.0, 3700.0, 4099.0, 4100.0])
    np.testing.assert_array_equal(
        datasets.in_bands(mjj, datasets.SIGNAL_REGION), [0, 0, 0, 1, 1, 0, 0, 0]
    )
    np.testing.assert_array_equal(
        datasets.in_bands(mjj, datasets.SIDEBANDS), [0, 1, 1, 0, 0, 1, 1, 0]
    )
    events = datasets.dijet(100, seed=1)
    assert datasets.in_bands(events.mjj, datasets.SIDEBANDS).shape == (100,)
    with pytest.raises(ValueError, match="low < high"):
        datasets.in_bands(mjj, (3700.0, 3300.0))
    with pytest.raises(ValueError, match="bands"):
        datasets.in_bands(mjj, [(1.0, 2.0, 3.0)])


def test_datasets_import_is_light():
    code = (
        "import sys; import coffea_f4f.datasets as d; "
        "d.toy('star', 10); "
        "heavy = [m for m in ('torch', 'sklearn') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dijet_fatjets_are_consistent_with_the_event_record():
    import awkward as ak
    import vector

    vector.register_awkward()
    events, fj = datasets.dijet_fatjets(3000, kind="data", seed=4)
    same = datasets.dijet(3000, kind="data", seed=4)
    for f in datasets.DIJET_FIELDS:
        np.testing.assert_array_equal(ak.to_numpy(events[f]), ak.to_numpy(same[f]))
    assert ak.all(ak.num(fj) == 2)
    p4 = ak.zip({k: fj[k] for k in ("pt", "eta", "phi", "mass")}, with_name="Momentum4D")
    mjj = ak.to_numpy((p4[:, 0] + p4[:, 1]).mass)
    np.testing.assert_allclose(mjj, ak.to_numpy(events.mjj), rtol=1e-9)
    np.testing.assert_allclose(
        ak.to_numpy(p4[:, 0].deltaR(p4[:, 1])), ak.to_numpy(events.delta_r), rtol=1e-9
    )
    light = ak.argmin(fj.mass, axis=1, keepdims=True)
    heavy = ak.argmax(fj.mass, axis=1, keepdims=True)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(fj.mass[light])), ak.to_numpy(events.mj1))
    tau21 = fj.tau2 / fj.tau1
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(tau21[light])), ak.to_numpy(events.tau21_j1), rtol=1e-12
    )
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(tau21[heavy])), ak.to_numpy(events.tau21_j2), rtol=1e-12
    )


def test_write_dijet_nanoaod_reads_back_with_nanoaod_schema(tmp_path):
    import warnings

    import awkward as ak
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    path = tmp_path / "dijet.root"
    truth = datasets.write_dijet_nanoaod(str(path), 500, kind="sim", seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # missing cross-references: no Jet
        events = NanoEventsFactory.from_root(
            {str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager"
        ).events()
    fj = events.FatJet
    assert len(events) == 500
    assert ak.all(ak.num(fj) == 2)
    mjj = ak.to_numpy((fj[:, 0] + fj[:, 1]).mass)
    np.testing.assert_allclose(mjj, ak.to_numpy(truth.mjj), rtol=1e-4)  # float32 branches
    empty = datasets.write_dijet_nanoaod(str(tmp_path / "empty.root"), 0)
    assert len(empty) == 0
