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

``penalty="l1"|"l2"`` adds ``penalty_weight`` times the mean L1 / squared L2 distance moved (in
the scaled space) to each term. ``identity_init=True`` starts ``M`` as the exact identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .. import flows
from ..config import PENALTIES, VARIANTS, FlowConfig, TrainConfig
from ..density import DensityModel
from ..maps import BaseTransferMap, FlowMap, build_map
from ..morpher import Morpher
from .density import train_density
from .inputs import Scaling, check_density, check_names, condition_range, extract, fit_scalers
from .loop import Callback, Salt, Term, require_checkpoint, split, train_stage

__all__ = ["fit_morpher"]


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


def _base_transfer(
    q_s: DensityModel,
    q_t: DensityModel,
    features: list[str],
    condition: str | None,
    condition_range: list[float] | None,
) -> Morpher:
    """The base-transfer morph of two densities (copies of their flows). When the densities
    scale the condition differently (trained apart), the spec records both scalings and the
    map converts the condition."""
    spec: dict[str, Any] = {
        "kind": "base_transfer",
        "dim": len(features),
        "context_dim": len(q_s.conditions),
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
        condition=condition,
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
    features = check_names(features, condition)
    _check_variant(variant, penalty, penalty_weight)
    check_density(source_density, features, condition, "source_density")
    check_density(target_density, features, condition, "target_density")
    dtrain = density_train or train
    require_checkpoint(train, ["source_density", "target_density", "morph"])

    xs, cs = extract(source, features, condition, "source")
    xt, ct = extract(target, features, condition, "target")
    scaler, cscaler = fit_scalers(
        [xs, xt], None if cs is None or ct is None else [cs, ct], features, condition, scaling
    )

    densities = {}
    for name, x, c, given, salt in (
        ("source_density", xs, cs, source_density, Salt.SOURCE_DENSITY),
        ("target_density", xt, ct, target_density, Salt.TARGET_DENSITY),
    ):
        densities[name] = (
            given
            if given is not None
            else train_density(
                x,
                c,
                features=features,
                condition=condition,
                scaler=scaler,
                cscaler=cscaler,
                flow_cfg=density,
                cfg=dtrain,
                desc=name.replace("_", " "),
                stage=name,
                callback=callback,
                salt=salt,
            )
        )
    q_s, q_t = densities["source_density"], densities["target_density"]
    if variant == "base_transfer":
        return _base_transfer(q_s, q_t, features, condition, condition_range(cs, ct))

    cdim = 0 if condition is None else 1
    base_t = flows.FlowAsBase(
        q_t.flow,
        here=scaler,
        there=q_t.scaler,
        here_context=cscaler,
        there_context=q_t.condition_scaler,
    )
    base_s = flows.FlowAsBase(
        q_s.flow,
        here=scaler,
        there=q_s.scaler,
        here_context=cscaler,
        there_context=q_s.condition_scaler,
    )
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
                split(zt, czt, train, device, Salt.TARGET_SPLIT),
            )
        ]
        if variant == "bidirectional":
            zs = scaler.forward(xs)
            czs = None if cs is None or cscaler is None else cscaler.forward(cs)
            out.insert(
                0,
                Term(
                    scored(base_t, flows.to_base),  # source -> target
                    split(zs, czs, train, device, Salt.SOURCE_SPLIT),
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
    )
    return Morpher(
        features=features,
        condition=condition,
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
