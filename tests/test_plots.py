"""Tests for coffea_f4f.plots: PNGs are written, sized as designed, and bad input is refused."""

from __future__ import annotations

import subprocess
import sys

import matplotlib.figure
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pytest
from PIL import Image

from coffea_f4f import plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _samples(n: int = 2000, d: int = 3, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    source = rng.normal(size=(n, d))
    target = rng.normal(0.5, 1.2, size=(n, d))
    morphed = source * 1.15 + 0.45
    return source, morphed, target


def _png(path, width_in: float, height_in: float) -> Image.Image:
    assert path.exists()
    assert path.stat().st_size > 10_000
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        assert im.size == (round(width_in * plots.DPI), round(height_in * plots.DPI))
        assert im.size[0] / im.size[1] == pytest.approx(width_in / height_in, rel=0.01)
        return im


def _texts(fig) -> str:
    return " | ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def test_feature_comparison_png(tmp_path):
    source, morphed, target = _samples()
    rc_before = dict(plt.rcParams)
    path = tmp_path / "features.png"
    fig = plots.feature_comparison(
        source,
        morphed,
        target,
        features=["mj1", "tau21", "delta_r"],
        units={"mj1": "GeV"},
        path=path,
    )
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 6  # a histogram and a ratio panel per feature
    _png(path, 3 * 4.6, 5.2)
    text = _texts(fig)
    assert "mj1 [GeV]" in text
    assert "tau21" in text
    assert "morphed" in text
    assert "CMS" not in text
    assert "ATLAS" not in text
    assert dict(plt.rcParams) == rc_before  # the style does not leak into the session
    assert plt.fignum_exists(fig.number)  # returned open


def test_feature_comparison_wraps_rows_and_needs_no_path(tmp_path):
    source, morphed, target = _samples(d=3)
    path = tmp_path / "sub" / "wrapped.png"
    plots.feature_comparison(source, morphed, target, features=list("abc"), ncols=2, path=path)
    _png(path, 2 * 4.6, 2 * 5.2)
    fig = plots.feature_comparison(source[:, :1], morphed[:, :1], target[:, :1], features=["a"])
    assert len(fig.axes) == 2
    assert list(tmp_path.rglob("*.png")) == [path]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"features": ["a", "b"]}, "features has 2 names"),
        ({"target": np.zeros((100, 2))}, "feature counts"),
        ({"features": "abc"}, "list of names"),
        ({"bins": 0}, "bins"),
        ({"labels": ("a", "b")}, "labels"),
        ({"morphed": np.full((100, 3), np.nan)}, "non-finite"),
    ],
)
def test_feature_comparison_bad_input(change, match):
    source, morphed, target = _samples(n=100)
    kwargs = {"source": source, "morphed": morphed, "target": target, "features": list("abc")}
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        plots.feature_comparison(**kwargs)


def test_toy_panels_png(tmp_path):
    source, morphed, target = _samples(n=3000, d=2)
    path = tmp_path / "toy.png"
    fig = plots.toy_panels(source, morphed, target, arrows=100, path=path)
    _png(path, 18.0, 4.8)
    assert "source \u2192 morphed" in _texts(fig)
    plots.toy_panels(source, morphed, target, arrows=0)  # no arrows is fine


def test_toy_panels_bad_input():
    source, morphed, target = _samples(n=200, d=2)
    with pytest.raises(ValueError, match="2D toys"):
        plots.toy_panels(*_samples(n=200, d=3))
    with pytest.raises(ValueError, match="same shape"):
        plots.toy_panels(source, morphed[:100], target)
    with pytest.raises(ValueError, match="arrows"):
        plots.toy_panels(source, morphed, target, arrows=-1)


def test_distance_histogram_png(tmp_path):
    rng = np.random.default_rng(1)
    distances = {
        "bidirectional": rng.gamma(4, 0.25, 3000),
        "base_transfer": rng.gamma(4, 0.4, 2000),
    }
    path = tmp_path / "dist.png"
    fig = plots.distance_histogram(distances, path=path)
    _png(path, 7.5, 5.5)
    text = _texts(fig)
    mean = distances["bidirectional"].mean()
    assert f"bidirectional (mean {mean:.3g})" in text
    assert "base_transfer (mean" in text


def test_distance_histogram_bad_input():
    with pytest.raises(ValueError, match="non-empty dict"):
        plots.distance_histogram({})
    with pytest.raises(ValueError, match="1D"):
        plots.distance_histogram({"a": np.zeros((10, 2))})
    with pytest.raises(ValueError, match="NaN"):
        plots.distance_histogram({"a": np.array([1.0, np.nan])})


def test_loss_curves_png(tmp_path):
    epochs = np.arange(20)
    history = {
        "train_loss": list(2.0 * np.exp(-epochs / 5) + 1.0),
        "val_loss": [*(2.1 * np.exp(-epochs[:-1] / 5) + 1.05), None],
        "best_epoch": 14,
        "epochs_run": 20,
    }
    path = tmp_path / "loss.png"
    fig = plots.loss_curves(history, path=path)
    _png(path, 7.5, 5.5)
    text = _texts(fig)
    assert "training" in text
    assert "validation" in text
    assert "best epoch (14)" in text
    # a Morpher-style nested history: one panel per stage
    nested = {"morph": history, "source_density": {"train_loss": [3.0, 2.0, 1.5]}}
    path2 = tmp_path / "loss2.png"
    fig2 = plots.loss_curves(nested, path=path2)
    assert len(fig2.axes) == 2
    _png(path2, 2 * 7.5, 5.5)


def test_loss_curves_bad_input():
    with pytest.raises(ValueError, match="no per-epoch loss"):
        plots.loss_curves({"lr": [0.1, 0.2]})
    with pytest.raises(ValueError, match="best_epoch"):
        plots.loss_curves({"train_loss": [1.0, 0.5], "best_epoch": 5})
    with pytest.raises(ValueError, match="numbers"):
        plots.loss_curves({"train_loss": ["a", "b"]})
    with pytest.raises(ValueError, match="dict"):
        plots.loss_curves([1.0, 2.0])


def test_plots_import_does_not_import_torch():
    code = "import sys, coffea_f4f.plots; sys.exit(int('torch' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
