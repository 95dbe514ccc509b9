"""The ensemble band plots of the docs: ``docs/band_dijet.png`` and ``docs/band_photons.png``.

Each set-up trains ``fit_morpher(..., ensemble=5)`` (the nominal morph plus five bootstrap
members) on small flows, applies ``Morpher.variations(x, with_nominal=True)`` to held-out
simulation and draws it with :func:`coffea_f4f.plots.band_comparison` against held-out data:

- ``dijet``: LHCO-like dijets (``datasets.dijet``), sim -> data, the demo's features
  ``mj1, delta_mj, tau21_j1, tau21_j2`` at each event's ``mjj`` with the demo's scalings
  (:mod:`coffea_f4f.demo`).
- ``photons``: the CMS-like photon toy (``datasets.photons``), sim -> data, its seven shower
  shapes and isolations at ``pt, eta, rho, era``, signed simulation weights, the scalings of
  tutorial 05 and ``benchmarks/photons.py``.

Printed per feature, on the held-out events:

- ``half-width/std``: the mean over events of ``(up - down) / 2``, in units of the data's
  standard deviation of the feature (weighted with the simulation weights);
- ``bin band``: per bin of a 30-bin histogram over the central 99.8% of the nominal morph,
  ``(max - min) / (2 nominal)`` of the nominal, up and down histograms (the plot's band),
  averaged over the bins weighted by the nominal yield; ``data stat`` the same average of the
  data's relative statistical error ``1 / sqrt(n)`` per bin (scaled to the same yield), for
  scale;
- ``W1 nom / up / down``: ``metrics.wasserstein`` of the nominal morph and of the two
  variations against data (signed sim weights), and the ``floor`` of two halves of the data.

Usage::

    python benchmarks/band_plots.py                  # both plots into docs/ (~5 CPU-minutes)
    python benchmarks/band_plots.py --quick --out /tmp/bands --which dijet

The members train one after the other in this process (``--jobs N``: in N worker processes).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from _settings import fixed_train  # benchmarks/_settings.py, beside this script

import coffea_f4f as f4f
from coffea_f4f import datasets, demo, metrics
from coffea_f4f.config import FlowConfig

K = 5

DIJET_LABELS = {
    "mj1": "$m_{j1}$ (lighter jet)",
    "delta_mj": "$m_{j2} - m_{j1}$",
    "tau21_j1": r"$\tau_{21}$ (lighter jet)",
    "tau21_j2": r"$\tau_{21}$ (heavier jet)",
}
PHOTON_FEATURES = list(datasets.PHOTON_FEATURES)
PHOTON_CONDITIONS = list(datasets.PHOTON_CONDITIONS)
ISOLATIONS = ["pho_iso", "ch_iso"]
PHOTON_UNITS = {"pho_iso": "GeV", "ch_iso": "GeV"}
PHOTON_LABELS = {
    "r9": "$R_9$",
    "sieie": r"$\sigma_{i\eta i\eta}$",
    "etawidth": r"$\eta$ width",
    "phiwidth": r"$\phi$ width",
    "s4": "$s_4$",
    "pho_iso": "photon isolation",
    "ch_iso": "charged isolation",
}
UNIT = {"kind": "logit", "low": 0.0, "high": 1.0}
PHOTON_SCALING: dict[str, Any] = {
    "r9": UNIT,
    "sieie": "log",
    "etawidth": "log",
    "phiwidth": "log",
    "s4": UNIT,
    "pho_iso": "zero_inflated",
    "ch_iso": "zero_inflated",
}


@dataclass(frozen=True)
class Settings:
    """Sizes of one set-up: events per kind for training and for the plot, the flows (the
    same architecture for the densities and the morph), epochs."""

    n_train: int
    n_eval: int
    layers: int
    hidden: int
    epochs: int
    batch_size: int = 512
    lr: float = 2e-3
    seed: int = 0


PRESETS = {
    "dijet": Settings(n_train=20_000, n_eval=20_000, layers=2, hidden=32, epochs=5),
    "photons": Settings(n_train=15_000, n_eval=20_000, layers=2, hidden=32, epochs=4),
}
QUICK = {"n_train": 5_000, "n_eval": 5_000, "epochs": 2}


def _fit(sim: Any, data: Any, s: Settings, jobs: int, **kwargs: Any) -> tuple[f4f.Morpher, str]:
    flow = FlowConfig(layers=s.layers, hidden=s.hidden, blocks=1)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    morpher = f4f.fit_morpher(
        sim,
        data,
        flow=flow,
        density=flow,
        train=fixed_train(s.epochs, batch_size=s.batch_size, lr=s.lr, seed=s.seed),
        ensemble=K,
        ensemble_jobs=jobs,
        **kwargs,
    )
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    where = "this process" if jobs == 1 else f"this process + {jobs} workers (not counted)"
    return morpher, f"trained in {cpu:.0f} CPU s ({where}), {wall:.0f} s wall"


def band_widths(
    band: dict[str, np.ndarray],
    target: np.ndarray,
    weights: np.ndarray | None,
    target_weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per feature: the mean event half-width over the data's std, the yield-weighted mean
    relative band of 30 bins and the data's relative statistical error on the same bins."""
    nom, up, down = band["nominal"], band["up"], band["down"]
    w = np.ones(len(nom)) if weights is None else weights
    wt = np.ones(len(target)) if target_weights is None else target_weights
    mean_t = np.average(target, axis=0, weights=wt)
    std_t = np.sqrt(np.average((target - mean_t) ** 2, axis=0, weights=wt))
    half = np.average(np.abs(up - down) / 2, axis=0, weights=w) / std_t
    rel, stat = [], []
    for j in range(nom.shape[1]):
        lo, hi = np.percentile(nom[:, j], [0.1, 99.9])
        edges = np.linspace(lo, hi, 31)
        h = np.stack([np.histogram(v[:, j], edges, weights=w)[0] for v in (nom, up, down)])
        n_t = np.histogram(target[:, j], edges, weights=wt)[0]
        yield_ = np.clip(h[0], 0, None)
        live = yield_ > 0
        rel.append(np.average((h.max(0) - h.min(0))[live] / (2 * h[0][live]), weights=yield_[live]))
        # the data's statistical error at the nominal's yield (sum of data weights per bin)
        scale = n_t.sum() / h[0].sum()
        n_exp = np.clip(h[0] * scale, 1e-12, None)
        stat.append(np.average(1 / np.sqrt(n_exp[live]), weights=yield_[live]))
    return {"half": half, "rel": np.array(rel), "stat": np.array(stat)}


