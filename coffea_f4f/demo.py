"""The demos behind ``coffea-f4f demo``: the dijet chain through coffea, and a 2D toy morph.

The dijet demo (:func:`run`), each step showing progress:

1. Generate LHCO-like dijet ``sim`` and ``data`` samples (:func:`datasets.dijet`) for training.
2. Train the conditional morph ``sim -> data`` at each event's mjj (densities + morph flow).
3. Write fresh, held-out ``sim`` and ``data`` events as NanoAOD-schema ROOT files.
4. Run a coffea processor over both files with ``processor.Runner``: it reconstructs the
   features from the two FatJets, adds the morphed columns with :class:`MorphTransform` to the
   ``sim`` events, and fills histograms.
5. Compute metrics (classifier AUC before/after, Wasserstein distances, distance moved,
   transport ratio), write ``metrics.json``, plots and the model, and print a summary table.

The toy demo (:func:`run_toy_demo`) morphs one 2D toy shape into another and needs no coffea.
Importing this module imports neither coffea nor torch: :class:`DijetMorphProcessor` is
created on first access.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # with sklearn

from . import datasets, metrics, plots
from .config import FlowConfig, TrainConfig
from .progress import show_progress

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from .morpher import Morpher
    from .transform import MorphTransform

__all__ = [
    "FEATURES",
    "FEATURE_FUNCTIONS",
    "PRESETS",
    "SCALING",
    "TOY_DEMO_PRESETS",
    "UNITS",
    "DijetMorphProcessor",  # noqa: F822 - created on first access by __getattr__ (coffea)
    "feature_delta_mj",
    "feature_mj1",
    "feature_mjj",
    "feature_tau21_j1",
    "feature_tau21_j2",
    "print_table",
    "run",
    "run_toy_demo",
]

FEATURES = ["mj1", "delta_mj", "tau21_j1", "tau21_j2"]
UNITS = {"mj1": "GeV", "delta_mj": "GeV", "mjj": "GeV"}
SCALING = {
    "mj1": "log",
    # >= 0 by construction: zero_inflated keeps morphed values >= 0 (with "standard", 0.4% of
    # the morphed sim came out below zero); the sample has no exact zeros, which is fine
    "delta_mj": "zero_inflated",
    "tau21_j1": {"kind": "logit", "low": 0.0, "high": 1.0},
    "tau21_j2": {"kind": "logit", "low": 0.0, "high": 1.0},
}
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "n_train": 20_000,
        "n_test": 10_000,
        "epochs": 8,
        "layers": 3,
        "hidden": 48,
        "chunksize": 2_500,
    },
    "full": {
        "n_train": 100_000,
        "n_test": 40_000,
        "epochs": 20,
        "layers": 4,
        "hidden": 64,
        "chunksize": 10_000,
    },
}
TOY_DEMO_PRESETS: dict[str, dict[str, Any]] = {
    # n: events per shape, epochs, layers, hidden units, optional batch_size (256) and lr
    # (2e-3). "full" is the default, under a minute on 2 CPU cores: C2ST AUC 0.966 -> 0.635
    # (measured: 39 s wall, 38 s CPU; 94 s wall on a busy machine). "quick" is --quick
    # (32 s CPU, AUC 0.696).
    "quick": {"n": 4000, "epochs": 6, "layers": 3, "hidden": 48, "lr": 4e-3},
    "full": {"n": 6000, "epochs": 8, "layers": 3, "hidden": 64, "lr": 4e-3},
}


def print_table(rows: Sequence[tuple[str, str]]) -> None:
    """Print ``(label, value)`` rows as two aligned columns, indented by two spaces.

    Example:
        >>> print_table([("variant", "bidirectional"), ("epochs", "3")])
          variant  bidirectional
          epochs   3
    """
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


@contextlib.contextmanager
def _one_openmp_thread() -> Iterator[None]:
    """One OpenMP thread for the C2ST classifier (scikit-learn): on a busy 2-core machine its
    threads wait on each other (measured, 4000 + 4000 toy events: 45 s, 3.7 s with one)."""
    with threadpool_limits(1):
        yield


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


FEATURE_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "mj1": feature_mj1,
    "delta_mj": feature_delta_mj,
    "tau21_j1": feature_tau21_j1,
    "tau21_j2": feature_tau21_j2,
}


# ---------------------------------------------------------------- the coffea processor
@functools.cache
def _processor_class() -> type:
    """``DijetMorphProcessor``, defined once coffea is first needed."""
    from coffea import processor  # optional dependency: the toy demo runs without coffea

    class DijetMorphProcessor(processor.ProcessorABC):
        """Selects dijet events, adds the morphed features to simulation, collects columns.

        Returns ``{dataset: {column: [array per chunk]}}`` (lists concatenate when coffea
        accumulates chunks); ``sim`` gets ``<feature>_morphed`` columns from the transform.
        """

        def __init__(self, transform: MorphTransform) -> None:
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

    # pickle (dask workers) finds the class by this name, through the module's __getattr__
    DijetMorphProcessor.__module__ = __name__
    DijetMorphProcessor.__qualname__ = "DijetMorphProcessor"
    return DijetMorphProcessor


def __getattr__(name: str) -> Any:
    if name == "DijetMorphProcessor":
        return _processor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# ---------------------------------------------------------------- the dijet demo
def _columns(out: dict[str, Any], dataset: str, names: list[str]) -> np.ndarray:
    return np.stack([np.concatenate(out[dataset][n]) for n in names], axis=1)


def _save_plots(draw: Callable[[], Sequence[Any]], names: Sequence[str]) -> list[str]:
    """Call ``draw()`` (it writes the figures ``names``) and close its figures; the names, or
    none with a note when the plotting extras are missing."""
    try:
        import matplotlib.pyplot as plt  # optional dependency: the [plots] extra

        for fig in draw():
            plt.close(fig)
    except ImportError as err:  # plotting extras not installed
        print(f"(plots skipped: {err}; pip install 'coffea-f4f[plots]')")
        return []
    return list(names)


def run(
    out: Path,
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    preset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the dijet demo, writing into ``out``; returns the metrics dict (also
    ``metrics.json``). Needs coffea (the ``[coffea]`` extra).

    ``preset`` overrides keys of :data:`PRESETS` (``n_train``: training events per sample,
    ``epochs``, ...); ``coffea-f4f demo --events N --epochs N`` sets it.
    """
    # coffea is optional, torch heavy: imported when the demo runs, not with this module
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    from .train import fit_morpher
    from .transform import MorphTransform

    p = dict(PRESETS["quick" if quick else "full"])
    p.update(preset or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    print(f"[1/5] generating {p['n_train']} sim and {p['n_train']} data dijet events for training")
    sim = datasets.dijet(p["n_train"], kind="sim", seed=seed + 1)
    data = datasets.dijet(p["n_train"], kind="data", seed=seed + 2)

    print("[2/5] training the conditional morph sim -> data at each mjj")
    flow = FlowConfig(layers=p["layers"], hidden=p["hidden"])
    t0 = time.perf_counter()
    morpher = fit_morpher(
        sim,
        data,
        features=FEATURES,
        condition="mjj",
        scaling=SCALING,
        flow=flow,
        density=flow,
        train=TrainConfig(
            epochs=p["epochs"], batch_size=512, lr=1e-3, seed=seed, progress=progress
        ),
    )
    t_train = time.perf_counter() - t0
    model_dir = morpher.save(out / "model")

    print(f"[3/5] writing {p['n_test']} held-out sim and data events as NanoAOD ROOT files")
    files = {"sim": out / "sim.root", "data": out / "data.root"}
    datasets.write_dijet_nanoaod(str(files["sim"]), p["n_test"], kind="sim", seed=seed + 11)
    datasets.write_dijet_nanoaod(str(files["data"]), p["n_test"], kind="data", seed=seed + 12)

    print("[4/5] running the coffea processor (MorphTransform on the sim events)")
    transform = MorphTransform(model_dir, inputs=dict(FEATURE_FUNCTIONS), condition=feature_mjj)
    runner = processor.Runner(
        executor=processor.IterativeExecutor(status=show_progress(progress)),
        schema=NanoAODSchema,
        chunksize=p["chunksize"],
    )
    fileset = {name: {"files": {str(path): "Events"}} for name, path in files.items()}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no Jet/SubJet cross-references
        result = runner(fileset, processor_instance=_processor_class()(transform))
    t_apply = time.perf_counter() - t0

    print("[5/5] metrics and plots")
    source = _columns(result, "sim", FEATURES)
    morphed = _columns(result, "sim", [f"{f}_morphed" for f in FEATURES])
    target = _columns(result, "data", FEATURES)
    with _one_openmp_thread():
        summary = metrics.summary(source, morphed, target, seed=seed, standardize=True)
    summary.update(
        {
            "features": FEATURES,
            "condition": "mjj",
            "variant": morpher.variant,
            "n_train_per_sample": p["n_train"],
            "n_test_per_sample": p["n_test"],
            "epochs": p["epochs"],
            "train_seconds": t_train,
            "apply_seconds": t_apply,
            "apply_events_per_second": len(source) / max(t_apply, 1e-9),
            "total_seconds": time.perf_counter() - t_all,
        }
    )
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    written = ["model/", "sim.root", "data.root", "metrics.json"]
    written += _save_plots(
        lambda: [
            plots.feature_comparison(
                source,
                morphed,
                target,
                features=FEATURES,
                units=UNITS,
                xlabels={
                    "mj1": "$m_{j1}$ (lighter jet)",
                    "delta_mj": "$m_{j2} - m_{j1}$",
                    "tau21_j1": r"$\tau_{21}$ (lighter jet)",
                    "tau21_j2": r"$\tau_{21}$ (heavier jet)",
                },
                path=out / "features.png",
                labels=("sim", "sim morphed", "data"),
            ),
            plots.loss_curves(morpher.history, path=out / "loss_curves.png"),
        ],
        ["features.png", "loss_curves.png"],
    )
    print("\nSummary (held-out events, 4 features, conditional on mjj; 0.5 AUC = same)")
    print_table(
        [
            *metrics.summary_rows(
                summary, summary["features"], names=("sim", "morphed sim", "data")
            ),
            ("training time", f"{summary['train_seconds']:.0f} s"),
            (
                "coffea processor",
                f"{summary['apply_seconds']:.1f} s, "
                f"{summary['apply_events_per_second']:.0f} sim events/s",
            ),
        ]
    )
    print(f"\nWrote {', '.join(written)} to {out}")
    return summary


# ---------------------------------------------------------------- the toy demo
def _train_toy(
    source: str, target: str, preset: dict[str, Any], seed: int, progress: bool
) -> Morpher:
    from .train import fit_morpher  # torch: imported when a demo trains, not with this module

    xs = datasets.toy(source, preset["n"], seed=seed)
    xt = datasets.toy(target, preset["n"], seed=seed + 1)
    flow = FlowConfig(layers=preset["layers"], hidden=preset["hidden"])
    # one torch thread: on small batches more threads are slower (DESIGN-NOTES, "Applying")
    train = TrainConfig(
        epochs=preset["epochs"],
        batch_size=preset.get("batch_size", 256),
        lr=preset.get("lr", 2e-3),
        seed=seed,
        progress=progress,
        num_threads=1,
    )
    return fit_morpher(xs, xt, features=["x", "y"], flow=flow, density=flow, train=train)


def run_toy_demo(
    out: Path,
    *,
    quick: bool,
    source: str,
    target: str,
    seed: int,
    progress: bool = True,
    preset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a toy morph ``source -> target`` and evaluate it; returns the metrics dict.

    Writes the model, ``metrics.json`` and plots into ``out``. Needs no coffea. ``preset``
    overrides keys of :data:`TOY_DEMO_PRESETS` (``n``: training events per shape, ``epochs``,
    ``layers``, ``hidden``); ``coffea-f4f demo --toy --events N --epochs N`` sets it.

    Raises:
        ValueError: ``source`` or ``target`` is not one of :data:`datasets.TOY_NAMES`.
    """
    for name in (source, target):
        if name not in datasets.TOY_NAMES:
            raise ValueError(
                f"unknown toy shape {name!r}; choose from {', '.join(datasets.TOY_NAMES)}"
            )
    p = {**TOY_DEMO_PRESETS["quick" if quick else "full"], **(preset or {})}
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"coffea-f4f demo: morph {source!r} -> {target!r} ({p['n']} events each, "
        f"{p['epochs']} epoch{'s' if p['epochs'] != 1 else ''}, "
        f"{'quick' if quick else 'default'} preset)",
        flush=True,
    )
    t0 = time.perf_counter()
    morpher = _train_toy(source, target, p, seed, progress)
    t_train = time.perf_counter() - t0

    hs = datasets.toy(source, 4000, seed=seed + 10)
    ht = datasets.toy(target, 4000, seed=seed + 11)
    t0 = time.perf_counter()
    hm = morpher.morph(hs)
    t_morph = time.perf_counter() - t0
    with _one_openmp_thread():
        summary = metrics.summary(hs, hm, ht, seed=seed)
    summary.update(
        {
            "source": source,
            "target": target,
            "n_train_per_sample": p["n"],
            "epochs": p["epochs"],
            "train_seconds": t_train,
            "morph_events_per_second": len(hs) / max(t_morph, 1e-9),
            "variant": morpher.variant,
        }
    )
    morpher.save(out / "model")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    written = ["model/", "metrics.json"]
    written += _save_plots(
        lambda: [
            plots.toy_panels(hs, hm, ht, features=("x", "y"), path=out / "toy_panels.png"),
            plots.loss_curves(morpher.history, path=out / "loss_curves.png"),
        ],
        ["toy_panels.png", "loss_curves.png"],
    )
    print("\nResults on held-out events (C2ST AUC: 0.5 = indistinguishable)")
    print_table(
        [
            *metrics.summary_rows(summary, ["x", "y"]),
            ("training time", f"{t_train:.1f} s"),
            ("morph speed", f"{summary['morph_events_per_second']:.0f} events/s"),
        ]
    )
    print(f"\nWrote {', '.join(written)} to {out}")
    return summary
