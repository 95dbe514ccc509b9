import numpy as np
import pytest

from coffea_f4f.scaling import Scaler


def sample(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            rng.normal(5.0, 2.0, n),  # standard
            rng.lognormal(4.0, 0.5, n),  # positive -> log
            rng.beta(3.0, 2.0, n),  # bounded -> logit
            rng.uniform(-10, 30, n),  # minmax
            rng.normal(size=n),  # identity
        ],
        axis=1,
    )


NAMES = ["s", "m", "tau", "u", "i"]
SPEC = {
    "m": "log",
    "tau": {"kind": "logit", "low": 0.0, "high": 1.0},
    "u": "minmax",
    "i": "identity",
}


def test_round_trip_and_standardisation():
    x = sample()
    sc = Scaler.fit(x, NAMES, SPEC)
    z = sc.forward(x)
    np.testing.assert_allclose(sc.inverse(z), x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(z[:, :3].mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(z[:, :3].std(0), 1, atol=1e-10)
    assert z[:, 3].min() == pytest.approx(-3)
    assert z[:, 3].max() == pytest.approx(3)
    np.testing.assert_array_equal(z[:, 4], x[:, 4])


def test_log_abs_det_matches_finite_differences():
    x = sample(200)
    sc = Scaler.fit(x, NAMES, SPEC)
    h = 1e-6
    numeric = np.zeros(len(x))
    for j in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[j] = h * np.maximum(1.0, np.abs(x[:, j])).mean()
        d = (sc.forward(x + e)[:, j] - sc.forward(x - e)[:, j]) / (2 * e[j])
        numeric += np.log(np.abs(d))
    np.testing.assert_allclose(sc.log_abs_det(x), numeric, rtol=1e-5, atol=1e-5)


def test_dict_round_trip():
    x = sample()
    sc = Scaler.fit(x, NAMES, SPEC)
    again = Scaler.from_dict(sc.to_dict())
    np.testing.assert_array_equal(again.forward(x), sc.forward(x))
    assert again.same_as(sc)


def test_logit_fitted_bounds_cover_training_data_with_margin():
    x = sample()
    sc = Scaler.fit(x[:, 2:3], ["tau"], "logit")
    p = sc.params[0]
    assert p["low"] < x[:, 2].min()
    assert p["high"] > x[:, 2].max()
    assert np.isfinite(sc.forward(x[:, 2:3])).all()


def test_domain_errors_name_feature_and_count():
    x = sample()
    sc = Scaler.fit(x, NAMES, SPEC)
    bad = x[:5].copy()
    bad[:2, 1] = -1.0
    with pytest.raises(ValueError, match=r"'m': 2 of 5"):
        sc.forward(bad)
    bad = x[:5].copy()
    bad[0, 2] = 1.5
    with pytest.raises(ValueError, match=r"'tau': 1 of 5"):
        sc.forward(bad)


def test_fit_errors():
    x = sample(50)
    with pytest.raises(ValueError, match="unknown scaling"):
        Scaler.fit(x, NAMES, "sqrt")
    with pytest.raises(ValueError, match="unknown features"):
        Scaler.fit(x, NAMES, {"zz": "log"})
    with pytest.raises(ValueError, match="constant"):
        Scaler.fit(np.ones((10, 1)), ["c"])
    with pytest.raises(ValueError, match="at least 2"):
        Scaler.fit(x[:1], NAMES)
    with pytest.raises(ValueError, match=r"'s': 1 of 2"):
        Scaler.fit(np.array([[-1.0], [2.0]]), ["s"], "log")


def test_in_domain_marks_the_rows_forward_accepts():
    x = sample(20)
    sc = Scaler.fit(x, NAMES, SPEC)
    bad = x.copy()
    bad[3, 1] = -1.0  # log
    bad[7, 2] = 1.0  # logit edge
    bad[9, 0] = -1e9  # standard: always accepted
    mask = sc.in_domain(bad)
    assert mask.tolist() == [i not in (3, 7) for i in range(20)]
    sc.forward(bad[mask])  # no error on the accepted rows


# ---------------------------------------------------------------- extreme values (fit time)
def test_fit_refuses_nan_and_inf_training_values():
    x = sample(50)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[[3, 7], 0] = bad
        with pytest.raises(ValueError, match=r"'s': 2 of 50 training values are NaN or infinite"):
            Scaler.fit(y, NAMES, SPEC)


def test_scale_near_the_float64_limit_does_not_overflow():
    rng = np.random.default_rng(0)
    x = 1e200 * (1.0 + 0.1 * rng.normal(size=(500, 1)))  # (x - mean)^2 overflows
    sc = Scaler.fit(x, ["big"])
    assert sc.params[0]["scale"] == pytest.approx(1e199, rel=0.1)
    z = sc.forward(x)
    np.testing.assert_allclose(z.std(), 1.0, rtol=1e-9)
    np.testing.assert_allclose(sc.inverse(z), x, rtol=1e-12)
    assert np.isfinite(sc.log_abs_det(x)).all()


def test_robust_kind_is_median_and_iqr():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (4000, 1))
    x[:20, 0] = 1e4  # a few large values set the std, not the robust scale
    sc = Scaler.fit(x, ["r"], "robust")
    q1, med, q3 = np.percentile(x[:, 0], [25, 50, 75])
    assert sc.params[0] == {"loc": med, "scale": (q3 - q1) / 1.349}
    np.testing.assert_allclose(sc.inverse(sc.forward(x)), x, rtol=1e-12)
    assert Scaler.from_dict(sc.to_dict()).same_as(sc)
    spike = np.concatenate([np.zeros(800), rng.normal(5.0, 1.0, 200)])[:, None]
    p = Scaler.fit(spike, ["s"], "robust").params[0]  # IQR 0: the MAD of the other values
    assert p["loc"] == 0.0
    assert p["scale"] == pytest.approx(1.4826 * np.median(np.abs(spike[spike != 0])))
    with pytest.raises(ValueError, match="constant"):
        Scaler.fit(np.ones((10, 1)), ["c"], "robust")


def test_a_few_large_values_warn_and_suggest_robust():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 1))
    x[:5, 0] = 1e4  # std ~ 500: the core would sit within +-0.01 of the flow's range
    with pytest.warns(UserWarning, match=r"'x'.*robust scale.*10000.*'robust'"):
        Scaler.fit(x, ["x"], "standard")
    with pytest.warns(UserWarning, match="robust scale"):
        Scaler.fit(x, ["x"], "minmax")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Scaler.fit(x, ["x"], "robust")
        Scaler.fit(rng.lognormal(0.0, 2.0, (2000, 1)), ["x"], "log")  # heavy tail, log: fine


