"""Tests for coffea_f4f.plots: PNGs are written, sized as designed, and bad input is refused."""

from __future__ import annotations

import subprocess
import sys
import warnings

import hist
import matplotlib.figure
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import StepPatch
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = plots.feature_comparison(
            source,
            morphed,
            target,
            features=["mj1", "tau21", "delta_r"],
            units={"mj1": "GeV"},
            path=path,
        )
    # the labels fit: constrained layout did not give up (it warns when the axes collapse)
    assert not [w for w in caught if "constrained_layout" in str(w.message)]
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


def _physics(n: int = 5000, seed: int = 3) -> tuple[np.ndarray, ...]:
    """(mjj, tau21) samples: a falling mass spectrum above 20 GeV and a bounded shape."""
    rng = np.random.default_rng(seed)

    def sample(scale: float, a: float) -> np.ndarray:
        return np.stack([20 + rng.exponential(scale, n), rng.beta(a, 3.0, n)], axis=1)

    return sample(50.0, 2.0), sample(48.0, 2.1), sample(47.0, 2.2)


def _drawn(ax) -> list[np.ndarray]:
    """What an axis shows: the heights of its steps and of its error-bar points."""
    steps = [p.get_data().values for p in ax.patches if isinstance(p, StepPatch)]
    points = [
        np.asarray(c.lines[0].get_ydata(), dtype=float)
        for c in ax.containers
        if isinstance(c, ErrorbarContainer) and c.lines[0] is not None
    ]
    return steps + points


def test_feature_comparison_labels_carry_units_and_the_ratio_names_its_reference():
    source, morphed, target = _physics()
    fig = plots.feature_comparison(
        source,
        morphed,
        target,
        features=["mjj", "tau21"],
        units={"mjj": "GeV", "unused": "cm"},
        xlabels={"mjj": "$m_{jj}$"},
        labels=("sim", "sim morphed", "data"),
        bins=40,  # ranges ~345 GeV and ~0.92: raw widths 8.6 GeV and 0.023, rounded up
    )
    ax_m, rax_m, ax_t, rax_t = fig.axes
    assert rax_m.get_xlabel() == "$m_{jj}$ [GeV]"
    assert rax_t.get_xlabel() == "tau21"  # no unit, the feature name
    # round bin widths (1, 2, 2.5, 5 x 10^k): "10 GeV", not "/ 8.6 GeV"
    assert ax_m.get_ylabel() == "Events / 10 GeV"
    assert ax_t.get_ylabel() == "Events / 0.025"
    # on two lines, so that it fits beside the short ratio panel
    assert rax_m.get_ylabel() == rax_t.get_ylabel() == "ratio to\ndata"
    # the default labels
    fig = plots.feature_comparison(source, morphed, target, features=["mjj", "tau21"])
    assert fig.axes[1].get_ylabel() == "ratio to\ntarget"
    assert fig.axes[1].get_xlabel() == "mjj"
    # xlabels as a list, one per feature
    fig = plots.feature_comparison(
        source, morphed, target, features=["a", "b"], xlabels=["A", "B"], units={"b": "cm"}
    )
    assert [fig.axes[1].get_xlabel(), fig.axes[3].get_xlabel()] == ["A", "B [cm]"]


def test_feature_comparison_default_bins_follow_the_statistics():
    def n_bins(n: int) -> int:
        x = np.random.default_rng(0).normal(size=(n, 1))
        fig = plots.feature_comparison(x, x, x, features=["x"])
        step = next(p for p in fig.axes[0].patches if isinstance(p, StepPatch))
        return len(step.get_data().values)

    assert 10 <= n_bins(400) <= 20  # at most sqrt(N) = 20, in round widths
    assert 25 <= n_bins(20_000) <= 50  # at most 50


def test_feature_comparison_scales_to_the_target_yield_and_says_so():
    source, morphed, target = _physics()
    edges = np.linspace(20, 320, 31)
    fig = plots.feature_comparison(
        source[:2500, :1], morphed[:2500, :1], target[:, :1], features=["m"], bins=edges
    )
    steps = _drawn(fig.axes[0])
    # all events count (also those beyond the range): source events x 5000 / 2500
    counts = np.histogram(source[:2500, 0], edges)[0]
    np.testing.assert_allclose(steps[0], 2.0 * counts)
    np.testing.assert_allclose(steps[2], np.histogram(target[:, 0], edges)[0])
    assert "source (\u00d72)" in _texts(fig)
    assert "morphed (\u00d72)" in _texts(fig)
    same = plots.feature_comparison(source, morphed, target, features=["m", "t"])
    assert "\u00d7" not in _texts(same)  # equal yields: nothing to say


