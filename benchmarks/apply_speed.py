"""Speed and memory of applying a morph: MorphTransform in a coffea Runner vs the bare flow.

For each size N (number of FatJet objects) this measures, on one CPU thread and in float64:

1. ``raw flow``: ``morpher.module.forward`` under ``torch.no_grad`` on a preallocated tensor of
   the already scaled features, in batches of ``--batch-size`` rows (the floor: nothing but the
   normflows layers);
2. ``Morpher.morph``: the same objects as an ``(N, 2)`` numpy array (scaling, batching,
   conversion to and from torch included);
3. ``Runner+transform``: ``processor.Runner`` with ``IterativeExecutor`` over a generated
   NanoAOD file holding the same FatJets; the processor applies
   ``MorphTransform(inputs={"mass": "FatJet.mass", "pt": "FatJet.pt"})`` (reading, NanoEvents,
   flattening, the NaN/domain checks and ``ak.with_field`` included);
4. ``Runner read-only``: the same Runner with a processor that only reads and flattens the two
   columns (so 3 minus 4 is the cost of the transform itself);
5. ``Morpher.morph f32``: the Morpher in ``precision="float32"`` (``Morpher.to(precision=)``)
   against its float64 default: speed, and the error of the morphed values against float64
   (largest absolute difference over each feature's std, and the median relative one).

The model is paper-like: an autoregressive rational-quadratic spline flow, 8 layers, 128 hidden
units, trained for one epoch on a little data (speed does not depend on the weights).

Times: the best of ``--repeat`` interleaved repetitions, as wall-clock time and as the
process's CPU time (``time.process_time``), which is less disturbed by other load on the machine.

Memory: the peak resident set size of each stage above the resident size when the stage
started, from ``VmHWM`` in ``/proc/self/status`` after resetting it through
``/proc/self/clear_refs`` (Linux); where that is not possible, ``resource.getrusage`` maxrss,
which cannot be reset (then only the first stage's number is meaningful).

Usage::

    python benchmarks/apply_speed.py            # N = 1e5 and 1e6 objects
    python benchmarks/apply_speed.py --quick    # N = 1e4 and 1e5
"""

from __future__ import annotations

import argparse
import math
import pickle
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the generated-NanoAOD writer lives with the tests
sys.path.insert(0, str(ROOT))

