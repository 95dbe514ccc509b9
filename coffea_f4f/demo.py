"""The end-to-end demo behind ``coffea-f4f demo``: dijet sim -> data at each mjj, in coffea.

Steps (each shows progress):

1. Generate LHCO-like dijet ``sim`` and ``data`` samples (:func:`datasets.dijet`) for training.
2. Train the conditional morph ``sim -> data`` at each event's mjj (densities + morph flow).
3. Write fresh, held-out ``sim`` and ``data`` events as NanoAOD-schema ROOT files.
4. Run a coffea processor over both files with ``processor.Runner``: it reconstructs the
   features from the two FatJets, adds the morphed columns with :class:`MorphTransform` to the
   ``sim`` events, and fills histograms.
5. Compute metrics (classifier AUC before/after, Wasserstein distances, distance moved,
   transport ratio), write ``metrics.json``, plots and the model, and print a summary table.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from coffea import processor

FEATURES = ["mj1", "delta_mj", "tau21_j1", "tau21_j2"]
UNITS = {"mj1": "GeV", "delta_mj": "GeV", "mjj": "GeV"}
SCALING = {
    "mj1": "log",
    "tau21_j1": {"kind": "logit", "low": 0.0, "high": 1.0},
    "tau21_j2": {"kind": "logit", "low": 0.0, "high": 1.0},
}
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"n_train": 20_000, "n_test": 10_000, "epochs": 8, "layers": 3, "hidden": 48,
              "chunksize": 2_500},
    "full": {"n_train": 100_000, "n_test": 40_000, "epochs": 20, "layers": 4, "hidden": 64,
             "chunksize": 10_000},
}


# ---------------------------------------------------------------- features from NanoEvents
def _two_jets(events: Any) -> Any:
    return events.FatJet[:, :2]


def _light_heavy(events: Any) -> tuple[Any, Any]:
    fj = _two_jets(events)
    light = ak.argmin(fj.msoftdrop, axis=1, keepdims=True)
    heavy = ak.argmax(fj.msoftdrop, axis=1, keepdims=True)
    return fj[light], fj[heavy]


def feature_mj1(events: Any) -> Any:
    """Soft-drop mass of the lighter of the two leading FatJets."""
    return ak.flatten(_light_heavy(events)[0].msoftdrop)


def feature_delta_mj(events: Any) -> Any:
    """Heavier minus lighter soft-drop mass."""
    light, heavy = _light_heavy(events)
    return ak.flatten(heavy.msoftdrop - light.msoftdrop)


def _tau21(jet: Any) -> Any:
    # item access, not attributes: the four-vector behaviour defines ``tau2`` (= mass^2),
    # which shadows the NanoAOD field FatJet.tau2 under attribute access
    return ak.flatten(jet["tau2"] / jet["tau1"])


def feature_tau21_j1(events: Any) -> Any:
    """tau2 / tau1 of the lighter jet."""
    return _tau21(_light_heavy(events)[0])


def feature_tau21_j2(events: Any) -> Any:
    """tau2 / tau1 of the heavier jet."""
    return _tau21(_light_heavy(events)[1])


def feature_mjj(events: Any) -> Any:
    """Invariant mass of the two leading FatJets."""
    fj = _two_jets(events)
    return (fj[:, 0] + fj[:, 1]).mass


FEATURE_FUNCTIONS = {
    "mj1": feature_mj1,
    "delta_mj": feature_delta_mj,
    "tau21_j1": feature_tau21_j1,
    "tau21_j2": feature_tau21_j2,
}


class DijetMorphProcessor(processor.ProcessorABC):
    """Selects dijet events, adds the morphed features to simulation, collects columns.

    Returns ``{dataset: {column: [array per chunk]}}`` (lists concatenate when coffea
    accumulates chunks); ``sim`` gets ``<feature>_morphed`` columns from the transform.
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def process(self, events: Any) -> dict[str, Any]:
        events = events[ak.num(events.FatJet) >= 2]
        dataset = events.metadata["dataset"]
        cols = {f: [ak.to_numpy(fn(events))] for f, fn in FEATURE_FUNCTIONS.items()}
        cols["mjj"] = [ak.to_numpy(feature_mjj(events))]
        if dataset == "sim":
            events = self.transform(events)
            for f in FEATURE_FUNCTIONS:
                cols[f"{f}_morphed"] = [ak.to_numpy(events[f"{f}_morphed"])]
        return {dataset: cols}

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator


