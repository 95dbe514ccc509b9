"""Morphs between two datasets: :func:`fit_morpher` (flows for flows).

Both densities are learned (or supplied), frozen, and used as base distributions of one morph
flow ``M`` (source -> target):

- ``bidirectional`` (default): source events through ``M`` must be likely under the target
  density, and target events through ``M^-1`` likely under the source density. Every event of
  both datasets is used in every epoch (the smaller one is cycled).
- ``unidirectional``: only the target term (``M^-1`` of target events under the source
  density).
- ``base_transfer``: no morph flow: encode with the source density flow, decode with the target
  density flow.
- ``switch``: no morph flow either: one density of the union of both datasets with a sample
  label (0 source, 1 target) as its last condition; encode with 0, decode with 1.

``penalty="l1"|"l2"`` adds ``penalty_weight`` times the mean L1 / squared L2 distance moved (in
the scaled space) to each term. ``identity_init=True`` starts ``M`` as the exact identity.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .. import flows
from ..config import PENALTIES, VARIANTS, FlowConfig, TrainConfig
from ..density import DensityModel
from ..maps import BaseTransferMap, FlowMap, SwitchMap, build_map
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

__all__ = ["fit_morpher"]

#: ``(features, conditions, weights)`` of one dataset
Sample = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


def _movement(y: torch.Tensor, x: torch.Tensor, penalty: str | None) -> torch.Tensor | None:
    if penalty is None:
        return None
    d = y - x
    return d.abs().sum(1) if penalty == "l1" else (d * d).sum(1)


def _check_variant(variant: str, penalty: str | None, penalty_weight: float) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: choose one of {VARIANTS}")
    if penalty not in PENALTIES:
        raise ValueError(f"penalty={penalty!r}: choose one of {PENALTIES}")
    if penalty is not None and not penalty_weight > 0:
        raise ValueError(f"penalty={penalty!r} needs penalty_weight > 0")
    if penalty_weight < 0:
        raise ValueError("penalty_weight must be >= 0")
    if penalty is not None and variant in ("base_transfer", "switch"):
        raise ValueError(
            f"a movement penalty has no effect on {variant} (no morph flow is trained)"
        )


def _base_transfer(
    q_s: DensityModel,
    q_t: DensityModel,
    features: list[str],
    conditions: list[str],
    condition_range: list[list[float]] | None,
) -> Morpher:
    """The base-transfer morph of two densities (copies of their flows). When the densities
    scale the condition differently (trained apart), the spec records both scalings and the
    map converts the condition."""
    spec: dict[str, Any] = {
        "kind": "base_transfer",
        "dim": len(features),
        "context_dim": 0 if q_s.condition_scaler is None else q_s.condition_scaler.width,
        "source": q_s.flow_config.to_dict(),
        "target": q_t.flow_config.to_dict(),
    }
    if (
        q_s.condition_scaler is not None
        and q_t.condition_scaler is not None
        and not q_s.condition_scaler.same_as(q_t.condition_scaler)
    ):
        spec["context_bridge"] = [q_s.condition_scaler.to_dict(), q_t.condition_scaler.to_dict()]
    module = build_map(spec)
    assert isinstance(module, BaseTransferMap)
    module.source.load_state_dict(q_s.flow.state_dict())
    module.target.load_state_dict(q_t.flow.state_dict())
    return Morpher(
        features=features,
        condition=conditions,
        module=module,
        map_spec=spec,
        scaler=q_s.scaler,
        target_scaler=q_t.scaler,
        condition_scaler=q_s.condition_scaler,
        variant="base_transfer",
        history={"source_density": q_s.history, "target_density": q_t.history},
        source_density=q_s,
        target_density=q_t,
        info={"identity_init": False, "condition_range": condition_range},
    )


#: the sample label of the switch protocol: the last condition of its density (0 source, 1 target)
SWITCH_LABEL = "f4f_sample"


def _switch(
    source: tuple[np.ndarray, np.ndarray | None, np.ndarray | None],
    target: tuple[np.ndarray, np.ndarray | None, np.ndarray | None],
    *,
    features: list[str],
    conditions: list[str],
    scaler: Scaler,
    cscaler: Scaler | None,
    condition_scaling: Scaling | None,
    flow_cfg: FlowConfig,
    cfg: TrainConfig,
    callback: Callback | None,
) -> Morpher:
    """The CMS production protocol: one density of both datasets with the sample label as an
    extra condition; the morph encodes with the source label and decodes with the target's."""
    if SWITCH_LABEL in conditions:
        raise ValueError(f"{SWITCH_LABEL!r} is the switch variant's own label; rename that field")
    (xs, cs, ws), (xt, ct, wt) = source, target
    weights = None
    if ws is not None or wt is not None:  # an unweighted side counts 1 per event
        weights = np.concatenate(
            [np.ones(len(xs)) if ws is None else ws, np.ones(len(xt)) if wt is None else wt]
        )
    label = np.concatenate([np.zeros(len(xs)), np.ones(len(xt))])[:, None]
    both = None if cs is None or ct is None else np.concatenate([cs, ct])
    c = label if both is None else np.concatenate([both, label], axis=1)
    kinds: dict[str, Any] = (
        dict(condition_scaling)
        if isinstance(condition_scaling, Mapping)
        else dict.fromkeys(conditions, condition_scaling or "standard")
    )
    lscaler = Scaler.fit(c, [*conditions, SWITCH_LABEL], {**kinds, SWITCH_LABEL: "identity"})
    q = train_density(
        np.concatenate([xs, xt]),
        c,
        features=features,
        conditions=[*conditions, SWITCH_LABEL],
        scaler=scaler,
        cscaler=lscaler,
        flow_cfg=flow_cfg,
        cfg=cfg,
        desc="density (switch)",
        stage="density",
        callback=callback,
        salt=Salt.SWITCH_DENSITY,
        weights=weights,
    )
    spec = {
        "kind": "switch",
        "dim": len(features),
        "context_dim": 0 if cscaler is None else cscaler.width,
        "flow": flow_cfg.to_dict(),
    }
    module = build_map(spec)
    assert isinstance(module, SwitchMap)
    module.density.load_state_dict(q.flow.state_dict())
    return Morpher(
        features=features,
        condition=conditions,
        module=module,
        map_spec=spec,
        scaler=scaler,
        condition_scaler=cscaler,
        variant="switch",
        history={"density": q.history},
        source_density=q,
        info={"identity_init": False, "condition_range": condition_range(cs, ct)},
    )


