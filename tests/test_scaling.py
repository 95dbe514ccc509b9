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
