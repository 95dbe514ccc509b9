"""What the benchmarks share: how they train (imported as ``_settings`` by the scripts here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from coffea_f4f.config import TrainConfig

__all__ = ["REFERENCE_PACKAGES", "fixed_train", "reference_python"]

#: The peers the benchmarks compare with, installed in their own environment (never in the
#: project's): the paper's flow library and the reweighter users pick instead.
REFERENCE_PACKAGES = ("nflows", "hep_ml")
REFERENCE_ENV = Path(__file__).resolve().parent / ".reference-env"


def fixed_train(epochs: int, *, batch_size: int, lr: float, seed: int) -> TrainConfig:
    """A benchmark's training: every epoch runs (no early stopping, so variants are compared
    at equal work), no progress bars, one CPU thread."""
    return TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=None,
        progress=False,
        num_threads=1,
        seed=seed,
        device="cpu",
    )


def reference_python(path: str | None, install: bool = True) -> str | None:
    """The interpreter of the reference environment (torch 2.13.0 + :data:`REFERENCE_PACKAGES`):
    ``path`` when given, else ``benchmarks/.reference-env``, created with pip when missing and
    ``install``. None, with the reason printed, when there is none (e.g. offline)."""
    if path:
        return path
    py = REFERENCE_ENV / "bin" / "python"
    if py.exists():
        return str(py)
    if not install:
        print("reference columns skipped: no reference environment (pass --ref-python)")
        return None
    print(f"creating {REFERENCE_ENV} (torch==2.13.0, {', '.join(REFERENCE_PACKAGES)}) ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(REFERENCE_ENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run([*pip, *REFERENCE_PACKAGES], check=True)
    except (subprocess.CalledProcessError, OSError) as err:
        print(f"reference columns skipped: could not install {REFERENCE_PACKAGES} ({err})")
        return None
    return str(py)
