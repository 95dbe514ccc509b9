"""The ensemble band is calibrated: on a 1-D problem whose exact morph is known (the quantile
map), the truth lies inside nominal +- 1 sigma for 50-90% of held-out events.

The study itself is ``benchmarks/band_coverage.py`` (its table is in DESIGN-NOTES.md, "Ensembles
and variations"); this test runs it at one small size.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from band_coverage import TRAIN, coverage, fit, held_out, samples, truth

#: the test's size: one fit of 1000 events per side and 6 members
N, K = 1000, 6


def test_the_study_knows_the_exact_map():
    src, tgt = samples(200_000, 0)
    # T pushes the source onto the target: same quantiles
    q = np.linspace(0.01, 0.99, 25)
    np.testing.assert_allclose(np.quantile(truth(src["x"]), q), np.quantile(tgt["x"], q), atol=0.02)
    assert np.all(np.diff(truth(np.linspace(-5, 5, 101))) > 0)  # monotone: the unique answer


@pytest.fixture(scope="module")
def study():
    m, _ = fit(N, K, seed=0, train=TRAIN.replace(num_threads=1))
    return m, held_out(0)


def test_one_sigma_coverage_is_calibrated(study):
    result = coverage(*study)
    assert 0.5 <= result["cover1"] <= 0.9, result
    assert result["cover2"] >= result["cover1"]
    assert result["cover2"] >= 0.8, result


def test_a_band_of_zero_width_does_not_cover(study):
    """The same check on the nominal alone (sigma = 0) fails, and the identity morph is far
    outside the band: the coverage is a real test."""
    m, x = study
    err = np.abs(m.morph(x)[:, 0] - truth(x[:, 0]))
    assert np.mean(err <= 0.0) < 0.5
    band = m.variations(x)
    sigma = (band["up"] - band["down"])[:, 0] / 2
    identity = np.abs(x[:, 0] - truth(x[:, 0]))
    assert np.mean(identity <= sigma) < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("n", [500, 2000, 4000])
def test_coverage_at_other_sizes(n):
    m, _ = fit(n, 8, seed=1, train=TRAIN.replace(num_threads=1))
    result = coverage(m, held_out(1))
    assert 0.5 <= result["cover1"] <= 0.9, result
