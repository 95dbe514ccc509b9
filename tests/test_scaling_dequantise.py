"""The dequantised scaling kinds: ``zero_inflated`` and ``discrete`` (coffea_f4f.scaling)."""

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffea_f4f import scaling
from coffea_f4f.scaling import Scaler, row_hash

NAMES = ["pt", "iso", "ntrk"]
SPEC = {"pt": "log", "iso": "zero_inflated", "ntrk": {"kind": "discrete", "low": 0}}
PT, ISO, NTRK = 0, 1, 2


def sample(n=2000, zero_fraction=0.62, seed=0):
    """A continuous pT, an isolation with exact zeros, a track count."""
    rng = np.random.default_rng(seed)
    iso = np.where(rng.random(n) < zero_fraction, 0.0, rng.exponential(2.0, n))
    return np.stack([rng.lognormal(3.5, 0.4, n), iso, rng.poisson(4.0, n).astype(float)], 1)


@pytest.fixture(scope="module")
def fitted():
    x = sample()
    return x, Scaler.fit(x, NAMES, SPEC)


def test_fitted_parameters(fitted):
    x, sc = fitted
    p = sc.params[ISO]
    assert p["zero_fraction"] == pytest.approx(np.mean(x[:, ISO] == 0))
    assert p["offset"] == pytest.approx(np.median(x[x[:, ISO] > 0, ISO]))
    assert p["width"] == 1.0
    assert p["threshold"] == -p["loc"] / p["scale"]  # the image of 0+: positives start there
    q = sc.params[NTRK]
    assert q["loc"] == pytest.approx(x[:, NTRK].mean() + 0.5)
    assert q["scale"] == pytest.approx(math.sqrt(x[:, NTRK].var() + 1 / 12))
    assert q["low"] == 0.0


# ------------------------------------------------------------------------------ determinism
def test_forward_is_chunking_and_order_invariant_bitwise(fitted):
    x, sc = fitted
    z = sc.forward(x)
    perm = np.random.default_rng(1).permutation(len(x))
    np.testing.assert_array_equal(sc.forward(x[perm]), z[perm])
    edges = [0, 1, 2, 7, 100, 101, 1337, len(x)]
    parts = [sc.forward(x[a:b]) for a, b in itertools.pairwise(edges)]
    np.testing.assert_array_equal(np.concatenate(parts), z)
    np.testing.assert_array_equal(sc.forward(x[5:6]), z[5:6])  # one row alone
    np.testing.assert_array_equal(sc.forward(x[::-1][perm[:300]]), z[::-1][perm[:300]])
    # the noise is a function of the row: a saved and reloaded scaler gives the same values
    again = Scaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_array_equal(again.forward(x), z)


def test_noise_is_uniform_and_independent_between_features(fitted):
    x, sc = fitted
    z = sc.forward(x)
    p, q = sc.params[ISO], sc.params[NTRK]
    zero = x[:, ISO] == 0
    u_iso = (p["threshold"] - z[zero, ISO]) / p["width"]
    u_trk = z[:, NTRK] * q["scale"] + q["loc"] - x[:, NTRK]
    for u in (u_iso, u_trk):
        assert u.min() >= 1e-6 - 1e-12
        assert u.max() <= 1 - 1e-6 + 1e-12
        counts = np.histogram(u, bins=10, range=(0, 1))[0]
        expected = len(u) / 10
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    assert abs(np.corrcoef(u_iso, u_trk[zero])[0, 1]) < 0.1


def test_identical_rows_share_noise_and_key_separates_them(fitted):
    _, sc = fitted
    rows = np.array([[30.0, 0.0, 3.0]] * 4)
    z = sc.forward(rows)
    assert np.all(z == z[0])  # a function of the row only ...
    keyed = sc.forward(rows, key=np.arange(4.0))
    assert len(np.unique(keyed[:, ISO])) == 4  # ... unless a key tells them apart
    np.testing.assert_array_equal(
        sc.forward(rows[2:], key=np.arange(4.0)[2:]), keyed[2:]
    )  # keyed noise is chunking-invariant too
    np.testing.assert_array_equal(sc.forward(rows, key=np.arange(4.0)[:, None]), keyed)
    with pytest.raises(ValueError, match="key has 3 rows"):
        sc.forward(rows, key=np.arange(3.0))


def test_negative_zero_is_a_zero(fitted):
    _, sc = fitted
    a = sc.forward(np.array([[30.0, 0.0, 3.0]]))
    b = sc.forward(np.array([[30.0, -0.0, 3.0]]))
    np.testing.assert_array_equal(a, b)
    assert row_hash(np.array([[-0.0]]))[0] == row_hash(np.array([[0.0]]))[0]


