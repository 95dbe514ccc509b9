"""The reference side of ``train_speed.py``: the same training steps written with nflows.

Run by ``train_speed.py`` in its own environment (torch + nflows, no coffea-f4f):
``python _nflows_reference.py DATA.npz BATCH STEPS DENSITY_LAYERS DENSITY_BLOCKS MORPH_LAYERS
MORPH_BLOCKS HIDDEN BINS TAIL_BOUND``. Prints one JSON line: events per CPU-second of a density
step and of a bidirectional morph step, one thread.

The architecture is the paper's (nflows masked autoregressive rational-quadratic splines with
linear tails, residual MADE blocks, a reversal after each layer, Adam). A bidirectional morph
step scores a source batch through the morph's single-pass direction under the frozen target
density and a target batch through its ``D``-pass inverse under the frozen source density, one
Adam step on the sum (the same step coffea-f4f takes).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from nflows import distributions, flows, transforms


def maf(dim: int, ctx: int, layers: int, blocks: int, hidden: int, bins: int, bound: float):
    steps: list[transforms.Transform] = []
    for _ in range(layers):
        steps.append(
            transforms.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                dim,
                hidden,
                context_features=ctx,
                num_bins=bins,
                tails="linear",
                tail_bound=bound,
                num_blocks=blocks,
                use_residual_blocks=True,
            )
        )
        steps.append(transforms.ReversePermutation(dim))
    return transforms.CompositeTransform(steps)


def per_cpu_second(step, batches, events_per_step: int) -> float:
    step(*batches[0])  # warm-up
    t0 = time.process_time()
    for b in batches[1:]:
        step(*b)
    return events_per_step * (len(batches) - 1) / (time.process_time() - t0)


def main() -> None:
    path, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    dl, db, ml, mb, hidden, bins = (int(a) for a in sys.argv[4:10])
    bound = float(sys.argv[10])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = np.load(path)
    xs, cs, xt, ct = (
        torch.as_tensor(data[k], dtype=torch.float32) for k in ("xs", "cs", "xt", "ct")
    )
    dim, ctx = xs.shape[1], cs.shape[1]
    gen = torch.Generator().manual_seed(1)

    def batches(x, c, n):
        out = []
        for _ in range(n):
            i = torch.randint(len(x), (batch,), generator=gen)
            out.append((x[i], c[i]))
        return out

    def density():
        return flows.Flow(
            maf(dim, ctx, dl, db, hidden, bins, bound), distributions.StandardNormal([dim])
        )

    dens = density()
    opt = torch.optim.Adam(dens.parameters(), lr=1e-4)

    def density_step(x, c):
        loss = -dens.log_prob(x, context=c).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    density_rate = per_cpu_second(density_step, batches(xt, ct, steps + 1), batch)

    base_t, base_s = density(), density()
    for p in [*base_t.parameters(), *base_s.parameters()]:
        p.requires_grad_(False)
    morph = maf(dim, ctx, ml, mb, hidden, bins, bound)
    mopt = torch.optim.Adam(morph.parameters(), lr=1e-4)
    pairs = list(zip(batches(xs, cs, steps + 1), batches(xt, ct, steps + 1), strict=True))

    def morph_step(src, tgt):
        y, ld = morph(src[0], context=src[1])
        loss = -(base_t.log_prob(y, context=src[1]) + ld).mean()
        y, ld = morph.inverse(tgt[0], context=tgt[1])
        loss = loss - (base_s.log_prob(y, context=tgt[1]) + ld).mean()
        mopt.zero_grad()
        loss.backward()
        mopt.step()

    morph_rate = per_cpu_second(morph_step, pairs, 2 * batch)
    print(json.dumps({"density": density_rate, "morph": morph_rate, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
