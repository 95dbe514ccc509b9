"""Tests for :mod:`coffea_f4f.datasets.photon_sampler`: the photon-like tag-and-probe sampler."""

from __future__ import annotations

import ast
import doctest
import importlib
import math
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from scipy.stats import ks_2samp

from coffea_f4f import datasets

# the module, not the function datasets.photons that shares its name
photons_module = importlib.import_module("coffea_f4f.datasets.photon_sampler")

N = 100_000
ISOLATIONS = ("pho_iso", "ch_iso")
SHOWER_SHAPES = ("r9", "sieie", "etawidth", "phiwidth", "s4")


def _columns(events: ak.Array) -> dict[str, np.ndarray]:
    return {f: ak.to_numpy(events[f]) for f in datasets.PHOTON_FIELDS}


@pytest.fixture(scope="module")
def sim() -> dict[str, np.ndarray]:
    return _columns(datasets.photons(N, kind="sim", seed=21))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return _columns(datasets.photons(N, kind="data", seed=22))


@pytest.fixture(scope="module")
def kinds(sim, data) -> dict[str, dict[str, np.ndarray]]:
    return {"sim": sim, "data": data}


def _endcap(x: dict[str, np.ndarray]) -> np.ndarray:
    return np.abs(x["eta"]) >= datasets.ENDCAP_ETA_MIN


def _binomial_sigma(p: float, n: int) -> float:
    return math.sqrt(p * (1.0 - p) / n)


def _mean_and_error(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std() / math.sqrt(values.size))


# --------------------------------------------------------------------------------------------
# contract
# --------------------------------------------------------------------------------------------


def test_constants():
    assert datasets.PHOTON_CONDITIONS == ("pt", "eta", "rho", "era")
    assert (*SHOWER_SHAPES, *ISOLATIONS) == datasets.PHOTON_FEATURES
    assert (
        *datasets.PHOTON_CONDITIONS,
        *datasets.PHOTON_FEATURES,
        "weight",
    ) == datasets.PHOTON_FIELDS
    assert datasets.PHOTON_KINDS == ("sim", "data")
    assert len(datasets.ERAS) == len(datasets.ERA_FRACTIONS) == 3
    assert math.isclose(sum(datasets.ERA_FRACTIONS), 1.0)
    assert datasets.BARREL_ETA_MAX == 1.4442
    assert datasets.ENDCAP_ETA_MIN == 1.566
    assert datasets.ENDCAP_ETA_MAX == 2.5
    assert set(datasets.PHOTON_ZERO_FRACTIONS) == set(datasets.PHOTON_KINDS)
    for fractions in datasets.PHOTON_ZERO_FRACTIONS.values():
        assert set(fractions) == set(ISOLATIONS)
    with pytest.raises(TypeError):
        datasets.PHOTON_ZERO_FRACTIONS["sim"]["pho_iso"] = 0.5  # type: ignore[index]
    assert set(photons_module.__all__) <= set(datasets.__all__)


@pytest.mark.parametrize("kind", datasets.PHOTON_KINDS)
def test_fields_and_dtypes(kind):
    events = datasets.photons(500, kind=kind, seed=1)
    assert isinstance(events, ak.Array)
    assert len(events) == 500
    assert events.fields == list(datasets.PHOTON_FIELDS)
    for field in datasets.PHOTON_FIELDS:
        column = ak.to_numpy(events[field])
        assert column.dtype == (np.int64 if field == "era" else np.float64), field
        assert np.isfinite(column).all(), field


def test_seeded_determinism():
    for kind in datasets.PHOTON_KINDS:
        a = _columns(datasets.photons(2000, kind=kind, seed=5))
        b = _columns(datasets.photons(2000, kind=kind, seed=5))
        c = _columns(datasets.photons(2000, kind=kind, seed=6))
        for field in datasets.PHOTON_FIELDS:
            np.testing.assert_array_equal(a[field], b[field], err_msg=field)
        assert not np.array_equal(a["r9"], c["r9"])