def fit_morpher(
    source: Any,
    target: Any,
    *,
    features: Sequence[str],
    condition: str | Sequence[str] | None = None,
    source_weights: Any = None,
    target_weights: Any = None,
    variant: str = "bidirectional",
    penalty: str | None = None,
    penalty_weight: float = 0.0,
    identity_init: bool = True,
    density: FlowConfig = FlowConfig(),
    flow: FlowConfig = FlowConfig(),
    train: TrainConfig = TrainConfig(),
    source_density: DensityModel | None = None,
    target_density: DensityModel | None = None,
    scaling: Scaling = "standard",
    condition_scaling: Scaling | None = None,
    density_train: TrainConfig | None = None,
    callback: Callback | None = None,
    ensemble: int = 0,
    ensemble_jobs: int | None = None,
) -> Morpher:
    """Learn a map that moves source events onto the target distribution (flows for flows).

    Args:
        source, target: awkward records (flat or jagged, as for :func:`fit_density`),
            mappings or DataFrames of field -> array, or ``(N, D)`` arrays.
        features: field names to morph, in order.
        condition: a field present in both (or a list of them: a condition vector), each
            event is morphed at its own value (the same condition on both sides), or None.
        source_weights, target_weights: event weights of each dataset, a field name or an
            ``(N,)`` array; signed (negative weights count negatively). Each dataset's loss
            term is ``sum(w * nll) / sum(w)``, in training, validation and early stopping.
        variant: ``"bidirectional"`` (default), ``"unidirectional"``, ``"base_transfer"`` or
            ``"switch"`` (one density of both datasets with a sample label as extra
            condition; the CMS production protocol).
        penalty: None, ``"l1"`` or ``"l2"``: penalise the distance moved (scaled space).
        penalty_weight: weight of the penalty (> 0 when a penalty is set).
        identity_init: start the morph flow as the exact identity.
        density: architecture of the density flows trained here.
        flow: architecture of the morph flow.
        train: training settings of the morph (and of the densities unless ``density_train``).
        source_density, target_density: already trained densities (from :func:`fit_density`)
            to use instead of training new ones; their own scalings are bridged exactly.
        scaling: preprocessing of the morph space, fitted on source and target together.
        condition_scaling: preprocessing per condition (default ``"standard"``), fitted on
            both.
        density_train: training settings of the densities (default: ``train``).
        callback: called after each epoch of each stage of the nominal fit as
            ``callback(epoch, logs)``.
        ensemble: K > 0 also trains K bootstrap members (the whole fit on a Poisson(1)
            replica of both datasets, each with its own seed; see
            :mod:`coffea_f4f.train.ensemble`), kept in the Morpher for
            :meth:`~coffea_f4f.morpher.Morpher.variations`. Supplied densities are shared by
            all members (the band then leaves out their uncertainty).
        ensemble_jobs: worker processes that train members while this process trains the
            nominal (default: one per CPU core besides this one, at most K, for fits of at
            least a million event-epochs; smaller fits and ``1`` train the members here, one
            after the other, as they do when a stage trains on a GPU).

    Returns:
        A :class:`~coffea_f4f.morpher.Morpher`.
    """
    features = check_names(features, condition)
    conditions = as_conditions(condition)
    n_members = check_ensemble(ensemble, ensemble_jobs)
    _check_variant(variant, penalty, penalty_weight)
    check_density(source_density, features, conditions, "source_density")
    check_density(target_density, features, conditions, "target_density")
    dtrain = density_train or train
    trained = {"source_density": source_density, "target_density": target_density}
    density_stages = (
        ["density"] if variant == "switch" else [s for s, d in trained.items() if d is None]
    )
    morph_stages = [] if variant in ("base_transfer", "switch") else ["morph"]
    require_checkpoint((dtrain, density_stages), (train, morph_stages))

    xs, cs = extract(source, features, conditions, "source")
    xt, ct = extract(target, features, conditions, "target")
    ws = extract_weights(source, source_weights, features, "source")
    wt = extract_weights(target, target_weights, features, "target")
    scaler, cscaler = fit_scalers(
        [xs, xt],
        None if cs is None or ct is None else [cs, ct],
        features,
        conditions,
        scaling,
        condition_scaling,
    )

    if variant == "switch" and (source_density is not None or target_density is not None):
        raise ValueError(
            "variant='switch' trains one density of both datasets; it takes no "
            "source_density / target_density"
        )
    common: dict[str, Any] = {
        "features": features,
        "conditions": conditions,
        "scaler": scaler,
        "cscaler": cscaler,
        "condition_scaling": condition_scaling,
        "variant": variant,
        "penalty": penalty,
        "penalty_weight": penalty_weight,
        "identity_init": identity_init,
        "density": density,
        "flow": flow,
        "source_density": source_density,
        "target_density": target_density,
    }
    data = ((xs, cs, ws), (xt, ct, wt))
    work = max(len(xs), len(xt)) * max(train.epochs, dtrain.epochs)
    workers = resolve_jobs(ensemble_jobs, n_members, train.device, dtrain.device, work=work)

    def nominal() -> Morpher:
        return _fit_arrays(*data, train=train, dtrain=dtrain, callback=callback, **common)

    with shared_data(data, workers) as member_data:
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
    data: tuple[Sample, Sample],
    train: TrainConfig,
    dtrain: TrainConfig,
    threads: int | None,
    common: dict[str, Any],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Member ``k`` of an ensemble: the fit on a bootstrap replica of both datasets."""
    replicas = []
    for which, (x, c, w) in enumerate(unspill(data)):
        rows, rw = bootstrap(len(x), w, train.seed, k, which)
        replicas.append((x[rows], None if c is None else c[rows], rw))
    m = _fit_arrays(
        *replicas,
        train=member_config(train, k, threads=threads),
        dtrain=member_config(dtrain, k, threads=threads),
        callback=None,
        **common,
    )
    return m.module, m.history


def _fit_arrays(
    source: Sample,
    target: Sample,
    *,
    features: list[str],
    conditions: list[str],
    scaler: Scaler,
    cscaler: Scaler | None,
    condition_scaling: Scaling | None,
    variant: str,
    penalty: str | None,
    penalty_weight: float,
    identity_init: bool,
    density: FlowConfig,
    flow: FlowConfig,
    train: TrainConfig,
    dtrain: TrainConfig,
    source_density: DensityModel | None,
    target_density: DensityModel | None,
    callback: Callback | None,
) -> Morpher:
    """One fit on extracted rows (the nominal, or one ensemble member)."""
    (xs, cs, ws), (xt, ct, wt) = source, target
    if variant == "switch":
        return _switch(
            (xs, cs, ws),
            (xt, ct, wt),
            features=features,
            conditions=conditions,
            scaler=scaler,
            cscaler=cscaler,
            condition_scaling=condition_scaling,
            flow_cfg=density,
            cfg=dtrain,
            callback=callback,
        )

    densities = {}
    for name, x, c, w, given, salt in (
        ("source_density", xs, cs, ws, source_density, Salt.SOURCE_DENSITY),
        ("target_density", xt, ct, wt, target_density, Salt.TARGET_DENSITY),
    ):
        densities[name] = (
            given
            if given is not None
            else train_density(
                x,
                c,
                features=features,
                conditions=conditions,
                scaler=scaler,
                cscaler=cscaler,
                flow_cfg=density,
                cfg=dtrain,
                desc=name.replace("_", " "),
                stage=name,
                callback=callback,
                salt=salt,
                weights=w,
            )
        )
    q_s, q_t = densities["source_density"], densities["target_density"]
    if variant == "base_transfer":
        return _base_transfer(q_s, q_t, features, conditions, condition_range(cs, ct))

    cdim = 0 if cscaler is None else cscaler.width  # one-hot categorical columns included
    base_t = frozen_base(q_t, scaler, cscaler)
    base_s = frozen_base(q_s, scaler, cscaler)
    spec = {"kind": "flow", "dim": len(features), "context_dim": cdim, "flow": flow.to_dict()}

    def build() -> torch.nn.Module:
        return FlowMap(
            flows.build_layers(len(features), flow, context_dim=cdim, identity_init=identity_init),
            context_dim=cdim,
        )

    def terms(module: torch.nn.Module, device: str) -> list[Term]:
        def scored(base: flows.FlowAsBase, direction: Any) -> Any:
            def term(x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
                y, ld = direction(module, x, c)
                loss = -(base.log_prob(y, c) + ld)
                move = _movement(y, x, penalty)
                return loss if move is None else loss + penalty_weight * move

            return term

        zt, czt = scaler.forward(xt), None if ct is None or cscaler is None else cscaler.forward(ct)
        out = [
            Term(
                scored(base_s, flows.from_base),  # target -> source, under the source
                split(zt, czt, train, device, Salt.TARGET_SPLIT, wt),
            )
        ]
        if variant == "bidirectional":
            zs = scaler.forward(xs)
            czs = None if cs is None or cscaler is None else cscaler.forward(cs)
            out.insert(
                0,
                Term(
                    scored(base_t, flows.to_base),  # source -> target
                    split(zs, czs, train, device, Salt.SOURCE_SPLIT, ws),
                ),
            )
        return out

    module, history = train_stage(
        build,
        terms,
        train,
        stage="morph",
        desc=f"morph ({variant})",
        salt=Salt.MORPH_INIT,
        callback=callback,
        frozen=(base_s, base_t),
        setup={
            "flow": flow.to_dict(),
            "variant": variant,
            "penalty": penalty,
            "penalty_weight": penalty_weight,
            "identity_init": identity_init,
        },
    )
    return Morpher(
        features=features,
        condition=conditions,
        module=module,
        map_spec=spec,
        scaler=scaler,
        condition_scaler=cscaler,
        variant=variant,
        history={"morph": history, "source_density": q_s.history, "target_density": q_t.history},
        source_density=q_s,
        target_density=q_t,
        info={
            "penalty": penalty,
            "penalty_weight": penalty_weight,
            "identity_init": identity_init,
            "condition_range": condition_range(cs, ct),
        },
    )