FATJETS_PER_EVENT = 1.55  # mean of the generator's min(Poisson(1.6), 4)


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak RSS above the starting RSS of a ``with`` block, in MB."""

    def __enter__(self) -> PeakMemory:
        self.resettable = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.resettable = _status_kb("VmHWM") is not None
        except OSError:
            pass
        self.start_kb = _status_kb("VmRSS") or 0
        return self

    def __exit__(self, *exc: object) -> None:
        if self.resettable:
            peak = _status_kb("VmHWM") or 0
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.mb = max(peak - self.start_kb, 0) / 1024
        self.method = "VmHWM" if self.resettable else "ru_maxrss"


def build_model(seed: int = 0):
    """A paper-sized morph (8 autoregressive spline layers x 128 hidden), one epoch of training."""
    from coffea_f4f.config import FlowConfig, TrainConfig
    from coffea_f4f.train import fit_morpher

    rng = np.random.default_rng(seed)
    n = 2000
    src = {"mass": rng.gamma(2.0, 30.0, n) + 10, "pt": 200 + rng.exponential(150.0, n)}
    tgt = {"mass": rng.gamma(2.0, 34.0, n) + 12, "pt": 210 + rng.exponential(140.0, n)}
    return fit_morpher(
        src,
        tgt,
        features=["mass", "pt"],
        scaling="log",
        flow=FlowConfig(kind="autoregressive", layers=8, hidden=128),
        density=FlowConfig(layers=2, hidden=16),
        train=TrainConfig(epochs=1, progress=False, num_threads=1, seed=seed),
    )


class SumMorphed:
    """Processor: apply the transform and sum the morphed values (forces the computation)."""

    def __init__(self, transform) -> None:
        self.transform = transform

    def __call__(self, events):
        import awkward as ak

        out = self.transform(events)
        total = 0.0
        for name in ("mass_morphed", "pt_morphed"):
            total += float(np.nansum(ak.to_numpy(ak.flatten(out.FatJet[name]))))
        return {"objects": int(ak.sum(ak.num(out.FatJet))), "sum": total}


class ReadOnly:
    """Processor: read and flatten the input columns only (the Runner's own cost)."""

    def __call__(self, events):
        import awkward as ak

        total = 0.0
        for name in ("mass", "pt"):
            total += float(np.sum(ak.to_numpy(ak.flatten(events.FatJet[name]))))
        return {"objects": int(ak.sum(ak.num(events.FatJet))), "sum": total}


def run_size(
    model, n_objects: int, workdir: Path, batch_size: int, chunksize: int, repeat: int
) -> dict:
    import awkward as ak
    import torch
    import uproot
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema
    from nanoaod_fixture import write_nanoaod

    from coffea_f4f.transform import MorphTransform

    n_events = math.ceil(n_objects / FATJETS_PER_EVENT)
    path = write_nanoaod(workdir / f"bench_{n_objects}.root", n_events, seed=3, jets=False)
    tree = uproot.open(path)["Events"]
    x = np.stack(
        [
            ak.to_numpy(ak.flatten(tree[f"FatJet_{f}"].array())).astype(np.float64)
            for f in ("mass", "pt")
        ],
        axis=1,
    )
    n = len(x)
    torch.set_num_threads(1)
    model.num_threads = 1
    module = model.module.to(dtype=torch.float64)
    z = torch.as_tensor(model.scaler.forward(x), dtype=torch.float64)
    transform = MorphTransform(
        model,
        inputs={"mass": "FatJet.mass", "pt": "FatJet.pt"},
        batch_size=batch_size,
        num_threads=1,
    )
    fileset = {"bench": {"files": {str(path): "Events"}}}
    pickled = len(pickle.dumps(transform))
    checks: dict[str, float] = {}

    def raw_flow() -> None:  # 1. the normflows layers on a tensor, same dtype and batches
        out = torch.empty_like(z)
        with torch.no_grad():
            for i in range(0, n, batch_size):
                out[i : i + batch_size] = module.forward(z[i : i + batch_size])[0]
        checks["raw"] = float(np.nansum(model.target_scaler.inverse(out.numpy())))

    def morph() -> None:  # 2. Morpher.morph on the numpy array
        checks["morph"] = float(np.nansum(model.morph(x, batch_size=batch_size)))

    def morph32() -> None:  # 5. Morpher.morph in float32
        model.to(precision="float32")
        try:
            out32 = model.morph(x, batch_size=batch_size)
        finally:
            model.to(precision="float64")
        checks["f32"] = out32

    def runner(proc, key: str) -> Callable[[], None]:  # 3./4. Runner, IterativeExecutor
        def run() -> None:
            r = processor.Runner(
                executor=processor.IterativeExecutor(status=False),
                pre_executor=processor.IterativeExecutor(status=False),
                schema=NanoAODSchema,
                chunksize=chunksize,
            )
            acc = r(fileset, proc, treename="Events")
            if acc["objects"] != n:
                raise RuntimeError(f"{key}: {acc['objects']} objects, expected {n}")
            checks[key] = acc["sum"]

        return run

    stages = {
        "raw flow": raw_flow,
        "Morpher.morph": morph,
        "Runner+transform": runner(SumMorphed(transform), "transform"),
        "Runner read-only": runner(ReadOnly(), "read"),
        "Morpher.morph f32": morph32,
    }
    # warm up every stage on little data (model build and cache, first-call allocations)
    transform(_small_events(path)).FatJet.mass_morphed  # noqa: B018
    with torch.no_grad():
        module.forward(z[:256])
    model.morph(x[:256])
    results: dict[str, dict] = {
        name: {"s": math.inf, "cpu": math.inf, "mb": 0.0} for name in stages
    }
    for _ in range(repeat):  # interleaved repetitions; the best time of each stage is kept
        for name, fn in stages.items():
            with PeakMemory() as mem:
                start, cpu = time.perf_counter(), time.process_time()
                fn()
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            st = results[name]
            st["s"], st["cpu"] = min(st["s"], elapsed), min(st["cpu"], cpu)
            st["mb"], st["method"] = max(st["mb"], mem.mb), mem.method
    if not (
        math.isclose(checks["raw"], checks["morph"], rel_tol=1e-9)
        and math.isclose(checks["transform"], checks["morph"], rel_tol=1e-9)
    ):
        raise RuntimeError(f"the stages disagree: {checks}")
    out64 = model.morph(x, batch_size=batch_size)
    out32 = np.asarray(checks["f32"])
    f32 = {
        "max_over_std": float((np.abs(out32 - out64).max(0) / out64.std(0)).max()),
        "median_rel": float(np.median(np.abs(out32 - out64) / np.maximum(np.abs(out64), 1e-300))),
    }
    return {"n": n, "events": n_events, "stages": results, "pickled": pickled, "f32": f32}


def _small_events(path: Path):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    return NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=NanoAODSchema, mode="virtual", entry_stop=100
    ).events()