def report(
    name: str,
    features: list[str],
    band: dict[str, np.ndarray],
    target: np.ndarray,
    weights: np.ndarray | None,
) -> None:
    widths = band_widths(band, target, weights)
    w1 = {k: metrics.wasserstein(band[k], target, weights_a=weights) for k in band}
    floor = metrics.wasserstein_floor(target)
    print(f"\n{name}: band of K={K} members on {len(target)} held-out events per kind")
    head = (
        f"{'feature':<10} {'half-width/std':>14} {'bin band':>9} {'data stat':>9}   "
        f"{'W1 nom':>7} {'up':>7} {'down':>7} {'floor':>7}"
    )
    print(head)
    print("-" * len(head))
    for j, f in enumerate(features):
        print(
            f"{f:<10} {widths['half'][j]:>14.4f} {widths['rel'][j]:>9.2%} "
            f"{widths['stat'][j]:>9.2%}   {w1['nominal'][j]:>7.4f} {w1['up'][j]:>7.4f} "
            f"{w1['down'][j]:>7.4f} {floor[j]:>7.4f}"
        )
    print(
        f"{'mean':<10} {widths['half'].mean():>14.4f} {widths['rel'].mean():>9.2%} "
        f"{widths['stat'].mean():>9.2%}"
    )


def dijet(s: Settings, out: Path, jobs: int) -> None:
    """Train the dijet ensemble, draw ``band_dijet.png`` and print its band widths."""
    print(f"dijet: {s}", flush=True)
    sim = datasets.dijet(s.n_train, kind="sim", seed=s.seed + 1)
    data = datasets.dijet(s.n_train, kind="data", seed=s.seed + 2)
    morpher, timing = _fit(
        sim, data, s, jobs, features=demo.FEATURES, condition="mjj", scaling=demo.SCALING
    )
    print(f"  {morpher!r}: {timing}", flush=True)
    test_sim = datasets.dijet(s.n_eval, kind="sim", seed=s.seed + 11)
    test_data = datasets.dijet(s.n_eval, kind="data", seed=s.seed + 12)
    x = np.column_stack([np.asarray(test_sim[f]) for f in demo.FEATURES])
    t = np.column_stack([np.asarray(test_data[f]) for f in demo.FEATURES])
    band = morpher.variations(x, condition=np.asarray(test_sim["mjj"]), with_nominal=True)
    fig = f4f.plots.band_comparison(
        x,
        band,
        t,
        features=demo.FEATURES,
        units=demo.UNITS,
        xlabels=DIJET_LABELS,
        labels=("sim", "sim morphed", "data"),
        band_label=f"ensemble band (K={K})",
        path=out / "band_dijet.png",
    )
    _close(fig)
    print(f"  wrote {out / 'band_dijet.png'}")
    report("dijet", demo.FEATURES, band, t, None)