@pytest.mark.parametrize(
    ("values", "name", "unit", "expected"),
    [
        (lambda rng: 20 + rng.exponential(50, 5000), "mjj", "GeV", "log"),  # falling mass
        (lambda rng: rng.uniform(0, 1000, 5000), "mjj", "GeV", "linear"),  # flat mass
        (lambda rng: rng.normal(0, 1, 5000), "x", None, "linear"),  # a peak in the middle
        # a mass spectrum falling by less than a decade
        (
            lambda rng: np.where(
                rng.random(5000) < 0.7, rng.uniform(0, 100, 5000), rng.triangular(0, 0, 100, 5000)
            ),
            "mj1",
            "GeV",
            "linear",
        ),
        # an unitless falling spectrum needs two decades
        (lambda rng: rng.exponential(1.0, 50_000), "chi2", None, "log"),
    ],
)
def test_feature_comparison_auto_logy(values, name, unit, expected):
    rng = np.random.default_rng(5)
    x, m, t = (values(rng)[:, None] for _ in range(3))
    units = {name: unit} if unit else None
    fig = plots.feature_comparison(x, m, t, features=[name], units=units)
    assert fig.axes[0].get_yscale() == expected
    assert fig.axes[1].get_yscale() == "linear"  # the ratio panel stays linear


def test_feature_comparison_logy_can_be_forced_per_feature():
    source, morphed, target = _physics()
    kwargs = {"features": ["mjj", "tau21"], "units": {"mjj": "GeV"}}
    fig = plots.feature_comparison(source, morphed, target, logy=False, **kwargs)
    assert [fig.axes[0].get_yscale(), fig.axes[2].get_yscale()] == ["linear", "linear"]
    fig = plots.feature_comparison(source, morphed, target, logy={"tau21": True}, **kwargs)
    assert [fig.axes[0].get_yscale(), fig.axes[2].get_yscale()] == ["log", "log"]


def test_feature_comparison_honours_explicit_bins():
    source, morphed, target = _physics()
    edges = [20.0, 40.0, 60.0, 100.0, 200.0, 400.0]
    fig = plots.feature_comparison(
        source,
        morphed,
        target,
        features=["mjj", "tau21"],
        units={"mjj": "GeV"},
        bins={"mjj": edges, "tau21": hist.axis.Regular(8, 0.0, 1.0)},
    )
    ax_m, _, ax_t, _ = fig.axes
    for step in (p for p in ax_m.patches if isinstance(p, StepPatch)):
        np.testing.assert_array_equal(step.get_data().edges, edges)
    np.testing.assert_allclose(ax_m.get_xlim(), (20.0, 400.0))
    assert ax_m.get_ylabel() == "Events / GeV"  # variable bins: events per unit
    target_per_gev = np.histogram(target[:, 0], edges)[0] / np.diff(edges)
    np.testing.assert_allclose(_drawn(ax_m)[2], target_per_gev)
    tau_edges = next(p for p in ax_t.patches if isinstance(p, StepPatch)).get_data().edges
    np.testing.assert_allclose(tau_edges, np.linspace(0, 1, 9))
    assert ax_t.get_ylabel() == "Events / 0.125"
    # binwnorm=10: events per 10 GeV in variable bins
    fig = plots.feature_comparison(
        source[:, :1],
        morphed[:, :1],
        target[:, :1],
        features=["mjj"],
        units={"mjj": "GeV"},
        bins=[20, 30, 50, 100],
        binwnorm=10,
    )
    assert fig.axes[0].get_ylabel() == "Events / 10 GeV"
    np.testing.assert_allclose(
        _drawn(fig.axes[0])[2], np.histogram(target[:, 0], [20, 30, 50, 100])[0] / [1, 2, 5]
    )