# ------------------------------------------------------------------------------ round trips
def test_round_trip_zeros_exact_positives_and_integers(fitted):
    x, sc = fitted
    back = sc.inverse(sc.forward(x))
    zero = x[:, ISO] == 0
    assert np.all(back[zero, ISO] == 0.0)
    assert not np.signbit(back[:, ISO]).any()  # no -0.0 either
    np.testing.assert_allclose(back[~zero, ISO], x[~zero, ISO], rtol=1e-12, atol=0)
    np.testing.assert_allclose(back[:, PT], x[:, PT], rtol=1e-12)
    np.testing.assert_array_equal(back[:, NTRK], x[:, NTRK])


def test_tiny_positive_values_round_trip_to_absolute_precision(fitted):
    _, sc = fitted
    c = sc.params[ISO]["offset"]
    iso = np.array([1e-12, 1e-9, 1e-6, 1e-3, 1.0, 1e3]) * c
    x = np.stack([np.full(6, 30.0), iso, np.full(6, 2.0)], 1)
    back = sc.inverse(sc.forward(x))[:, ISO]
    np.testing.assert_allclose(back, iso, rtol=1e-12, atol=1e-14 * c)
    assert np.all(back > 0)


def test_zero_region_lies_below_all_positive_images(fitted):
    x, sc = fitted
    z = sc.forward(x)
    zero = x[:, ISO] == 0
    t = sc.params[ISO]["threshold"]
    assert z[zero, ISO].max() < t <= z[~zero, ISO].min()
    assert z[zero, ISO].min() > t - sc.params[ISO]["width"]


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=5e-324, max_value=1e300, allow_nan=False))
def test_any_positive_value_maps_above_the_zero_band(fitted, value):
    _, sc = fitted
    z = sc.forward(np.array([[30.0, value, 3.0]]))[0, ISO]
    assert z >= sc.params[ISO]["threshold"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-50, 50, allow_nan=False),
            st.floats(allow_nan=False, allow_infinity=True),
            st.floats(allow_nan=False, allow_infinity=True),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_inverse_never_negative_and_discrete_integer(fitted, rows):
    _, sc = fitted
    out = sc.inverse(np.array(rows, dtype=np.float64))
    assert np.all(out[:, ISO] >= 0)
    assert not np.signbit(out[:, ISO]).any()
    trk = out[:, NTRK]
    assert np.all(trk >= 0)  # "low": 0
    finite = np.isfinite(trk)
    assert np.all(trk[finite] == np.floor(trk[finite]))
    z = np.array(rows, dtype=np.float64)
    assert np.all(out[z[:, ISO] < sc.params[ISO]["threshold"], ISO] == 0.0)


def test_shifted_working_space_changes_the_zero_fraction(fitted):
    x, sc = fitted
    z = sc.forward(x)
    f0 = np.mean(x[:, ISO] == 0)  # ~0.62
    w = sc.params[ISO]["width"]

    def zero_fraction(shift):
        moved = z.copy()
        moved[:, ISO] += shift
        out = sc.inverse(moved)
        assert np.all(out[:, ISO] >= 0)
        return np.mean(out[:, ISO] == 0)

    assert zero_fraction(0.0) == f0
    assert zero_fraction(0.3) < f0 - 0.1  # zeros pushed over the threshold become positive
    assert zero_fraction(-0.3) > f0 + 0.02  # the smallest positives become zeros
    # a shift of w (1 - 0.54 / 0.62) moves sim's 62% zeros to data's 54% (uniform noise)
    assert zero_fraction(w * (1 - 0.54 / f0)) == pytest.approx(0.54, abs=0.02)


def test_threshold_near_positive_values_far_from_zero():
    rng = np.random.default_rng(3)
    iso = np.where(rng.random(1000) < 0.3, 0.0, rng.normal(10.0, 0.1, 1000))
    sc = Scaler.fit(iso[:, None], ["iso"], "zero_inflated")
    p = sc.params[0]
    z = sc.forward(iso[:, None])[:, 0]
    zero = iso == 0
    assert p["threshold"] > -p["loc"] / p["scale"]  # not 100 std below the data
    assert p["threshold"] == pytest.approx(z[~zero].min() - 0.5)
    assert z[zero].max() < p["threshold"] < z[~zero].min()
    back = sc.inverse(z[:, None])[:, 0]
    assert np.all(back[zero] == 0.0)
    np.testing.assert_allclose(back[~zero], iso[~zero], rtol=1e-12)