def _columns(out: dict[str, Any], dataset: str, names: list[str]) -> np.ndarray:
    return np.stack([np.concatenate(out[dataset][n]) for n in names], axis=1)


def run(out: Path, *, quick: bool = False, seed: int = 0, progress: bool = True,
        preset: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the demo, writing into ``out``; returns the metrics dict (also ``metrics.json``)."""
    from coffea.nanoevents import NanoAODSchema

    from . import datasets, metrics
    from .config import FlowConfig, TrainConfig
    from .train import fit_morpher
    from .transform import MorphTransform

    p = dict(PRESETS["quick" if quick else "full"])
    p.update(preset or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    say = print

    say(f"[1/5] generating {p['n_train']} sim and {p['n_train']} data dijet events for training")
    sim = datasets.dijet(p["n_train"], kind="sim", seed=seed + 1)
    data = datasets.dijet(p["n_train"], kind="data", seed=seed + 2)

    say("[2/5] training the conditional morph sim -> data at each mjj")
    flow = FlowConfig(layers=p["layers"], hidden=p["hidden"])
    t0 = time.perf_counter()
    morpher = fit_morpher(
        sim, data, features=FEATURES, condition="mjj", scaling=SCALING, flow=flow, density=flow,
        train=TrainConfig(epochs=p["epochs"], batch_size=512, lr=1e-3, seed=seed,
                          progress=progress),
    )
    t_train = time.perf_counter() - t0
    model_dir = morpher.save(out / "model")

    say(f"[3/5] writing {p['n_test']} held-out sim and data events as NanoAOD ROOT files")
    files = {"sim": out / "sim.root", "data": out / "data.root"}
    datasets.write_dijet_nanoaod(str(files["sim"]), p["n_test"], kind="sim", seed=seed + 11)
    datasets.write_dijet_nanoaod(str(files["data"]), p["n_test"], kind="data", seed=seed + 12)

    say("[4/5] running the coffea processor (MorphTransform on the sim events)")
    transform = MorphTransform(model_dir, inputs=dict(FEATURE_FUNCTIONS), condition=feature_mjj)
    runner = processor.Runner(
        executor=processor.IterativeExecutor(status=progress),
        schema=NanoAODSchema, chunksize=p["chunksize"],
    )
    fileset = {name: {"files": {str(path): "Events"}} for name, path in files.items()}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no Jet/SubJet cross-references
        result = runner(fileset, processor_instance=DijetMorphProcessor(transform))
    t_apply = time.perf_counter() - t0

    say("[5/5] metrics and plots")
    source = _columns(result, "sim", FEATURES)
    morphed = _columns(result, "sim", [f"{f}_morphed" for f in FEATURES])
    target = _columns(result, "data", FEATURES)
    summary = metrics.summary(source, morphed, target, seed=seed, standardize=True)
    summary.update({
        "features": FEATURES, "condition": "mjj", "variant": morpher.variant,
        "n_train_per_sample": p["n_train"], "n_test_per_sample": p["n_test"],
        "train_seconds": t_train, "apply_seconds": t_apply,
        "apply_events_per_second": len(source) / max(t_apply, 1e-9),
        "total_seconds": time.perf_counter() - t_all,
    })
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    written = ["model/", "sim.root", "data.root", "metrics.json"]
    try:
        import matplotlib.pyplot as plt

        from . import plots

        fig = plots.feature_comparison(source, morphed, target, features=FEATURES, units=UNITS,
                                       path=out / "features.png",
                                       labels=("sim", "sim morphed", "data"))
        plt.close(fig)
        plt.close(plots.loss_curves(morpher.history, path=out / "loss_curves.png"))
        written += ["features.png", "loss_curves.png"]
    except ImportError as err:
        say(f"(plots skipped: {err}; pip install 'coffea-f4f[plots]')")
    _print_summary(summary)
    say(f"\nWrote {', '.join(written)} to {out}")
    return summary


def _print_summary(s: dict[str, Any]) -> None:
    from . import metrics

    rows = [
        *metrics.summary_rows(s, s["features"], names=("sim", "morphed sim", "data")),
        ("training time", f"{s['train_seconds']:.0f} s"),
        ("coffea processor", f"{s['apply_seconds']:.1f} s, "
                             f"{s['apply_events_per_second']:.0f} sim events/s"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nSummary (held-out events, 4 features, conditional on mjj; 0.5 AUC = same)")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