def test_feature_comparison_hist_inputs_draw_what_arrays_draw():
    source, morphed, target = _physics()
    edges = {"mjj": np.arange(20.0, 330.0, 10.0), "tau21": np.linspace(0.0, 1.0, 26)}

    def hists(sample: np.ndarray) -> list[hist.Hist]:
        out = []
        for j, (name, e) in enumerate(edges.items()):
            h = hist.Hist(hist.axis.Variable(e, name=name))  # flow bins keep the far tails
            h.fill(sample[:, j])
            out.append(h)
        return out

    kwargs = {"units": {"mjj": "GeV"}, "labels": ("sim", "sim morphed", "data")}
    from_arrays = plots.feature_comparison(
        source, morphed, target, features=list(edges), bins=edges, **kwargs
    )
    from_lists = plots.feature_comparison(hists(source), hists(morphed), hists(target), **kwargs)
    as_dict = {
        name: dict(zip(edges, hists(x), strict=True))
        for name, x in (("s", source), ("m", morphed), ("t", target))
    }
    from_dicts = plots.feature_comparison(as_dict["s"], as_dict["m"], as_dict["t"], **kwargs)
    one = hists(target)[0]
    from_single = plots.feature_comparison(
        hists(source)[0], hists(morphed)[0], one, units={"mjj": "GeV"}
    )
    for fig in (from_lists, from_dicts):
        assert [a.get_xlabel() for a in fig.axes] == [a.get_xlabel() for a in from_arrays.axes]
        assert [a.get_ylabel() for a in fig.axes] == [a.get_ylabel() for a in from_arrays.axes]
        for a, b in zip(fig.axes, from_arrays.axes, strict=True):
            for got, want in zip(_drawn(a), _drawn(b), strict=True):
                np.testing.assert_allclose(got, want)
    assert from_single.axes[1].get_xlabel() == "mjj [GeV]"  # the axis name is the feature
    for got, want in zip(_drawn(from_single.axes[0]), _drawn(from_arrays.axes[0]), strict=True):
        np.testing.assert_allclose(got, want)
    # arrays and histograms mix: the arrays are binned like the histograms
    mixed = plots.feature_comparison(
        source, morphed, {"mjj": hists(target)[0], "tau21": hists(target)[1]}, **kwargs
    )
    for got, want in zip(_drawn(mixed.axes[0]), _drawn(from_arrays.axes[0]), strict=True):
        np.testing.assert_allclose(got, want)


def test_feature_comparison_weighted_hists():
    rng = np.random.default_rng(2)
    axis = hist.axis.Regular(20, 0.0, 200.0, name="mjj")
    hs = []
    for scale in (40.0, 42.0, 41.0):
        h = hist.Hist(axis, storage=hist.storage.Weight())
        h.fill(rng.exponential(scale, 4000), weight=rng.uniform(0.5, 1.5, 4000))
        hs.append(h)
    fig = plots.feature_comparison(*hs, units={"mjj": "GeV"})
    assert fig.axes[0].get_ylabel() == "Events / 10 GeV"
    target_drawn = _drawn(fig.axes[0])[2]
    np.testing.assert_allclose(target_drawn, hs[2].values())


def test_feature_comparison_bad_hist_input():
    target = _physics(n=500)[2]
    h2 = hist.Hist(hist.axis.Regular(10, 0, 1, name="a"), hist.axis.Regular(10, 0, 1, name="b"))
    one = hist.Hist(hist.axis.Regular(10, 0, 400, name="mjj")).fill(target[:, 0])
    other = hist.Hist(hist.axis.Regular(20, 0, 400, name="mjj")).fill(target[:, 0])
    with pytest.raises(ValueError, match=r"1D histogram.*2D.*project\('a'\)"):
        plots.feature_comparison(h2, h2, h2)
    with pytest.raises(ValueError, match="different bins"):
        plots.feature_comparison(one, one, other)
    with pytest.raises(ValueError, match="its histograms set the bins"):
        plots.feature_comparison(one, one, one, bins=30)
    with pytest.raises(ValueError, match="mixes histograms"):
        plots.feature_comparison([one, target[:, 1]], [one, one], [one, one])
    with pytest.raises(ValueError, match=r"2 histograms for the 1 features"):
        plots.feature_comparison([one, one], [one, one], [one, one], features=["mjj"])
    with pytest.raises(ValueError, match=r"no histogram for \['tau21'\]"):
        plots.feature_comparison(
            {"mjj": one}, {"mjj": one}, {"mjj": one}, features=["mjj", "tau21"]
        )
    cat = hist.Hist(hist.axis.StrCategory(["a", "b"], name="c")).fill(["a", "b"])
    with pytest.raises(ValueError, match="StrCategory"):
        plots.feature_comparison(cat, cat, cat)
    mean = hist.Hist(hist.axis.Regular(5, 0, 1, name="x"), storage=hist.storage.Mean())
    mean.fill([0.5], sample=[1.0])
    with pytest.raises(ValueError, match="count events"):
        plots.feature_comparison(mean, mean, mean)
    empty = hist.Hist(hist.axis.Regular(10, 0, 400, name="mjj"))
    with pytest.raises(ValueError, match="target histogram of 'mjj' is empty"):
        plots.feature_comparison(one, one, empty)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"xlabels": ["A", "B"]}, "xlabels has 2 labels for the 3 features"),
        ({"xlabels": "abc"}, "xlabels must be a list"),
        ({"labels": ("sim", "data")}, "labels must be a sequence of 3"),
        ({"bins": [3.0, 2.0, 1.0]}, "strictly increasing"),
        ({"bins": [1.0]}, "at least two"),
        ({"bins": "many"}, "bins for 'a'"),
        ({"bins": {"mjj": 10}}, r"bins names \['mjj'\], which are not features"),
        ({"bins": 2.5}, "bins for 'a' must be an int"),
        ({"bins": True}, "bins must be a positive integer"),
        ({"logy": "yes"}, "logy must be True, False or 'auto'"),
        ({"binwnorm": 0}, "binwnorm must be a positive number"),
        ({"ratio_range": (1.5, 0.5)}, "low < high"),
        ({"ncols": 0}, "ncols"),
        ({"features": None}, "features is needed"),
    ],
)
def test_feature_comparison_bad_options(change, match):
    source, morphed, target = _samples(n=100)
    kwargs = {"source": source, "morphed": morphed, "target": target, "features": list("abc")}
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        plots.feature_comparison(**kwargs)