# ---------------------------------------------------------------------------- densities
def test_log_abs_det_matches_numerical_derivative(fitted):
    x, sc = fitted
    x = x[:300]
    positive = x[:, ISO] > 0
    h = 1e-6
    numeric = np.log(sc.params[NTRK]["scale"]) * -1.0 + np.zeros(len(x))
    for j in (PT, ISO):  # positive values: no noise, so finite differences apply
        step = h * np.maximum(x[:, j], 1e-3)
        up, down = x.copy(), x.copy()
        up[:, j] += step
        down[:, j] -= np.where(x[:, j] > 0, np.minimum(step, x[:, j] / 2), 0)
        d = (sc.forward(up)[:, j] - sc.forward(down)[:, j]) / (up[:, j] - down[:, j])
        numeric += np.log(np.abs(d))
    ld = sc.log_abs_det(x)
    np.testing.assert_allclose(ld[positive], numeric[positive], rtol=1e-6, atol=1e-6)
    # a zero contributes log(width), the noise map's |dz/du|
    rest = -np.log(sc.params[PT]["scale"]) - np.log(x[:, PT]) - np.log(sc.params[NTRK]["scale"])
    np.testing.assert_allclose(ld[~positive] - rest[~positive], np.log(1.0), atol=1e-12)


def test_discrete_log_abs_det_is_the_standardisation(fitted):
    x, sc = fitted
    one = Scaler(names=["ntrk"], kinds=["discrete"], params=[sc.params[NTRK]])
    ld = one.log_abs_det(x[:, NTRK:])
    np.testing.assert_allclose(ld, -np.log(sc.params[NTRK]["scale"]), rtol=0, atol=1e-15)


def test_zero_inflated_density_is_normalised_and_zero_term_is_a_lower_bound(fitted):
    """With a standard-normal working-space density: the positive part integrates to
    1 - Phi(t) (change of variables right), and log p(z) + log|det| of the zeros averages to a
    lower bound on log P(band) (uniform dequantisation)."""
    _, sc = fitted
    p = sc.params[ISO]
    one = Scaler(names=["iso"], kinds=["zero_inflated"], params=[p])

    def log_normal(z):
        return -0.5 * z**2 - 0.5 * np.log(2 * np.pi)

    def phi(t):
        return 0.5 * (1 + math.erf(t / math.sqrt(2)))

    grid = np.concatenate([[0.0], np.geomspace(1e-12, 1e4, 200_001) * p["offset"]])
    col = grid[1:, None]
    dens = np.exp(log_normal(one.forward(col)[:, 0]) + one.log_abs_det(col))
    mass = np.sum(0.5 * (dens[1:] + dens[:-1]) * np.diff(col[:, 0]))
    assert mass == pytest.approx(1 - phi(p["threshold"]), abs=1e-6)

    rng = np.random.default_rng(7)
    zeros = np.zeros((5000, 1))
    zeros_keyed = one.forward(zeros, key=rng.random(5000))[:, 0]
    bound = np.mean(log_normal(zeros_keyed) + one.log_abs_det(zeros))
    band = phi(p["threshold"]) - phi(p["threshold"] - p["width"])
    assert bound <= math.log(band)
    # the Jensen gap: var(log p) / 2 over the band, ~0.15 for this band of a standard normal
    assert bound > math.log(band) - 0.25


# ----------------------------------------------------------------------------- persistence
def test_dict_round_trip(fitted):
    x, sc = fitted
    d = json.loads(json.dumps(sc.to_dict()))
    assert d["kinds"] == ["log", "zero_inflated", "discrete"]
    assert {"offset", "width", "threshold", "zero_fraction"} <= set(d["params"][ISO])
    again = Scaler.from_dict(d)
    assert again.same_as(sc)
    np.testing.assert_array_equal(again.forward(x), sc.forward(x))
    z = sc.forward(x) + 0.2
    np.testing.assert_array_equal(again.inverse(z), sc.inverse(z))
    d["params"][ISO]["width"] = 2.0
    assert not Scaler.from_dict(d).same_as(sc)


def test_spec_options_are_used_and_saved():
    x = sample(500)
    sc = Scaler.fit(x, NAMES, {"iso": {"kind": "zero_inflated", "offset": 0.5, "width": 0.25}})
    assert sc.params[ISO]["offset"] == 0.5
    assert sc.params[ISO]["width"] == 0.25
    z = sc.forward(x)
    zero = x[:, ISO] == 0
    assert z[zero, ISO].min() > sc.params[ISO]["threshold"] - 0.25


