"""The fits: :func:`fit_density`, :func:`fit_morpher` and :func:`fit_condition_morpher`.

- :func:`fit_density` learns ``q(x | c)`` of one dataset.
- :func:`fit_morpher` learns a map from a source to a target dataset. Both densities are
  learned (or supplied), frozen, and used as base distributions of one morph flow ``M``
  (source -> target):

  * ``bidirectional`` (default): source events through ``M`` must be likely under the target
    density, and target events through ``M^-1`` likely under the source density. Every event
    of both datasets is used in every epoch (the smaller one is cycled).
  * ``unidirectional``: only the target term (``M^-1`` of target events under the source
    density).
  * ``base_transfer``: no morph flow: encode with the source density flow, decode with the
    target density flow.

  ``penalty="l1"|"l2"`` adds ``penalty_weight`` times the mean L1 / squared L2 distance moved
  (in the scaled space) to each term. ``identity_init=True`` starts ``M`` as the exact identity.
- :func:`fit_condition_morpher` learns, on one dataset, a map between condition values.

Each stage runs through :func:`~coffea_f4f.train.loop.train_stage`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .. import flows
from ..columns import condition_matrix, to_matrix
from ..config import PENALTIES, VARIANTS, FlowConfig, TrainConfig
from ..density import DensityModel
from ..maps import BaseTransferMap, ConditionMap, FlowMap, build_map
from ..morpher import Morpher
from ..scaling import Scaler
from .loop import Callback, Salt, Term, require_checkpoint, split, train_stage

__all__ = ["fit_condition_morpher", "fit_density", "fit_morpher"]

Scaling = str | Mapping[str, Any]


# ----------------------------------------------------------------------------- inputs
def _check_names(features: Sequence[str], condition: str | None) -> list[str]:
    if isinstance(features, str):
        raise TypeError(f"features must be a list of field names, got the string {features!r}")
    features = list(features)
    if not features:
        raise ValueError("features is empty: name at least one field to morph")
    dupes = sorted({f for f in features if features.count(f) > 1})
    if dupes:
        raise ValueError(f"features listed more than once: {dupes}")
    if condition is not None:
        if not isinstance(condition, str):
            raise TypeError(
                f"condition must be one field name, got {condition!r}; a multi-dimensional "
                "condition is not supported"
            )
        if condition in features:
            raise ValueError(f"{condition!r} is both a feature and the condition")
    return features


def _extract(
    data: Any, features: list[str], condition: str | None, what: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Feature rows and their conditions of one training dataset, validated. Jagged
    features give one row per object, an event-level condition is broadcast to them."""
    x, layout = to_matrix(data, features, what=f"{what} feature")
    c = None
    if condition is not None:
        c = condition_matrix(data, None, [condition], layout, what=f"{what} condition")
    if len(x) < 2:
        raise ValueError(f"{what} has {len(x)} events; at least 2 are needed to train")
    return x, c


def _fit_scalers(
    xs: Sequence[np.ndarray], cs: Sequence[np.ndarray] | None, features: list[str],
    condition: str | None, scaling: Scaling,
) -> tuple[Scaler, Scaler | None]:
    scaler = Scaler.fit(np.concatenate(xs), features, scaling)
    cscaler = None
    if condition is not None and cs is not None:
        cscaler = Scaler.fit(np.concatenate(cs), [condition], "standard")
    return scaler, cscaler


def _range(*conditions: np.ndarray | None) -> list[float] | None:
    """``[min, max]`` over the training conditions (None when unconditional)."""
    cs = [c for c in conditions if c is not None]
    if not cs:
        return None
    both = np.concatenate(cs)
    return [float(both.min()), float(both.max())]


def _check_density(d: DensityModel | None, features: list[str], condition: str | None,
                   name: str) -> None:
    if d is None:
        return
    if not isinstance(d, DensityModel):
        raise TypeError(f"{name} must be a DensityModel from fit_density, got {type(d).__name__}")
    if list(d.features) != list(features):
        raise ValueError(f"{name} was trained on features {d.features}, not {list(features)}; "
                         "the order matters too")
    if d.condition != condition:
        raise ValueError(f"{name} has condition {d.condition!r}, the morph {condition!r}")


