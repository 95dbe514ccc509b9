"""Generation speed of :mod:`coffea_f4f.datasets`: the dijet sampler and the toy shapes.

Measured with ``time.process_time`` (CPU time of this process, so a loaded shared machine
slows it less than wall time would): the dijet sampler for ``kind="sim"`` and ``"data"`` at
several sizes, ``dijet_fatjets`` (the sampler plus per-jet four-vectors), and every toy shape.
Each measurement is the best of ``--repeat`` runs.

Usage: ``python benchmarks/datasets_speed.py [--n N] [--repeat R] [--quick]``. Prints the
events per CPU second side by side and the ratios measured in this run; no result is asserted
anywhere. (This replaces a wall-clock assertion that used to live in tests/test_datasets.py:
1e6 dijet events under 5 s.)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from coffea_f4f import datasets


def _cpu_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Best CPU time of ``repeat`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return max(best, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="largest dijet sample")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--quick", action="store_true", help="n = 100k, one timed run")
    args = parser.parse_args()
    n_max = 100_000 if args.quick else args.n
    repeat = 1 if args.quick else args.repeat
    sizes = sorted({max(n_max // 100, 1), max(n_max // 10, 1), n_max})

    print(f"dijet sampler, events per CPU second (best of {repeat}; time.process_time)")
    print(
        f"{'n':>10} {'sim':>12} {'data':>12} {'data/sim':>9} {'fatjets':>12} {'fj/dijet':>9}"
        f" {'data CPU s':>11}"
    )
    rates: dict[tuple[str, int], float] = {}
    for n in sizes:
        for kind in ("sim", "data"):
            rates[(kind, n)] = n / _cpu_seconds(
                lambda n=n, kind=kind: datasets.dijet(n, kind=kind, seed=3), repeat
            )
        rates[("fatjets", n)] = n / _cpu_seconds(
            lambda n=n: datasets.dijet_fatjets(n, kind="data", seed=3), repeat
        )
        sim, data, fj = rates[("sim", n)], rates[("data", n)], rates[("fatjets", n)]
        print(
            f"{n:>10} {sim:>12.0f} {data:>12.0f} {data / sim:>9.2f} {fj:>12.0f}"
            f" {fj / data:>9.2f} {n / data:>11.3f}"
        )
    small, large = sizes[0], sizes[-1]
    print(
        f"\nratio of throughputs, n = {large} / n = {small} (data): "
        f"{rates[('data', large)] / rates[('data', small)]:.2f}  (1 = linear scaling)"
    )

    n_toy = max(n_max // 10, 1)
    print(f"\ntoy shapes, n = {n_toy}: events per CPU second and relative to 'gaussian'")
    toy_rates = {
        name: n_toy / _cpu_seconds(lambda name=name: datasets.toy(name, n_toy), repeat)
        for name in datasets.TOY_NAMES
    }
    ref = toy_rates.get("gaussian", next(iter(toy_rates.values())))
    print(f"{'shape':<18} {'events/s':>12} {'vs gaussian':>12}")
    for name, rate in toy_rates.items():
        print(f"{name:<18} {rate:>12.0f} {rate / ref:>12.2f}")


if __name__ == "__main__":
    main()
