"""What a worker pays to build a MorphTransform's model, before and after the restructuring.

Before (coffea-f4f up to the structure issue), unpickling a transform and building its model
built the map three times (twice only to find the architecture-determined buffers, once to
load) and then held the float32 map *and* a float64 copy. Now ``Morpher.from_payload`` builds
the map once and converts it in place, so the worker holds one float64 copy.

This script measures both on a paper-size map (autoregressive RQ splines, 8 layers x 128
hidden, 5 features), interleaving the two so that machine noise hits both alike, and prints
CPU time (``time.process_time``) and the bytes of tensors held, side by side with the ratio.
The "before" path is re-enacted with today's building blocks (three builds, a deep copy).

Usage::

    python benchmarks/transform_build.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from coffea_f4f import FlowConfig, TrainConfig, fit_morpher
from coffea_f4f.maps import build_map
from coffea_f4f.morpher import Morpher


def tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def before(config: bytes, weights: bytes) -> list[torch.nn.Module]:
    import json

    spec = json.loads(config.decode())["map"]
    for seed in (1, 2):  # the old way of finding the architecture buffers
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            build_map(spec)
    m = Morpher.from_payload(config, weights, precision="float32")  # the third build
    applied = copy.deepcopy(m.module).to(torch.float64)  # the applied copy beside it
    return [m.module, applied]


def after(config: bytes, weights: bytes) -> list[torch.nn.Module]:
    return [Morpher.from_payload(config, weights, precision="float64").module]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(600, 5)), rng.normal(size=(600, 5)) + 0.5
    small = FlowConfig(layers=1, hidden=8, blocks=1)
    morph = FlowConfig(layers=8, hidden=128, blocks=3)
    cfg = TrainConfig(epochs=1, progress=False, num_threads=1)
    names = [f"x{i}" for i in range(5)]
    m = fit_morpher(a, b, features=names, flow=morph, density=small, train=cfg)
    config, weights = m.payload()
    times: dict[str, list[float]] = {"before": [], "after": []}
    held = {}
    for _ in range(args.repeat):
        for name, fn in (("before", before), ("after", after)):
            t0 = time.process_time()
            modules = fn(config, weights)
            times[name].append(time.process_time() - t0)
            held[name] = sum(tensor_bytes(x) for x in modules)
    tb, ta = min(times["before"]), min(times["after"])
    print(f"payload: {(len(config) + len(weights)) / 1e6:.2f} MB (config JSON + safetensors)")
    print(f"{'':>20} {'before':>10} {'after':>10} {'before/after':>13}")
    print(f"{'build CPU s (best)':>20} {tb:>10.3f} {ta:>10.3f} {tb / ta:>13.2f}")
    print(
        f"{'tensors held, MB':>20} {held['before'] / 1e6:>10.2f} {held['after'] / 1e6:>10.2f} "
        f"{held['before'] / held['after']:>13.2f}"
    )


if __name__ == "__main__":
    main()