# ----------------------------------------------------------------------------- densities
def _train_density(
    x: np.ndarray, c: np.ndarray | None, *, features: list[str], condition: str | None,
    scaler: Scaler, cscaler: Scaler | None, flow_cfg: FlowConfig, cfg: TrainConfig, desc: str,
    stage: str | None, callback: Callback | None, salt: Salt,
) -> DensityModel:
    z = scaler.forward(x)
    cz = None if c is None or cscaler is None else cscaler.forward(c)

    def build() -> torch.nn.Module:
        return flows.build_density_flow(len(features), flow_cfg,
                                        context_dim=0 if c is None else 1)

    def terms(model: torch.nn.Module, device: str) -> list[Term]:
        def nll(xb: torch.Tensor, cb: torch.Tensor | None) -> torch.Tensor:
            return -flows.log_prob(model, xb, cb)

        return [Term(nll, split(z, cz, cfg, device, salt))]

    model, history = train_stage(build, terms, cfg, stage=stage, desc=desc, salt=salt,
                                 callback=callback)
    return DensityModel(features=features, condition=condition, flow=model, scaler=scaler,
                        condition_scaler=cscaler, flow_config=flow_cfg, history=history)


def fit_density(
    data: Any,
    *,
    features: Sequence[str],
    condition: str | None = None,
    flow: FlowConfig = FlowConfig(),
    train: TrainConfig = TrainConfig(),
    scaling: Scaling = "standard",
    callback: Callback | None = None,
) -> DensityModel:
    """Learn the density ``q(x | c)`` of one dataset by maximum likelihood.

    Args:
        data: awkward records (also NanoEvents; jagged features give one row per object and an
            event-level condition is broadcast to the objects), a mapping or DataFrame of
            field -> array, or an ``(N, D)`` array.
        features: field names to model, in order.
        condition: a field name to condition on, or None.
        flow: the flow architecture.
        train: the training settings.
        scaling: preprocessing per feature (see :mod:`coffea_f4f.scaling`).
        callback: called after each epoch as ``callback(epoch, logs)``; returning True stops.

    Returns:
        A frozen :class:`~coffea_f4f.density.DensityModel` (``log_prob``, ``sample``).

    Raises:
        MissingColumnError, ValueError, TypeError: bad input (named field, count, shape).
    """
    features = _check_names(features, condition)
    require_checkpoint(train, [None])
    x, c = _extract(data, features, condition, "data")
    scaler, cscaler = _fit_scalers([x], None if c is None else [c], features, condition, scaling)
    return _train_density(x, c, features=features, condition=condition, scaler=scaler,
                          cscaler=cscaler, flow_cfg=flow, cfg=train, desc="density",
                          stage=None, callback=callback, salt=Salt.DENSITY)


# ----------------------------------------------------------------------------- morphers
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
    if penalty is not None and variant == "base_transfer":
        raise ValueError("a movement penalty has no effect on base_transfer (nothing is trained)")


def _base_transfer(q_s: DensityModel, q_t: DensityModel, features: list[str],
                   condition: str | None, condition_range: list[float] | None) -> Morpher:
    """The base-transfer morph of two densities (copies of their flows). When the densities
    scale the condition differently (trained apart), the spec records both scalings and the
    map converts the condition."""
    spec: dict[str, Any] = {
        "kind": "base_transfer", "dim": len(features), "context_dim": len(q_s.conditions),
        "source": q_s.flow_config.to_dict(), "target": q_t.flow_config.to_dict(),
    }
    if (q_s.condition_scaler is not None and q_t.condition_scaler is not None
            and not q_s.condition_scaler.same_as(q_t.condition_scaler)):
        spec["context_bridge"] = [q_s.condition_scaler.to_dict(), q_t.condition_scaler.to_dict()]
    module = build_map(spec)
    assert isinstance(module, BaseTransferMap)
    module.source.load_state_dict(q_s.flow.state_dict())
    module.target.load_state_dict(q_t.flow.state_dict())
    return Morpher(
        features=features, condition=condition, module=module, map_spec=spec,
        scaler=q_s.scaler, target_scaler=q_t.scaler, condition_scaler=q_s.condition_scaler,
        variant="base_transfer",
        history={"source_density": q_s.history, "target_density": q_t.history},
        source_density=q_s, target_density=q_t,
        info={"identity_init": False, "condition_range": condition_range},
    )


