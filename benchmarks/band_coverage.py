"""Calibration of the ensemble band on a 1-D problem whose exact morph is known.

Source ``x ~ N(0, 1)``, target ``y = exp(0.5 z) + z / 4`` with ``z ~ N(0, 1)``: a skewed
target. In one dimension a monotone map that pushes the source onto the target is unique, the
quantile map ``T(x) = F_t^-1(F_s(x))``, which here is ``exp(0.5 x) + x / 4`` (increasing). A
flow morph in 1-D is monotone, so the truth of every held-out event is known.

For each training size the script fits ``fit_morpher(..., ensemble=K)`` and reports how often
the truth ``T(x)`` of held-out source events lies inside nominal +- k sigma (k = 1, 2), where
sigma is the std over the members. Gaussian-calibrated bands give 0.683 and 0.954.

Run: ``python benchmarks/band_coverage.py [--sizes 1000 4000 16000] [--members 10] [--seeds 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import coffea_f4f as f4f

#: the architecture and training of the study (small: one feature)
FLOW = f4f.FlowConfig(layers=2, hidden=32, blocks=1, bins=8)
TRAIN = f4f.TrainConfig(
    epochs=30, batch_size=256, lr=1e-3, patience=8, progress=False, device="cpu"
)


def truth(x: np.ndarray) -> np.ndarray:
    """The exact (quantile) map of the study."""
    return np.exp(0.5 * x) + x / 4


def samples(n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=n)}, {"x": truth(rng.normal(size=n))}


def fit(
    n: int,
    members: int,
    seed: int,
    *,
    jobs: int | None = 1,
    flow: f4f.FlowConfig = FLOW,
    train: f4f.TrainConfig = TRAIN,
) -> tuple[f4f.Morpher, float]:
    """One ensemble fitted on ``n`` events per side, and its CPU seconds (this process)."""
    src, tgt = samples(n, seed)
    t0 = time.process_time()
    m = f4f.fit_morpher(
        src,
        tgt,
        features=["x"],
        density=flow,
        flow=flow,
        train=train.replace(seed=seed),
        ensemble=members,
        ensemble_jobs=jobs,
    )
    return m, time.process_time() - t0


def held_out(seed: int, n: int = 4000) -> np.ndarray:
    """Source events the fits never saw, ``(n, 1)``."""
    return np.random.default_rng(seed + 1000).normal(size=(n, 1))


def coverage(m: f4f.Morpher, x: np.ndarray) -> dict[str, float]:
    """How often the exact morph of ``x`` lies inside nominal +- k sigma (k = 1, 2)."""
    band = m.variations(x, with_nominal=True)
    nominal, up, down = band["nominal"][:, 0], band["up"][:, 0], band["down"][:, 0]
    sigma = (up - down) / 2  # in feature units (the band is symmetric in the scaled space)
    err = np.abs(nominal - truth(x[:, 0]))
    return {
        "cover1": float(np.mean(err <= sigma)),
        "cover2": float(np.mean(err <= 2 * sigma)),
        "rms_error": float(np.sqrt(np.mean(err**2))),
        "rms_sigma": float(np.sqrt(np.mean(sigma**2))),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args()
    print(f"members K={args.members}, {args.seeds} seeds per size, held-out 4000 events")
    print(
        f"{'N':>7} {'cover 1 sigma':>14} {'cover 2 sigma':>14} {'rms error':>10} "
        f"{'rms sigma':>10} {'CPU s':>7}"
    )
    for n in args.sizes:
        rows = []
        for seed in range(args.seeds):
            m, cpu = fit(n, args.members, seed, jobs=args.jobs)
            rows.append({**coverage(m, held_out(seed)), "cpu_s": cpu})
        c1 = np.array([r["cover1"] for r in rows])
        c2 = np.array([r["cover2"] for r in rows])
        print(
            f"{n:>7} {c1.mean():>8.3f} +- {c1.std():.2f} {c2.mean():>8.3f} +- {c2.std():.2f} "
            f"{np.mean([r['rms_error'] for r in rows]):>10.4f} "
            f"{np.mean([r['rms_sigma'] for r in rows]):>10.4f} "
            f"{np.mean([r['cpu_s'] for r in rows]):>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
