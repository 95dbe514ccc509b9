"""Shared fixtures: small trained models (session scope, a few seconds each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coffea_f4f.config import FlowConfig, TrainConfig

TINY = FlowConfig(layers=2, hidden=16, blocks=1, bins=6)
QUICK = TrainConfig(epochs=2, batch_size=256, progress=False, num_threads=1)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests are small: one torch thread is faster and deterministic across machines."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def gaussian_pair(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A standard gaussian and a shifted, rotated, squeezed one (a known easy morph)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 2))
    rot = np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])
    b = rng.normal(size=(n, 2)) @ np.diag([1.3, 0.6]) @ rot.T + np.array([1.0, -0.7])
    return a, b


@pytest.fixture(scope="session")
def tiny_morpher():
    """A 2-feature bidirectional morpher trained for two epochs on gaussians."""
    a, b = gaussian_pair(2000)
    from coffea_f4f.train import fit_morpher

    torch.set_num_threads(1)
    return fit_morpher(
        {"x": a[:, 0], "y": a[:, 1]},
        {"x": b[:, 0], "y": b[:, 1]},
        features=["x", "y"],
        flow=TINY,
        density=TINY,
        train=QUICK,
    )


@pytest.fixture(scope="session")
def tiny_conditional_morpher():
    """A conditional (same-condition) morpher: the shift grows with the condition c."""
    rng = np.random.default_rng(1)
    n = 2000
    c = rng.uniform(0, 1, n)
    a = rng.normal(size=(n, 2))
    b = rng.normal(size=(n, 2)) + c[:, None]
    from coffea_f4f.train import fit_morpher

    torch.set_num_threads(1)
    return fit_morpher(
        {"x": a[:, 0], "y": a[:, 1], "c": c},
        {"x": b[:, 0], "y": b[:, 1], "c": c},
        features=["x", "y"],
        condition="c",
        flow=TINY,
        density=TINY,
        train=QUICK,
    )


@pytest.fixture(scope="session")
def tiny_ensemble():
    """``tiny_morpher``'s data and set-up with a bootstrap ensemble of 3 members."""
    a, b = gaussian_pair(2000)
    from coffea_f4f.train import fit_morpher

    torch.set_num_threads(1)
    return fit_morpher(
        {"x": a[:, 0], "y": a[:, 1]},
        {"x": b[:, 0], "y": b[:, 1]},
        features=["x", "y"],
        flow=TINY,
        density=TINY,
        train=QUICK,
        ensemble=3,
        ensemble_jobs=1,
    )