def fit_morpher(
    source: Any,
    target: Any,
    *,
    features: Sequence[str],
    condition: str | None = None,
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
    density_train: TrainConfig | None = None,
    callback: Callback | None = None,
) -> Morpher:
    """Learn a map that moves source events onto the target distribution (flows for flows).

    Args:
        source, target: awkward records (flat or jagged, as for :func:`fit_density`),
            mappings or DataFrames of field -> array, or ``(N, D)`` arrays.
        features: field names to morph, in order.
        condition: a field present in both, each event is morphed at its own value (the same
            condition on both sides), or None.
        variant: ``"bidirectional"`` (default), ``"unidirectional"`` or ``"base_transfer"``.
        penalty: None, ``"l1"`` or ``"l2"``: penalise the distance moved (scaled space).
        penalty_weight: weight of the penalty (> 0 when a penalty is set).
        identity_init: start the morph flow as the exact identity.
        density: architecture of the density flows trained here.
        flow: architecture of the morph flow.
        train: training settings of the morph (and of the densities unless ``density_train``).
        source_density, target_density: already trained densities (from :func:`fit_density`)
            to use instead of training new ones; their own scalings are bridged exactly.
        scaling: preprocessing of the morph space, fitted on source and target together.
        density_train: training settings of the densities (default: ``train``).
        callback: called after each epoch of each stage as ``callback(epoch, logs)``.

    Returns:
        A :class:`~coffea_f4f.morpher.Morpher`.
    """
    features = _check_names(features, condition)
    _check_variant(variant, penalty, penalty_weight)
    _check_density(source_density, features, condition, "source_density")
    _check_density(target_density, features, condition, "target_density")
    dtrain = density_train or train
    require_checkpoint(train, ["source_density", "target_density", "morph"])

    xs, cs = _extract(source, features, condition, "source")
    xt, ct = _extract(target, features, condition, "target")
    scaler, cscaler = _fit_scalers(
        [xs, xt], None if cs is None or ct is None else [cs, ct], features, condition, scaling)

    densities = {}
    for name, x, c, given, salt in (
        ("source_density", xs, cs, source_density, Salt.SOURCE_DENSITY),
        ("target_density", xt, ct, target_density, Salt.TARGET_DENSITY),
    ):
        densities[name] = given if given is not None else _train_density(
            x, c, features=features, condition=condition, scaler=scaler, cscaler=cscaler,
            flow_cfg=density, cfg=dtrain, desc=name.replace("_", " "), stage=name,
            callback=callback, salt=salt)
    q_s, q_t = densities["source_density"], densities["target_density"]
    if variant == "base_transfer":
        return _base_transfer(q_s, q_t, features, condition, _range(cs, ct))

    cdim = 0 if condition is None else 1
    base_t = flows.FlowAsBase(q_t.flow, here=scaler, there=q_t.scaler,
                              here_context=cscaler, there_context=q_t.condition_scaler)
    base_s = flows.FlowAsBase(q_s.flow, here=scaler, there=q_s.scaler,
                              here_context=cscaler, there_context=q_s.condition_scaler)
    spec = {"kind": "flow", "dim": len(features), "context_dim": cdim, "flow": flow.to_dict()}

    def build() -> torch.nn.Module:
        return FlowMap(flows.build_layers(len(features), flow, context_dim=cdim,
                                          identity_init=identity_init), context_dim=cdim)

    def terms(module: torch.nn.Module, device: str) -> list[Term]:
        def scored(base: flows.FlowAsBase, direction: Any) -> Any:
            def term(x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
                y, ld = direction(module, x, c)
                loss = -(base.log_prob(y, c) + ld)
                move = _movement(y, x, penalty)
                return loss if move is None else loss + penalty_weight * move

            return term

        zt, czt = scaler.forward(xt), None if ct is None or cscaler is None else cscaler.forward(ct)
        out = [Term(scored(base_s, flows.from_base),  # target -> source, under the source
                    split(zt, czt, train, device, Salt.TARGET_SPLIT))]
        if variant == "bidirectional":
            zs = scaler.forward(xs)
            czs = None if cs is None or cscaler is None else cscaler.forward(cs)
            out.insert(0, Term(scored(base_t, flows.to_base),  # source -> target
                               split(zs, czs, train, device, Salt.SOURCE_SPLIT)))
        return out

    module, history = train_stage(build, terms, train, stage="morph",
                                  desc=f"morph ({variant})", salt=Salt.MORPH_INIT,
                                  callback=callback, frozen=(base_s, base_t))
    return Morpher(
        features=features, condition=condition, module=module, map_spec=spec, scaler=scaler,
        condition_scaler=cscaler, variant=variant,
        history={"morph": history, "source_density": q_s.history,
                 "target_density": q_t.history},
        source_density=q_s, target_density=q_t,
        info={"penalty": penalty, "penalty_weight": penalty_weight,
              "identity_init": identity_init, "condition_range": _range(cs, ct)},
    )


def fit_condition_morpher(
    data: Any,
    *,
    features: Sequence[str],
    condition: str,
    density: FlowConfig = FlowConfig(),
    flow: FlowConfig = FlowConfig(),
    train: TrainConfig = TrainConfig(),
    density_model: DensityModel | None = None,
    scaling: Scaling = "standard",
    density_train: TrainConfig | None = None,
    callback: Callback | None = None,
) -> Morpher:
    """Learn, on one dataset, a map between condition values (CURTAINs-F4F).

    A conditional density ``q(x | c)`` is learned (or supplied as ``density_model``) and frozen.
    The morph is one conditional flow ``g(x; c)`` (identity-initialised); the map from ``a``
    to ``b`` is ``T(x; a, b) = g^-1(g(x; a); b)``, trained so that ``T(x; a, b)`` of events at
    ``a`` is likely under ``q(. | b)`` for ``b`` drawn from the other events' conditions. By
    construction ``T(.; b, a)`` is the exact inverse of ``T(.; a, b)``.

    Apply with ``morpher.morph(x, condition=a, target_condition=b)``.
    """
    if condition is None:
        raise ValueError("fit_condition_morpher needs condition= (the field to morph between)")
    features = _check_names(features, condition)
    _check_density(density_model, features, condition, "density_model")
    require_checkpoint(train, ["density", "morph"])
    x, c = _extract(data, features, condition, "data")
    assert c is not None
    scaler, cscaler = _fit_scalers([x], [c], features, condition, scaling)
    assert cscaler is not None
    q = density_model if density_model is not None else _train_density(
        x, c, features=features, condition=condition, scaler=scaler, cscaler=cscaler,
        flow_cfg=density, cfg=density_train or train, desc="density", stage="density",
        callback=callback, salt=Salt.CONDITION_DENSITY)
    base = flows.FlowAsBase(q.flow, here=scaler, there=q.scaler, here_context=cscaler,
                            there_context=q.condition_scaler)
    spec = {"kind": "condition", "dim": len(features), "context_dim": 1, "flow": flow.to_dict()}
    shared: dict[str, torch.Generator] = {}

    def seed_pairs(gen: torch.Generator) -> None:  # pairs drawn from the checkpointed stream
        shared["gen"] = gen

    def build() -> torch.nn.Module:
        return ConditionMap(flows.build_layers(len(features), flow, context_dim=1,
                                               identity_init=True))

    def terms(module: torch.nn.Module, device: str) -> list[Term]:
        def term(xb: torch.Tensor, cb: torch.Tensor | None) -> torch.Tensor:
            assert cb is not None
            if module.training:
                target_c = cb[torch.randperm(len(cb), generator=shared["gen"]).to(cb.device)]
            else:  # validation: a fixed pairing (reverse order) so the loss is comparable
                target_c = cb.flip(0)
            y, ld = module(xb, cb, target_c)
            return -(base.log_prob(y, target_c) + ld)

        data = split(scaler.forward(x), cscaler.forward(c), train, device, Salt.CONDITION_SPLIT)
        return [Term(term, data)]

    module, history = train_stage(build, terms, train, stage="morph", desc="condition morph",
                                  salt=Salt.CONDITION_MORPH_INIT, callback=callback,
                                  gen_hook=seed_pairs, frozen=(base,))
    return Morpher(
        features=features, condition=condition, module=module, map_spec=spec, scaler=scaler,
        condition_scaler=cscaler, variant="condition",
        history={"morph": history, "density": q.history}, source_density=q,
        target_density=None, info={"identity_init": True, "condition_range": _range(c)},
    )
