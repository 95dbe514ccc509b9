"""Training and morphing throughput of the paper's architecture on CPU, 1 and 2 threads.

Architecture: autoregressive rational-quadratic splines, 8 layers, 128 hidden units, 2
residual blocks, 8 bins, 5 features, 1 condition (the F4F LHCO set-up). Measured:

- density training (NLL forward + backward + Adam step) in events/s at batch 128 and at the
  package default batch size (TrainConfig().batch_size);
- bidirectional morph training (both directions, frozen density bases);
- morphing (source -> target, the single-pass direction) and its inverse (D passes), in
  float64 (the Morpher default) and float32.

Usage: ``python benchmarks/train_speed.py [--steps N] [--quick]``. Prints one table and the
ratios measured in this run; no result is asserted anywhere.
"""

from __future__ import annotations

import argparse
import time

import torch

from coffea_f4f import flows
from coffea_f4f.config import FlowConfig, TrainConfig
from coffea_f4f.maps import FlowMap

DIM, CTX = 5, 1
PAPER = FlowConfig(kind="autoregressive", layers=8, hidden=128, blocks=2, bins=8, tail_bound=4.0)


def _timed(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def density_training(batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = flows.build_density_flow(DIM, PAPER, context_dim=CTX)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, c = torch.randn(batch, DIM), torch.randn(batch, CTX)

    def step():
        loss = -flows.log_prob(model, x, c).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return batch / _timed(step, steps)


def morph_training(batch: int, steps: int) -> float:
    torch.manual_seed(0)
    base_t = flows.FlowAsBase(flows.build_density_flow(DIM, PAPER, context_dim=CTX))
    base_s = flows.FlowAsBase(flows.build_density_flow(DIM, PAPER, context_dim=CTX))
    morph = FlowMap(flows.build_layers(DIM, PAPER, context_dim=CTX, identity_init=True), CTX)
    opt = torch.optim.Adam(morph.parameters(), lr=1e-4)
    xs, xt, c = torch.randn(batch, DIM), torch.randn(batch, DIM), torch.randn(batch, CTX)

    def step():
        y, ld = flows.to_base(morph, xs, c)
        loss = -(base_t.log_prob(y, c) + ld).mean()
        y2, ld2 = flows.from_base(morph, xt, c)
        loss = loss - (base_s.log_prob(y2, c) + ld2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return 2 * batch / _timed(step, steps)  # events of both datasets per step


def morphing(n: int, dtype: torch.dtype, inverse: bool) -> float:
    torch.manual_seed(0)
    morph = FlowMap(flows.build_layers(DIM, PAPER, context_dim=CTX), CTX).to(dtype).eval()
    x, c = torch.randn(n, DIM, dtype=dtype), torch.randn(n, CTX, dtype=dtype)
    fn = flows.from_base if inverse else flows.to_base
    with torch.no_grad():
        return n / _timed(lambda: fn(morph, x, c), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--quick", action="store_true", help="fewer steps and events")
    args = parser.parse_args()
    steps = 5 if args.quick else args.steps
    n_apply = 10_000 if args.quick else 50_000
    default_bs = TrainConfig().batch_size
    rows: dict[tuple[str, int], float] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for bs in (128, default_bs):
            rows[(f"density training, batch {bs}", threads)] = density_training(bs, steps)
            rows[(f"morph training (bidirectional), batch {bs}", threads)] = morph_training(
                bs, steps
            )
        for dtype in (torch.float64, torch.float32):
            name = str(dtype).replace("torch.", "")
            rows[(f"morph source->target, {name}", threads)] = morphing(n_apply, dtype, False)
            rows[(f"inverse target->source, {name}", threads)] = morphing(n_apply, dtype, True)

    print(f"torch {torch.__version__}; architecture: {PAPER}; D={DIM}, condition={CTX}")
    print(f"{'measurement (events/s)':<48} {'1 thread':>10} {'2 threads':>10} {'2t/1t':>7}")
    names = list(dict.fromkeys(k[0] for k in rows))
    for name in names:
        one, two = rows[(name, 1)], rows[(name, 2)]
        print(f"{name:<48} {one:>10.0f} {two:>10.0f} {two / one:>7.2f}")
    print("\nratios (1 thread):")
    r = {k[0]: v for k, v in rows.items() if k[1] == 1}
    density_default = r[f"density training, batch {default_bs}"]
    morph_default = r[f"morph training (bidirectional), batch {default_bs}"]
    print(
        f"  density training batch {default_bs} / batch 128: "
        f"{density_default / r['density training, batch 128']:.2f}"
    )
    print(
        f"  morph training / density training (batch {default_bs}): "
        f"{morph_default / density_default:.2f}"
    )
    print(
        f"  inverse / morph (float64): "
        f"{r['inverse target->source, float64'] / r['morph source->target, float64']:.2f}"
    )
    print(
        f"  float32 / float64 morphing: "
        f"{r['morph source->target, float32'] / r['morph source->target, float64']:.2f}"
    )


if __name__ == "__main__":
    main()
