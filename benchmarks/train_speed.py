"""Training-step throughput at the paper's architecture, side by side with the reference code.

The paper's set-up (F4F on LHCO): masked autoregressive rational-quadratic splines, 128 hidden
units, 8 bins, tail bound 4; densities 4 layers x 2 residual blocks, the morph 8 layers x 3
blocks; 5 features at each mjj (the dijet sampler's ``mj1, delta_mj, tau21_j1, tau21_j2,
delta_r``, condition ``mjj``), standardised. One CPU thread, CPU time (``time.process_time``).

Three implementations of the same steps on the same batches:

- ``nflows``: the paper's reference library (``_nflows_reference.py``), run in its own
  environment (``--ref-python``; by default ``benchmarks/.reference-env``, created with
  ``pip install torch==2.13.0 nflows hep_ml`` when missing; the column is skipped with a
  message when that fails, e.g. offline);
- ``before``: coffea-f4f with normflows' own layer passes and unfused Adam (main before the
  fused passes);
- ``now``: coffea-f4f as it trains (fused spline passes, fused Adam).

A density step is NLL forward + backward + Adam; a bidirectional morph step scores a source
batch (single pass) and a target batch (the ``D``-pass inverse) under the frozen densities and
takes one Adam step; events of both batches count. Rounds are interleaved and the median taken.
``--profile`` splits ``now`` and ``before`` steps into forward, backward and optimizer time.
Morphing (no gradients) is timed in float64 (the Morpher default) and float32.

Usage: ``python benchmarks/train_speed.py [--quick] [--rounds R] [--steps N] [--profile]``.
Prints tables and the ratios measured in this run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _settings import reference_python  # benchmarks/_settings.py, beside this script

from coffea_f4f import flows, splines
from coffea_f4f.config import FlowConfig, TrainConfig
from coffea_f4f.datasets import dijet
from coffea_f4f.maps import FlowMap
from coffea_f4f.train.loop import adam

HERE = Path(__file__).resolve().parent
FEATURES = ["mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r"]
DENSITY = FlowConfig(layers=4, hidden=128, blocks=2, bins=8, tail_bound=4.0)
MORPH = FlowConfig(layers=8, hidden=128, blocks=3, bins=8, tail_bound=4.0)
LR = 1e-4


# ----------------------------------------------------------------------------- data
def dijet_arrays(n: int) -> dict[str, np.ndarray]:
    """Standardised sim (source) and data (target) dijets with their mjj (the condition)."""
    sim, data = dijet(n, kind="sim", seed=1), dijet(n, kind="data", seed=2)
    xs = np.stack([np.asarray(sim[f], dtype=np.float64) for f in FEATURES], 1)
    xt = np.stack([np.asarray(data[f], dtype=np.float64) for f in FEATURES], 1)
    mu, sd = xs.mean(0), xs.std(0)
    cs, ct = np.asarray(sim["mjj"], dtype=np.float64), np.asarray(data["mjj"], dtype=np.float64)
    cm, csd = cs.mean(), cs.std()
    return {
        "xs": ((xs - mu) / sd).astype(np.float32),
        "xt": ((xt - mu) / sd).astype(np.float32),
        "cs": ((cs - cm) / csd).astype(np.float32)[:, None],
        "ct": ((ct - cm) / csd).astype(np.float32)[:, None],
    }


def batches(x: torch.Tensor, c: torch.Tensor, n: int, size: int, seed: int) -> list:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        i = torch.randint(len(x), (size,), generator=gen)
        out.append((x[i], c[i]))
    return out


# ----------------------------------------------------------------------------- ours
def _optimizer(params, fused: bool) -> torch.optim.Optimizer:
    return adam(params, TrainConfig(lr=LR)) if fused else torch.optim.Adam(params, lr=LR)


class Steps:
    """coffea-f4f's density and bidirectional morph steps on the paper architecture."""

    def __init__(self, data: dict[str, np.ndarray], fused: bool) -> None:
        torch.manual_seed(0)
        self.fused = fused
        self.t = {k: torch.as_tensor(v) for k, v in data.items()}
        dim = self.t["xs"].shape[1]
        self.density = flows.build_density_flow(dim, DENSITY, context_dim=1)
        self.dopt = _optimizer(list(self.density.parameters()), fused)
        self.base_t = flows.FlowAsBase(flows.build_density_flow(dim, DENSITY, context_dim=1))
        self.base_s = flows.FlowAsBase(flows.build_density_flow(dim, DENSITY, context_dim=1))
        self.morph = FlowMap(flows.build_layers(dim, MORPH, context_dim=1), 1)
        self.mopt = _optimizer(list(self.morph.parameters()), fused)

    def _passes(self):
        return splines.reference() if not self.fused else contextlib.nullcontext()

    def density_loss(self, x, c):
        return -flows.log_prob(self.density, x, c).mean()

    def morph_loss(self, src, tgt):
        y, ld = flows.to_base(self.morph, *src)
        loss = -(self.base_t.log_prob(y, src[1]) + ld).mean()
        y, ld = flows.from_base(self.morph, *tgt)
        return loss - (self.base_s.log_prob(y, tgt[1]) + ld).mean()

    def density_step(self, x, c, phases=None):
        self._step(self.dopt, lambda: self.density_loss(x, c), phases)

    def morph_step(self, src, tgt, phases=None):
        self._step(self.mopt, lambda: self.morph_loss(src, tgt), phases)

    def _step(self, opt, loss_fn, phases) -> None:
        with self._passes():
            t0 = time.process_time()
            loss = loss_fn()
            t1 = time.process_time()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.process_time()
            opt.step()
            t3 = time.process_time()
        if phases is not None:
            phases["forward"] += t1 - t0
            phases["backward"] += t2 - t1
            phases["optimizer"] += t3 - t2


