"""What the benchmarks share: how they train (imported as ``_settings`` by the scripts here)."""

from __future__ import annotations

from coffea_f4f.config import TrainConfig

__all__ = ["fixed_train"]


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