# ---------------------------------------------------------------- properties (hypothesis)
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

#: one training column per kind (the dequantised kinds are in test_scaling_dequantise.py too)
_RNG = np.random.default_rng(11)
_TRAIN = {
    "standard": _RNG.normal(5.0, 2.0, 500),
    "robust": _RNG.normal(5.0, 2.0, 500),
    "minmax": _RNG.uniform(-10.0, 30.0, 500),
    "identity": _RNG.normal(size=500),
    "log": _RNG.lognormal(4.0, 0.5, 500),
    "logit": _RNG.beta(3.0, 2.0, 500),
    "zero_inflated": np.where(_RNG.random(500) < 0.4, 0.0, _RNG.lognormal(0.0, 1.0, 500)),
    "discrete": _RNG.poisson(3.0, 500).astype(float),
    "categorical": _RNG.choice([0.0, 1.0, 2.0, 5.0], 500),
}
_SPECS = {
    "logit": {"kind": "logit", "low": 0.0, "high": 1.0},
    "discrete": {"kind": "discrete", "low": 0},
}
KINDS = list(_TRAIN)
CONTINUOUS = ["standard", "robust", "minmax", "identity", "log", "logit", "zero_inflated"]
FAST = hypothesis.settings(max_examples=40, deadline=None)
LONG = hypothesis.settings(max_examples=1000, deadline=None)
_SCALERS: dict[str, Scaler] = {}


def fitted(kind):
    """A one-feature scaler of ``kind`` fitted on its training column (cached)."""
    if kind not in _SCALERS:
        _SCALERS[kind] = Scaler.fit(_TRAIN[kind][:, None], [kind], [_SPECS.get(kind, kind)])
    return _SCALERS[kind]


def typical(kind):
    """Values of ``kind``'s domain around (and well outside) its training range."""
    if kind == "categorical":
        return st.sampled_from([0.0, 1.0, 2.0, 5.0])
    if kind == "discrete":
        return st.integers(0, 60).map(float)
    if kind == "logit":
        return st.floats(1e-9, 1.0 - 1e-9)
    col = _TRAIN[kind]
    if kind in ("log", "zero_inflated"):
        positive = st.floats(1e-3 * float(np.median(col[col > 0])), 100.0 * float(col.max()))
        return st.one_of(st.just(0.0), positive) if kind == "zero_inflated" else positive
    lo, hi = float(col.min()), float(col.max())
    return st.floats(lo - 100.0 * (hi - lo), hi + 100.0 * (hi - lo))


