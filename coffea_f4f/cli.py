"""The ``coffea-f4f`` command line.

``coffea-f4f demo [--out DIR] [--quick]`` runs the whole chain on built-in data: two toy
shapes are generated, both densities and the morph flow are trained, held-out source events
are morphed, and the metrics (classifier AUC before/after, Wasserstein distances, distance
moved, transport ratio) are printed and written to ``DIR/metrics.json`` with plots and the
saved model.

Errors in arguments or inputs are reported as one line on stderr with exit code 2 (no
traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_PRESETS: dict[str, dict[str, Any]] = {
    # events per sample, epochs, layers, hidden units
    "quick": {"n": 8000, "epochs": 10, "layers": 4, "hidden": 64},
    "full": {"n": 30000, "epochs": 20, "layers": 6, "hidden": 64},
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _print_table(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def run_demo(out: Path, *, quick: bool, source: str, target: str, seed: int,
             progress: bool = True) -> dict[str, Any]:
    """Train a toy morph ``source -> target`` and evaluate it; returns the metrics dict."""
    import numpy as np

    from . import datasets, metrics
    from .config import FlowConfig, TrainConfig
    from .train import fit_morpher

    for name in (source, target):
        if name not in datasets.TOY_NAMES:
            raise CLIError(f"unknown toy shape {name!r}; choose from {', '.join(datasets.TOY_NAMES)}")
    preset = DEMO_PRESETS["quick" if quick else "full"]
    out.mkdir(parents=True, exist_ok=True)
    n = preset["n"]
    xs = datasets.toy(source, n, seed=seed)
    xt = datasets.toy(target, n, seed=seed + 1)
    flow = FlowConfig(layers=preset["layers"], hidden=preset["hidden"])
    train = TrainConfig(epochs=preset["epochs"], batch_size=256, lr=2e-3, seed=seed,
                        progress=progress)
    print(f"coffea-f4f demo: morph {source!r} -> {target!r} ({n} events each, "
          f"{'quick' if quick else 'full'} preset)", flush=True)
    t0 = time.perf_counter()
    morpher = fit_morpher(xs, xt, features=["x", "y"], flow=flow, density=flow, train=train)
    t_train = time.perf_counter() - t0

    hs = datasets.toy(source, 4000, seed=seed + 10)
    ht = datasets.toy(target, 4000, seed=seed + 11)
    t0 = time.perf_counter()
    hm = morpher.morph(hs)
    t_morph = time.perf_counter() - t0
    summary = metrics.summary(hs, hm, ht, seed=seed)
    summary.update({
        "source": source, "target": target, "train_seconds": t_train,
        "morph_events_per_second": len(hs) / max(t_morph, 1e-9),
        "variant": morpher.variant,
    })
    morpher.save(out / "model")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    plots_written = []
    try:
        from . import plots

        import matplotlib.pyplot as plt

        for fig in (plots.toy_panels(hs, hm, ht, path=out / "toy_panels.png"),
                    plots.loss_curves(morpher.history, path=out / "loss_curves.png")):
            plt.close(fig)
        plots_written = ["toy_panels.png", "loss_curves.png"]
    except ImportError as err:  # plotting extras not installed
        print(f"(plots skipped: {err}; pip install 'coffea-f4f[plots]')")

    print("\nResults on held-out events (C2ST AUC: 0.5 = indistinguishable)")
    _print_table([
        ("AUC source vs target", f"{summary['auc_before']:.3f} +- {summary['sigma_before']:.3f}"),
        ("AUC morphed vs target", f"{summary['auc_after']:.3f} +- {summary['sigma_after']:.3f}"),
        ("W1/std before", " ".join(f"{v:.3f}" for v in summary["w1_before"])),
        ("W1/std after", " ".join(f"{v:.3f}" for v in summary["w1_after"])),
        ("W1/std floor", " ".join(f"{v:.3f}" for v in summary["w1_floor"])),
        ("distance moved", f"{summary['distance_mean']:.3f} +- {summary['distance_std']:.3f}"),
        ("transport ratio", f"{summary['transport_ratio']:.3f} (1 = optimal)"
         if summary["transport_ratio"] is not None else "inf"),
        ("training time", f"{t_train:.1f} s"),
        ("morph speed", f"{summary['morph_events_per_second']:.0f} events/s"),
    ])
    written = ", ".join(["model/", "metrics.json", *plots_written])
    print(f"\nWrote {written} to {out}")
    return summary


def _cmd_demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), quick=args.quick, source=args.source, target=args.target,
             seed=args.seed, progress=not args.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="coffea-f4f",
        description="Morph one dataset into another with normalizing flows (flows for flows).",
    )
    parser.add_argument("--version", action="version", version=f"coffea-f4f {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser(
        "demo", help="run the whole chain on built-in data and print the metrics",
        description="Train densities and a morph flow on two built-in toy shapes, morph "
                    "held-out events, print metrics and write plots, metrics.json and the model.")
    demo.add_argument("--out", default="f4f-demo", help="output directory (default: f4f-demo)")
    demo.add_argument("--quick", action="store_true",
                      help="small preset: about a minute on 2 CPU cores")
    demo.add_argument("--source", default="checkerboard", help="source toy shape")
    demo.add_argument("--target", default="star", help="target toy shape")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coffea-f4f`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, KeyError, FileNotFoundError, TypeError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"coffea-f4f {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"coffea-f4f {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
