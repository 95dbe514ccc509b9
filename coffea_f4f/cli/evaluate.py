"""``coffea-f4f evaluate MODEL --source ... --target ...``: how good a morph is.

Morphs the source, compares it with the target (:func:`coffea_f4f.metrics.summary`), prints
the metrics and writes ``metrics.json`` and plots. A model with a bootstrap ensemble of K >= 2
members (``fit_morpher(..., ensemble=K)``) also gets its band and member morphs evaluated
(``w1_up``, ``w1_down``, ``auc_members``, ... in ``metrics.json``) and drawn (``band.png``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # with sklearn

from .. import metrics, plots
from ..columns import to_matrix
from ..demo import print_table
from .errors import one_line
from .inputs import read_columns
from .morph import condition_args, feature_map, input_branches, load_model, morph_columns
from .outputs import replacing

if TYPE_CHECKING:  # pragma: no cover - for type checkers only (the morpher imports torch)
    from ..morpher import Morpher

__all__ = ["run_evaluate"]


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Morph the source, compute the metrics, print them and write metrics.json and plots."""
    morpher = load_model(args.model)
    inputs = feature_map(morpher, args.branch)
    condition, target_condition = condition_args(
        morpher, args.condition_branch, args.target_condition
    )
    source = read_columns(
        args.source, input_branches(inputs, condition, target_condition), max_events=args.max_events
    )
    target = read_columns(
        args.target, list(dict.fromkeys(inputs.values())), max_events=args.max_events
    )
    morphed = morph_columns(
        morpher, source, inputs, condition=condition, target_condition=target_condition
    )
    x, _ = to_matrix({f: source[b] for f, b in inputs.items()}, morpher.features)
    y, _ = to_matrix(morphed, morpher.features)
    t, _ = to_matrix({f: target[b] for f, b in inputs.items()}, morpher.features)
    band = (
        _band(morpher, source, inputs, condition, target_condition)
        if morpher.ensemble_size >= 2
        else {}
    )
    # one OpenMP thread for the C2ST classifier: on a busy machine its threads wait on each
    # other (measured on 2 cores: 12x slower)
    with threadpool_limits(1):
        summary = metrics.summary(x, y, t, seed=args.seed, standardize=True, **band)
    summary.update(
        {
            "model": str(args.model),
            "variant": morpher.variant,
            "ensemble_size": morpher.ensemble_size,
            "features": morpher.features,
            "branches": inputs,
            "source": list(args.source),
            "target": list(args.target),
        }
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with replacing(out / "metrics.json") as tmp:  # never a half-written file
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    written = ["metrics.json"]
    if not args.no_plots:
        written += _evaluate_plots(out, x, y, t, morpher, band)

    print(f"coffea-f4f evaluate: {morpher!r}")
    print("Metrics (C2ST AUC: 0.5 = indistinguishable)")
    print_table(metrics.summary_rows(summary, morpher.features))
    print(f"\nWrote {', '.join(written)} to {out}")
    return summary


def _band(
    morpher: Morpher,
    source: dict[str, Any],
    inputs: dict[str, str],
    condition: str | None,
    target_condition: str | float | None,
) -> dict[str, Any]:
    """The ensemble's band and member morphs of the source events, as ``(N, D)`` arrays:
    ``{"up", "down", "members"}`` (the keywords of :func:`coffea_f4f.metrics.summary`)."""
    columns = {feature: source[branch] for feature, branch in inputs.items()}
    kwargs: dict[str, Any] = {
        "condition": None if condition is None else source[condition],
        "target_condition": source[target_condition]
        if isinstance(target_condition, str)
        else target_condition,
    }
    varied = morpher.variations(columns, **kwargs)
    members = morpher.variations(columns, members=True, **kwargs)

    def matrix(m: Any) -> np.ndarray:
        return to_matrix(m, morpher.features)[0]

    return {
        "up": matrix(varied["up"]),
        "down": matrix(varied["down"]),
        "members": [matrix(m) for m in members],
    }


def _evaluate_plots(
    out: Path,
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    morpher: Morpher,
    band: dict[str, Any],
) -> list[str]:
    try:
        import matplotlib.pyplot as plt  # optional dependency: the [plots] extra

        fig = plots.feature_comparison(
            x, y, t, features=list(morpher.features), path=out / "feature_comparison.png"
        )
    except ImportError as err:  # plotting extras not installed
        print(f"(plots skipped: {err}; pip install 'coffea-f4f[plots]')")
        return []
    plt.close(fig)
    written = ["feature_comparison.png"]
    if band:
        fig = plots.band_comparison(
            x,
            {"nominal": y, "up": band["up"], "down": band["down"]},
            t,
            features=list(morpher.features),
            band_label=f"ensemble band (K={morpher.ensemble_size})",
            path=out / "band.png",
        )
        plt.close(fig)
        written.append("band.png")
    try:
        fig = plots.loss_curves(morpher.history, path=out / "loss_curves.png")
    except ValueError as err:  # e.g. a model saved without a training history
        print(f"(loss curves skipped: {one_line(err)})")
    else:
        plt.close(fig)
        written.append("loss_curves.png")
    return written