def test_empty():
    events = datasets.photons(0, kind="data")
    assert len(events) == 0
    assert events.fields == list(datasets.PHOTON_FIELDS)
    assert ak.to_numpy(events.era).dtype == np.int64


@pytest.mark.parametrize("n", [-1, 1.5, "10", True, None])
def test_bad_n(n):
    with pytest.raises(ValueError, match="non-negative integer"):
        datasets.photons(n)


def test_bad_kind_names_close_matches():
    with pytest.raises(ValueError, match=r"Did you mean 'data'\?.*Valid kinds: sim, data"):
        datasets.photons(10, kind="date")
    with pytest.raises(ValueError, match="unknown kind"):
        datasets.photons(10, kind=1)  # type: ignore[arg-type]


def test_docstring_example():
    result = doctest.testmod(photons_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_import_stays_light():
    code = (
        "import sys, coffea_f4f.datasets; "
        "print([m for m in ('uproot', 'torch', 'scipy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_module_imports_only_numpy_at_import_time():
    tree = ast.parse(Path(str(photons_module.__file__)).read_text())
    top = set()
    for node in tree.body:  # module level only: awkward is imported inside photons()
        if isinstance(node, ast.Import):
            top |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            top.add((node.module or "").split(".")[0])
    assert top <= {"__future__", "math", "dataclasses", "types", "typing", "numpy"}, top


# --------------------------------------------------------------------------------------------
# ranges
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", datasets.PHOTON_KINDS)
def test_condition_ranges(kinds, kind):
    x = kinds[kind]
    assert x["pt"].min() >= 20.0
    assert x["pt"].max() <= 1000.0
    assert 25.0 < np.median(x["pt"]) < 32.0  # falling spectrum from 20 GeV
    abs_eta = np.abs(x["eta"])
    assert abs_eta.max() < datasets.ENDCAP_ETA_MAX
    in_gap = (abs_eta >= datasets.BARREL_ETA_MAX) & (abs_eta < datasets.ENDCAP_ETA_MIN)
    assert not in_gap.any()
    barrel = abs_eta < datasets.BARREL_ETA_MAX
    expected = datasets.BARREL_ETA_MAX / (
        datasets.ENDCAP_ETA_MAX - datasets.ENDCAP_ETA_MIN + datasets.BARREL_ETA_MAX
    )
    assert abs(barrel.mean() - expected) < 4 * _binomial_sigma(expected, N)
    assert abs(np.mean(x["eta"] > 0) - 0.5) < 4 * _binomial_sigma(0.5, N)
    assert x["rho"].min() > 0.0
    assert 20.0 < np.median(x["rho"]) < 32.0
    assert set(np.unique(x["era"])) == {0, 1, 2}
    for code, fraction in enumerate(datasets.ERA_FRACTIONS):
        assert abs(np.mean(x["era"] == code) - fraction) < 4 * _binomial_sigma(fraction, N)


def test_rho_depends_on_era(data):
    means = [data["rho"][data["era"] == code].mean() for code in range(3)]
    assert means[0] < means[1] < means[2]


@pytest.mark.parametrize("kind", datasets.PHOTON_KINDS)
def test_feature_ranges(kinds, kind):
    x = kinds[kind]
    endcap = _endcap(x)
    for field in ("r9", "s4"):
        assert x[field].min() > 0.0, field
        assert x[field].max() <= 1.0, field
    # r9 peaked near 0.9-0.95 with a lower tail, lower in the endcaps
    assert 0.92 < np.median(x["r9"][~endcap]) < 0.96
    assert np.median(x["r9"][endcap]) < np.median(x["r9"][~endcap])
    assert np.mean(x["r9"] < 0.8) > 0.1
    # sieie: ~0.009 in the barrel and ~0.025 in the endcaps
    assert 0.0085 < np.median(x["sieie"][~endcap]) < 0.0100
    assert 0.024 < np.median(x["sieie"][endcap]) < 0.029
    for field in ("sieie", "etawidth", "phiwidth"):
        assert x[field].min() > 0.0, field
    assert x["etawidth"].max() < 0.5
    assert x["phiwidth"].max() < 1.0
    for field in ISOLATIONS:
        assert x[field].min() == 0.0, field
        assert np.isfinite(x[field]).all(), field
        positive = x[field][x[field] > 0]
        assert 0.5 < np.median(positive) < 5.0, field  # a GeV-scale tail


@pytest.mark.parametrize("kind", datasets.PHOTON_KINDS)
@pytest.mark.parametrize("field", ISOLATIONS)
def test_zero_fractions_match_the_documented_values(kinds, kind, field):
    zero_fraction = np.mean(kinds[kind][field] == 0.0)
    expected = datasets.PHOTON_ZERO_FRACTIONS[kind][field]
    # 4 binomial sigma, plus the rounding of the documented value to two digits
    assert abs(zero_fraction - expected) < 4 * _binomial_sigma(expected, N) + 0.002


def test_weights(sim, data):
    np.testing.assert_array_equal(data["weight"], 1.0)
    negative = np.mean(sim["weight"] < 0)
    assert 0.02 < negative < 0.06  # a few percent NLO-like negative weights
    assert np.all(np.abs(sim["weight"]) > 0.3)
    assert np.all(np.abs(sim["weight"]) < 5.0)
    # more negative weights at high pt
    assert np.mean(sim["weight"][sim["pt"] > 60] < 0) > np.mean(sim["weight"][sim["pt"] < 25] < 0)


def test_pileup_weight_makes_sim_rho_follow_data(sim, data):
    mean_data, err_data = _mean_and_error(data["rho"])
    mean_sim, err_sim = _mean_and_error(sim["rho"])
    w = sim["weight"]
    weighted = np.sum(w * sim["rho"]) / np.sum(w)
    err = math.hypot(err_data, err_sim)
    assert mean_data - mean_sim > 10 * err  # simulated pile-up is lower ...
    assert abs(weighted - mean_data) < 5 * err  # ... and the weight corrects it


# --------------------------------------------------------------------------------------------
# sim vs data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["barrel", "endcap"])
@pytest.mark.parametrize("field", datasets.PHOTON_FEATURES)
def test_sim_differs_from_data(sim, data, field, region):
    in_sim = _endcap(sim) == (region == "endcap")
    in_data = _endcap(data) == (region == "endcap")
    a, b = sim[field][in_sim], data[field][in_data]
    statistic = ks_2samp(a, b).statistic
    critical = 1.95 * math.sqrt((a.size + b.size) / (a.size * b.size))  # KS at alpha = 0.001
    assert statistic > 2 * critical, (field, region, statistic, critical)


def test_same_kind_is_compatible_with_itself(sim):
    other = _columns(datasets.photons(N, kind="sim", seed=99))
    critical = 1.95 * math.sqrt(2.0 / N)
    for field in datasets.PHOTON_FEATURES:
        assert ks_2samp(sim[field], other[field]).statistic < critical, field


def test_sim_showers_are_narrower(sim, data):
    for endcap in (False, True):
        s, d = _endcap(sim) == endcap, _endcap(data) == endcap
        assert np.median(sim["r9"][s]) > np.median(data["r9"][d])
        assert np.median(sim["s4"][s]) > np.median(data["s4"][d])
        for field in ("sieie", "etawidth", "phiwidth"):
            assert np.median(sim[field][s]) < np.median(data[field][d]), (field, endcap)


def _r9_shift(sim, data, select) -> tuple[float, float]:
    """Mean r9 of sim minus data in a selection, and its statistical error."""
    mean_s, err_s = _mean_and_error(sim["r9"][select(sim)])
    mean_d, err_d = _mean_and_error(data["r9"][select(data)])
    return mean_s - mean_d, math.hypot(err_s, err_d)


def _log_shift(sim, data, field, select) -> tuple[float, float]:
    """Mean log(field) of data minus sim in a selection, and its statistical error."""
    mean_s, err_s = _mean_and_error(np.log(sim[field][select(sim)]))
    mean_d, err_d = _mean_and_error(np.log(data[field][select(data)]))
    return mean_d - mean_s, math.hypot(err_s, err_d)


def test_sim_data_difference_depends_on_eta_pt_and_era(sim, data):
    shift_eb, err_eb = _r9_shift(sim, data, lambda x: ~_endcap(x))
    shift_ee, err_ee = _r9_shift(sim, data, _endcap)
    assert shift_eb > 5 * err_eb
    assert shift_ee - shift_eb > 4 * math.hypot(err_eb, err_ee)  # larger in the endcaps
    # larger at low pt: the data/sim ratio of sieie in the endcaps (geometric means)
    low, err_low = _log_shift(sim, data, "sieie", lambda x: _endcap(x) & (x["pt"] < 25))
    high, err_high = _log_shift(sim, data, "sieie", lambda x: _endcap(x) & (x["pt"] >= 40))
    assert low - high > 4 * math.hypot(err_low, err_high)
    # in the endcaps the data showers widen with the era (ageing); sim does not
    sieie_ratio = [
        np.median(data["sieie"][_endcap(data) & (data["era"] == code)])
        / np.median(sim["sieie"][_endcap(sim) & (sim["era"] == code)])
        for code in (0, 2)
    ]
    assert sieie_ratio[1] > sieie_ratio[0] + 0.01


def test_shower_shape_correlations(kinds):
    for kind, x in kinds.items():
        assert np.corrcoef(x["r9"], x["s4"])[0, 1] > 0.8, kind
        assert np.corrcoef(x["r9"], x["phiwidth"])[0, 1] < -0.6, kind
        barrel = ~_endcap(x)
        assert np.corrcoef(x["sieie"][barrel], x["etawidth"][barrel])[0, 1] > 0.3, kind
    # the r9-s4 coupling differs between the kinds: s4 falls faster with 1 - r9 in data
    slopes = {
        kind: np.polyfit(-np.log(x["r9"]), -np.log(x["s4"]), 1)[0] for kind, x in kinds.items()
    }
    assert slopes["data"] > slopes["sim"] + 0.05


# --------------------------------------------------------------------------------------------
# condition dependences of the isolations
# --------------------------------------------------------------------------------------------


RHO_BINS = ((0.0, 20.0), (20.0, 30.0), (30.0, np.inf))


@pytest.mark.parametrize("kind", datasets.PHOTON_KINDS)
@pytest.mark.parametrize("field", ISOLATIONS)
def test_isolation_grows_with_rho(kinds, kind, field):
    x = kinds[kind]
    zero, tail = [], []
    for lo, hi in RHO_BINS:
        values = x[field][(x["rho"] >= lo) & (x["rho"] < hi)]
        zero.append(np.mean(values == 0.0))
        tail.append(_mean_and_error(values[values > 0]))
    for i in range(len(RHO_BINS) - 1):
        assert zero[i + 1] < zero[i]  # fewer exact zeros with more pile-up
        (t_lo, e_lo), (t_hi, e_hi) = tail[i], tail[i + 1]
        assert t_hi - t_lo > 3 * math.hypot(e_lo, e_hi)  # and a longer tail


def test_rho_dependence_differs_between_kinds(sim, data):
    def tail_slope(x):
        positive = x["pho_iso"] > 0
        return np.polyfit(x["rho"][positive], x["pho_iso"][positive], 1)[0]

    def zero_drop(x):
        return np.mean(x["pho_iso"][x["rho"] < 20] == 0) - np.mean(x["pho_iso"][x["rho"] > 30] == 0)

    assert tail_slope(data) > 1.15 * tail_slope(sim)
    assert zero_drop(data) > zero_drop(sim) + 0.03


def test_isolations_are_zero_together(kinds):
    for kind, x in kinds.items():
        both = np.mean((x["pho_iso"] == 0) & (x["ch_iso"] == 0))
        independent = np.mean(x["pho_iso"] == 0) * np.mean(x["ch_iso"] == 0)
        assert both > independent + 0.02, kind
