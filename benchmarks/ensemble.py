"""What a bootstrap ensemble costs: training CPU and wall time, and applying the band.

Set-up: LHCO-like dijets (``datasets.dijet``), sim -> data, the demo's four features at each
event's ``mjj`` with the demo's scalings, small flows (the same for the densities and the
morph), every epoch run (``benchmarks/_settings.py``), one torch thread per process.

Printed, all from this one run:

- **(a) training CPU**: ``fit_morpher`` with ``ensemble=0`` (one morph) and with ``ensemble=5``
  on the same events and settings, after one untimed warm-up fit (the first fit of a process
  pays ~2 CPU s of one-off set-up). ``ensemble_jobs=1`` trains the members in this process, so
  ``time.process_time`` is the whole cost. With ``ensemble_jobs=2`` the members train in
  joblib's loky worker processes (children of this one); their CPU time is read from
  ``/proc/<pid>/stat`` while they live and from ``resource.getrusage(RUSAGE_CHILDREN)`` once
  they have exited. Each fit starts and stops its own workers (their start-up, imports and
  exit count with it); ``jobs=default`` is ``ensemble_jobs=None`` (one worker per core besides
  this process). Expected ratio ``ensemble=5 /
  ensemble=0`` about ``1 + 5 * 0.63 = 4.15``: each member repeats the whole fit on the rows
  with a non-zero Poisson(1) count (about 63% of them).
- **(b) training wall time** of the same fits, interleaved over ``--repeat`` rounds (the order
  reversed every other round). ``jobs=2`` runs three trainings at once (the nominal here, two
  workers) on however many cores the machine gives; on a shared machine wall times are noisy.
- **(c) applying**: events per CPU second (``time.process_time``, one torch thread) of
  ``Morpher.morph`` and ``Morpher.variations`` (K = 5: the nominal and five member passes)
  on the same held-out events, and of :class:`coffea_f4f.MorphTransform` on an awkward record
  array, with and without ``variations=True`` (where this version of the package has it).

Usage: ``python benchmarks/ensemble.py [--quick] [--repeat N]``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import inspect
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from _settings import fixed_train  # benchmarks/_settings.py, beside this script

import coffea_f4f as f4f
from coffea_f4f import datasets, demo
from coffea_f4f.config import FlowConfig

K = 5


@dataclass(frozen=True)
class Settings:
    """Events per kind for training and for applying, the flows, epochs, repeats."""

    n_train: int = 4_000
    n_apply: int = 20_000
    layers: int = 2
    hidden: int = 32
    epochs: int = 4
    batch_size: int = 512
    lr: float = 2e-3
    repeat: int = 2
    seed: int = 0


QUICK = {"n_train": 2_000, "n_apply": 5_000, "epochs": 2, "repeat": 1}


def _live_children() -> dict[int, float]:
    """``{pid: CPU seconds}`` of this process's live children (Linux ``/proc``; else empty)."""
    me, tick, out = os.getpid(), os.sysconf("SC_CLK_TCK"), {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == me:  # ppid; utime and stime follow
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _children_cpu() -> float:
    """CPU seconds of all children so far: the exited (waited for) and the live ones."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + sum(_live_children().values())


def _stop_workers() -> None:
    """Shut the loky workers down (waiting), so their CPU time reaches RUSAGE_CHILDREN."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor(max_workers=2).shutdown(wait=True)


@dataclass
class Timing:
    """CPU seconds of this process and of its (exited) workers, and wall seconds."""

    own: float
    workers: float
    wall: float

    @property
    def cpu(self) -> float:
        return self.own + self.workers


def fit(
    sim: Any, data: Any, s: Settings, ensemble: int, jobs: int | None
) -> tuple[f4f.Morpher, Timing]:
    """One ``fit_morpher`` call and its timing (with its workers' start and exit)."""
    flow = FlowConfig(layers=s.layers, hidden=s.hidden, blocks=1)
    child0, own0, wall0 = _children_cpu(), time.process_time(), time.perf_counter()
    morpher = f4f.fit_morpher(
        sim,
        data,
        features=demo.FEATURES,
        condition="mjj",
        scaling=demo.SCALING,
        flow=flow,
        density=flow,
        train=fixed_train(s.epochs, batch_size=s.batch_size, lr=s.lr, seed=s.seed),
        ensemble=ensemble,
        ensemble_jobs=jobs,
    )
    own, wall = time.process_time() - own0, time.perf_counter() - wall0
    return morpher, Timing(own, _children_cpu() - child0, wall)


def per_cpu_second(fn: Callable[[], Any], n: int, repeat: int) -> float:
    """Events per CPU second of ``fn`` (``n`` events a call): the best of ``repeat`` calls
    after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return n / max(best, 1e-9)


#: the timed fits: (row, ensemble, ensemble_jobs); each fit starts its own workers
FITS: list[tuple[str, int, int | None]] = [
    ("one morph (ensemble=0)", 0, 1),
    (f"ensemble={K}, jobs=1", K, 1),
    (f"ensemble={K}, jobs=2", K, 2),
    (f"ensemble={K}, jobs=default", K, None),
]


def training(s: Settings) -> tuple[f4f.Morpher, dict[str, list[Timing]]]:
    """The fits of :data:`FITS`, ``s.repeat`` interleaved rounds; the ``jobs=1`` ensemble."""
    sim = datasets.dijet(s.n_train, kind="sim", seed=s.seed + 1)
    data = datasets.dijet(s.n_train, kind="data", seed=s.seed + 2)
    fit(sim, data, replace(s, epochs=1), 0, 1)  # warm-up: the one-off set-up of a process
    runs: dict[str, list[Timing]] = {name: [] for name, _, _ in FITS}
    morpher = None
    for r in range(s.repeat):  # interleaved: a slow spell of the machine hits every row
        order = [FITS[0], FITS[1], FITS[2], FITS[3]] if r % 2 == 0 else [*FITS[2:], *FITS[1::-1]]
        for name, ensemble, jobs in order:
            m, t = fit(sim, data, s, ensemble, jobs)
            runs[name].append(t)
            print(
                f"  round {r + 1}: {name:<28} {t.own:6.1f} s CPU here + {t.workers:6.1f} s "
                f"in workers, {t.wall:6.1f} s wall",
                flush=True,
            )
            if ensemble and jobs == 1:
                morpher = m
    assert morpher is not None
    return morpher, runs


def applying(morpher: f4f.Morpher, s: Settings) -> dict[str, float]:
    import awkward as ak

    ev = datasets.dijet(s.n_apply, kind="sim", seed=s.seed + 11)
    x = np.column_stack([np.asarray(ev[f], dtype=np.float64) for f in demo.FEATURES])
    c = np.asarray(ev["mjj"], dtype=np.float64)
    n, rep = len(x), 3
    rates = {
        "Morpher.morph": per_cpu_second(lambda: morpher.morph(x, condition=c), n, rep),
        f"Morpher.variations (K={K})": per_cpu_second(
            lambda: morpher.variations(x, condition=c), n, rep
        ),
        f"Morpher.variations (K={K}, with_nominal)": per_cpu_second(
            lambda: morpher.variations(x, condition=c, with_nominal=True), n, rep
        ),
    }
    events = ak.Array({**{f: x[:, j] for j, f in enumerate(demo.FEATURES)}, "mjj": c})
    plain = f4f.MorphTransform(morpher, condition="mjj")
    rates["MorphTransform"] = per_cpu_second(lambda: plain(events), n, rep)
    if "variations" in inspect.signature(f4f.MorphTransform).parameters:
        band = f4f.MorphTransform(morpher, condition="mjj", variations=True)
        rates["MorphTransform(variations=True)"] = per_cpu_second(lambda: band(events), n, rep)
    return rates


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"smaller: {QUICK}")
    p.add_argument("--repeat", type=int, help="interleaved training rounds")
    args = p.parse_args(argv)
    s = replace(Settings(), **QUICK) if args.quick else Settings()
    if args.repeat:
        s = replace(s, repeat=args.repeat)

    import warnings

    import torch

    # a few applied mjj values lie beyond the training range; clamping them is the default
    warnings.filterwarnings("ignore", message=r".*outside the training range")
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    print(f"settings: {s}; torch {torch.__version__}", flush=True)
    morpher, runs = training(s)
    rates = applying(morpher, s)

    def mean(name: str, what: str) -> float:
        return float(np.mean([getattr(t, what) for t in runs[name]]))

    one_cpu, one_wall = mean(FITS[0][0], "cpu"), mean(FITS[0][0], "wall")
    print(
        f"\n(a) training CPU and (b) wall seconds, mean of {s.repeat} interleaved rounds "
        "(CPU: this process + its workers; wall: noisy on a shared host)"
    )
    head = f"{'fit':<28} {'CPU s':>7} {'/ one':>6} {'wall s':>7} {'/ one':>6}"
    print(head)
    print("-" * len(head))
    for name, _, _ in FITS:
        cpu, wall = mean(name, "cpu"), mean(name, "wall")
        print(f"{name:<28} {cpu:>7.1f} {cpu / one_cpu:>6.2f} {wall:>7.1f} {wall / one_wall:>6.2f}")
    j1, two, auto = (name for name, _, _ in FITS[1:])
    print(f"  (a) expected ensemble={K} / one morph: about 1 + {K} * 0.63 = {1 + K * 0.63:.2f}")
    print(
        f"  (a) workers - jobs=1 CPU: jobs=2 {mean(two, 'cpu') - mean(j1, 'cpu'):+.1f} s, "
        f"default {mean(auto, 'cpu') - mean(j1, 'cpu'):+.1f} s (starting and stopping the "
        "workers, and trainings sharing the cores)"
    )
    print(
        f"  (b) wall jobs=1 / workers: jobs=2 {mean(j1, 'wall') / mean(two, 'wall'):.2f}, "
        f"default {mean(j1, 'wall') / mean(auto, 'wall'):.2f} (> 1: the workers save time; "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}"
        f" cores visible, load average {os.getloadavg()[0]:.1f} at the end)"
    )

    print(f"\n(c) applying: events per CPU second on {s.n_apply} events (best of 3, 1 thread)")
    base = rates["Morpher.morph"]
    print(f"{'call':<42} {'events/CPU s':>13} {'/ morph':>8}")
    for name, rate in rates.items():
        print(f"{name:<42} {rate:>13.0f} {rate / base:>8.2f}")
    if "MorphTransform(variations=True)" not in rates:
        print("  (this MorphTransform has no variations=; that row is left out)")
    print(f"  expected variations / morph: about 1 / (1 + {K}) = {1 / (1 + K):.2f}")
    print(f"\nwall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