def per_cpu_second(step, batch_list, events_per_step: int) -> float:
    step(*batch_list[0])  # warm-up
    t0 = time.process_time()
    for b in batch_list[1:]:
        step(*b)
    return events_per_step * (len(batch_list) - 1) / (time.process_time() - t0)


def ours(data, batch: int, steps: int, fused: bool) -> dict[str, float]:
    with flows.torch_threads(1):
        s = Steps(data, fused)
        t = s.t
        dens = per_cpu_second(s.density_step, batches(t["xt"], t["ct"], steps + 1, batch, 1), batch)
        pairs = list(
            zip(
                batches(t["xs"], t["cs"], steps + 1, batch, 2),
                batches(t["xt"], t["ct"], steps + 1, batch, 3),
                strict=True,
            )
        )
        morph = per_cpu_second(s.morph_step, pairs, 2 * batch)
    return {"density": dens, "morph": morph}


def profile(data, batch: int, steps: int) -> None:
    print(f"\nwhere a step's CPU time goes, batch {batch} (ms per step, {steps} steps):")
    print(f"{'':<26} {'forward':>9} {'backward':>9} {'optimizer':>9} {'total':>9}")
    with flows.torch_threads(1):
        for fused in (False, True):
            s = Steps(data, fused)
            t = s.t
            for name in ("density", "morph"):
                phases = dict.fromkeys(("forward", "backward", "optimizer"), 0.0)
                if name == "density":
                    bl = batches(t["xt"], t["ct"], steps + 1, batch, 1)
                    s.density_step(*bl[0])
                    for b in bl[1:]:
                        s.density_step(*b, phases=phases)
                else:
                    src = batches(t["xs"], t["cs"], steps + 1, batch, 2)
                    tgt = batches(t["xt"], t["ct"], steps + 1, batch, 3)
                    s.morph_step(src[0], tgt[0])
                    for a, b in zip(src[1:], tgt[1:], strict=True):
                        s.morph_step(a, b, phases=phases)
                ms = {k: 1e3 * v / steps for k, v in phases.items()}
                label = f"{name}, {'now' if fused else 'before'}"
                print(
                    f"{label:<26} {ms['forward']:>9.1f} {ms['backward']:>9.1f} "
                    f"{ms['optimizer']:>9.1f} {sum(ms.values()):>9.1f}"
                )