def test_feature_comparison_reads_names_from_mappings():
    source, morphed, target = _physics(n=500)

    def columns(x):
        return {"mjj": x[:, 0], "tau21": x[:, 1]}

    fig = plots.feature_comparison(columns(source), columns(morphed), columns(target))
    assert [fig.axes[1].get_xlabel(), fig.axes[3].get_xlabel()] == ["mjj", "tau21"]
    fig = plots.feature_comparison(
        columns(source), columns(morphed), columns(target), features=["tau21"]
    )
    assert len(fig.axes) == 2
    assert fig.axes[1].get_xlabel() == "tau21"


def test_toy_panels_png(tmp_path):
    source, morphed, target = _samples(n=3000, d=2)
    path = tmp_path / "toy.png"
    fig = plots.toy_panels(source, morphed, target, arrows=100, path=path)
    _png(path, 18.0, 4.8)
    assert "source \u2192 morphed" in _texts(fig)
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("x1", "x2")
    fig = plots.toy_panels(
        source, morphed, target, arrows=0, features=("x", "y"), units={"y": "cm"}
    )  # no arrows is fine
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("x", "y [cm]")


def test_toy_panels_bad_input():
    source, morphed, target = _samples(n=200, d=2)
    with pytest.raises(ValueError, match="2D toys"):
        plots.toy_panels(*_samples(n=200, d=3))
    with pytest.raises(ValueError, match="same shape"):
        plots.toy_panels(source, morphed[:100], target)
    with pytest.raises(ValueError, match="arrows"):
        plots.toy_panels(source, morphed, target, arrows=-1)
    with pytest.raises(ValueError, match="two columns"):
        plots.toy_panels(source, morphed, target, features=("x", "y", "z"))


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


