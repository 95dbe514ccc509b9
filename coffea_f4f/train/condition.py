"""Morphs between condition values on one dataset: :func:`fit_condition_morpher`
(CURTAINs-F4F; see DESIGN-NOTES.md, "Between condition values")."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import flows
from ..config import FlowConfig, TrainConfig
from ..density import DensityModel
from ..maps import ConditionMap
from ..morpher import Morpher
from ..scaling import Scaler
from .density import train_density
from .ensemble import (
    bootstrap,
    check_ensemble,
    member_config,
    run_members,
    shared_data,
    unspill,
    with_members,
)
from .ensemble import ensemble_jobs as resolve_jobs
from .inputs import (
    Scaling,
    as_conditions,
    check_density,
    check_names,
    condition_range,
    extract,
    extract_weights,
    fit_scalers,
    frozen_base,
)
from .loop import Callback, Salt, Term, require_checkpoint, split, train_stage

__all__ = ["fit_condition_morpher"]


def fit_condition_morpher(
    data: Any,
    *,
    features: Sequence[str],
    condition: str | Sequence[str],
    weights: Any = None,
    density: FlowConfig = FlowConfig(),
    flow: FlowConfig = FlowConfig(),
    train: TrainConfig = TrainConfig(),
    density_model: DensityModel | None = None,
    scaling: Scaling = "standard",
    condition_scaling: Scaling | None = None,
    density_train: TrainConfig | None = None,
    callback: Callback | None = None,
    ensemble: int = 0,
    ensemble_jobs: int | None = None,
) -> Morpher:
    """Learn, on one dataset, a map between condition values (CURTAINs-F4F).

    A conditional density ``q(x | c)`` is learned (or supplied as ``density_model``) and frozen.
    The morph is one conditional flow ``g(x; c)`` (identity-initialised); the map from ``a``
    to ``b`` is ``T(x; a, b) = g^-1(g(x; a); b)``, trained so that ``T(x; a, b)`` of events at
    ``a`` is likely under ``q(. | b)`` for ``b`` drawn from the other events' conditions. By
    construction ``T(.; b, a)`` is the exact inverse of ``T(.; a, b)``.

    ``weights`` (a field name or ``(N,)`` array, signed) weight the likelihood of both stages.
    ``condition`` may be a list of fields: the map is then between condition *vectors*.
    Apply with ``morpher.morph(x, condition=a, target_condition=b)``.

    ``ensemble=K`` also trains K bootstrap members (the whole fit on Poisson(1) replicas,
    each with its own seed; ``ensemble_jobs`` as for :func:`fit_morpher`) for
    :meth:`~coffea_f4f.morpher.Morpher.variations`; a supplied ``density_model`` is shared.
    """
    if condition is None:
        raise ValueError("fit_condition_morpher needs condition= (the field to morph between)")
    features = check_names(features, condition)
    conditions = as_conditions(condition)
    check_density(density_model, features, conditions, "density_model")
    n_members = check_ensemble(ensemble, ensemble_jobs)
    dtrain = density_train or train
    require_checkpoint(
        (dtrain, [] if density_model is not None else ["density"]), (train, ["morph"])
    )
    x, c = extract(data, features, conditions, "data")
    w = extract_weights(data, weights, features, "data")
    assert c is not None
    scaler, cscaler = fit_scalers([x], [c], features, conditions, scaling, condition_scaling)
    assert cscaler is not None
    common: dict[str, Any] = {
        "features": features,
        "conditions": conditions,
        "scaler": scaler,
        "cscaler": cscaler,
        "density": density,
        "flow": flow,
        "density_model": density_model,
    }
    work = len(x) * max(train.epochs, dtrain.epochs)
    workers = resolve_jobs(ensemble_jobs, n_members, train.device, dtrain.device, work=work)

    def nominal() -> Morpher:
        return _fit_arrays(x, c, w, train=train, dtrain=dtrain, callback=callback, **common)

    with shared_data((x, c, w), workers) as member_data:
        member = functools.partial(
            _member,
            data=member_data,
            train=train,
            dtrain=dtrain,
            threads=1 if workers else None,
            common=common,
        )
        morpher, members = run_members(
            member, nominal, n_members, workers, seed=train.seed, show=train.progress
        )
    return with_members(morpher, members, train.seed, dtrain.seed)


def _member(
    k: int,
    *,
    data: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    train: TrainConfig,
    dtrain: TrainConfig,
    threads: int | None,
    common: dict[str, Any],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Member ``k`` of an ensemble: the fit on a bootstrap replica of the dataset."""
    x, c, w = unspill(data)
    rows, rw = bootstrap(len(x), w, train.seed, k, 0)
    m = _fit_arrays(
        x[rows],
        c[rows],
        rw,
        train=member_config(train, k, threads=threads),
        dtrain=member_config(dtrain, k, threads=threads),
        callback=None,
        **common,
    )
    return m.module, m.history


def _fit_arrays(
    x: np.ndarray,
    c: np.ndarray,
    w: np.ndarray | None,
    *,
    features: list[str],
    conditions: list[str],
    scaler: Scaler,
    cscaler: Scaler,
    density: FlowConfig,
    flow: FlowConfig,
    density_model: DensityModel | None,
    train: TrainConfig,
    dtrain: TrainConfig,
    callback: Callback | None,
) -> Morpher:
    """One fit on extracted rows (the nominal, or one ensemble member)."""
    q = (
        density_model
        if density_model is not None
        else train_density(
            x,
            c,
            features=features,
            conditions=conditions,
            scaler=scaler,
            cscaler=cscaler,
            flow_cfg=density,
            cfg=dtrain,
            desc="density",
            stage="density",
            callback=callback,
            salt=Salt.CONDITION_DENSITY,
            weights=w,
        )
    )
    base = frozen_base(q, scaler, cscaler)
    cdim = cscaler.width  # a categorical condition is several one-hot columns
    spec = {"kind": "condition", "dim": len(features), "context_dim": cdim, "flow": flow.to_dict()}
    shared: dict[str, torch.Generator] = {}

    def seed_pairs(gen: torch.Generator) -> None:  # pairs drawn from the checkpointed stream
        shared["gen"] = gen

    def build() -> torch.nn.Module:
        return ConditionMap(
            flows.build_layers(len(features), flow, context_dim=cdim, identity_init=True),
            context_dim=cdim,
        )

    def terms(module: torch.nn.Module, device: str) -> list[Term]:
        def term(xb: torch.Tensor, cb: torch.Tensor | None) -> torch.Tensor:
            assert cb is not None
            if module.training:
                target_c = cb[torch.randperm(len(cb), generator=shared["gen"]).to(cb.device)]
            else:  # validation: a fixed pairing (reverse order) so the loss is comparable
                target_c = cb.flip(0)
            y, ld = module(xb, cb, target_c)
            return -(base.log_prob(y, target_c) + ld)

        data = split(scaler.forward(x), cscaler.forward(c), train, device, Salt.CONDITION_SPLIT, w)
        return [Term(term, data)]

    module, history = train_stage(
        build,
        terms,
        train,
        stage="morph",
        desc="condition morph",
        salt=Salt.CONDITION_MORPH_INIT,
        callback=callback,
        gen_hook=seed_pairs,
        frozen=(base,),
        setup={"flow": flow.to_dict()},
    )
    return Morpher(
        features=features,
        condition=conditions,
        module=module,
        map_spec=spec,
        scaler=scaler,
        condition_scaler=cscaler,
        variant="condition",
        history={"morph": history, "density": q.history},
        source_density=q,
        target_density=None,
        info={"identity_init": True, "condition_range": condition_range(c)},
    )
