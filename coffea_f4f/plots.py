"""Comparison plots for morphs: hist + mplhep, talk-ready PNGs.

Every function takes plain numpy arrays, returns the :class:`matplotlib.figure.Figure` it drew
and, when ``path`` is given, also saves it there (PNG at 150 dpi unless the suffix names another
format; missing parent directories are created). Figures are made with :mod:`matplotlib.pyplot`
so they show in notebooks and with ``plt.show()``; nothing is closed, so close the returned
figure (``plt.close(fig)``) when making many. The backend is not changed: scripts on machines
without a display get Agg automatically, or set ``MPLBACKEND=Agg``.

The style is mplhep's experiment-neutral ROOT style, applied only while a figure is drawn (the
global rcParams are left alone); no experiment label is drawn.

- :func:`feature_comparison`: per feature, source / morphed / target histograms and ratios.
- :func:`toy_panels`: 2D toys: source, morphed and target densities, and arrows source ->
  morphed.
- :func:`distance_histogram`: how far events moved, one histogram per variant.
- :func:`loss_curves`: training and validation loss per epoch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import _as_2d

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["distance_histogram", "feature_comparison", "loss_curves", "toy_panels"]

#: Resolution of the saved PNGs.
DPI = 150

_SOURCE_COLOR = "#3f90da"  # blue
_MORPHED_COLOR = "#e42536"  # red
_TARGET_COLOR = "black"
_CYCLE = ["#3f90da", "#e42536", "#ffa90e", "#964a8b", "#92dadd", "#bd1f01", "#94a4a2", "#832db6"]


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


def _density(values: np.ndarray, bins: int, lo: float, hi: float) -> tuple[np.ndarray, ...]:
    """Histogram ``values`` with hist; density and its error, normalised to *all* events.

    Events outside ``[lo, hi)`` count in the normalisation (not in any bin), so a sample with
    more events in the tails sits lower in range instead of being silently renormalised.
    """
    import hist

    h = hist.Hist(hist.axis.Regular(bins, lo, hi), storage=hist.storage.Double())
    h.fill(values)
    counts = h.values()
    edges = h.axes[0].edges
    norm = len(values) * np.diff(edges)
    return counts / norm, np.sqrt(counts) / norm, edges


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


def _xlabel(name: str, units: Mapping[str, str] | None) -> str:
    unit = (units or {}).get(name)
    return f"{name} [{unit}]" if unit else name


def _check_labels(labels: Sequence[str], n: int) -> tuple[str, ...]:
    if isinstance(labels, str) or len(labels) != n:
        raise ValueError(f"labels must be a sequence of {n} strings; got {labels!r}")
    return tuple(str(lab) for lab in labels)


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    return int(bins)


# --------------------------------------------------------------------------------------------
# feature comparison
# --------------------------------------------------------------------------------------------
def feature_comparison(
    source: np.ndarray,
    morphed: np.ndarray,
    target: np.ndarray,
    *,
    features: list[str],
    units: dict[str, str] | None = None,
    bins: int = 50,
    path: str | Path | None = None,
    labels: Sequence[str] = ("source", "morphed", "target"),
    ncols: int | None = None,
) -> Figure:
    """Per-feature histograms of source, morphed and target, with ratio panels.

    One column per feature. Top: densities (normalised to all events, so events beyond the
    plotted range, the central 99.8% of all three samples, still count), source as a dashed
    step, morphed as a solid step and target as black points with statistical errors. Bottom:
    morphed / target (solid) and source / target (dashed), a grey band for the target's
    statistical uncertainty and a line at 1.

    Args:
        source: source events, shape ``(N, D)``.
        morphed: morphed source events, shape ``(N', D)`` (need not be paired with source).
        target: target events, shape ``(M, D)``.
        features: ``D`` feature names, in column order; used as axis labels.
        units: optional ``{feature: unit}``; the x label becomes ``"name [unit]"``.
        bins: number of bins per feature.
        path: where to save the figure (PNG at 150 dpi), or None.
        labels: legend names of source, morphed and target.
        ncols: features per row (default: all in one row); more rows are added as needed.

    Returns:
        The figure.

    Raises:
        ValueError: on malformed input, mismatched feature counts, NaN/inf or bad options.
    """
    import matplotlib.pyplot as plt
    import mplhep

    src = _as_2d(source, "source", min_events=1)
    mor = _as_2d(morphed, "morphed", min_events=1)
    tgt = _as_2d(target, "target", min_events=1)
    if isinstance(features, str):
        raise ValueError(f"features must be a list of names, not the string {features!r}")
    features = [str(f) for f in features]
    dims = {"source": src.shape[1], "morphed": mor.shape[1], "target": tgt.shape[1]}
    if len(set(dims.values())) != 1 or len(features) != src.shape[1]:
        raise ValueError(
            f"features has {len(features)} names but the arrays have feature counts {dims}; "
            "pass one name per column and arrays with the same columns"
        )
    labels = _check_labels(labels, 3)
    bins = _check_bins(bins)
    n_feat = len(features)
    if ncols is None:
        ncols = n_feat
    if isinstance(ncols, bool) or not isinstance(ncols, int | np.integer) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer or None; got {ncols!r}")
    ncols = min(int(ncols), n_feat)
    nrows = math.ceil(n_feat / ncols)

    with _style():
        fig = plt.figure(figsize=(4.6 * ncols, 5.2 * nrows), layout="constrained")
        _layout(fig).set(hspace=0.04, wspace=0.03, h_pad=0.06)
        outer = fig.add_gridspec(nrows, ncols)
        for j, name in enumerate(features):
            cell = outer[j // ncols, j % ncols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.0)
            ax = fig.add_subplot(cell[0])
            rax = fig.add_subplot(cell[1], sharex=ax)
            lo, hi = _plot_range([src[:, j], mor[:, j], tgt[:, j]])
            d_s, _, edges = _density(src[:, j], bins, lo, hi)
            d_m, _, _ = _density(mor[:, j], bins, lo, hi)
            d_t, e_t, _ = _density(tgt[:, j], bins, lo, hi)

            mplhep.histplot(
                d_s,
                edges,
                ax=ax,
                histtype="step",
                ls="--",
                lw=1.8,
                color=_SOURCE_COLOR,
                label=labels[0],
                flow="none",
            )
            mplhep.histplot(
                d_m,
                edges,
                ax=ax,
                histtype="step",
                lw=2.0,
                color=_MORPHED_COLOR,
                label=labels[1],
                flow="none",
            )
            mplhep.histplot(
                d_t,
                edges,
                yerr=e_t,
                ax=ax,
                histtype="errorbar",
                color=_TARGET_COLOR,
                marker="o",
                markersize=3.5,
                elinewidth=1.0,
                label=labels[2],
                flow="none",
            )
            top = max(np.max(d_s), np.max(d_m), np.max(d_t + e_t))
            ax.set_ylim(0, 1.3 * top if top > 0 else 1.0)
            ax.set_xlim(lo, hi)
            ax.set_ylabel("density" if j % ncols == 0 else "")
            ax.tick_params(labelbottom=False)
            ax.set_xlabel("")
            if j == 0:
                ax.legend(loc="upper right", fontsize="small", frameon=False)

            with np.errstate(divide="ignore", invalid="ignore"):
                r_m = np.where(d_t > 0, d_m / d_t, np.nan)
                r_s = np.where(d_t > 0, d_s / d_t, np.nan)
                rel = np.where(d_t > 0, e_t / d_t, np.nan)
            rax.stairs(
                1 + np.nan_to_num(rel),
                edges,
                baseline=1 - np.nan_to_num(rel),
                fill=True,
                color="0.8",
                lw=0,
                label=f"{labels[2]} stat.",
            )
            rax.axhline(1.0, color="black", lw=1.0, ls=":")
            rax.stairs(r_s, edges, color=_SOURCE_COLOR, ls="--", lw=1.6)
            rax.stairs(r_m, edges, color=_MORPHED_COLOR, lw=1.8)
            half = _nice_half_range([r_m, r_s], rel)
            rax.set_ylim(1 - half, 1 + half)
            rax.set_yticks([1 - half / 2, 1.0, 1 + half / 2])
            rax.set_xlim(lo, hi)
            rax.set_xlabel(_xlabel(name, units))
            rax.set_ylabel("ratio" if j % ncols == 0 else "", fontsize="small")
            rax.tick_params(axis="y", labelsize="small")
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

    Returns:
        The figure.

    Raises:
        ValueError: if the arrays are not 2D points, source and morphed differ in shape, or on
            NaN/inf and bad options.
    """
    import hist
    import matplotlib.pyplot as plt

    src = _as_2d(source, "source")
    mor = _as_2d(morphed, "morphed")
    tgt = _as_2d(target, "target")
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
            a.set_xlabel("x1")
        axes[0].set_ylabel("x2")
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
