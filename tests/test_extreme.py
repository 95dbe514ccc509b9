"""Extreme values: outliers refused when the scaling is fitted, no silent inf/NaN from finite
inputs, and what the morph does far outside the training range (DESIGN-NOTES.md, "Spaces and
scalings")."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import QUICK, TINY, gaussian_pair

import coffea_f4f as f4f
from coffea_f4f.scaling import EXTREME_SIGMAS, Scaler


def _with_outlier(value, n=2000, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 1))
    x[17, 0] = value
    return x


# ----------------------------------------------------------------------------- fit time
@pytest.mark.parametrize("value", [1e30, -1e30, 1e200, 1e308])
@pytest.mark.parametrize("kind", ["standard", "robust", "minmax", "logit", "discrete"])
def test_one_outlier_is_refused_naming_feature_count_and_value(value, kind):
    """On main a single 1e30 set std = 1.6e28 (every other event squeezed to ~1e-28 of the
    flow's range) and 1e200 overflowed the std to inf (NaN morphs)."""
    x = _with_outlier(value)
    if kind == "discrete":  # counts: 1e30 and the other large floats are integers
        x = np.round(_with_outlier(0.0) * 3)
        x[17, 0] = value
    with pytest.raises(ValueError, match=r"'pt': 1 of 2000 training values lie more than") as info:
        Scaler.fit(x, ["pt"], kind)
    message = str(info.value)
    assert f"{EXTREME_SIGMAS:.0e} robust standard deviations" in message
    assert f"{value:.6g}" in message
    assert "remove these events" in message


def test_log_scaling_takes_a_huge_positive_value_in_its_stride():
    x = np.exp(_with_outlier(0.0))
    x[17, 0] = 1e30  # log(1e30) = 69: about 69 robust sigmas, a tail value, not an error
    sc = Scaler.fit(x, ["m"], "log")
    z = sc.forward(x)
    assert np.isfinite(z).all()
    assert 0.5 < np.std(np.delete(z, 17)) < 1.0  # the other events keep most of the range


def test_fit_morpher_refuses_an_outlier_before_any_training():
    a, b = gaussian_pair(500)
    a[3, 0] = 1e30
    seen = []
    with pytest.raises(ValueError, match=r"'x': 1 of 1000 training values .*1e\+30"):
        f4f.fit_morpher(
            {"x": a[:, 0], "y": a[:, 1]},
            {"x": b[:, 0], "y": b[:, 1]},
            features=["x", "y"],
            flow=TINY,
            density=TINY,
            train=QUICK,
            callback=lambda e, _: seen.append(e),
        )
    assert seen == []


@pytest.mark.filterwarnings("ignore:feature 'v'")  # minmax floors the range at 1e-12
def test_fitted_scalings_are_finite_or_refused_near_the_float64_limit():
    rng = np.random.default_rng(0)
    for x in (
        np.array([[0.0], [1.7976931348623157e308]]),  # the span is beyond float64
        np.array([[-1e308], [1e308], [0.0]]),
        rng.normal(size=(50, 1)) * 1e-310,  # a subnormal scale
    ):
        for kind in ("standard", "minmax", "robust"):
            try:
                sc = Scaler.fit(x, ["v"], kind)
            except ValueError as err:
                refused = str(err)
            else:
                refused = ""
            if refused:
                assert "float64" in refused or "robust" in refused
                continue
            z = sc.forward(x)
            assert np.isfinite(z).all()
            assert np.isfinite(sc.inverse(z)).all()


# ----------------------------------------------------------------------------- applying
def test_finite_values_never_map_to_inf_silently():
    sc = Scaler.fit(np.random.default_rng(1).normal(size=(100, 1)) * 1e-200, ["tiny"])
    x = np.array([[0.0], [1e150], [-1e300]])
    with pytest.raises(ValueError, match=r"'tiny': 2 of 3 values .*float64 range"):
        sc.forward(x)  # on main: [0, inf, -inf]
    assert sc.in_domain(x).tolist() == [True, False, False]
    sc.forward(x[sc.in_domain(x)])
    # a value just inside a logit bound whose u rounds to 1
    lg = Scaler.fit(np.random.default_rng(2).uniform(0, 1, (100, 1)), ["u"], "logit")
    edge = np.array([[np.nextafter(lg.params[0]["high"], 0.0)]])
    if lg.in_domain(edge)[0]:
        assert np.isfinite(lg.forward(edge)).all()
    else:
        with pytest.raises(ValueError, match="float64 range"):
            lg.forward(edge)


def test_nan_and_inf_inputs_raise_for_every_kind():
    x = np.random.default_rng(3).normal(size=(200, 2))
    sc = Scaler.fit(x, ["a", "b"], {"b": "robust"})
    for bad in (np.nan, np.inf, -np.inf):
        y = x[:4].copy()
        y[2, 1] = bad
        with pytest.raises(ValueError, match=r"'b': 1 of 4 values are NaN or infinite"):
            sc.forward(y)  # on main: NaN / inf passed through
        with pytest.raises(ValueError, match=r"'b': 1 of 4"):
            sc.log_abs_det(y)
        assert sc.in_domain(y).tolist() == [True, True, False, True]


@pytest.mark.filterwarnings("ignore::coffea_f4f.morpher.FarOutsideWarning")  # flagged rows
# ----------------------------------------------------------------------------- far out
@pytest.mark.parametrize("sigmas", [1e3, 1e6])
def test_far_out_in_every_coordinate_is_the_identity_and_round_trips(tiny_morpher, sigmas):
    """Beyond ``tail_bound`` in every coordinate, every spline is the identity: the morph is
    the identity in the scaled space and the inverse returns the rows."""
    sc = tiny_morpher.scaler
    z = sigmas * np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.7], [-0.5, -1.0]])
    x = sc.inverse(z)
    y = tiny_morpher.morph(x)
    np.testing.assert_allclose(tiny_morpher.target_scaler.forward(y), z, rtol=1e-12)
    np.testing.assert_allclose(tiny_morpher.inverse(y), x, rtol=1e-9)