def anywhere(kind):
    """Any finite value the map accepts (for the unbounded kinds: any float)."""
    if kind == "log":
        return st.floats(1e-300, 1e300)
    if kind == "logit":
        return st.floats(0.0, 1.0, exclude_min=True, exclude_max=True)
    if kind == "zero_inflated":  # log1p(x / c) - loc rounds x < ~1e-16 c loc to exactly 0
        return st.one_of(st.just(0.0), st.floats(1e-6 * float(np.median(_TRAIN[kind])), 1e300))
    if kind in ("discrete", "categorical"):
        return typical(kind)
    return st.floats(allow_nan=False, allow_infinity=False)


def _round_trip(kind, values, far):
    sc = fitted(kind)
    x = np.array(values)[:, None]
    if not sc.in_domain(x).all():  # documented: finite values whose image overflows float64
        assert far, f"{kind}: typical values {values} are refused"
        with pytest.raises(ValueError, match="float64 range"):
            sc.forward(x)
        return
    z = sc.forward(x)
    assert np.isfinite(z).all()
    back = sc.inverse(z)
    if kind in ("discrete", "categorical"):
        np.testing.assert_array_equal(back, x)
        return
    if kind == "zero_inflated":
        np.testing.assert_array_equal(back[x == 0], 0.0)
    p = sc.params[0]
    if kind == "logit":
        atol = 1e-12 * (p["high"] - p["low"])
    elif kind in ("log", "zero_inflated"):
        atol = 0.0  # relative errors only
    else:  # a linear map: rounding is relative to the largest of x, loc and scale
        atol = 1e-12 * (np.abs(x).max() + abs(p["loc"]) + p["scale"])
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=atol)


def _log_det(kind, value):
    sc = fitted(kind)
    x = np.array([[value]])
    h = 1e-6 * max(abs(value), float(np.std(_TRAIN[kind])))
    if kind == "logit":
        h = min(h, 1e-3 * min(value, 1.0 - value))
    if kind == "zero_inflated":
        h = min(h, 1e-3 * value)
    slope = (sc.forward(x + h)[0, 0] - sc.forward(x - h)[0, 0]) / (2 * h)
    np.testing.assert_allclose(np.exp(sc.log_abs_det(x)[0]), abs(slope), rtol=1e-5)


def _all_kinds(rows):
    names = [f"f{j}" for j in range(len(KINDS))]
    cols = [_TRAIN[k] for k in KINDS]
    sc = _SCALERS.get("all") or Scaler.fit(
        np.stack(cols, 1), names, [_SPECS.get(k, k) for k in KINDS]
    )
    _SCALERS["all"] = sc
    return sc, np.array(rows, dtype=np.float64)


def _chunks(rows, cut):
    sc, x = _all_kinds(rows)
    cut = min(cut, len(x))
    for fn in (sc.forward, sc.log_abs_det):
        np.testing.assert_allclose(
            np.concatenate([fn(x[:cut]), fn(x[cut:])]), fn(x), rtol=1e-12, atol=0
        )
    z = sc.forward(x)
    np.testing.assert_allclose(
        np.concatenate([sc.inverse(z[:cut]), sc.inverse(z[cut:])]), sc.inverse(z), rtol=1e-12
    )


_OUT_OF_DOMAIN = {
    "log": [0.0, -1.0],
    "logit": [0.0, 1.0, -0.5, 2.0],
    "zero_inflated": [-1e-9, -3.0],
    "discrete": [2.5, 1e-9],
    "categorical": [3.0, -1.0],
}


def _bad_input(kind, values, where, which):
    sc = fitted(kind)
    bads = [np.nan, np.inf, -np.inf, *_OUT_OF_DOMAIN.get(kind, [])]
    x = np.array(values)[:, None]
    where = where % len(x)
    x[where, 0] = bads[which % len(bads)]
    mask = sc.in_domain(x)
    assert mask.tolist() == [i != where for i in range(len(x))]
    with pytest.raises(ValueError, match=rf"'{kind}'"):
        sc.forward(x)
    if kind != "categorical":  # a condition: no Jacobian, its codes are checked by forward
        with pytest.raises(ValueError, match=rf"'{kind}'"):
            sc.log_abs_det(x)
    sc.forward(x[mask])  # the other rows are accepted


