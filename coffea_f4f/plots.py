"""Comparison plots for morphs: hist + mplhep, talk-ready PNGs.

Every function returns the :class:`matplotlib.figure.Figure` it drew and, when ``path`` is
given, also saves it there (PNG at 150 dpi unless the suffix names another format; missing
parent directories are created). Figures are made with :mod:`matplotlib.pyplot` so they show in
notebooks and with ``plt.show()``; nothing is closed, so close the returned figure
(``plt.close(fig)``) when making many. The backend is not changed: scripts on machines without a
display get Agg automatically, or set ``MPLBACKEND=Agg``.

The style is mplhep's experiment-neutral ROOT style, applied only while a figure is drawn (the
global rcParams are left alone); no experiment label is drawn.

- :func:`feature_comparison`: per feature, source / morphed / target as events per bin width
  (with units, log-y where the spectrum falls) and their ratios to the target; from arrays or
  from ``hist.Hist`` histograms.
- :func:`band_comparison`: per feature, the nominal morph with the band of its bootstrap
  ensemble (:meth:`Morpher.variations <coffea_f4f.morpher.Morpher.variations>`), the source
  and the target, with ratios to the nominal morph.
- :func:`toy_panels`: 2D toys: source, morphed and target densities, and arrows source ->
  morphed.
- :func:`distance_histogram`: how far events moved, one histogram per variant.
- :func:`loss_curves`: training and validation loss per epoch.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import as_matrix

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "band_comparison",
    "distance_histogram",
    "feature_comparison",
    "loss_curves",
    "toy_panels",
]

#: Resolution of the saved PNGs.
DPI = 150

_SOURCE_COLOR = "#3f90da"  # blue
_MORPHED_COLOR = "#e42536"  # red
_TARGET_COLOR = "black"
_CYCLE = ["#3f90da", "#e42536", "#ffa90e", "#964a8b", "#92dadd", "#bd1f01", "#94a4a2", "#832db6"]

#: Most bins per feature when ``bins`` is not given: sqrt(N) of the smallest sample, at least
#: 10 and at most this many (then rounded up to a width of 1, 2, 2.5 or 5 x 10^k).
DEFAULT_BINS = 50

# units that are energies, and feature names that read as a mass or a transverse momentum
# (mj1, mjj, delta_mj, FatJet.msoftdrop, Jet_pt, met, ht): such spectra get log-y sooner
_ENERGY_UNITS = ("ev", "kev", "mev", "gev", "tev")
_MASS_OR_PT = re.compile(r"(^|[._])(m|pt|ht|met|mass)")


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Apply the mplhep ROOT style (no experiment label) for the duration of a plot."""
    import matplotlib.pyplot as plt
    import mplhep

    with plt.style.context(mplhep.style.ROOT), plt.rc_context({"axes.prop_cycle": _cycler()}):
        yield


def _cycler() -> Any:
    from cycler import cycler

    return cycler(color=_CYCLE)


def _layout(fig: Figure) -> Any:
    """The figure's constrained-layout engine (typed loosely: its ``set`` takes pads)."""
    return fig.get_layout_engine()


def _save(fig: Figure, path: str | Path | None) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = None if path.suffix else "png"
    fig.savefig(path, dpi=DPI, format=fmt, facecolor="white")


def _plot_range(arrays: Sequence[np.ndarray], lo_q: float = 0.1, hi_q: float = 99.9) -> tuple:
    """A common histogram range: central quantiles of all arrays together, never empty."""
    values = np.concatenate([np.ravel(a) for a in arrays])
    lo, hi = np.percentile(values, [lo_q, hi_q])
    if not hi > lo:
        lo, hi = values.min(), values.max()
    if not hi > lo:
        half = max(0.5, abs(lo) * 0.05)
        lo, hi = lo - half, hi + half
    return float(lo), float(hi)


def _round_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """At most about ``bins`` bins covering ``[lo, hi]``, of a round width (1, 2, 2.5 or
    5 x 10^k) and starting at a multiple of it, so that the y axis reads "Events / 10 GeV", not
    "/ 9.37"."""
    raw = (hi - lo) / bins
    scale = 10.0 ** math.floor(math.log10(raw))
    # the next round width up: at most the bins asked for (at least about half of them)
    width = next(m * scale for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * scale >= raw * (1 - 1e-9))
    start = math.floor(lo / width + 1e-9) * width
    n = max(1, math.ceil((hi - start) / width - 1e-9))
    return start + width * np.arange(n + 1)


def _nice_half_range(ratios: Sequence[np.ndarray], rel_err: np.ndarray) -> float:
    """Half-width of the ratio panel's y range, from a short list of values.

    Chosen to fit 90% of the bins where the target is well populated (relative error < 15%), so
    that a few low-statistics tail bins do not squash the informative ones (they are clipped).
    """
    good = np.isfinite(rel_err) & (rel_err < 0.15)
    dev = np.concatenate([np.abs(r[good & np.isfinite(r)] - 1.0) for r in ratios])
    need = float(np.percentile(dev, 90)) * 1.15 if dev.size else 0.0
    for half in (0.1, 0.2, 0.4, 0.5, 1.0):
        if need <= half:
            return half
    return 1.0


def _with_unit(label: str, unit: str | None) -> str:
    return f"{label} [{unit}]" if unit else label


def _check_labels(labels: Sequence[str], n: int) -> tuple[str, ...]:
    if isinstance(labels, str) or len(labels) != n:
        raise ValueError(f"labels must be a sequence of {n} strings; got {labels!r}")
    return tuple(str(lab) for lab in labels)


def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    return int(bins)


def _check_names(names: Any, what: str) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
        raise ValueError(f"{what} must be a list of names, not {names!r}")
    return [str(name) for name in names]


def _num(x: float) -> str:
    """A bin width for a label: 10, 2.5, 0.02."""
    return f"{x:.4g}"


# --------------------------------------------------------------------------------------------
# feature comparison
# --------------------------------------------------------------------------------------------
_SAMPLES = ("source", "morphed", "target")


@dataclass(frozen=True)
class _Binned:
    """One sample of one feature in bins."""

    values: np.ndarray  # sum of weights per bin
    variances: np.ndarray  # sum of squared weights per bin
    total: float  # sum of weights of all events, in range or not: the normalisation
    weighted: bool  # variances differ from values (Poisson intervals need the weighted form)


def _is_hist(obj: Any) -> bool:
    import boost_histogram as bh  # comes with hist (the [plots] extra)

    return isinstance(obj, bh.Histogram)


def _check_hist(h: Any, what: str) -> Any:
    import boost_histogram as bh

    if h.ndim != 1:
        names = [getattr(ax, "name", "") or f"axis {i}" for i, ax in enumerate(h.axes)]
        raise ValueError(
            f"{what} must be a 1D histogram (one feature); got a {h.ndim}D histogram with axes "
            f"{names}: project it first, e.g. h.project({names[0]!r})"
        )
    if isinstance(h.axes[0], bh.axis.StrCategory | bh.axis.IntCategory | bh.axis.Boolean):
        raise ValueError(
            f"{what} has a {type(h.axes[0]).__name__} axis; feature_comparison needs a "
            "continuous axis (Regular or Variable)"
        )
    if h.kind != bh.Kind.COUNT:
        raise ValueError(
            f"{what} must count events (Int64, Double or Weight storage); got "
            f"{h.storage_type.__name__} storage"
        )
    return h


