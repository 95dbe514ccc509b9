"""How far do events move? The flows-for-flows variants on the LHCO-like dijet data.

The paper's movement table (arXiv:2309.06472, LHCO, distance moved in the scaled feature
space): base transfer 0.69, F4F 0.31, F4F + L1 penalty 0.22, F4F with identity
initialisation 0.30, and 0.58 ... 2.58 for random pairings of source and target events.

Set-up (the paper's): sim -> data with ``coffea_f4f.datasets.dijet``, each event morphed at
its own mjj (``condition="mjj"``), trained on the sidebands (``datasets.SIDEBANDS``) only and
evaluated on held-out events in the sidebands and in the signal region (interpolation in mjj).
Features ``mj1, delta_mj, tau21_j1, tau21_j2`` (``--delta-r`` adds ``delta_r``), scaled with
``log`` (masses), ``logit`` on (0, 1) (tau21) and ``standard`` (delta_r).

The two density flows are trained once and shared by every variant but ``switch``. They are
trained by ``fit_morpher(variant="base_transfer")`` (which is the base-transfer row) so that
both share the morph's scaling; the other variants receive the same densities as
``source_density=`` / ``target_density=``. Trained variants:

- ``unidirectional``: only target events through ``M^-1`` scored by the source density;
- ``F4F``: bidirectional, random initialisation (the paper's "F4F");
- ``F4F + L1``: the same plus ``penalty="l1"`` (``--l1-weight``);
- ``F4F + identity init``: bidirectional, starting as the exact identity;
- ``switch`` (``variant="switch"``, the CMS production protocol): no morph flow, *one* density
  of sim and data together with a sample label as an extra condition, encoded at label 0 and
  decoded at label 1. It trains its own joint density (the density architecture and epochs, on
  both datasets at once) and cannot share the two F4F densities, so its row (marked
  "own density") compares a different pair of trained flows, and its time is that density's.

Printed for each: mean +- std of ``|T(x) - x|`` over held-out SR sim events in the morph's
scaled space (``morpher.scaler.forward`` of source and morphed), the transport ratio
(``metrics.transport_ratio``, 1 = no shorter way to move the same points), and the C2ST AUC
(with its null sigma) of morphed sim vs data in the SR and in the sidebands, and the training
time (the morph flow only for the F4F rows, the densities for base transfer, the joint density
for switch). Reference rows:
no morph (the sim-vs-data AUC before morphing) and random pairing (distance between each sim
event and a randomly drawn data event).

Usage::

    python benchmarks/movement.py --quick        # a few minutes on 2 cores
    python benchmarks/movement.py                # the default size (~15-30 min on 2 cores)
    python benchmarks/movement.py --workers 1 --n-train 100000 --morph-epochs 8

Variants train in ``--workers`` processes (default 2), one torch thread each. Nothing is
asserted; the table (and ``--json PATH``) is the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _settings import fixed_train  # benchmarks/_settings.py, beside this script

import coffea_f4f as f4f
from coffea_f4f import datasets
from coffea_f4f.config import FlowConfig, TrainConfig
from coffea_f4f.metrics import c2st_auc, distance_moved, transport_ratio

FEATURES = ["mj1", "delta_mj", "tau21_j1", "tau21_j2"]
SCALING: dict[str, Any] = {
    "mj1": "log",
    "delta_mj": "log",  # strictly > 0 in the sampler (|m2 - m1| of two continuous masses)
    "tau21_j1": {"kind": "logit", "low": 0.0, "high": 1.0},
    "tau21_j2": {"kind": "logit", "low": 0.0, "high": 1.0},
    "delta_r": "standard",
}
PAPER = {
    "base transfer": 0.69,
    "F4F": 0.31,
    "F4F + L1": 0.22,
    "F4F + identity init": 0.30,
    "random pairing": 2.58,
}
SEEDS = {"train_sim": 1, "train_data": 2, "eval_sim": 11, "eval_data": 12}


@dataclass(frozen=True)
class Settings:
    """Sizes and architectures of one benchmark run.

    Attributes:
        n_train: events generated per kind for training (about 27% land in the sidebands).
        n_eval: events generated per kind for evaluation (about 12% in the SR, 27% in the SBs).
        density: architecture of the two density flows.
        flow: architecture of the morph flows.
        density_epochs: epochs of the density flows.
        morph_epochs: epochs of each morph flow.
        batch_size: events per gradient step.
        lr: peak learning rate (cosine schedule).
        l1_weight: weight of the L1 movement penalty.
        features: the morphed features.
        seed: training seed.
    """

    n_train: int
    n_eval: int
    density: FlowConfig
    flow: FlowConfig
    density_epochs: int
    morph_epochs: int
    batch_size: int = 256
    lr: float = 2e-3
    l1_weight: float = 0.1
    features: tuple[str, ...] = tuple(FEATURES)
    seed: int = 0

    def train_config(self, epochs: int) -> TrainConfig:
        return fixed_train(epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed)


PRESETS: dict[str, Settings] = {
    "quick": Settings(
        n_train=40_000,
        n_eval=60_000,
        density=FlowConfig(layers=2, hidden=32, blocks=1),
        flow=FlowConfig(layers=2, hidden=32, blocks=1),
        density_epochs=6,
        morph_epochs=5,
    ),
    "default": Settings(
        n_train=120_000,
        n_eval=150_000,
        density=FlowConfig(layers=4, hidden=64, blocks=2),
        flow=FlowConfig(layers=4, hidden=64, blocks=2),
        density_epochs=12,
        morph_epochs=8,
    ),
}


@dataclass
class Row:
    """One line of the table."""

    name: str
    dist_mean: float | None = None
    dist_std: float | None = None
    ratio: float | None = None
    auc_sr: float | None = None
    sigma_sr: float | None = None
    auc_sb: float | None = None
    sigma_sb: float | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- data
def _columns(events, names) -> dict[str, np.ndarray]:
    return {n: np.asarray(events[n], dtype=np.float64) for n in names}


def make_data(s: Settings) -> dict[str, dict[str, np.ndarray]]:
    """Sideband training events and held-out SR / SB events of both kinds (seeded)."""
    names = [*s.features, "mjj"]
    out = {}
    for key, n in (
        ("train_sim", s.n_train),
        ("train_data", s.n_train),
        ("eval_sim", s.n_eval),
        ("eval_data", s.n_eval),
    ):
        ev = datasets.dijet(n, kind="sim" if key.endswith("sim") else "data", seed=SEEDS[key])
        if key.startswith("train"):
            out[key] = _columns(ev[datasets.in_bands(ev.mjj, datasets.SIDEBANDS)], names)
        else:
            out[key + "_sr"] = _columns(
                ev[datasets.in_bands(ev.mjj, datasets.SIGNAL_REGION)], names
            )
            out[key + "_sb"] = _columns(ev[datasets.in_bands(ev.mjj, datasets.SIDEBANDS)], names)
    return out


def _matrix(cols: dict[str, np.ndarray], features) -> np.ndarray:
    return np.column_stack([cols[f] for f in features])


# ----------------------------------------------------------------------------- evaluation
def evaluate(m: f4f.Morpher, data, s: Settings, name: str, seconds: float | None) -> Row:
    """Distance moved (scaled space), transport ratio and C2ST AUCs of one morpher."""
    feats = list(s.features)
    src = data["eval_sim_sr"]
    x = _matrix(src, feats)
    y = m.morph(x, condition=src["mjj"])
    zx, zy = m.scaler.forward(x), m.scaler.forward(y)
    d = distance_moved(zx, zy)
    auc_sr, sig_sr = c2st_auc(y, _matrix(data["eval_data_sr"], feats))
    sb = data["eval_sim_sb"]
    y_sb = m.morph(_matrix(sb, feats), condition=sb["mjj"])
    auc_sb, sig_sb = c2st_auc(y_sb, _matrix(data["eval_data_sb"], feats))
    return Row(
        name=name,
        dist_mean=float(d.mean()),
        dist_std=float(d.std()),
        ratio=float(transport_ratio(zx, zy)),
        auc_sr=auc_sr,
        sigma_sr=sig_sr,
        auc_sb=auc_sb,
        sigma_sb=sig_sb,
        seconds=seconds,
    )


def reference_rows(m: f4f.Morpher, data, s: Settings) -> list[Row]:
    """No morph (AUC before) and random pairing (distance to random data events)."""
    feats = list(s.features)
    xs, xd = _matrix(data["eval_sim_sr"], feats), _matrix(data["eval_data_sr"], feats)
    auc_sr, sig_sr = c2st_auc(xs, xd)
    auc_sb, sig_sb = c2st_auc(
        _matrix(data["eval_sim_sb"], feats), _matrix(data["eval_data_sb"], feats)
    )
    none = Row(
        name="no morph (sim vs data)",
        dist_mean=0.0,
        dist_std=0.0,
        auc_sr=auc_sr,
        sigma_sr=sig_sr,
        auc_sb=auc_sb,
        sigma_sb=sig_sb,
    )
    rng = np.random.default_rng(s.seed)
    n = min(len(xs), len(xd))
    pair = xd[rng.choice(len(xd), size=n, replace=False)]
    d = distance_moved(m.scaler.forward(xs[:n]), m.scaler.forward(pair))
    return [none, Row(name="random pairing", dist_mean=float(d.mean()), dist_std=float(d.std()))]


# ----------------------------------------------------------------------------- variants
SWITCH = "switch (own density)"
VARIANTS: dict[str, dict[str, Any]] = {
    "unidirectional": {"variant": "unidirectional", "identity_init": False},
    "F4F": {"variant": "bidirectional", "identity_init": False},
    "F4F + L1": {"variant": "bidirectional", "identity_init": False, "penalty": "l1"},
    "F4F + identity init": {"variant": "bidirectional", "identity_init": True},
    SWITCH: {"variant": "switch"},  # trains its own joint density, not the shared ones
}


def train_variant(name: str, s: Settings, density_dir: str) -> Row:
    """Train one variant on the shared densities (loaded from ``density_dir``) and evaluate.

    ``switch`` trains its own joint density instead (with the densities' architecture and
    epochs): it has no morph flow, and its density is not either of the shared ones.
    """
    import torch

    torch.set_num_threads(1)
    data = make_data(s)
    kwargs = dict(VARIANTS[name])
    if kwargs.get("penalty"):
        kwargs["penalty_weight"] = s.l1_weight
    if kwargs["variant"] == "switch":
        kwargs.update(density=s.density, train=s.train_config(s.density_epochs))
    else:
        shared = f4f.load(density_dir)
        kwargs.update(
            flow=s.flow,
            train=s.train_config(s.morph_epochs),
            source_density=shared.source_density,
            target_density=shared.target_density,
        )
    t0 = time.perf_counter()
    m = f4f.fit_morpher(
        data["train_sim"],
        data["train_data"],
        features=list(s.features),
        condition="mjj",
        scaling={k: v for k, v in SCALING.items() if k in s.features},
        **kwargs,
    )
    seconds = time.perf_counter() - t0
    row = evaluate(m, data, s, name, seconds)
    stage = "density" if kwargs["variant"] == "switch" else "morph"
    row.extra = {
        "best_epoch": m.history[stage]["best_epoch"],
        "val_loss": m.history[stage]["val_loss"][-1],
        "own_density": stage == "density",
    }
    return row


# ----------------------------------------------------------------------------- output
def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[Row], s: Settings) -> str:
    head = (
        f"{'variant':<26} {'distance moved':>16} {'paper':>6} {'R':>5} "
        f"{'AUC SR':>16} {'AUC SB':>16} {'train s':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        dist = "-" if r.dist_mean is None else f"{r.dist_mean:.3f} +- {r.dist_std:.3f}"
        auc_sr = "-" if r.auc_sr is None else f"{r.auc_sr:.4f} +- {r.sigma_sr:.4f}"
        auc_sb = "-" if r.auc_sb is None else f"{r.auc_sb:.4f} +- {r.sigma_sb:.4f}"
        paper = PAPER.get(r.name)
        lines.append(
            f"{r.name:<26} {dist:>16} {_fmt(paper, '.2f'):>6} "
            f"{_fmt(r.ratio, '.2f'):>5} {auc_sr:>16} {auc_sb:>16} "
            f"{_fmt(r.seconds, '.0f'):>8}"
        )
    lines.append("")
    lines.append(
        "distance: mean +- std of |T(x) - x| over held-out SR sim events in the morph's "
        "scaled space; R: transport ratio (1 = optimal on its own endpoints); AUC: C2ST "
        "+- null sigma, morphed sim vs data (held out), signal region / sidebands; "
        f"L1 weight {s.l1_weight}. {SWITCH}: variant='switch' trains its own joint density "
        "(sim + data, sample label as an extra condition) instead of sharing the two densities "
        "of the other rows; its train s is that density's"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    p.add_argument("--workers", type=int, default=2, help="processes for the variants")
    p.add_argument("--n-train", type=int, help="events generated per kind for training")
    p.add_argument("--n-eval", type=int, help="events generated per kind for evaluation")
    p.add_argument("--density-epochs", type=int)
    p.add_argument("--morph-epochs", type=int)
    p.add_argument("--l1-weight", type=float)
    p.add_argument("--delta-r", action="store_true", help="morph delta_r as well")
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
            "l1_weight": args.l1_weight,
        }.items()
        if v is not None
    }
    if args.delta_r:
        changes["features"] = (*FEATURES, "delta_r")
    s = dataclasses.replace(s, **changes)
    print(f"settings: {s}", flush=True)

    import torch

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    data = make_data(s)
    print(
        f"training events in the sidebands: sim {len(data['train_sim']['mjj'])}, data "
        f"{len(data['train_data']['mjj'])}; held out: SR {len(data['eval_sim_sr']['mjj'])} / "
        f"{len(data['eval_data_sr']['mjj'])}, SB {len(data['eval_sim_sb']['mjj'])} / "
        f"{len(data['eval_data_sb']['mjj'])}",
        flush=True,
    )

    t0 = time.perf_counter()
    base = f4f.fit_morpher(
        data["train_sim"],
        data["train_data"],
        features=list(s.features),
        condition="mjj",
        variant="base_transfer",
        scaling={k: v for k, v in SCALING.items() if k in s.features},
        density=s.density,
        train=s.train_config(s.density_epochs),
    )
    t_dens = time.perf_counter() - t0
    print(f"densities trained in {t_dens:.0f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        base.save(Path(tmp) / "densities")
        names = list(VARIANTS)
        ctx = mp.get_context("spawn")  # no fork after torch has started threads
        with ProcessPoolExecutor(max_workers=max(1, args.workers), mp_context=ctx) as pool:
            futures = {
                n: pool.submit(train_variant, n, s, str(Path(tmp) / "densities")) for n in names
            }
            rows = [evaluate(base, data, s, "base transfer", t_dens)]
            rows += reference_rows(base, data, s)
            trained = {}
            for n in names:
                trained[n] = futures[n].result()
                print(f"  {n}: trained in {trained[n].seconds:.0f} s", flush=True)
    rows = [rows[1], rows[0], *[trained[n] for n in names], rows[2]]
    print()
    print(table(rows, s))
    print(f"\nwall time {time.perf_counter() - t_start:.0f} s", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"settings": str(s), "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
        )
    return rows


if __name__ == "__main__":
    main()