def test_feature_comparison_event_weights_equal_duplicated_events():
    source, morphed, target = _physics(2000, seed=7)
    w = np.random.default_rng(8).integers(1, 4, len(source)).astype(float)
    edges = {"mjj": np.linspace(20, 300, 15), "tau21": np.linspace(0, 1, 11)}
    weighted = plots.feature_comparison(
        source, morphed, target, features=["mjj", "tau21"], bins=edges, source_weights=w
    )
    duplicated = plots.feature_comparison(
        np.repeat(source, w.astype(int), axis=0),
        np.repeat(morphed, w.astype(int), axis=0),
        target,
        features=["mjj", "tau21"],
        bins=edges,
    )
    for a, b in zip(weighted.axes, duplicated.axes, strict=True):
        for got, want in zip(_drawn(a), _drawn(b), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    plain = plots.feature_comparison(source, morphed, target, features=["mjj", "tau21"], bins=edges)
    assert not np.allclose(_drawn(plain.axes[0])[0], _drawn(weighted.axes[0])[0])
    with pytest.raises(ValueError, match="expected 2000 finite values"):
        plots.feature_comparison(
            source, morphed, target, features=["mjj", "tau21"], source_weights=w[:10]
        )
    for fig in (weighted, duplicated, plain):
        plt.close(fig)


# ------------------------------------------------------------------------------- the band
def _band(n: int = 3000, seed: int = 9) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(mjj, tau21) source, a band {nominal, up, down} of it (a shift +- a spread), target."""
    source, _, target = _physics(n, seed=seed)
    nominal = source * [1.02, 1.0] + [1.0, 0.03]
    spread = np.array([3.0, 0.02])
    return source, {"nominal": nominal, "up": nominal + spread, "down": nominal - spread}, target


def _band_patches(ax) -> list[StepPatch]:
    return [p for p in ax.patches if isinstance(p, StepPatch) and p.get_label() == "band"]


def test_band_comparison_draws_the_envelope_of_the_variations(tmp_path):
    source, band, target = _band()
    edges = {"mjj": np.linspace(20, 300, 29), "tau21": np.linspace(0, 1, 21)}
    path = tmp_path / "band.png"
    fig = plots.band_comparison(
        source,
        band,
        target,
        features=["mjj", "tau21"],
        units={"mjj": "GeV"},
        bins=edges,
        labels=("sim", "sim morphed", "data"),
        band_label="band",
        path=path,
    )
    _png(path, 2 * 4.6, 5.2)
    assert len(fig.axes) == 4  # a histogram and a ratio panel per feature
    ax_m, rax_m, ax_t, rax_t = fig.axes
    assert rax_m.get_xlabel() == "mjj [GeV]"
    assert ax_m.get_ylabel() == "Events / 10 GeV"
    assert rax_t.get_ylabel() == "ratio to\nsim morphed"
    for j, (ax, rax) in enumerate(((ax_m, rax_m), (ax_t, rax_t))):
        (patch,) = _band_patches(ax)
        (ratio,) = _band_patches(rax)
        assert patch.get_fill()
        assert ratio.get_fill()
        name = ["mjj", "tau21"][j]
        counts = np.stack([np.histogram(band[k][:, j], edges[name])[0] for k in band])
        scale = len(target) / len(source)
        data = patch.get_data()
        np.testing.assert_allclose(data.baseline, counts.min(axis=0) * scale)
        np.testing.assert_allclose(data.values, counts.max(axis=0) * scale)
        assert (data.values >= data.baseline).all()
        assert (data.values > data.baseline).any()
        nominal = counts[0] > 0  # the ratio panel: the band around the nominal morph
        r = ratio.get_data()
        np.testing.assert_allclose(r.values[nominal], (counts.max(0) / counts[0])[nominal])
        assert (r.baseline[nominal] <= 1.0).all()
        assert (r.values[nominal] >= 1.0).all()
    # the legend: source, morphed, band, target
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "sim",
        "sim morphed",
        "band",
        "data",
    ]


def test_band_comparison_without_target_and_from_records():
    ak = pytest.importorskip("awkward")
    source, band, _ = _band(800)
    records = {
        k: ak.Array({"mjj": v[:, 0], "tau21": v[:, 1], "c": v[:, 0]}) for k, v in band.items()
    }
    src = ak.Array({"mjj": source[:, 0], "tau21": source[:, 1], "c": source[:, 0]})
    fig = plots.band_comparison(src, records, features=["mjj", "tau21"], ncols=1)
    assert len(fig.axes) == 4  # one column: two rows of a histogram and its ratio
    assert all(len(_band_patches(ax)) == 0 for ax in fig.axes)
    assert all(
        len([p for p in ax.patches if isinstance(p, StepPatch) and p.get_fill()]) == 1
        for ax in fig.axes
    )
    assert not any(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers)
    assert "ensemble band" in _texts(fig)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"band": "no up"}, r"band must be the dict \{'nominal', 'up', 'down'\}"),
        ({"band": "list"}, "band must be the dict .*got list"),
        ({"band": "short down"}, r"band\['down'\] has shape \(90, 2\) but source \(100, 2\)"),
        ({"source": "hist"}, "source must hold events"),
        ({"features": ["a"]}, "source has 2 feature columns but features has 1"),
        ({"target": "3 columns"}, "target has 3 feature columns"),
        ({"target_weights": np.ones(100), "target": None}, "without a target"),
        ({"source_weights": np.ones(3)}, "expected 100 finite values"),
        ({"ncols": 0}, "ncols"),
    ],
)
def test_band_comparison_bad_input(change, match):
    source, band, target = _band(100)
    kwargs = {"source": source, "band": band, "target": target, "features": ["a", "b"]}
    kwargs.update(change)
    special = {
        "no up": {"nominal": band["nominal"], "down": band["down"]},
        "list": [band["nominal"], band["up"], band["down"]],
        "short down": {**band, "down": band["down"][:90]},
        "hist": hist.Hist.new.Reg(10, 0, 1).Double(),
        "3 columns": np.zeros((50, 3)),
    }
    kwargs = {
        k: special[v] if isinstance(v, str) and v in special else v for k, v in kwargs.items()
    }
    with pytest.raises(ValueError, match=match):
        plots.band_comparison(**kwargs)
