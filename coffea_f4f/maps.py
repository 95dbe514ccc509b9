"""The torch maps a :class:`~coffea_f4f.morpher.Morpher` applies, and how to build them.

Every map is an ``nn.Module`` with ``forward(z, context, target_context)`` (source -> target)
and ``inverse`` (target -> source), both returning ``(values, log|det J|)`` in the scaled
spaces. Three kinds, named by the ``"kind"`` of their JSON spec:

- ``"flow"`` (:class:`FlowMap`): a spline flow trained with the frozen target density as its
  base; source -> target is its data -> base direction (one pass per autoregressive layer).
- ``"base_transfer"`` (:class:`BaseTransferMap`): encode with the source density flow, decode
  with the target density flow.
- ``"switch"`` (:class:`SwitchMap`): one density of both datasets with a sample label,
  encoding with the source label and decoding with the target label.
- ``"condition"`` (:class:`ConditionMap`): one conditional flow ``g(x; c)``; the map from
  ``a`` to ``b`` is ``g^-1(g(x; a); b)``.

:func:`build_map` rebuilds a map from its spec (weights are loaded separately).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from normflows.nets.made import MaskedLinear
from torch import nn

from . import flows
from .config import FlowConfig
from .scaling import Scaler

__all__ = [
    "MAP_KINDS",
    "BaseTransferMap",
    "ConditionMap",
    "FlowMap",
    "MorphMap",
    "SwitchMap",
    "architecture_buffers",
    "build_map",
]

MAP_KINDS = ("flow", "base_transfer", "condition", "switch")

Result = tuple[torch.Tensor, torch.Tensor]
Ctx = torch.Tensor | None


class MorphMap(nn.Module):
    """The interface of every map: ``forward`` (source -> target) and ``inverse``, each
    ``(z, context, target_context) -> (values, log|det J|)``."""

    def forward(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        raise NotImplementedError

    def inverse(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        raise NotImplementedError


class _LayerMap(MorphMap):
    """A map made of one stack of flow layers (``self.flows``, as normflows names it)."""

    def __init__(self, layers: Sequence[nn.Module], context_dim: int) -> None:
        super().__init__()
        self.flows = nn.ModuleList(layers)
        self.context_dim = context_dim


class FlowMap(_LayerMap):
    """Source -> target = the morph flow's data -> base direction."""

    def __init__(self, layers: Sequence[nn.Module], context_dim: int = 0) -> None:
        super().__init__(layers, context_dim)

    def forward(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        return flows.to_base(self, z, context)

    def inverse(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        return flows.from_base(self, z, context)


class BaseTransferMap(MorphMap):
    """Source -> latent (source density flow) -> target (target density flow).

    The context arrives in the source density's condition scaling; when the target density
    scales the condition differently (densities trained apart with ``fit_density``),
    ``context_bridge = (source_scaler, target_scaler)`` maps it.
    """

    def __init__(
        self,
        source: nn.Module,
        target: nn.Module,
        context_bridge: tuple[Scaler, Scaler] | None = None,
    ) -> None:
        super().__init__()
        self.source, self.target = source, target
        self.bridge = (
            None if context_bridge is None else flows.ScalingBridge.between(*context_bridge)
        )

    def forward(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        u, ld1 = flows.to_base(self.source, z, context)
        y, ld2 = flows.from_base(self.target, u, flows.bridged(self.bridge, context))
        return y, ld1 + ld2

    def inverse(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        u, ld1 = flows.to_base(self.target, z, flows.bridged(self.bridge, context))
        x, ld2 = flows.from_base(self.source, u, context)
        return x, ld1 + ld2


class SwitchMap(MorphMap):
    """The CMS "switch" protocol: one conditional density ``q(x | c, s)`` of the union of both
    datasets with a sample label ``s`` (0 source, 1 target) as its last condition; the morph
    encodes with ``s = 0`` and decodes with ``s = 1``: ``T(x; c) = g^-1(g(x; c, 0); c, 1)``."""

    def __init__(self, density: nn.Module, context_dim: int = 0) -> None:
        super().__init__()
        self.density = density
        self.context_dim = context_dim

    def _labelled(self, z: torch.Tensor, context: Ctx, label: float) -> torch.Tensor:
        s = z.new_full((len(z), 1), label)
        return s if context is None else torch.cat([context, s], dim=1)

    def forward(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        u, ld1 = flows.to_base(self.density, z, self._labelled(z, context, 0.0))
        y, ld2 = flows.from_base(self.density, u, self._labelled(z, context, 1.0))
        return y, ld1 + ld2

    def inverse(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        u, ld1 = flows.to_base(self.density, z, self._labelled(z, context, 1.0))
        x, ld2 = flows.from_base(self.density, u, self._labelled(z, context, 0.0))
        return x, ld1 + ld2


class ConditionMap(_LayerMap):
    """``T(x; a -> b) = g^-1(g(x; a); b)`` with one conditional flow ``g``."""

    def __init__(self, layers: Sequence[nn.Module], context_dim: int = 1) -> None:
        super().__init__(layers, context_dim)

    def forward(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        if context is None or target_context is None:
            raise ValueError("a condition morph needs condition= and target_condition=")
        u, ld1 = flows.to_base(self, z, context)
        y, ld2 = flows.from_base(self, u, target_context)
        same = (context == target_context).all(1)  # a -> a: exactly the identity
        if same.any():
            y = torch.where(same[:, None], z, y)
            ld1, ld2 = torch.where(same, 0.0, ld1), torch.where(same, 0.0, ld2)
        return y, ld1 + ld2

    def inverse(self, z: torch.Tensor, context: Ctx = None, target_context: Ctx = None) -> Result:
        return self.forward(z, target_context, context)


def build_map(spec: Mapping[str, Any], *, identity_init: bool = False) -> MorphMap:
    """Build the torch module of a morph from its JSON spec (weights not loaded).

    Raises:
        ValueError: an unknown kind, or a condition map without exactly one condition.
    """
    kind = spec["kind"]
    dim, cdim = int(spec["dim"]), int(spec.get("context_dim", 0))
    if kind == "flow":
        cfg = FlowConfig.from_dict(spec["flow"])
        return FlowMap(
            flows.build_layers(dim, cfg, context_dim=cdim, identity_init=identity_init),
            context_dim=cdim,
        )
    if kind == "base_transfer":
        bridge = spec.get("context_bridge")
        return BaseTransferMap(
            flows.build_density_flow(dim, FlowConfig.from_dict(spec["source"]), context_dim=cdim),
            flows.build_density_flow(dim, FlowConfig.from_dict(spec["target"]), context_dim=cdim),
            None if bridge is None else (Scaler.from_dict(bridge[0]), Scaler.from_dict(bridge[1])),
        )
    if kind == "switch":
        cfg = FlowConfig.from_dict(spec["flow"])
        return SwitchMap(flows.build_density_flow(dim, cfg, context_dim=cdim + 1), cdim)
    if kind == "condition":
        if cdim < 1:
            raise ValueError("a condition morph needs at least one condition")
        cfg = FlowConfig.from_dict(spec["flow"])
        return ConditionMap(
            flows.build_layers(dim, cfg, context_dim=cdim, identity_init=identity_init),
            context_dim=cdim,
        )
    raise ValueError(f"unknown morph kind {kind!r}; known: {MAP_KINDS}")


def architecture_buffers(module: nn.Module) -> set[str]:
    """Names of the buffers that the architecture alone determines (MADE's connectivity
    masks and degrees): a rebuilt map has them, so a compact payload can leave them out."""
    names = set()
    for prefix, sub in module.named_modules():
        if isinstance(sub, MaskedLinear):
            for buf in ("mask", "degrees"):
                if hasattr(sub, buf):
                    names.add(f"{prefix}.{buf}" if prefix else buf)
    return names
