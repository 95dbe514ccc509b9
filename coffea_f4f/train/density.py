"""Density flows: :func:`fit_density` learns ``q(x | c)`` of one dataset by maximum
likelihood (also the density stages of the morph fits)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import flows
from ..config import FlowConfig, TrainConfig
from ..density import DensityModel
from ..scaling import Scaler
from .inputs import (
    Scaling,
    as_conditions,
    check_effective_size,
    check_names,
    extract,
    extract_weights,
    fit_scalers,
)
from .loop import Callback, Salt, Term, require_checkpoint, split, train_stage

__all__ = ["fit_density", "train_density"]


def train_density(
    x: np.ndarray,
    c: np.ndarray | None,
    *,
    features: list[str],
    conditions: list[str],
    scaler: Scaler,
    cscaler: Scaler | None,
    flow_cfg: FlowConfig,
    cfg: TrainConfig,
    desc: str,
    stage: str | None,
    callback: Callback | None,
    salt: Salt,
    weights: np.ndarray | None = None,
) -> DensityModel:
    z = scaler.forward(x)
    cz = None if c is None or cscaler is None else cscaler.forward(c)

    def build() -> torch.nn.Module:
        return flows.build_density_flow(
            len(features), flow_cfg, context_dim=0 if cscaler is None else cscaler.width
        )

    def terms(model: torch.nn.Module, device: str) -> list[Term]:
        def nll(xb: torch.Tensor, cb: torch.Tensor | None) -> torch.Tensor:
            return -flows.log_prob(model, xb, cb)

        return [Term(nll, split(z, cz, cfg, device, salt, weights))]

    model, history = train_stage(
        build,
        terms,
        cfg,
        stage=stage,
        desc=desc,
        salt=salt,
        callback=callback,
        setup={"flow": flow_cfg.to_dict()},
    )
    if weights is not None:
        history["effective_sample_size"] = check_effective_size(weights, desc)
    return DensityModel(
        features=features,
        condition=conditions,
        flow=model,
        scaler=scaler,
        condition_scaler=cscaler,
        flow_config=flow_cfg,
        history=history,
    )


def fit_density(
    data: Any,
    *,
    features: Sequence[str],
    condition: str | Sequence[str] | None = None,
    flow: FlowConfig = FlowConfig(),
    train: TrainConfig = TrainConfig(),
    scaling: Scaling = "standard",
    condition_scaling: Scaling | None = None,
    weights: Any = None,
    callback: Callback | None = None,
) -> DensityModel:
    """Learn the density ``q(x | c)`` of one dataset by maximum likelihood.

    Args:
        data: awkward records (also NanoEvents; jagged features give one row per object and an
            event-level condition is broadcast to the objects), a mapping or DataFrame of
            field -> array, or an ``(N, D)`` array.
        features: field names to model, in order.
        condition: a field name to condition on, a list of them (one vector per row), or None.
        flow: the flow architecture.
        train: the training settings.
        scaling: preprocessing per feature (see :mod:`coffea_f4f.scaling`).
        condition_scaling: preprocessing per condition (default ``"standard"``).
        weights: event weights, a field name or an ``(N,)`` array (signed: negative weights
            count negatively); the loss is ``sum(w * nll) / sum(w)``.
        callback: called after each epoch as ``callback(epoch, logs)``; returning True stops.

    Returns:
        A frozen :class:`~coffea_f4f.density.DensityModel` (``log_prob``, ``sample``).

    Raises:
        MissingColumnError, ValueError, TypeError: bad input (named field, count, shape).
        CheckpointError: ``train.checkpoint`` cannot be written, or the checkpoint to resume
            from is damaged or belongs to another run (before any training).
    """
    features = check_names(features, condition)
    conditions = as_conditions(condition)
    require_checkpoint((train, [None]))
    x, c = extract(data, features, conditions, "data")
    w = extract_weights(data, weights, features, "data")
    scaler, cscaler = fit_scalers(
        [x], None if c is None else [c], features, conditions, scaling, condition_scaling
    )
    return train_density(
        x,
        c,
        features=features,
        conditions=conditions,
        scaler=scaler,
        cscaler=cscaler,
        flow_cfg=flow,
        cfg=train,
        desc="density",
        stage=None,
        callback=callback,
        salt=Salt.DENSITY,
        weights=w,
    )