def report(res: dict) -> None:
    n = res["n"]
    st = res["stages"]
    raw, raw_cpu = st["raw flow"]["s"], st["raw flow"]["cpu"]
    print(
        f"\nN = {n:,} FatJet objects ({res['events']:,} events); pickled MorphTransform: "
        f"{res['pickled']:,} bytes"
    )
    print(
        f"  {'stage':<18} {'objects/s':>10} {'time/raw':>9} {'obj/CPU-s':>10} "
        f"{'CPU/raw':>8} {'peak MB':>8}"
    )
    for name, s in st.items():
        print(
            f"  {name:<18} {n / s['s']:>10,.0f} {s['s'] / raw:>9.3f} {n / s['cpu']:>10,.0f} "
            f"{s['cpu'] / raw_cpu:>8.3f} {s['mb']:>8.1f}"
        )
    own = st["Runner+transform"]["s"] - st["Runner read-only"]["s"]
    own_cpu = st["Runner+transform"]["cpu"] - st["Runner read-only"]["cpu"]
    print(
        f"  transform alone (Runner+transform - read-only): {own / raw:.3f} x raw flow time, "
        f"{own_cpu / raw_cpu:.3f} x its CPU time"
    )
    tr, m64, m32 = st["Runner+transform"], st["Morpher.morph"], st["Morpher.morph f32"]
    print(
        f"  Runner+transform throughput / raw flow: {raw / tr['s']:.2f} (wall), "
        f"{raw_cpu / tr['cpu']:.2f} (CPU); transform alone: {raw_cpu / own_cpu:.2f} (CPU)"
    )
    print(
        f"  float32 / float64 Morpher.morph speed: {m64['cpu'] / m32['cpu']:.2f} (CPU); "
        f"float32 error: max |diff| / std {res['f32']['max_over_std']:.1e}, "
        f"median relative {res['f32']['median_rel']:.1e}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e4 and 1e5 objects")
    parser.add_argument("--batch-size", type=int, default=16384, help="rows per torch call")
    parser.add_argument("--chunksize", type=int, default=100_000, help="Runner events/chunk")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (best time kept)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Missing cross-reference index")

    import torch

    torch.set_num_threads(1)
    sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
    print(
        f"torch {torch.__version__}, 1 thread, float64, batch size {args.batch_size}, "
        f"Runner chunksize {args.chunksize} events, best of {args.repeat}"
    )
    start = time.perf_counter()
    model = build_model()
    print(
        f"model: autoregressive RQ spline, 8 layers x 128 hidden "
        f"({sum(p.numel() for p in model.module.parameters()):,} parameters), "
        f"built in {time.perf_counter() - start:.1f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            res = run_size(model, n, Path(tmp), args.batch_size, args.chunksize, args.repeat)
            report(res)
    method = "VmHWM (reset per stage)" if _status_kb("VmHWM") is not None else "ru_maxrss"
    print(
        f"\npeak MB: peak resident memory above the stage's start, from {method}; "
        "CPU columns use time.process_time() (less sensitive to other load than wall time)"
    )


if __name__ == "__main__":
    main()