# ----------------------------------------------------------------------------- reference
def reference(py: str, npz: str, batch: int, steps: int) -> dict[str, float] | None:
    args = [DENSITY.layers, DENSITY.blocks, MORPH.layers, MORPH.blocks, MORPH.hidden, MORPH.bins]
    cmd = [py, str(HERE / "_nflows_reference.py"), npz, str(batch), str(steps)]
    cmd += [str(a) for a in args] + [str(MORPH.tail_bound)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        print(f"nflows run failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- morphing
def morphing(n: int, dtype: torch.dtype, inverse: bool, fused: bool) -> float:
    torch.manual_seed(0)
    morph = FlowMap(flows.build_layers(5, MORPH, context_dim=1), 1).to(dtype).eval()
    x, c = torch.randn(n, 5, dtype=dtype), torch.randn(n, 1, dtype=dtype)
    fn = flows.from_base if inverse else flows.to_base
    with (
        torch.no_grad(),
        flows.torch_threads(1),
        contextlib.nullcontext() if fused else splines.reference(),
    ):
        fn(morph, x[:1000], c[:1000])
        t0 = time.process_time()
        fn(morph, x, c)
        return n / (time.process_time() - t0)


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--quick", action="store_true", help="1 round of 4 steps")
    parser.add_argument("--ref-python", help="python of an environment with torch and nflows")
    parser.add_argument("--no-install", action="store_true", help="do not create one")
    parser.add_argument("--profile", action="store_true", help="forward/backward/optimizer split")
    args = parser.parse_args()
    steps, rounds = (4, 1) if args.quick else (args.steps, args.rounds)
    sizes = (128, TrainConfig().batch_size)
    data = dijet_arrays(20_000)
    py = reference_python(args.ref_python, not args.no_install)

    cells: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        npz = str(Path(tmp) / "dijets.npz")
        np.savez(npz, **data)
        for r in range(rounds):
            for batch in sizes:
                runs = {
                    "before": ours(data, batch, steps, False),
                    "now": ours(data, batch, steps, True),
                }
                ref = reference(py, npz, batch, steps) if py else None
                if ref is not None:
                    runs["nflows"] = ref
                for impl, res in runs.items():
                    for what in ("density", "morph"):
                        cells.setdefault((what, batch, impl), []).append(res[what])
            print(f"round {r + 1}/{rounds} done", flush=True)

    med = {k: statistics.median(v) for k, v in cells.items()}
    print(f"\ntorch {torch.__version__}, 1 thread; density {DENSITY}; morph {MORPH}")
    print("training, events per CPU-second (median of the rounds):")
    print(
        f"{'step':<34} {'nflows':>8} {'before':>8} {'now':>8} {'now/nflows':>11} {'now/before':>11}"
    )
    for what in ("density", "morph"):
        for batch in sizes:
            ref = med.get((what, batch, "nflows"))
            before, now = med[(what, batch, "before")], med[(what, batch, "now")]
            label = f"{what}{' (bidirectional)' if what == 'morph' else ''}, batch {batch}"
            ref_s = f"{ref:>8.0f}" if ref else f"{'-':>8}"
            ratio = f"{now / ref:>11.2f}" if ref else f"{'-':>11}"
            print(f"{label:<34} {ref_s} {before:>8.0f} {now:>8.0f} {ratio} {now / before:>11.2f}")
    if py is None:
        print("(no nflows column: see the message above)")

    n_apply = 10_000 if args.quick else 50_000
    print(f"\nmorphing {n_apply} events (paper morph, no gradients), events per CPU-second:")
    print(f"{'':<34} {'before':>8} {'now':>8} {'now/before':>11}")
    rates = {}
    for dtype in (torch.float64, torch.float32):
        name = str(dtype).replace("torch.", "")
        for inverse in (False, True):
            label = f"{'inverse target->source' if inverse else 'source->target'}, {name}"
            b, n = (morphing(n_apply, dtype, inverse, f) for f in (False, True))
            rates[(name, inverse)] = n
            print(f"{label:<34} {b:>8.0f} {n:>8.0f} {n / b:>11.2f}")
    fwd = rates[("float32", False)] / rates[("float64", False)]
    inv = rates[("float32", True)] / rates[("float64", True)]
    print(f"float32 / float64: source->target {fwd:.2f}, inverse {inv:.2f}")
    if args.profile:
        for batch in sizes:
            profile(data, batch, steps)


if __name__ == "__main__":
    main()