def photons(s: Settings, out: Path, jobs: int) -> None:
    """Train the photon ensemble, draw ``band_photons.png`` and print its band widths."""
    print(f"photons: {s}", flush=True)
    sim = datasets.photons(s.n_train, kind="sim", seed=s.seed + 1)
    data = datasets.photons(s.n_train, kind="data", seed=s.seed + 2)
    morpher, timing = _fit(
        sim,
        data,
        s,
        jobs,
        features=PHOTON_FEATURES,
        condition=PHOTON_CONDITIONS,
        source_weights="weight",
        scaling=PHOTON_SCALING,
        condition_scaling={"pt": "log", "era": "categorical"},
    )
    print(f"  {morpher!r}: {timing}", flush=True)
    test_sim = datasets.photons(s.n_eval, kind="sim", seed=s.seed + 11)
    test_data = datasets.photons(s.n_eval, kind="data", seed=s.seed + 12)
    x = np.column_stack([np.asarray(test_sim[f], dtype=np.float64) for f in PHOTON_FEATURES])
    c = np.column_stack([np.asarray(test_sim[f], dtype=np.float64) for f in morpher.conditions])
    t = np.column_stack([np.asarray(test_data[f], dtype=np.float64) for f in PHOTON_FEATURES])
    w = np.asarray(test_sim["weight"], dtype=np.float64)
    band = morpher.variations(x, condition=c, with_nominal=True)
    fig = f4f.plots.band_comparison(
        x,
        band,
        t,
        features=PHOTON_FEATURES,
        units=PHOTON_UNITS,
        xlabels=PHOTON_LABELS,
        labels=("sim", "sim morphed", "data"),
        band_label=f"ensemble band (K={K})",
        logy={f: f in ISOLATIONS for f in PHOTON_FEATURES},
        source_weights=w,
        path=out / "band_photons.png",
    )
    _close(fig)
    print(f"  wrote {out / 'band_photons.png'}")
    report("photons (signed sim weights)", PHOTON_FEATURES, band, t, w)


def _close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"small sizes: {QUICK}")
    p.add_argument("--which", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    p.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "docs")
    p.add_argument("--jobs", type=int, default=1, help="ensemble_jobs (default 1)")
    args = p.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with threadpool_limits(1):
        for name in args.which:
            s = replace(PRESETS[name], **QUICK) if args.quick else PRESETS[name]
            {"dijet": dijet, "photons": photons}[name](s, args.out, args.jobs)
            print()
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