@pytest.mark.filterwarnings("ignore::coffea_f4f.morpher.FarOutsideWarning")  # flagged rows
@pytest.mark.parametrize("sigmas", [1e3, 1e6])
def test_one_far_coordinate_passes_through_unchanged(tiny_morpher, sigmas):
    """The far coordinate is the identity whatever the others do; the in-range one is moved
    to the edge of the spline interval (measured: about +-3.98 of tail_bound 4)."""
    sc = tiny_morpher.scaler
    z = np.array([[sigmas, 0.3], [0.2, -sigmas]])
    y = tiny_morpher.morph(sc.inverse(z))
    zy = tiny_morpher.target_scaler.forward(y)
    assert np.isfinite(zy).all()
    np.testing.assert_allclose([zy[0, 0], zy[1, 1]], [sigmas, -sigmas], rtol=1e-12)
    assert np.all(np.abs([zy[0, 1], zy[1, 0]]) <= TINY.tail_bound)


def test_one_far_coordinate_round_trips_or_is_flagged(tiny_morpher):
    """One coordinate far out and the others inside: the conditioners see the far value, so
    morph then inverse loses precision (measured ~5e-5 relative at 1e6 scaled units). Such
    rows are flagged (FarOutsideWarning, naming the feature); rows up to FAR_OUTSIDE round
    trip and are not flagged."""
    import warnings

    from coffea_f4f.morpher import FAR_OUTSIDE, FarOutsideWarning

    sc = tiny_morpher.scaler
    far = sc.inverse(np.array([[1e6, 0.3], [0.2, -1e6], [0.1, 0.2]]))
    with pytest.warns(FarOutsideWarning, match=r"2 of 3 rows .*'x': 1, 'y': 1"):
        y = tiny_morpher.morph(far)
    with pytest.warns(FarOutsideWarning):
        tiny_morpher.inverse(y)
    near = sc.inverse(np.array([[0.5 * FAR_OUTSIDE, 0.3], [0.2, -0.5 * FAR_OUTSIDE]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FarOutsideWarning)
        back = tiny_morpher.inverse(tiny_morpher.morph(near))
    np.testing.assert_allclose(back, near, rtol=1e-7)