def _as_hists(x: Any, what: str) -> dict[str, Any] | list[Any] | None:
    """``x`` as histograms, ``{feature: hist}`` or a list (one per feature); None when ``x``
    holds no histogram (it is then read as an array)."""
    if _is_hist(x):
        return [_check_hist(x, what)]
    if isinstance(x, Mapping):
        items = [(str(k), v) for k, v in x.items()]
    elif isinstance(x, list | tuple):
        items = [(str(i), v) for i, v in enumerate(x)]
    else:
        return None
    flags = [_is_hist(v) for _, v in items]
    if not any(flags):
        return None
    if not all(flags):
        raise ValueError(
            f"{what} mixes histograms and other values; pass a 1D histogram for every feature "
            "(or an array of events)"
        )
    hists = {k: _check_hist(v, f"{what}[{k!r}]") for k, v in items}
    return hists if isinstance(x, Mapping) else list(hists.values())


def _names_of(x: Any, hists: dict[str, Any] | list[Any] | None) -> list[str] | None:
    """Feature names carried by an input: mapping keys, hist axis names, record fields."""
    if isinstance(hists, dict):
        return list(hists)
    if isinstance(hists, list):
        names = [str(getattr(h.axes[0], "name", "") or "") for h in hists]
        return names if all(names) else None
    if isinstance(x, Mapping):
        return [str(k) for k in x]
    fields = getattr(x, "fields", None)
    return [str(f) for f in fields] if fields else None


def _columns(x: Any, hists: Any, what: str, features: list[str]) -> list[Any] | np.ndarray:
    """One input as a list of 1D histograms (one per feature) or an ``(N, D)`` array."""
    if isinstance(hists, dict):
        missing = [f for f in features if f not in hists]
        if missing:
            raise ValueError(f"{what} has no histogram for {missing}; it has {list(hists)}")
        return [hists[f] for f in features]
    if isinstance(hists, list):
        if len(hists) != len(features):
            raise ValueError(
                f"{what} has {len(hists)} histograms for the {len(features)} features "
                f"{features}; pass one 1D histogram per feature"
            )
        return hists
    if isinstance(x, Mapping):
        missing = [f for f in features if f not in x]
        if missing:
            raise ValueError(f"{what} has no column {missing}; it has {list(x)}")
        x = {f: x[f] for f in features}
    return as_matrix(x, what, min_events=1)


def _edges_from(spec: Any, name: str) -> np.ndarray:
    """Explicit bin edges: a sequence of numbers or a hist axis (anything with ``edges``)."""
    edges_attr = getattr(spec, "edges", None)
    try:
        edges = np.asarray(spec if edges_attr is None else edges_attr, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"bins for {name!r} must be an int, a list of bin edges or a hist axis; got {spec!r}"
        ) from err
    if edges.ndim == 0:
        raise ValueError(
            f"bins for {name!r} must be an int, a list of bin edges or a hist axis; got {spec!r}"
        )
    if (
        edges.ndim != 1
        or edges.size < 2
        or not np.isfinite(edges).all()
        or not (np.diff(edges) > 0).all()
    ):
        raise ValueError(
            f"bin edges for {name!r} must be at least two finite, strictly increasing numbers; "
            f"got {spec!r}"
        )
    return edges


def _feature_edges(
    name: str, spec: Any, arrays: list[np.ndarray], hists: list[tuple[str, Any]]
) -> np.ndarray:
    """The bin edges of one feature: its histograms', else from ``spec`` over ``arrays``."""
    if hists:
        if spec is not None:
            raise ValueError(
                f"bins for {name!r}: its histograms set the bins; leave bins unset for it"
            )
        (first, h0), *others = hists
        edges = np.asarray(h0.axes[0].edges, dtype=np.float64)
        for what, h in others:
            other = np.asarray(h.axes[0].edges, dtype=np.float64)
            if other.shape != edges.shape or not np.allclose(other, edges, rtol=1e-9, atol=0):
                raise ValueError(
                    f"the histograms of {name!r} have different bins: {first} has "
                    f"{edges.size - 1} over [{edges[0]:g}, {edges[-1]:g}], {what} has "
                    f"{other.size - 1} over [{other[0]:g}, {other[-1]:g}]; fill them with one axis"
                )
        return edges
    if spec is None:  # ~sqrt(N): 800 events get ~28 bins, not 50 bins of noise
        spec = int(np.clip(round(math.sqrt(min(len(a) for a in arrays))), 10, DEFAULT_BINS))
    if isinstance(spec, bool | int | np.integer):
        lo, hi = _plot_range(arrays)
        return _round_edges(lo, hi, _check_bins(spec))
    return _edges_from(spec, name)


def _weights(given: Any, column: Any, what: str) -> np.ndarray | None:
    """Per-event weights of one array input (None: unweighted)."""
    if given is None:
        return None
    if not isinstance(column, np.ndarray):
        raise ValueError(f"{what} weights go with event arrays; a histogram carries its own")
    w = np.asarray(given, dtype=np.float64).reshape(-1)
    if len(w) != len(column) or not np.isfinite(w).all():
        raise ValueError(
            f"{what} weights: expected {len(column)} finite values, got {len(w)}"
            + ("" if np.isfinite(w).all() else " with NaN/inf")
        )
    return w


def _bin_array(values: np.ndarray, edges: np.ndarray, w: np.ndarray | None = None) -> _Binned:
    import hist

    if w is None:
        h = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Double())
        h.fill(values)
        counts = np.asarray(h.values(), dtype=np.float64)
        return _Binned(counts, counts.copy(), float(len(values)), False)
    hw = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Weight())
    hw.fill(values, weight=w)
    return _Binned(
        np.asarray(hw.values(), dtype=np.float64),
        np.asarray(hw.variances(), dtype=np.float64),
        float(w.sum()),
        True,
    )


def _bin_hist(h: Any) -> _Binned:
    values = np.asarray(h.values(), dtype=np.float64)
    var = h.variances()  # None: Double storage filled with weights; read as counts
    variances = values.copy() if var is None else np.asarray(var, dtype=np.float64)
    weighted = not np.allclose(variances, values)
    return _Binned(values, variances, float(np.sum(h.values(flow=True))), weighted)


def _per_feature(option: Any, name: str) -> Any:
    return option.get(name) if isinstance(option, Mapping) else option


def _check_keys(option: Any, what: str, features: list[str]) -> None:
    if isinstance(option, Mapping):
        unknown = [k for k in option if k not in features]
        if unknown:
            raise ValueError(f"{what} names {unknown}, which are not features {features}")


def _y_axis(edges: np.ndarray, unit: str | None, binwnorm: float | None) -> tuple[Any, str]:
    """Per-bin factors from counts to what the y axis shows, and the axis label."""
    widths = np.diff(edges)
    u = f" {unit}" if unit else ""
    if binwnorm is None and np.allclose(widths, widths[0], rtol=1e-6, atol=0):
        return 1.0, f"Events / {_num(widths[0])}{u}"
    norm = 1.0 if binwnorm is None else binwnorm  # variable bins: events per unit
    if norm == 1.0:
        return norm / widths, f"Events / {unit}" if unit else "Events / bin width"
    return norm / widths, f"Events / {_num(norm)}{u}"


