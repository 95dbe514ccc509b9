"""The paper's toy pairs (arXiv:2309.06472) at coffea-f4f's defaults, or at chosen settings.

``fourcircles -> star``, ``checkerboard -> star`` and ``concentricrings -> fourcircles``:
``--n`` training events per side (20% of them for validation), held-out samples of ``--n-test``
events per side for every number printed, one thread. For each pair: the C2ST AUC of the
morphed held-out source against held-out target (with its null sigma), the AUC of each learned
density's samples against its data (``q_s``, ``q_t``: how good the frozen bases are), the
tail bound the fit used and the CPU seconds of the fit (``time.process_time``).

Options change the defaults for both the densities and the morph (``--tail-bound``,
``--bins``, ``--batch``, ``--epochs``, ``--scaling``), or the morph's training alone
(``--morph-lr``); ``--preset compact`` starts from :data:`coffea_f4f.config.COMPACT` (the
setting for compact, centred shapes) instead of the defaults.

Usage: ``python benchmarks/toy_pairs.py [--pairs a:b ...] [--quick] [--preset compact]``.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

import coffea_f4f as f4f
from coffea_f4f import metrics
from coffea_f4f.config import PRESETS, FlowConfig, TrainConfig
from coffea_f4f.datasets import toy

PAIRS = ("fourcircles:star", "checkerboard:star", "concentricrings:fourcircles")
FEATURES = ["x", "y"]


def fit_pair(source: str, target: str, args) -> dict[str, float]:
    n, n_test = args.n, args.n_test
    xs, xt = toy(source, n, seed=1), toy(target, n, seed=2)
    flow_changes = {
        k: v for k, v in (("tail_bound", args.tail_bound), ("bins", args.bins)) if v is not None
    }
    train_changes = {
        k: v for k, v in (("batch_size", args.batch), ("epochs", args.epochs)) if v is not None
    }
    one_thread = {"progress": False, "num_threads": 1, "device": "cpu", "seed": args.seed}
    if args.preset:
        kwargs = PRESETS[args.preset].fit_kwargs(**one_thread, **train_changes)
        for key in ("density", "flow"):
            kwargs[key] = dataclasses.replace(kwargs[key], **flow_changes)
        if args.scaling is not None:
            kwargs["scaling"] = args.scaling
        if args.preset == "paper":
            kwargs["identity_init"] = False  # the paper's random initialisation
    else:
        train = dataclasses.replace(TrainConfig(**one_thread), **train_changes)
        flow = FlowConfig(**flow_changes)
        kwargs = {"density": flow, "flow": flow, "train": train, "density_train": train}
        kwargs["scaling"] = args.scaling or "standard"
    if args.morph_lr is not None:
        kwargs["train"] = dataclasses.replace(kwargs["train"], lr=args.morph_lr)
    t0 = time.process_time()
    morpher = f4f.fit_morpher(xs, xt, features=FEATURES, **kwargs)
    seconds = time.process_time() - t0
    held_s, held_t = toy(source, n_test, seed=11), toy(target, n_test, seed=12)
    moved = np.asarray(morpher.morph(held_s))
    auc, sigma = metrics.c2st_auc(moved, held_t)
    q_s, _ = metrics.c2st_auc(morpher.source_density.sample(n_test, seed=3), held_s)
    q_t, _ = metrics.c2st_auc(morpher.target_density.sample(n_test, seed=4), held_t)
    bound = float(morpher.map_spec.get("flow", {}).get("tail_bound", float("nan")))
    return {"auc": auc, "sigma": sigma, "q_s": q_s, "q_t": q_t, "s": seconds, "bound": bound}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), help="source:target ...")
    parser.add_argument("--n", type=int, default=20_000, help="training events per side")
    parser.add_argument("--n-test", type=int, default=10_000, help="held-out events per side")
    parser.add_argument("--quick", action="store_true", help="4000 events, 5 epochs")
    parser.add_argument("--tail-bound", type=float, help="FlowConfig.tail_bound of all flows")
    parser.add_argument("--bins", type=int, help="FlowConfig.bins of all flows")
    parser.add_argument("--batch", type=int, help="TrainConfig.batch_size of all trainings")
    parser.add_argument("--epochs", type=int, help="TrainConfig.epochs of all trainings")
    parser.add_argument("--morph-lr", type=float, help="the morph's learning rate alone")
    parser.add_argument("--scaling", help="fit_morpher(scaling=) (default: standard)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a config preset")
    parser.add_argument("--seed", type=int, default=0, help="TrainConfig.seed")
    args = parser.parse_args()
    if args.quick:
        args.n, args.n_test, args.epochs = 4000, 4000, args.epochs or 5
    changed = {k: v for k, v in vars(args).items() if v is not None and k not in ("pairs",)}
    print(f"settings: {changed}")
    print(f"{'pair':<30} {'AUC':>6} {'sigma':>6} {'q_s':>6} {'q_t':>6} {'bound':>6} {'CPU s':>7}")
    for pair in args.pairs:
        source, target = pair.split(":")
        r = fit_pair(source, target, args)
        print(
            f"{source + ' -> ' + target:<30} {r['auc']:>6.3f} {r['sigma']:>6.4f} "
            f"{r['q_s']:>6.3f} {r['q_t']:>6.3f} {r['bound']:>6.2f} {r['s']:>7.1f}",
            flush=True,
        )
    print("(AUC: morphed held-out source vs held-out target; q_s, q_t: density samples vs data)")


if __name__ == "__main__":
    main()
