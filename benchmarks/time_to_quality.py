"""Time to quality: the defaults against the paper's protocol and a reweighter, on dijets.

Dijets from the LHCO-like sampler (``coffea_f4f.datasets.dijet``), sim -> data, five jet
features ``mj1, delta_mj, tau21_j1, tau21_j2, delta_r`` morphed at each event's own ``mjj``
(the condition). ``--n`` training events per side (20% of them for validation), and
independent held-out samples of ``--n-test`` events for every number printed. One thread.

Rows:

- ``no morph``: held-out sim vs data;
- ``floor``: two independent data samples (the best any method can do);
- ``paper protocol``: coffea-f4f at the paper's settings (:data:`coffea_f4f.config.PAPER`,
  arXiv:2309.06472: masked autoregressive splines, 128 hidden, 8 bins, tail bound 4;
  densities 4 layers x 2 blocks, 60 epochs each; the morph 8 x 3, 64 epochs, random init;
  batch 128, Adam 1e-4 with cosine decay, every epoch run; features min-max scaled to
  [-3, 3]);
- ``defaults``: ``fit_morpher`` as a user calls it (only ``num_threads=1``, no progress bar);
- ``fast preset``: the documented :data:`coffea_f4f.config.FAST` settings;
- ``GBReweighter``: hep_ml's reweighter (200 trees) in the reference environment
  (``benchmarks/.reference-env``, see ``_settings.reference_python``), what users pick
  instead; it moves nothing, so its row gives the weighted AUC and ``n_eff / N``.

Columns: C2ST AUC with its null sigma, its distance from the floor in sigma, the distance
moved (mean ``|T(x) - x|`` in units of the data's per-feature std), the transport ratio
(``metrics.transport_ratio``, 1 = no shorter way) and the CPU seconds of the fit
(``time.process_time``), also as a fraction of the paper protocol's.

Usage: ``python benchmarks/time_to_quality.py [--quick] [--skip-paper] [--seeds 0 1 2]``
(``--seeds``: the defaults and the preset at each training seed, the paper protocol at the first
unless ``--paper-seeds``, and the spread over seeds printed at the end); the full
run takes about 15-20 CPU-minutes (most of it the paper protocol). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _settings import reference_python  # benchmarks/_settings.py, beside this script

import coffea_f4f as f4f
from coffea_f4f import metrics
from coffea_f4f.config import FAST, PAPER, TrainConfig
from coffea_f4f.datasets import dijet

HERE = Path(__file__).resolve().parent
FEATURES = ["mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r"]
CONDITION = "mjj"


@dataclass
class Row:
    name: str
    auc: float
    sigma: float
    moved: float | None = None
    transport: float | None = None
    seconds: float | None = None
    note: str = ""
    setting: str = ""  # the fitted setting without its seed (the spread's groups)


def matrix(events, names=FEATURES) -> np.ndarray:
    return np.stack([np.asarray(events[f], dtype=np.float64) for f in names], 1)


ONE_THREAD = {"progress": False, "num_threads": 1, "device": "cpu"}


def paper_kwargs(epochs_scale: float, seed: int = 0) -> dict:
    kw = PAPER.fit_kwargs(**ONE_THREAD, seed=seed)
    for key in ("train", "density_train"):
        kw[key] = dataclasses.replace(kw[key], epochs=max(1, round(kw[key].epochs * epochs_scale)))
    return {**kw, "identity_init": False}  # the paper's random initialisation


def defaults_kwargs(seed: int = 0) -> dict:
    train = TrainConfig(**ONE_THREAD, seed=seed)
    return {"train": train, "density_train": train}


def preset_kwargs(seed: int = 0) -> dict:
    return FAST.fit_kwargs(**ONE_THREAD, seed=seed)


def fit_and_score(name, kwargs, data) -> Row:
    t0 = time.process_time()
    morpher = f4f.fit_morpher(
        data["sim_train"], data["data_train"], features=FEATURES, condition=CONDITION, **kwargs
    )
    seconds = time.process_time() - t0
    x = matrix(data["sim_test"])
    tx = matrix(morpher.morph(data["sim_test"]))
    target = matrix(data["data_test"])
    auc, sigma = metrics.c2st_auc(tx, target)
    std = target.std(0)
    moved = float(np.linalg.norm((tx - x) / std, axis=1).mean())
    ratio = metrics.transport_ratio(x / std, tx / std)
    return Row(name, auc, sigma, moved, ratio, seconds)


def reweighter(py: str, data, trees: int) -> Row | None:
    cols = [*FEATURES, CONDITION]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(
            src,
            source=matrix(data["sim_train"], cols),
            target=matrix(data["data_train"], cols),
            apply=matrix(data["sim_test"], cols),
        )
        cmd = [py, str(HERE / "_reweighter_reference.py"), str(src), str(out), str(trees)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(f"GBReweighter failed: {done.stderr.strip().splitlines()[-1:]}")
            return None
        seconds = json.loads(done.stdout.strip().splitlines()[-1])["cpu_seconds"]
        w = np.load(out)["weights"]
    auc, sigma = metrics.c2st_auc(matrix(data["sim_test"]), matrix(data["data_test"]), weights_a=w)
    n_eff = float(w.sum() ** 2 / (w**2).sum()) / len(w)
    return Row("GBReweighter (200 trees)", auc, sigma, None, None, seconds, f"n_eff/N {n_eff:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="training events per side")
    parser.add_argument("--n-test", type=int, default=8_000, help="held-out events per side")
    parser.add_argument("--quick", action="store_true", help="3000 events, paper epochs / 10")
    parser.add_argument("--skip-paper", action="store_true", help="leave the paper protocol out")
    parser.add_argument("--trees", type=int, default=200, help="GBReweighter trees")
    parser.add_argument("--ref-python", help="python of an environment with hep_ml")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="TrainConfig.seed of each fit (spread)"
    )
    parser.add_argument(
        "--paper-seeds",
        action="store_true",
        help="run the paper protocol at every seed too (the /paper column uses the first)",
    )
    args = parser.parse_args()
    if len(set(args.seeds)) < len(args.seeds):
        parser.error(f"--seeds {args.seeds}: each seed once")
    n, n_test, scale = (3000, 3000, 0.1) if args.quick else (args.n, args.n_test, 1.0)

    data = {
        "sim_train": dijet(n, kind="sim", seed=11),
        "data_train": dijet(n, kind="data", seed=12),
        "sim_test": dijet(n_test, kind="sim", seed=21),
        "data_test": dijet(n_test, kind="data", seed=22),
    }
    floor_auc, floor_sigma = metrics.c2st_auc(
        matrix(dijet(n_test, kind="data", seed=23)), matrix(data["data_test"])
    )
    before, before_sigma = metrics.c2st_auc(matrix(data["sim_test"]), matrix(data["data_test"]))
    rows = [
        Row("no morph", before, before_sigma, 0.0, 1.0, 0.0),
        Row("floor (data vs data)", floor_auc, floor_sigma),
    ]
    fits = []
    for seed in args.seeds:
        tag = f" (seed {seed})" if args.seeds != [0] else ""
        if not args.skip_paper and (seed == args.seeds[0] or args.paper_seeds):
            fits.append(("paper protocol", tag, paper_kwargs(scale, seed)))
        fits.append(("defaults", tag, defaults_kwargs(seed)))
        fits.append(("fast preset", tag, preset_kwargs(seed)))
    for setting, tag, kwargs in fits:
        name = setting + tag
        print(f"fitting: {name} ...", flush=True)
        rows.append(dataclasses.replace(fit_and_score(name, kwargs, data), setting=setting))
    py = reference_python(args.ref_python)
    rw = reweighter(py, data, args.trees) if py else None
    if rw is not None:
        rows.append(rw)

    paper = next((r for r in rows if r.setting == "paper protocol"), None)
    print(f"\n{n} training events per side ({n_test} held out); AUC floor {floor_auc:.3f}")
    head = f"{'':<26} {'AUC':>6} {'sigma':>6} {'-floor':>7} {'moved':>6} {'OT':>5} {'CPU s':>7}"
    print(head + f" {'/paper':>7}  note")
    for r in rows:
        dist = (r.auc - floor_auc) / floor_sigma
        moved = f"{r.moved:>6.2f}" if r.moved is not None else f"{'-':>6}"
        ot = f"{r.transport:>5.2f}" if r.transport is not None else f"{'-':>5}"
        sec = f"{r.seconds:>7.1f}" if r.seconds is not None else f"{'-':>7}"
        frac = (
            f"{r.seconds / paper.seconds:>7.3f}"
            if paper is not None and r.seconds and paper.seconds
            else f"{'-':>7}"
        )
        line = f"{r.name:<26} {r.auc:>6.3f} {r.sigma:>6.4f} {dist:>6.1f}s {moved} {ot} {sec}"
        print(f"{line} {frac}  {r.note}")
    print("(-floor: (AUC - floor AUC) / null sigma; moved: mean |T(x) - x| / data std)")
    if len(args.seeds) > 1:
        spread(rows, floor_auc, floor_sigma, paper)


def spread(rows: list[Row], floor_auc: float, floor_sigma: float, paper: Row | None) -> None:
    """Mean, standard deviation and worst AUC over the seeds of each setting."""
    head = f"{'mean AUC':>8} {'std':>6} {'worst':>6} {'-floor':>7} {'CPU s':>7}"
    print(f"\nover seeds{'':<18} {head}")
    groups: dict[str, list[Row]] = {}
    for r in rows:
        if r.setting:
            groups.setdefault(r.setting, []).append(r)
    for name, group in groups.items():
        if len(group) < 2:
            continue
        aucs = np.array([r.auc for r in group])
        secs = float(np.mean([r.seconds or 0.0 for r in group]))
        worst = (aucs.max() - floor_auc) / floor_sigma
        frac = f" {secs / paper.seconds:.3f} of the paper's" if paper and paper.seconds else ""
        print(
            f"{name:<28} {aucs.mean():>8.3f} {aucs.std(ddof=1):>6.3f}"
            f" {aucs.max():>6.3f} {worst:>6.1f}s {secs:>7.1f}{frac}  ({len(aucs)} seeds)"
        )


if __name__ == "__main__":
    main()
