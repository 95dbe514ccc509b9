"""GPU check: train and morph the same small problem on CPU and CUDA; compare; time both.

1. Apply one CPU-trained Morpher on CPU and on CUDA (float64): results must agree to 1e-9.
2. The fused spline passes against normflows' own on CUDA (float64, both directions, values
   and log-dets): must agree to 1e-9.
3. Train the same morph (same seed) on one CPU thread and with ``device="auto"`` (CUDA):
   training differs in float rounding only, so both morphs must reach a similar quality
   (C2ST AUC within 0.03) and move events by similar amounts. Training runs in float32
   without automatic mixed precision (coffea-f4f never enables AMP).
4. Print the training speed-up (CUDA / one CPU thread) at batch 4096 and the morphing one.

Usage: ``python benchmarks/gpu_check.py [--n 20000] [--epochs 3] [--batch 4096]``. Exits 0
with a note when CUDA is not available. Prints its figures; asserts nothing but the agreement
checks (exit code 1 when one fails).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from coffea_f4f import datasets, flows, metrics, splines
from coffea_f4f.config import FlowConfig, TrainConfig
from coffea_f4f.train import fit_morpher


def train(device: str, n: int, epochs: int, batch: int):
    xs = datasets.toy("gaussian", n, seed=1)
    xt = datasets.toy("shifted_gaussian", n, seed=2)
    cfg = FlowConfig(layers=6, hidden=128)
    t0 = time.perf_counter()
    m = fit_morpher(
        xs,
        xt,
        features=["x", "y"],
        flow=cfg,
        density=cfg,
        train=TrainConfig(
            epochs=epochs,
            batch_size=batch,
            lr=2e-3,
            device=device,
            progress=False,
            patience=None,
            num_threads=1 if device == "cpu" else None,
        ),
    )
    return m, time.perf_counter() - t0


def fused_agree() -> bool:
    """The fused spline passes and normflows' own on CUDA, float64."""
    torch.manual_seed(0)
    worst = 0.0
    for kind in ("autoregressive", "coupling"):
        cfg = FlowConfig(kind=kind, layers=4, hidden=64, bins=8)
        flow = flows.build_density_flow(5, cfg, context_dim=2).double().cuda()
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(4096, 5, dtype=torch.float64, device="cuda")
        c = torch.randn(4096, 2, dtype=torch.float64, device="cuda")
        for fn in (flows.to_base, flows.from_base):
            with torch.no_grad():
                y, ld = fn(flow, x, c)
                with splines.reference():
                    y_ref, ld_ref = fn(flow, x, c)
            worst = max(worst, float((y - y_ref).abs().max()), float((ld - ld_ref).abs().max()))
    ok = worst < 1e-9
    print(
        f"fused vs normflows passes on CUDA: max |diff| = {worst:.2e} "
        f"-> {'OK' if ok else 'MISMATCH'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4096)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("CUDA is not available here: nothing to compare (run this on a GPU machine).")
        return 0
    print(
        f"torch {torch.__version__}, device {torch.cuda.get_device_name(0)}, "
        f"CPU threads {torch.get_num_threads()}"
    )
    ok_fused = fused_agree()
    m_cpu, t_cpu = train("cpu", args.n, args.epochs, args.batch)
    m_gpu, t_gpu = train("auto", args.n, args.epochs, args.batch)

    hs = datasets.toy("gaussian", 200_000, seed=11)
    ht = datasets.toy("shifted_gaussian", 5000, seed=12)
    m_cpu.to("cpu")
    t0 = time.perf_counter()
    y_cpu = m_cpu.morph(hs)
    tm_cpu = time.perf_counter() - t0
    m_cpu.to("cuda")
    m_cpu.morph(hs[:1000])  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    y_cuda = m_cpu.morph(hs)
    torch.cuda.synchronize()
    tm_gpu = time.perf_counter() - t0
    m_cpu.to("cpu")
    diff = float(np.abs(y_cpu - y_cuda).max())
    ok_apply = diff < 1e-9

    y_gpu_model = m_gpu.morph(hs[:5000])
    auc_cpu, sigma = metrics.c2st_auc(y_cpu[:5000], ht)
    auc_gpu, _ = metrics.c2st_auc(y_gpu_model, ht)
    move_cpu = metrics.distance_moved(hs[:5000], y_cpu[:5000]).mean()
    move_gpu = metrics.distance_moved(hs[:5000], y_gpu_model).mean()
    ok_train = abs(auc_cpu - auc_gpu) < 0.03

    print(
        f"same model, CPU vs CUDA morph (float64): max |diff| = {diff:.2e} "
        f"-> {'OK' if ok_apply else 'MISMATCH'}"
    )
    print(f"trained on CPU : AUC {auc_cpu:.3f} +- {sigma:.3f}, moved {move_cpu:.3f}, {t_cpu:.1f} s")
    print(
        f"trained on CUDA: AUC {auc_gpu:.3f} +- {sigma:.3f}, moved {move_gpu:.3f}, "
        f"{t_gpu:.1f} s -> {'OK' if ok_train else 'MISMATCH'}"
    )
    print(
        f"speed-up CUDA / one CPU thread: training {t_cpu / t_gpu:.2f}x (batch {args.batch}, "
        f"float32, no AMP), morphing {tm_cpu / tm_gpu:.2f}x ({len(hs)} events, float64, "
        "the CPU side on torch's default threads)"
    )
    return 0 if ok_apply and ok_train and ok_fused else 1


if __name__ == "__main__":
    sys.exit(main())