# ------------------------------------------------------------------------- domains, errors
def test_in_domain(fitted):
    _, sc = fitted
    rows = np.array(
        [
            [30.0, 0.0, 0.0],
            [30.0, 1.5, 7.0],
            [30.0, -1e-9, 3.0],  # negative isolation
            [30.0, np.nan, 3.0],
            [30.0, 1.0, 2.5],  # non-integer count
            [30.0, 1.0, np.inf],
            [30.0, 1.0, np.nan],
            [30.0, 1.0, -2.0],  # negative integer: in the domain (low only clips outputs)
        ]
    )
    assert sc.in_domain(rows).tolist() == [True, True, False, False, False, False, False, True]
    sc.forward(rows[sc.in_domain(rows)])


def test_forward_rejects_values_outside_the_domain_naming_the_feature(fitted):
    x, sc = fitted
    bad = x[:5].copy()
    bad[:2, ISO] = -1.0
    with pytest.raises(ValueError, match=r"'iso': 2 of 5 .*x >= 0"):
        sc.forward(bad)
    with pytest.raises(ValueError, match=r"'iso': 2 of 5"):
        sc.log_abs_det(bad)
    bad = x[:5].copy()
    bad[0, NTRK] = 2.5
    with pytest.raises(ValueError, match=r"'ntrk': 1 of 5 .*integers"):
        sc.forward(bad)


def test_fit_errors_name_the_feature():
    x = sample(200)
    bad = x.copy()
    bad[:3, ISO] = -0.5
    with pytest.raises(ValueError, match=r"'iso': 3 of 200 .*'zero_inflated'"):
        Scaler.fit(bad, NAMES, SPEC)
    bad = x.copy()
    bad[:2, NTRK] += 0.5
    with pytest.raises(ValueError, match=r"'ntrk': 2 of 200 .*'discrete'"):
        Scaler.fit(bad, NAMES, SPEC)
    bad = x.copy()
    bad[:, ISO] = 0.0
    with pytest.raises(ValueError, match=r"'iso'.*needs positive values"):
        Scaler.fit(bad, NAMES, SPEC)
    bad = x.copy()
    bad[:, ISO] = np.where(x[:, ISO] > 0, 3.0, 0.0)
    with pytest.raises(ValueError, match=r"'iso'.*all equal"):
        Scaler.fit(bad, NAMES, SPEC)
    bad = x.copy()
    bad[:, NTRK] = 2.0
    with pytest.raises(ValueError, match=r"'ntrk' is constant"):
        Scaler.fit(bad, NAMES, SPEC)
    with pytest.raises(ValueError, match=r"'iso'.*'width' must be positive"):
        Scaler.fit(x, NAMES, {"iso": {"kind": "zero_inflated", "width": 0}})
    with pytest.raises(ValueError, match=r"'iso'.*'offset' must be positive"):
        Scaler.fit(x, NAMES, {"iso": {"kind": "zero_inflated", "offset": -1}})
    with pytest.raises(ValueError, match=r"'ntrk'.*'low' must be a finite integer"):
        Scaler.fit(x, NAMES, {"ntrk": {"kind": "discrete", "low": 0.5}})
    with pytest.raises(ValueError, match=r"'ntrk' needs high >= low"):
        Scaler.fit(x, NAMES, {"ntrk": {"kind": "discrete", "low": 5, "high": 2}})


def test_no_zeros_is_fine():
    x = sample(300, zero_fraction=0.0)
    sc = Scaler.fit(x, NAMES, SPEC)
    assert sc.params[ISO]["zero_fraction"] == 0.0
    np.testing.assert_allclose(sc.inverse(sc.forward(x)), x, rtol=1e-12)


# --------------------------------------------------------------------------------- torch
def test_torch_use_raises_a_clear_error(fitted):
    torch = pytest.importorskip("torch")
    x, sc = fitted
    t = torch.as_tensor(x[:10])
    for fn in (scaling.forward, scaling.inverse, scaling.log_abs_det):
        with pytest.raises(ValueError, match=r"cannot be bridged.*\['iso', 'ntrk'\]"):
            fn(sc, t, torch)
    with pytest.raises(ValueError, match="train the densities inside fit_morpher"):
        scaling.check_bridgeable(sc)
    plain = Scaler.fit(x[:, :1], ["pt"], "log")
    scaling.check_bridgeable(plain)  # the other kinds still bridge
    out = scaling.forward(plain, torch.as_tensor(x[:10, :1]), torch)
    np.testing.assert_allclose(out.numpy(), plain.forward(x[:10, :1]), rtol=1e-15)