_ROWS = st.lists(st.tuples(*(typical(k) for k in KINDS)), min_size=1, max_size=30)
_VALUES = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20)


def _in_kind(kind, u):
    """Map ``u`` in [0, 1] to a typical value of ``kind`` inside its training range."""
    col = _TRAIN[kind]
    if kind in ("discrete", "categorical"):
        codes = np.unique(col)
        return float(codes[min(int(u * len(codes)), len(codes) - 1)])
    if kind == "logit":
        return 0.01 + 0.98 * u
    if kind == "zero_inflated":
        pos = col[col > 0]
        return 0.0 if u < 0.2 else float(pos.min() + u * (pos.max() - pos.min()))
    return float(col.min() + u * (col.max() - col.min()))


def _fit_any(values, kind):
    x = np.array(values)[:, None]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sc = Scaler.fit(x, ["v"], kind)
        except ValueError:
            return  # documented: constant, extreme, or beyond float64
    assert all(np.isfinite(v) for v in sc.params[0].values())
    z = sc.forward(x)
    assert np.isfinite(z).all()
    assert np.isfinite(sc.log_abs_det(x)).all()
    span = float(np.abs(x).max())
    np.testing.assert_allclose(sc.inverse(z), x, rtol=1e-9, atol=1e-12 * span)


@FAST
@hypothesis.given(
    kind=st.sampled_from(KINDS), data=st.data(), far=st.booleans(), n=st.integers(1, 20)
)
def test_round_trip_every_kind_in_its_domain(kind, data, far, n):
    values = data.draw(st.lists((anywhere if far else typical)(kind), min_size=n, max_size=n))
    _round_trip(kind, values, far)


@FAST
@hypothesis.given(kind=st.sampled_from(CONTINUOUS), u=st.floats(0.0, 1.0))
def test_log_det_is_the_numerical_derivative(kind, u):
    value = _in_kind(kind, u)
    hypothesis.assume(not (kind == "zero_inflated" and value == 0.0))
    _log_det(kind, value)


@FAST
@hypothesis.given(rows=_ROWS, cut=st.integers(0, 30))
def test_two_batches_equal_one(rows, cut):
    _chunks(rows, cut)


@FAST
@hypothesis.given(
    kind=st.sampled_from(KINDS), u=_VALUES, where=st.integers(0, 100), which=st.integers(0, 10)
)
def test_nan_inf_and_out_of_domain_raise_value_error(kind, u, where, which):
    _bad_input(kind, [_in_kind(kind, v) for v in u], where, which)


@FAST
@hypothesis.given(
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=40),
    kind=st.sampled_from(["standard", "robust", "minmax", "identity"]),
)
def test_fit_on_any_finite_values_is_finite_or_refused(values, kind):
    _fit_any(values, kind)


@pytest.mark.slow
@LONG
@hypothesis.given(
    kind=st.sampled_from(KINDS), data=st.data(), far=st.booleans(), n=st.integers(1, 20)
)
def test_round_trip_long(kind, data, far, n):
    values = data.draw(st.lists((anywhere if far else typical)(kind), min_size=n, max_size=n))
    _round_trip(kind, values, far)


@pytest.mark.slow
@LONG
@hypothesis.given(kind=st.sampled_from(CONTINUOUS), u=st.floats(0.0, 1.0))
def test_log_det_long(kind, u):
    value = _in_kind(kind, u)
    hypothesis.assume(not (kind == "zero_inflated" and value == 0.0))
    _log_det(kind, value)


@pytest.mark.slow
@LONG
@hypothesis.given(rows=_ROWS, cut=st.integers(0, 30))
def test_two_batches_equal_one_long(rows, cut):
    _chunks(rows, cut)


@pytest.mark.slow
@LONG
@hypothesis.given(
    kind=st.sampled_from(KINDS), u=_VALUES, where=st.integers(0, 100), which=st.integers(0, 10)
)
def test_bad_inputs_long(kind, u, where, which):
    _bad_input(kind, [_in_kind(kind, v) for v in u], where, which)


@pytest.mark.slow
@LONG
@hypothesis.given(
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=40),
    kind=st.sampled_from(["standard", "robust", "minmax", "identity"]),
)
def test_fit_on_any_finite_values_long(values, kind):
    _fit_any(values, kind)
