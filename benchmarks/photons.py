"""Production-style photon corrections: the morph variants on weighted, multi-condition photons.

Set-up: ``coffea_f4f.datasets.photons`` (a CMS-like tag-and-probe toy, arXiv:2403.18582),
simulation -> data. Features ``r9, sieie, etawidth, phiwidth, s4, pho_iso, ch_iso``; each event
is morphed at its own ``pt, eta, rho, era`` (``condition=[...]``, a condition vector; ``pt``
scaled with ``log``, ``era`` ``categorical``). Simulation carries signed weights (~3.4% are
negative; the pile-up weight makes its ``rho`` follow data), passed as
``source_weights="weight"``. The isolations are ``zero_inflated`` (exact zeros stay zeros, the
zero fraction can change), ``r9`` and ``s4`` ``logit`` on (0, 1), the widths ``log``.

Variants, all trained on the same events with the same sizes:

- ``base transfer``: two density flows (sim, data), encode with one, decode with the other;
- ``unidirectional`` and ``F4F`` (bidirectional, identity initialisation, the package default):
  a morph flow trained on the *same two densities* as the base-transfer row
  (``source_density=`` / ``target_density=``); their CPU and wall times include the densities;
- ``switch`` (the CMS production protocol): *one* density flow of sim and data together with a
  sample label as an extra condition, encode at label 0 and decode at label 1. It trains its
  own joint density (twice the events of one density) and cannot reuse the two F4F densities.

Printed per variant, on held-out events (the training events are never evaluated):

- ``AUC``: C2ST AUC (``metrics.c2st_auc``) +- its null sigma, of (morphed) sim vs data on the
  features *and* the conditions. The classifier cannot take negative sample weights: sim events
  enter with ``|w|`` (the weight signs depend on ``pt`` only, so this changes the weighted
  ``pt`` spectrum by at most ~4%, never the features given the conditions). The sigma uses the
  effective sample size of the weights.
- ``W1/std`` per feature (``metrics.wasserstein``) of (morphed) sim vs data, with the *signed*
  sim weights; the ``floor`` row is ``metrics.wasserstein_floor`` of the held-out data (two
  random halves: what statistical noise alone gives).
- ``moved``: the weighted (signed weights) mean of ``|T(x) - x|`` in the morph's scaled space
  (``morpher.scaler.forward``). A zero of a zero-inflated feature is put at the centre of its
  dequantisation band (``threshold - width / 2``) on both sides, so that a zero that stays a
  zero moves by 0 (``scaler.forward`` draws the in-band noise from a hash of the whole row,
  which changes when the other features move).
- ``zero frac``: the weighted fractions of exact zeros of ``pho_iso`` and ``ch_iso`` (signed
  sim weights) for sim, each morph and data.
- ``CPU s`` (``time.process_time`` of the training calls, one torch thread) and ``wall s``.

Usage::

    python benchmarks/photons.py --quick        # a few minutes on 2 cores (3-6 min)
    python benchmarks/photons.py                # the default size (PRESETS; ~10 min)
    python benchmarks/photons.py --quick --variants bidirectional switch --json out.json

Variants train one after the other in this process. Nothing is asserted; the tables (and
``--json PATH``) are the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _settings import fixed_train  # benchmarks/_settings.py, beside this script

import coffea_f4f as f4f
from coffea_f4f import datasets
from coffea_f4f.config import FlowConfig, TrainConfig
from coffea_f4f.metrics import c2st_auc, wasserstein, wasserstein_floor

FEATURES = list(datasets.PHOTON_FEATURES)
CONDITIONS = ["pt", "eta", "rho", "era"]
ISOLATIONS = ["pho_iso", "ch_iso"]
UNIT = {"kind": "logit", "low": 0.0, "high": 1.0}
SCALING: dict[str, Any] = {
    "r9": UNIT,
    "sieie": "log",
    "etawidth": "log",
    "phiwidth": "log",
    "s4": UNIT,
    "pho_iso": "zero_inflated",
    "ch_iso": "zero_inflated",
}
CONDITION_SCALING: dict[str, Any] = {"pt": "log", "era": "categorical"}
SEEDS = {"train_sim": 1, "train_data": 2, "eval_sim": 11, "eval_data": 12}
#: ``fit_morpher(variant=)`` -> the row's name
VARIANTS = {
    "base_transfer": "base transfer",
    "unidirectional": "unidirectional",
    "bidirectional": "F4F",
    "switch": "switch",
}


@dataclass(frozen=True)
class Settings:
    """Sizes and architectures of one benchmark run.

    Attributes:
        n_train: training events per kind (sim, data).
        n_eval: held-out events per kind.
        density: architecture of the density flows (and of the switch variant's one density).
        flow: architecture of the morph flow (F4F, unidirectional).
        density_epochs: epochs of each density flow.
        morph_epochs: epochs of the morph flow.
        batch_size: events per gradient step.
        lr: peak learning rate (cosine schedule).
        seed: training seed.
    """

    n_train: int
    n_eval: int
    density: FlowConfig
    flow: FlowConfig
    density_epochs: int
    morph_epochs: int
    batch_size: int = 512
    lr: float = 1e-3
    seed: int = 0

    def train_config(self, epochs: int) -> TrainConfig:
        return fixed_train(epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed)


PRESETS: dict[str, Settings] = {
    "quick": Settings(
        n_train=20_000,
        n_eval=20_000,
        density=FlowConfig(layers=2, hidden=32, blocks=1),
        flow=FlowConfig(layers=2, hidden=32, blocks=1),
        density_epochs=5,
        morph_epochs=3,
    ),
    "default": Settings(
        n_train=50_000,
        n_eval=30_000,
        density=FlowConfig(layers=3, hidden=64, blocks=2),
        flow=FlowConfig(layers=3, hidden=64, blocks=2),
        density_epochs=10,
        morph_epochs=5,
    ),
}


@dataclass
class Row:
    """One variant (or reference) line of the tables."""

    name: str
    auc: float | None = None
    sigma: float | None = None
    w1: list[float] | None = None
    moved: float | None = None
    zero: dict[str, float] = field(default_factory=dict)
    cpu_s: float | None = None
    wall_s: float | None = None


# ----------------------------------------------------------------------------- data
def make_data(s: Settings) -> dict[str, dict[str, np.ndarray]]:
    """Training and held-out events of both kinds as numpy columns (seeded)."""
    out = {}
    for key, n in (
        ("train_sim", s.n_train),
        ("train_data", s.n_train),
        ("eval_sim", s.n_eval),
        ("eval_data", s.n_eval),
    ):
        ev = datasets.photons(n, kind="sim" if key.endswith("sim") else "data", seed=SEEDS[key])
        out[key] = {f: np.asarray(ev[f], dtype=np.float64) for f in datasets.PHOTON_FIELDS}
    return out


def _matrix(cols: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.column_stack([cols[n] for n in names])


def zero_fractions(x: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """Weighted fraction of exact zeros of each isolation (``x``: features in FEATURES order)."""
    w = np.ones(len(x)) if weights is None else weights
    return {f: float(np.dot(w, x[:, FEATURES.index(f)] == 0.0) / w.sum()) for f in ISOLATIONS}


def scaled(m: f4f.Morpher, x: np.ndarray) -> np.ndarray:
    """``m.scaler.forward(x)`` with zeros of zero-inflated features at their band's centre."""
    z = m.scaler.forward(x)
    for j, (kind, p) in enumerate(zip(m.scaler.kinds, m.scaler.params, strict=True)):
        if kind == "zero_inflated":
            z[x[:, j] == 0.0, j] = p["threshold"] - 0.5 * p["width"]
    return z


# ----------------------------------------------------------------------------- evaluation
def reference_rows(data) -> list[Row]:
    """No morph (sim vs data), data itself, and the W1 floor of the held-out data."""
    xs, xd = _matrix(data["eval_sim"], FEATURES), _matrix(data["eval_data"], FEATURES)
    cs, cd = _matrix(data["eval_sim"], CONDITIONS), _matrix(data["eval_data"], CONDITIONS)
    w = data["eval_sim"]["weight"]
    auc, sigma = c2st_auc(np.hstack([xs, cs]), np.hstack([xd, cd]), weights_a=np.abs(w))
    return [
        Row(
            name="no morph (sim)",
            auc=auc,
            sigma=sigma,
            w1=wasserstein(xs, xd, weights_a=w).tolist(),
            moved=0.0,
            zero=zero_fractions(xs, w),
        ),
        Row(name="data", zero=zero_fractions(xd)),
        Row(name="floor (data halves)", w1=wasserstein_floor(xd).tolist()),
    ]


def evaluate(m: f4f.Morpher, data, name: str, cpu_s: float, wall_s: float) -> Row:
    """AUC, W1/std, distance moved and zero fractions of one morph on the held-out events."""
    src = data["eval_sim"]
    x, c, w = _matrix(src, FEATURES), _matrix(src, CONDITIONS), src["weight"]
    y = m.morph(x, condition=c)
    xd, cd = _matrix(data["eval_data"], FEATURES), _matrix(data["eval_data"], CONDITIONS)
    auc, sigma = c2st_auc(np.hstack([y, c]), np.hstack([xd, cd]), weights_a=np.abs(w))
    d = np.linalg.norm(scaled(m, y) - scaled(m, x), axis=1)
    return Row(
        name=name,
        auc=auc,
        sigma=sigma,
        w1=wasserstein(y, xd, weights_a=w).tolist(),
        moved=float(np.average(d, weights=w)),
        zero=zero_fractions(y, w),
        cpu_s=cpu_s,
        wall_s=wall_s,
    )


# ----------------------------------------------------------------------------- training
def _fit(data, s: Settings, **kwargs: Any) -> tuple[f4f.Morpher, float, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    m = f4f.fit_morpher(
        data["train_sim"],
        data["train_data"],
        features=FEATURES,
        condition=CONDITIONS,
        source_weights="weight",
        scaling=SCALING,
        condition_scaling=CONDITION_SCALING,
        density=s.density,
        flow=s.flow,
        train=s.train_config(s.morph_epochs),
        density_train=s.train_config(s.density_epochs),
        **kwargs,
    )
    return m, time.process_time() - cpu0, time.perf_counter() - wall0


def run_variants(data, s: Settings, names: list[str]) -> list[Row]:
    """Train and evaluate the chosen variants (F4F and unidirectional reuse the base-transfer
    densities, and their times include those densities)."""
    rows: list[Row] = []
    base: tuple[f4f.Morpher, float, float] | None = None
    if any(n in names for n in ("base transfer", "unidirectional", "F4F")):
        base = _fit(data, s, variant="base_transfer")
        print(f"  densities (base transfer): {base[1]:.0f} s CPU, {base[2]:.0f} s wall", flush=True)
        if "base transfer" in names:
            rows.append(evaluate(base[0], data, "base transfer", base[1], base[2]))
    for name, variant in (("unidirectional", "unidirectional"), ("F4F", "bidirectional")):
        if name not in names:
            continue
        assert base is not None
        m, cpu, wall = _fit(
            data,
            s,
            variant=variant,
            source_density=base[0].source_density,
            target_density=base[0].target_density,
        )
        print(f"  {name}: morph flow {cpu:.0f} s CPU, {wall:.0f} s wall", flush=True)
        rows.append(evaluate(m, data, name, base[1] + cpu, base[2] + wall))
    if "switch" in names:
        m, cpu, wall = _fit(data, s, variant="switch")
        print(f"  switch: joint density {cpu:.0f} s CPU, {wall:.0f} s wall", flush=True)
        rows.append(evaluate(m, data, "switch", cpu, wall))
    return rows


# ----------------------------------------------------------------------------- output
def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def tables(rows: list[Row], s: Settings) -> str:
    head = (
        f"{'variant':<20} {'AUC (feat+cond)':>17} {'moved':>6} "
        f"{'zero pho_iso':>12} {'zero ch_iso':>11} {'CPU s':>6} {'wall s':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.auc is None and not r.zero:
            continue
        auc = "-" if r.auc is None else f"{r.auc:.4f} +- {r.sigma:.4f}"
        lines.append(
            f"{r.name:<20} {auc:>17} {_fmt(r.moved, '.3f'):>6} "
            f"{_fmt(r.zero.get('pho_iso'), '.4f'):>12} {_fmt(r.zero.get('ch_iso'), '.4f'):>11} "
            f"{_fmt(r.cpu_s, '.0f'):>6} {_fmt(r.wall_s, '.0f'):>6}"
        )
    lines.append("")
    head2 = f"{'W1 / std(data)':<20} " + " ".join(f"{f:>8}" for f in FEATURES)
    lines += [head2, "-" * len(head2)]
    for r in rows:
        if r.w1 is not None:
            lines.append(f"{r.name:<20} " + " ".join(f"{v:>8.4f}" for v in r.w1))
    lines.append("")
    lines.append(
        f"held-out events: {s.n_eval} sim (signed weights) vs {s.n_eval} data; trained on "
        f"{s.n_train} + {s.n_train}. AUC: C2ST on features + conditions, sim weighted with "
        "|w|, +- null sigma (effective sizes). moved: weighted mean |T(x) - x| in the morph's "
        "scaled space (zeros at their band centre). zero: weighted fraction of exact zeros. "
        "W1 / std: signed sim weights; floor = two halves of the data. CPU s: "
        "time.process_time of training (unidirectional and F4F include the base-transfer "
        "densities they reuse; switch trains its own joint density)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    p.add_argument("--n-train", type=int, help="training events per kind")
    p.add_argument("--n-eval", type=int, help="held-out events per kind")
    p.add_argument("--density-epochs", type=int)
    p.add_argument("--morph-epochs", type=int)
    p.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        metavar="VARIANT",
        help=f"the fit_morpher variants to train (default all: {', '.join(VARIANTS)})",
    )
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)

    s = PRESETS["quick" if args.quick else "default"]
    changes = {
        k: v
        for k, v in {
            "n_train": args.n_train,
            "n_eval": args.n_eval,
            "density_epochs": args.density_epochs,
            "morph_epochs": args.morph_epochs,
        }.items()
        if v is not None
    }
    s = dataclasses.replace(s, **changes)
    print(f"settings: {s}", flush=True)

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    data = make_data(s)
    with threadpool_limits(1):  # the C2ST classifier (OpenMP): one thread, as training
        rows = reference_rows(data)
        rows[1:1] = run_variants(data, s, [VARIANTS[v] for v in args.variants])
    print()
    print(tables(rows, s))
    print(f"\nwall time {time.perf_counter() - t_start:.0f} s", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"settings": str(s), "features": FEATURES, "rows": [asdict(r) for r in rows]},
                indent=2,
            )
            + "\n"
        )
    return rows


if __name__ == "__main__":
    main()