def _is_energy_spectrum(name: str, unit: str | None) -> bool:
    return bool(
        unit and unit.strip().lower().startswith(_ENERGY_UNITS) and _MASS_OR_PT.search(name.lower())
    )


def _auto_logy(density: np.ndarray, name: str, unit: str | None) -> bool:
    """A falling spectrum gets log-y: its peak in the lower third of the range and the upper
    tenth of the range two decades below it (one for a mass or pT in energy units)."""
    n = density.size
    if np.count_nonzero(density > 0) < 3:
        return False
    peak = int(np.argmax(density))
    if peak > (n - 1) / 3:
        return False
    tail = float(density[-max(1, n // 10) :].mean())
    level = tail if tail > 0 else float(density[density > 0].min())
    decades = 1.0 if _is_energy_spectrum(name, unit) else 2.0
    return bool(density[peak] / level > 10.0**decades)


def _check_logy(value: Any) -> bool | str:
    if value is None or (isinstance(value, str) and value == "auto"):
        return "auto"
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"logy must be True, False or 'auto' (or a mapping of those); got {value!r}")


def _check_range(value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"ratio_range must be (low, high); got {value!r}") from err
    if not (np.isfinite([lo, hi]).all() and hi > lo):
        raise ValueError(f"ratio_range must be finite (low, high) with low < high; got {value!r}")
    return lo, hi


def _axis_labels(xlabels: Any, features: list[str]) -> dict[str, str]:
    """``{feature: x label}`` from ``xlabels`` (a mapping, one per feature, or None)."""
    if xlabels is None:
        return {}
    if isinstance(xlabels, Mapping):
        return {str(k): str(v) for k, v in xlabels.items()}
    names = _check_names(xlabels, "xlabels")
    if len(names) != len(features):
        raise ValueError(
            f"xlabels has {len(names)} labels for the {len(features)} features {features}; "
            "pass one per feature or a mapping {feature: label}"
        )
    return dict(zip(features, names, strict=True))


def _check_binwnorm(binwnorm: Any) -> None:
    if binwnorm is not None and (
        isinstance(binwnorm, bool) or not isinstance(binwnorm, int | float) or not binwnorm > 0
    ):
        raise ValueError(f"binwnorm must be a positive number or None; got {binwnorm!r}")


def _grid(ncols: Any, n_feat: int) -> tuple[int, int]:
    """``(columns, rows)`` of the panel grid: ``ncols`` per row (default up to 4)."""
    if ncols is None:
        ncols = min(n_feat, 4)
    if isinstance(ncols, bool) or not isinstance(ncols, int | np.integer) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer or None; got {ncols!r}")
    ncols = min(int(ncols), n_feat)
    return ncols, math.ceil(n_feat / ncols)


def _poisson(b: _Binned) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper 68% Poisson (Garwood) errors of the bin contents, via hist."""
    from hist.intervals import poisson_interval

    interval = poisson_interval(b.values, b.variances if b.weighted else None)
    return b.values - interval[0], np.nan_to_num(interval[1] - b.values)


def _ratio_errors(num: _Binned, scale: float, denom: np.ndarray) -> np.ndarray:
    """Errors of ``scale * num / denom`` from the numerator's statistics (hist's intervals)."""
    from hist.intervals import ratio_uncertainty

    with np.errstate(divide="ignore", invalid="ignore"):
        if not num.weighted:
            err = ratio_uncertainty(num.values, denom / scale, uncertainty_type="poisson")
        else:
            sym = scale * np.sqrt(num.variances) / denom
            err = np.stack([sym, sym])
    return np.where(denom > 0, np.nan_to_num(err), np.nan)


def _ratio_panels(n: int, ncols: int, nrows: int) -> tuple[Figure, list[tuple[Any, Any]]]:
    """A figure of ``n`` panels on a ``nrows x ncols`` grid, each a main axis over a ratio axis
    that shares its x (inside :func:`_style`)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.6 * ncols, 5.2 * nrows), layout="constrained")
    _layout(fig).set(hspace=0.04, wspace=0.03, h_pad=0.06)
    outer = fig.add_gridspec(nrows, ncols)
    panels = []
    for j in range(n):
        cell = outer[j // ncols, j % ncols].subgridspec(2, 1, height_ratios=(2.6, 1.4), hspace=0.0)
        ax = fig.add_subplot(cell[0])
        panels.append((ax, fig.add_subplot(cell[1], sharex=ax)))
    return fig, panels


def _main_axis(
    ax: Any,
    shown: Sequence[np.ndarray],
    top: float,
    *,
    log: bool,
    above: bool,
    edges: np.ndarray,
    ylabel: str,
) -> None:
    """The y range of a main panel (room for the legend: above the panels or inside), its x
    range and labels; on log-y from half the smallest positive value of ``shown``."""
    if log:
        ax.set_yscale("log")
        positive = np.concatenate([y[y > 0] for y in shown])
        bottom = 0.5 * float(positive.min()) if positive.size else 0.1
        top = max(top, 10 * bottom)
        room = 0.15 if above else 0.5  # fraction of the decades left above the data
        ax.set_ylim(bottom, top * (top / bottom) ** (room / (1 - room)))
    else:
        ax.set_ylim(0, (1.15 if above else 2.1) * top if top > 0 else 1.0)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylabel(ylabel)
    ax.tick_params(labelbottom=False)
    ax.set_xlabel("")


def _source_step(ax: Any, y: np.ndarray, bins: np.ndarray, *, lw: float, **kw: Any) -> None:
    """The source sample (or its ratio) as a dashed step line (``kw`` to mplhep, e.g.
    ``edges=False`` on log-y, where the end edges would fall to the axis bottom)."""
    import mplhep

    mplhep.histplot(
        y, bins, ax=ax, histtype="step", ls="--", lw=lw, color=_SOURCE_COLOR, flow="none", **kw
    )


def _morphed_step(ax: Any, y: np.ndarray, bins: np.ndarray, *, lw: float, **kw: Any) -> None:
    """The morphed sample (or its ratio) as a solid step line (``kw`` as for
    :func:`_source_step`)."""
    import mplhep

    mplhep.histplot(y, bins, ax=ax, histtype="step", lw=lw, color=_MORPHED_COLOR, flow="none", **kw)


def _target_points(
    ax: Any,
    y: np.ndarray,
    edges: np.ndarray,
    yerr: np.ndarray,
    *,
    markersize: float = 3.5,
    elinewidth: float = 1.0,
    **kw: Any,
) -> None:
    """The target sample (or its ratio) as points with error bars."""
    import mplhep

    mplhep.histplot(
        y,
        edges,
        yerr=yerr,
        ax=ax,
        histtype="errorbar",
        color=_TARGET_COLOR,
        marker="o",
        markersize=markersize,
        elinewidth=elinewidth,
        flow="none",
        **kw,
    )


def _ratio_axis(
    rax: Any,
    fixed_range: tuple[float, float] | None,
    ratios: Sequence[np.ndarray],
    rel_err: np.ndarray,
    edges: np.ndarray,
    xlabel: str,
    reference: str,
) -> None:
    """The y range (``fixed_range``, or a round half-range that shows ``ratios``), ticks and
    labels of a ratio panel against ``reference``."""
    if fixed_range is None:
        half = _nice_half_range(ratios, rel_err)
        lo_r, hi_r = 1 - half, 1 + half
    else:
        lo_r, hi_r = fixed_range
    rax.set_ylim(lo_r, hi_r)
    rax.set_yticks([lo_r + (hi_r - lo_r) / 4, (lo_r + hi_r) / 2, hi_r - (hi_r - lo_r) / 4])
    rax.set_xlim(edges[0], edges[-1])
    rax.set_xlabel(xlabel)
    rax.set_ylabel(f"ratio to\n{reference}", fontsize="small", loc="center")
    rax.tick_params(axis="y", labelsize="small")


def _legend(fig: Figure, ax: Any, handles: list[Any], names: list[str], *, above: bool) -> None:
    """One legend above all panels (it never hides data), or in the first panel's headroom."""
    if above:
        fig.legend(
            handles, names, loc="outside upper center", ncols=4, frameon=False, fontsize="small"
        )
    else:
        ax.legend(handles, names, loc="upper right", frameon=False, fontsize="x-small")


def feature_comparison(
    source: Any,
    morphed: Any,
    target: Any,
    *,
    features: Sequence[str] | None = None,
    units: Mapping[str, str] | None = None,
    bins: Any = None,
    path: str | Path | None = None,
    labels: Sequence[str] = ("source", "morphed", "target"),
    ncols: int | None = None,
    xlabels: Mapping[str, str] | Sequence[str] | None = None,
    logy: bool | str | Mapping[str, bool | str] = "auto",
    binwnorm: float | None = None,
    ratio_range: tuple[float, float] | None = None,
    source_weights: Any = None,
    target_weights: Any = None,
) -> Figure:
    """Per-feature histograms of source, morphed and target, with ratio panels to the target.

    One column per feature. Top: events per bin, source (dashed) and morphed (solid) scaled to
    the target's number of events (all events count, also those beyond the plotted range),
    the target as black points with 68% Poisson errors; the y axis reads "Events / 10 GeV"
    (equal bins) or "Events / GeV" (variable bins or ``binwnorm=1``). Bottom: morphed / target
    with the morphed sample's statistical error, source / target (dashed), and a grey band
    for the target's statistical uncertainty; the y axis reads "ratio to <target label>".

    Args:
        source: source events, shape ``(N, D)`` (or a mapping / awkward record of ``D``
            columns), or histograms: a 1D ``hist.Hist`` (one feature), a list of ``D`` of
            them, or ``{feature: hist}``.
        morphed: morphed source events (need not be paired with source), as ``source``.
        target: target events, as ``source``.
        features: ``D`` feature names, in column order. Optional when the inputs name their
            features (mapping keys, hist axis names, record fields).
        units: optional ``{feature: unit}``; the x label becomes ``"label [unit]"`` and the y
            label ``"Events / 10 unit"``. Features missing from it have no unit.
        bins: per feature (or ``{feature: ...}``): an int (at most about that many bins, of
            the next round width up, 1, 2, 2.5 or 5 x 10^k, over the central 99.8% of all three
            samples; default sqrt(N) of the smallest sample, 10 to 50), explicit bin edges, or
            a ``hist`` axis. Histogram inputs bring their own bins.
        path: where to save the figure (PNG at 150 dpi), or None.
        labels: legend names of source, morphed and target (the ratio label names the target).
        ncols: features per row (default: up to 4); more rows are added as needed.
        xlabels: x-axis labels instead of the feature names: ``{feature: label}`` or one per
            feature (e.g. ``{"mj1": "$m_{j1}$"}``); the unit is appended.
        logy: ``True``, ``False`` or ``"auto"`` (per feature with a mapping): auto draws a
            falling spectrum in log-y (peak in the lower third of the range and the upper tenth
            two decades lower, one decade for a mass or pT in energy units such as GeV).
        binwnorm: show events per ``binwnorm`` units of x (``1``: "Events / GeV"); default:
            events per bin for equal bins, per unit for variable bins.
        ratio_range: ``(low, high)`` of the ratio panels; default: symmetric around 1, wide
            enough for 90% of the well-populated bins (others are clipped).
        source_weights, target_weights: event weights (``(N,)``, signed allowed) of array
            inputs; the morphed events carry the source weights. Errors are then
            ``sqrt(sum w^2)`` per bin.

    Returns:
        The figure.

    Raises:
        ValueError: on malformed input, mismatched feature counts, NaN/inf, histograms that are
            not 1D counts or have different bins per feature, or bad options.
    """
    import matplotlib.pyplot as plt
    import mplhep

    labels = _check_labels(labels, 3)
    inputs = {"source": source, "morphed": morphed, "target": target}
    hists = {what: _as_hists(x, what) for what, x in inputs.items()}
    if features is None:
        named = (_names_of(inputs[w], hists[w]) for w in _SAMPLES)
        features = next((n for n in named if n is not None), None)
        if features is None:
            raise ValueError(
                "features is needed: the inputs do not name their columns; pass one name per "
                "column, e.g. features=['mj1', 'tau21']"
            )
    features = _check_names(features, "features")
    columns = {w: _columns(inputs[w], hists[w], w, features) for w in _SAMPLES}
    dims = {w: c.shape[1] for w, c in columns.items() if isinstance(c, np.ndarray)}
    if any(d != len(features) for d in dims.values()):
        raise ValueError(
            f"features has {len(features)} names but the arrays have feature counts {dims}; "
            "pass one name per column and arrays with the same columns"
        )
    axis_labels = _axis_labels(xlabels, features)
    _check_keys(bins, "bins", features)
    _check_keys(logy, "logy", features)
    logys = {f: _check_logy(_per_feature(logy, f)) for f in features}
    _check_binwnorm(binwnorm)
    fixed_range = None if ratio_range is None else _check_range(ratio_range)
    ncols, nrows = _grid(ncols, len(features))
    units = dict(units or {})

    weights = {
        w: _weights(given, columns[w], w)
        for w, given in (
            ("source", source_weights),
            ("morphed", source_weights),
            ("target", target_weights),
        )
    }
    # bin everything first: errors surface before a figure is made
    binned: list[dict[str, _Binned]] = []
    all_edges: list[np.ndarray] = []
    for j, name in enumerate(features):
        arrays = [c[:, j] for c in columns.values() if isinstance(c, np.ndarray)]
        feature_hists = [(w, c[j]) for w, c in columns.items() if not isinstance(c, np.ndarray)]
        edges = _feature_edges(name, _per_feature(bins, name), arrays, feature_hists)
        per = {
            w: _bin_hist(c[j])
            if not isinstance(c, np.ndarray)
            else _bin_array(c[:, j], edges, weights[w])
            for w, c in columns.items()
        }
        for w, sample in per.items():
            if not sample.total > 0:
                raise ValueError(f"the {w} histogram of {name!r} is empty")
        binned.append(per)
        all_edges.append(edges)
    scales = [{w: b["target"].total / b[w].total for w in ("source", "morphed")} for b in binned]
    legend_names = [labels[0], labels[1], labels[2]]
    for i, w in enumerate(("source", "morphed")):
        factors = [sc[w] for sc in scales]
        if any(abs(f - 1.0) > 0.005 for f in factors):  # say that it was scaled, and by what
            same = np.allclose(factors, factors[0], rtol=1e-6)
            legend_names[i] += f" (\u00d7{factors[0]:.3g})" if same else " (scaled)"
    above = ncols > 1  # the legend above the panels; a single column is too narrow for it

    # 20 pt rather than the ROOT style's 26: a 4.6 inch panel with a ratio panel under it
    # fits its tick labels and the two-line ratio label at that size
    with _style(), plt.rc_context({"font.size": 20}):
        fig, panels = _ratio_panels(len(features), ncols, nrows)
        for j, (name, (ax, rax)) in enumerate(zip(features, panels, strict=True)):
            b, edges, scale = binned[j], all_edges[j], scales[j]
            unit = units.get(name)
            per_x, ylabel = _y_axis(edges, unit, binwnorm)
            y_s = b["source"].values * scale["source"] * per_x
            y_m = b["morphed"].values * scale["morphed"] * per_x
            t = b["target"].values
            y_t = t * per_x
            err_t = np.stack(_poisson(b["target"])) * per_x
            want = logys[name]
            widths = np.diff(edges)
            log = (
                _auto_logy((y_s + y_m + y_t) / (per_x * widths), name, unit)
                if want == "auto"
                else bool(want)
            )
            shown_t = np.where(t > 0, y_t, np.nan) if log else y_t  # no points at 0 on log-y

            _source_step(ax, y_s, edges, lw=1.8, label=legend_names[0], edges=not log)
            _morphed_step(ax, y_m, edges, lw=2.0, label=legend_names[1], edges=not log)
            _target_points(ax, shown_t, edges, err_t, label=legend_names[2])
            top = float(np.nanmax([np.max(y_s), np.max(y_m), np.max(y_t + err_t[1])]))
            _main_axis(ax, (y_s, y_m, y_t), top, log=log, above=above, edges=edges, ylabel=ylabel)

            with np.errstate(divide="ignore", invalid="ignore"):
                r_m = np.where(t > 0, y_m / y_t, np.nan)
                r_s = np.where(t > 0, y_s / y_t, np.nan)
                band_lo = np.where(t > 0, 1 - err_t[0] / y_t, 1.0)
                band_hi = np.where(t > 0, 1 + err_t[1] / y_t, 1.0)
            band = rax.stairs(
                band_hi,
                edges,
                baseline=band_lo,
                fill=True,
                color="0.8",
                lw=0,
                label=f"{labels[2]} stat. unc.",
            )
            rax.axhline(1.0, color="black", lw=1.0, ls=":")
            _source_step(rax, r_s, edges, lw=1.6)
            _morphed_step(rax, r_m, edges, lw=1.8)
            # the morphed sample's own statistics: thin bars, so that sparse tail bins do not
            # paint the panel red
            mplhep.histplot(
                r_m,
                edges,
                yerr=_ratio_errors(b["morphed"], scale["morphed"], t),
                ax=rax,
                histtype="errorbar",
                marker="",
                elinewidth=0.9,
                color=_MORPHED_COLOR,
                alpha=0.8,
                flow="none",
            )
            xlabel = _with_unit(axis_labels.get(name, name), unit)
            _ratio_axis(rax, fixed_range, [r_m, r_s], band_hi - 1, edges, xlabel, labels[2])
            if j == 0:
                handles, names = ax.get_legend_handles_labels()
                handles, names = [*handles, band], [*names, str(band.get_label())]
                _legend(fig, ax, handles, names, above=above)
        _save(fig, path)
    return fig


# --------------------------------------------------------------------------------------------
# the ensemble's band
# --------------------------------------------------------------------------------------------
_BAND_KEYS = ("nominal", "up", "down")
_BAND_ALPHA = 0.3


def _event_columns(x: Any, what: str, features: list[str]) -> np.ndarray:
    """One event input of :func:`band_comparison` as an ``(N, D)`` array of ``features``."""
    if _is_hist(x) or (
        isinstance(x, Mapping | list | tuple) and any(_is_hist(v) for v in _values(x))
    ):
        raise ValueError(
            f"{what} must hold events (an array, a mapping of columns or awkward records); "
            "band_comparison bins the events itself and takes no histograms"
        )
    fields = list(x.keys()) if isinstance(x, Mapping) else getattr(x, "fields", None)
    if fields:
        missing = [f for f in features if f not in fields]
        if missing:
            raise ValueError(f"{what} has no column {missing}; it has {list(fields)}")
        x = {f: x[f] for f in features}
    arr = as_matrix(x, what, min_events=1)
    if arr.shape[1] != len(features):
        raise ValueError(
            f"{what} has {arr.shape[1]} feature columns but features has {len(features)} names "
            f"{features}; pass one name per column"
        )
    return arr


def _values(x: Any) -> list[Any]:
    return list(x.values()) if isinstance(x, Mapping) else list(x)


def _check_band(band: Any) -> dict[str, Any]:
    if not isinstance(band, Mapping) or any(k not in band for k in _BAND_KEYS):
        have = list(band) if isinstance(band, Mapping) else type(band).__name__
        raise ValueError(
            "band must be the dict {'nominal', 'up', 'down'} of "
            f"Morpher.variations(x, with_nominal=True); got {have}"
        )
    return {k: band[k] for k in _BAND_KEYS}


def _envelope(b: dict[str, _Binned], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per bin, the lowest and highest of nominal, up and down (scaled): an event-wise "up"
    moves events along x, so it raises some bins and lowers others."""
    stacked = np.stack([b[k].values for k in _BAND_KEYS]) * scale
    return stacked.min(axis=0), stacked.max(axis=0)


def band_comparison(
    source: Any,
    band: Mapping[str, Any],
    target: Any = None,
    *,
    features: Sequence[str] | None = None,
    units: Mapping[str, str] | None = None,
    bins: Any = None,
    path: str | Path | None = None,
    labels: Sequence[str] = ("source", "morphed", "target"),
    band_label: str = "ensemble band",
    ncols: int | None = None,
    xlabels: Mapping[str, str] | Sequence[str] | None = None,
    logy: bool | str | Mapping[str, bool | str] = "auto",
    binwnorm: float | None = None,
    ratio_range: tuple[float, float] | None = None,
    source_weights: Any = None,
    target_weights: Any = None,
) -> Figure:
    """Per feature, the nominal morph with the ensemble's band, the source and the target.

    The band is :meth:`Morpher.variations(x, with_nominal=True)
    <coffea_f4f.morpher.Morpher.variations>` of the source events ``x``: each event moved to
    the nominal morph +- the spread of the bootstrap members. Each of ``nominal``, ``up`` and
    ``down`` is histogrammed; per bin the shaded band spans the lowest to the highest of the
    three (an event-wise "up" shifts events along x, so it raises some bins and lowers others).

    One column per feature, with the conventions of :func:`feature_comparison` (units, round
    bin widths, log-y for falling spectra, legend above the panels, mplhep style). Top: events
    per bin, the source (dashed) and the nominal morph (solid) with its band (shaded), both
    scaled to the target's number of events when a target is given, and the target as black
    points with 68% Poisson errors. Bottom: everything divided by the nominal morph: the band
    around 1, the target (points, its statistical errors) and the source (dashed); the y axis
    reads "ratio to <morphed label>".

    Args:
        source: the source events the band was computed for, shape ``(N, D)`` (or a mapping /
            awkward records holding the ``D`` feature columns; other fields are ignored).
        band: ``{"nominal", "up", "down"}``, each of the shape of ``source`` (row ``i`` moves
            source row ``i``), as :meth:`Morpher.variations` returns them with
            ``with_nominal=True``.
        target: optional target events, as ``source`` (any number of events).
        features: ``D`` feature names, in column order. Optional when the inputs name their
            columns (mapping keys, record fields); with records that hold more fields, pass it.
        units: optional ``{feature: unit}``, as in :func:`feature_comparison`.
        bins: per feature (or ``{feature: ...}``): an int (at most about that many round bins
            over the central 99.8% of all samples; default sqrt(N), 10 to 50) or bin edges.
        path: where to save the figure (PNG at 150 dpi), or None.
        labels: legend names of the source, the nominal morph and the target.
        band_label: the band's legend entry.
        ncols: features per row (default: up to 4).
        xlabels: x-axis labels instead of the feature names (the unit is appended).
        logy: ``True``, ``False`` or ``"auto"`` (per feature with a mapping), as in
            :func:`feature_comparison`.
        binwnorm: show events per ``binwnorm`` units of x; default: events per bin for equal
            bins, per unit for variable bins.
        ratio_range: ``(low, high)`` of the ratio panels; default: symmetric around 1, wide
            enough for the band and 90% of the well-populated target bins.
        source_weights: per-event weights of the source (``(N,)``, signed allowed); the
            nominal morph and its variations carry them.
        target_weights: per-event weights of the target.

    Returns:
        The figure.

    Raises:
        ValueError: ``band`` lacks one of its keys, the band's arrays or the source differ in
            shape, histograms instead of events, NaN/inf, or bad options.
    """
    import matplotlib.pyplot as plt

    labels = _check_labels(labels, 3)
    given = _check_band(band)
    inputs: dict[str, Any] = {"source": source, **given}
    if target is not None:
        inputs["target"] = target
    if features is None:
        named = (_names_of(x, None) for x in inputs.values())
        features = next((n for n in named if n is not None), None)
        if features is None:
            raise ValueError(
                "features is needed: the inputs do not name their columns; pass one name per "
                "column, e.g. features=['mj1', 'tau21']"
            )
    features = _check_names(features, "features")
    what = {"source": "source", **{k: f"band[{k!r}]" for k in _BAND_KEYS}, "target": "target"}
    columns = {k: _event_columns(x, what[k], features) for k, x in inputs.items()}
    for k in _BAND_KEYS:
        if columns[k].shape != columns["source"].shape:
            raise ValueError(
                f"band[{k!r}] has shape {columns[k].shape} but source {columns['source'].shape}: "
                "the band holds the source events, moved (Morpher.variations(source, ...))"
            )
    axis_labels = _axis_labels(xlabels, features)
    _check_keys(bins, "bins", features)
    _check_keys(logy, "logy", features)
    logys = {f: _check_logy(_per_feature(logy, f)) for f in features}
    _check_binwnorm(binwnorm)
    fixed_range = None if ratio_range is None else _check_range(ratio_range)
    ncols, nrows = _grid(ncols, len(features))
    units = dict(units or {})
    ws = _weights(source_weights, columns["source"], "source")
    weights: dict[str, np.ndarray | None] = dict.fromkeys(columns, ws)
    if "target" in columns:
        weights["target"] = _weights(target_weights, columns["target"], "target")
    elif target_weights is not None:
        raise ValueError("target_weights were given without a target")

    binned: list[dict[str, _Binned]] = []
    all_edges: list[np.ndarray] = []
    for j, name in enumerate(features):
        arrays = [c[:, j] for c in columns.values()]
        edges = _feature_edges(name, _per_feature(bins, name), arrays, [])
        per = {k: _bin_array(c[:, j], edges, weights[k]) for k, c in columns.items()}
        for k, sample in per.items():
            if not sample.total > 0:
                raise ValueError(f"the {what[k]} histogram of {name!r} is empty")
        binned.append(per)
        all_edges.append(edges)
    has_target = "target" in columns
    scales = [
        {k: (b["target"].total / b[k].total if has_target else 1.0) for k in ("source", "nominal")}
        for b in binned
    ]
    legend_names = list(labels)
    for i, k in enumerate(("source", "nominal")):
        factors = [sc[k] for sc in scales]
        if any(abs(f - 1.0) > 0.005 for f in factors):
            same = np.allclose(factors, factors[0], rtol=1e-6)
            legend_names[i] += f" (\u00d7{factors[0]:.3g})" if same else " (scaled)"
    above = ncols > 1

    with _style(), plt.rc_context({"font.size": 20}):
        fig, panels = _ratio_panels(len(features), ncols, nrows)
        for j, (name, (ax, rax)) in enumerate(zip(features, panels, strict=True)):
            b, edges, scale = binned[j], all_edges[j], scales[j]
            unit = units.get(name)
            per_x, ylabel = _y_axis(edges, unit, binwnorm)
            y_s = b["source"].values * scale["source"] * per_x
            y_n = b["nominal"].values * scale["nominal"] * per_x
            lo, hi = (v * per_x for v in _envelope(b, scale["nominal"]))
            shown = [y_s, y_n, hi]
            if has_target:
                y_t = b["target"].values * per_x
                err_t = np.stack(_poisson(b["target"])) * per_x
                shown.append(y_t)
            want = logys[name]
            widths = np.diff(edges)
            log = (
                _auto_logy(sum(shown) / (per_x * widths), name, unit)
                if want == "auto"
                else bool(want)
            )
            _source_step(ax, y_s, edges, lw=1.8, label=legend_names[0], edges=not log)
            ax.stairs(
                hi,
                edges,
                baseline=lo,
                fill=True,
                color=_MORPHED_COLOR,
                alpha=_BAND_ALPHA,
                lw=0,
                label=band_label,
            )
            _morphed_step(ax, y_n, edges, lw=2.0, label=legend_names[1], edges=not log)
            top = float(np.nanmax([np.max(y) for y in shown]))
            if has_target:
                t = b["target"].values
                shown_t = np.where(t > 0, y_t, np.nan) if log else y_t
                _target_points(ax, shown_t, edges, err_t, label=legend_names[2])
                top = max(top, float(np.max(y_t + err_t[1])))
            _main_axis(ax, shown, top, log=log, above=above, edges=edges, ylabel=ylabel)

            nominal = y_n > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                r_lo = np.where(nominal, lo / y_n, np.nan)
                r_hi = np.where(nominal, hi / y_n, np.nan)
                r_s = np.where(nominal, y_s / y_n, np.nan)
            rax.stairs(
                np.nan_to_num(r_hi, nan=1.0),
                edges,
                baseline=np.nan_to_num(r_lo, nan=1.0),
                fill=True,
                color=_MORPHED_COLOR,
                alpha=_BAND_ALPHA,
                lw=0,
                label=band_label,
            )
            rax.axhline(1.0, color=_MORPHED_COLOR, lw=1.2)
            _source_step(rax, r_s, edges, lw=1.6)
            ratios = [r_s, r_lo, r_hi]
            rel_err = np.where(nominal, 0.0, np.inf)
            if has_target:
                with np.errstate(divide="ignore", invalid="ignore"):
                    r_t = np.where(nominal, y_t / y_n, np.nan)
                    r_err = np.where(nominal, err_t / y_n, np.nan)
                    rel_err = np.where(t > 0, err_t[1] / y_t, np.inf)
                _target_points(
                    rax, r_t, edges, np.nan_to_num(r_err), markersize=3.0, elinewidth=0.9
                )
                ratios.append(r_t)
            xlabel = _with_unit(axis_labels.get(name, name), unit)
            _ratio_axis(rax, fixed_range, ratios, rel_err, edges, xlabel, labels[1])
            if j == 0:  # source, morphed, its band, target
                handles, names = ax.get_legend_handles_labels()
                handles[1:3], names[1:3] = handles[2:0:-1], names[2:0:-1]
                _legend(fig, ax, handles, names, above=above)
        _save(fig, path)
    return fig


# --------------------------------------------------------------------------------------------
# 2D toys
# --------------------------------------------------------------------------------------------
def toy_panels(
    source: np.ndarray,
    morphed: np.ndarray,
    target: np.ndarray,
    *,
    arrows: int = 200,
    seed: int = 0,
    path: str | Path | None = None,
    bins: int = 80,
    labels: Sequence[str] = ("source", "morphed", "target"),
    features: Sequence[str] = ("x1", "x2"),
    units: Mapping[str, str] | None = None,
) -> Figure:
    """Four panels for a 2D toy: source, morphed and target densities, and the moves.

    The three 2D histograms share one range and one colour scale. The fourth panel draws an
    arrow from each of ``arrows`` randomly chosen source events (seeded) to its morphed
    position, over the target density in grey.

    Args:
        source: source events, shape ``(N, 2)``.
        morphed: the same events after the morph, shape ``(N, 2)`` (row ``i`` is the image of
            source row ``i``).
        target: target events, shape ``(M, 2)``.
        arrows: number of arrows (at most ``N``; 0 draws none).
        seed: seeds the choice of the events drawn as arrows.
        path: where to save the figure (PNG at 150 dpi), or None.
        bins: bins per axis of the 2D histograms.
        labels: titles of the source, morphed and target panels.
        features: names of the two columns: the x and y axis labels.
        units: optional ``{feature: unit}``; an axis label becomes ``"name [unit]"``.

    Returns:
        The figure.

    Raises:
        ValueError: if the arrays are not 2D points, source and morphed differ in shape, or on
            NaN/inf and bad options.
    """
    import hist
    import matplotlib.pyplot as plt

    src = as_matrix(source, "source")
    mor = as_matrix(morphed, "morphed")
    tgt = as_matrix(target, "target")
    for name, arr in (("source", src), ("morphed", mor), ("target", tgt)):
        if arr.shape[1] != 2:
            raise ValueError(
                f"toy_panels draws 2D toys; {name} has {arr.shape[1]} features (shape "
                f"{arr.shape}). Use feature_comparison for other dimensions"
            )
    if src.shape != mor.shape:
        raise ValueError(
            f"source and morphed must have the same shape (morphed row i is the image of "
            f"source row i); got {src.shape} and {mor.shape}"
        )
    if isinstance(arrows, bool) or not isinstance(arrows, int | np.integer) or arrows < 0:
        raise ValueError(f"arrows must be a non-negative integer; got {arrows!r}")
    labels = _check_labels(labels, 3)
    bins = _check_bins(bins)
    features = _check_names(features, "features")
    if len(features) != 2:
        raise ValueError(f"features must name the two columns; got {features!r}")
    xlabel, ylabel = (_with_unit(f, (units or {}).get(f)) for f in features)

    ranges = [_plot_range([src[:, k], mor[:, k], tgt[:, k]], 0.2, 99.8) for k in (0, 1)]
    ranges = [(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)) for lo, hi in ranges]
    dens = []
    for arr in (src, mor, tgt):
        h: hist.Hist = hist.Hist(
            hist.axis.Regular(bins, *ranges[0]), hist.axis.Regular(bins, *ranges[1])
        )
        h.fill(arr[:, 0], arr[:, 1])
        area = np.outer(np.diff(h.axes[0].edges), np.diff(h.axes[1].edges))
        dens.append((h.values() / (len(arr) * area), h.axes[0].edges, h.axes[1].edges))
    # one colour scale, set by the target (the reference): a morph that concentrates its
    # events saturates instead of washing out the other panels
    vmax = float(dens[2][0].max()) or max(float(d.max()) for d, _, _ in dens) or 1.0

    with _style():
        fig = plt.figure(figsize=(18.0, 4.8), layout="constrained")
        _layout(fig).set(w_pad=0.1, h_pad=0.08)
        grid = fig.add_gridspec(1, 5, width_ratios=(1.0, 1.0, 1.0, 0.05, 1.0))
        axes = [fig.add_subplot(grid[0, i]) for i in (0, 1, 2, 4)]
        cax = fig.add_subplot(grid[0, 3])
        mesh = None
        for ax, (d, ex, ey), title in zip(axes[:3], dens, labels, strict=True):
            mesh = ax.pcolormesh(ex, ey, d.T, cmap="viridis", vmin=0.0, vmax=vmax, rasterized=True)
            ax.set_title(title, fontsize="medium")
        d_t, ex, ey = dens[2]
        ax = axes[3]
        ax.pcolormesh(ex, ey, d_t.T, cmap="Greys", vmin=0.0, vmax=2.5 * vmax, rasterized=True)
        k = min(int(arrows), len(src))
        if k:
            pick = np.random.default_rng(seed).choice(len(src), size=k, replace=False)
            p0, p1 = src[pick], mor[pick]
            ax.quiver(
                p0[:, 0],
                p0[:, 1],
                p1[:, 0] - p0[:, 0],
                p1[:, 1] - p0[:, 1],
                angles="xy",
                scale_units="xy",
                scale=1.0,
                width=0.004,
                color=_MORPHED_COLOR,
                alpha=0.75,
            )
            ax.scatter(p0[:, 0], p0[:, 1], s=5, color=_SOURCE_COLOR, zorder=3, label=labels[0])
        ax.set_title(f"{labels[0]} \u2192 {labels[1]}", fontsize="medium")
        for a in axes:
            a.set_xlim(*ranges[0])
            a.set_ylim(*ranges[1])
            a.set_aspect("equal", adjustable="box")
            a.set_xlabel(xlabel)
        axes[0].set_ylabel(ylabel)
        if mesh is not None:
            fig.colorbar(mesh, cax=cax, label="density", extend="max")
        _save(fig, path)
    return fig


# --------------------------------------------------------------------------------------------
# distance moved
# --------------------------------------------------------------------------------------------
def distance_histogram(
    distances: dict[str, np.ndarray], *, path: str | Path | None = None, bins: int = 50
) -> Figure:
    """Histograms of the per-event distance moved, one step histogram per variant.

    Each histogram is normalised to unit area; the legend gives each variant's mean distance,
    also marked by a dashed vertical line in the same colour.

    Args:
        distances: ``{variant name: per-event distances |T(x) - x|}`` (1D arrays, e.g. from
            :func:`coffea_f4f.metrics.distance_moved`), at least one entry.
        path: where to save the figure (PNG at 150 dpi), or None.
        bins: number of bins (a common binning over all variants).

    Returns:
        The figure.

    Raises:
        ValueError: on an empty mapping, empty, non-1D or non-finite arrays, or bad ``bins``.
    """
    import hist
    import matplotlib.pyplot as plt
    import mplhep

    if not isinstance(distances, Mapping) or not distances:
        raise ValueError(
            "distances must be a non-empty dict {variant name: 1D array of distances}; got "
            f"{type(distances).__name__}"
        )
    bins = _check_bins(bins)
    data: dict[str, np.ndarray] = {}
    for name, values in distances.items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(
                f"distances[{name!r}] must be a non-empty 1D array (one distance per event); "
                f"got shape {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ValueError(
                f"distances[{name!r}] contains {int((~np.isfinite(arr)).sum())} NaN/inf values"
            )
        data[str(name)] = arr

    lo, hi = _plot_range(list(data.values()), 0.0, 99.5)
    lo = min(lo, 0.0)
    with _style():
        fig, ax = plt.subplots(figsize=(7.5, 5.5), layout="constrained")
        for i, (name, arr) in enumerate(data.items()):
            color = _CYCLE[i % len(_CYCLE)]
            h: hist.Hist = hist.Hist(hist.axis.Regular(bins, lo, hi))
            h.fill(arr)
            norm = len(arr) * np.diff(h.axes[0].edges)
            mean = float(arr.mean())
            mplhep.histplot(
                h.values() / norm,
                h.axes[0].edges,
                ax=ax,
                histtype="step",
                lw=2.0,
                color=color,
                label=f"{name} (mean {mean:.3g})",
                flow="none",
            )
            ax.axvline(mean, color=color, ls="--", lw=1.2)
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, 1.15 * ax.get_ylim()[1] + 0.1 * len(data) * ax.get_ylim()[1])
        ax.set_xlabel("distance moved |T(x) \u2212 x|")
        ax.set_ylabel("density")
        ax.legend(loc="upper right", fontsize="small", frameon=False)
        _save(fig, path)
    return fig


# --------------------------------------------------------------------------------------------
# loss curves
# --------------------------------------------------------------------------------------------
def _loss_series(history: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """The per-epoch loss lists of one flat history (keys ending in ``loss``)."""
    series: dict[str, np.ndarray] = {}
    for key, values in history.items():
        if not str(key).endswith("loss") or isinstance(values, str | bytes):
            continue
        if not isinstance(values, Sequence | np.ndarray):
            continue
        try:
            arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{where}[{key!r}] must be a list of numbers per epoch ({err})"
            ) from err
        if arr.ndim != 1:
            raise ValueError(f"{where}[{key!r}] must be a flat list per epoch; got {arr.shape}")
        if arr.size and np.isfinite(arr).any():
            series[str(key)] = arr
    return series


def _draw_losses(ax: Axes, series: dict[str, np.ndarray], best: Any, title: str | None) -> None:
    styles = {"train_loss": ("training", "-"), "val_loss": ("validation", "-")}
    for i, (key, arr) in enumerate(series.items()):
        label, ls = styles.get(key, (key.replace("_", " "), "--"))
        epochs = np.arange(1, len(arr) + 1)
        ax.plot(
            epochs,
            arr,
            ls=ls,
            lw=2.0,
            color=_CYCLE[i % len(_CYCLE)],
            label=label,
            marker="o" if len(arr) <= 30 else None,
            markersize=3.5,
        )
    if best is not None and best >= 1:
        ax.axvline(best, color="0.35", ls=":", lw=1.5, label=f"best epoch ({best})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="small", frameon=False)


def _best_epoch(history: Mapping[str, Any], n_epochs: int, where: str) -> int | None:
    best = history.get("best_epoch")
    if best is None:
        return None
    if isinstance(best, bool) or not isinstance(best, int | np.integer):
        raise ValueError(f"{where}['best_epoch'] must be an int (1-based epoch); got {best!r}")
    best = int(best)
    if best > n_epochs:
        raise ValueError(
            f"{where}['best_epoch'] = {best} but only {n_epochs} epochs are in the history"
        )
    return best if best >= 1 else None  # -1 / 0: no best epoch recorded


def loss_curves(history: dict, *, path: str | Path | None = None) -> Figure:
    """Training and validation loss per epoch.

    Args:
        history: a training history such as ``{"train_loss": [...], "val_loss": [...],
            "best_epoch": 7}``: every key ending in ``loss`` with one number per epoch is drawn
            (``None`` / NaN entries leave gaps) against the epoch number 1, 2, ...; an optional
            ``best_epoch`` (1-based, as recorded by the trainer; values < 1 mean none) is marked
            with a vertical line. A mapping of such histories, e.g. ``Morpher.history``
            (``{"morph": {...}, "source_density": {...}, ...}``), draws one panel per entry.
        path: where to save the figure (PNG at 150 dpi), or None.

    Returns:
        The figure.

    Raises:
        ValueError: if no loss list is found, a loss list is not numeric, or ``best_epoch`` is
            not an int or lies beyond the recorded epochs.
    """
    import matplotlib.pyplot as plt

    if not isinstance(history, Mapping):
        raise ValueError(f"history must be a dict of per-epoch lists; got {type(history).__name__}")
    panels: list[tuple[str | None, dict[str, np.ndarray], int | None]] = []
    series = _loss_series(history, "history")
    if series:
        n = max(len(a) for a in series.values())
        panels.append((None, series, _best_epoch(history, n, "history")))
    else:
        for name, sub in history.items():
            if isinstance(sub, Mapping):
                sub_series = _loss_series(sub, f"history[{name!r}]")
                if sub_series:
                    n = max(len(a) for a in sub_series.values())
                    best = _best_epoch(sub, n, f"history[{name!r}]")
                    panels.append((str(name).replace("_", " "), sub_series, best))
    if not panels:
        raise ValueError(
            "history has no per-epoch loss lists: expected keys ending in 'loss' such as "
            f"'train_loss' / 'val_loss' (or a dict of such histories); got keys {list(history)}"
        )

    with _style():
        fig, axes = plt.subplots(
            1, len(panels), figsize=(7.5 * len(panels), 5.5), layout="constrained", squeeze=False
        )
        for ax, (title, sub_series, best) in zip(axes[0], panels, strict=True):
            _draw_losses(ax, sub_series, best, title)
        _save(fig, path)
    return fig
