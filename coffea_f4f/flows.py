"""normflows builders: rational-quadratic spline flows and a frozen flow as a base distribution.

Direction convention (normflows'): a flow's ``forward`` maps base -> data and its ``inverse``
maps data -> base; ``log p(x) = log q0(inverse(x)) + log|det J_inverse(x)|``. For
masked-autoregressive splines the data -> base direction is a single network pass per layer and
base -> data needs ``D`` passes; coupling splines cost the same both ways.

The helpers :func:`to_base`, :func:`from_base` and :func:`log_prob` walk the layers themselves
so that the log-det accumulator has the dtype and device of the input (normflows' own
accumulators are float32 even for float64 models) and so that a conditional flow called
without its context raises instead of silently ignoring it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import normflows as nf
import torch
from normflows.utils.splines import DEFAULT_MIN_DERIVATIVE
from torch import nn

from . import scaling as _scaling
from . import splines
from .config import FlowConfig

__all__ = [
    "FlowAsBase",
    "Reverse",
    "ScalingBridge",
    "StandardNormal",
    "TorchScaler",
    "bridged",
    "build_density_flow",
    "build_layers",
    "count_parameters",
    "from_base",
    "log_prob",
    "resolve_device",
    "to_base",
    "torch_threads",
]

# bias that makes a spline's knot derivatives exactly 1 (normflows' softplus parametrisation)
_IDENTITY_DERIVATIVE_BIAS = math.log(math.expm1(1.0 - DEFAULT_MIN_DERIVATIVE))


class Reverse(nf.flows.Flow):
    """Reverse the feature order (log-det 0). Accepts and ignores a context."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None):
        return z.flip(1), z.new_zeros(len(z))

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None):
        return z.flip(1), z.new_zeros(len(z))


def _zero_last_layer(linear: nn.Linear) -> None:
    """Make a spline's parameter network output constants that give the identity spline."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(_IDENTITY_DERIVATIVE_BIAS)


def build_layers(
    dim: int, cfg: FlowConfig, *, context_dim: int = 0, identity_init: bool = False
) -> list[nf.flows.Flow]:
    """Spline layers; autoregressive ones with a :class:`Reverse` between them.

    The layout depends only on ``dim`` and ``cfg`` (so saved weights always fit a rebuilt
    stack). Autoregressive: spline, reversal, spline, reversal, ..., with the last reversal
    dropped when the count would be odd. Coupling: the masks alternate from layer to layer
    (a reversal would undo that alternation for odd ``dim``). With ``identity_init`` every
    spline starts as the exact identity (all bins equal, all knot derivatives 1; linear tails
    are the identity anyway) and an even number of reversals composes to the identity, so
    the whole stack is the identity map
    everywhere, beyond ``tail_bound`` included.

    Raises:
        ValueError: ``dim < 1``, or a coupling flow for one feature.
    """
    if dim < 1:
        raise ValueError(f"a flow needs at least one feature, got dim={dim}")
    if cfg.kind == "coupling" and dim < 2:
        raise ValueError("coupling flows need at least 2 features; use kind='autoregressive'")
    shared = {
        "num_context_channels": context_dim or None,
        "num_bins": cfg.bins,
        "tail_bound": cfg.tail_bound,
        "dropout_probability": cfg.dropout,
    }
    layers: list[nf.flows.Flow] = []
    for i in range(cfg.layers):
        layer: nf.flows.Flow
        if cfg.kind == "autoregressive":
            layer = nf.flows.AutoregressiveRationalQuadraticSpline(
                dim, cfg.blocks, cfg.hidden, init_identity=identity_init, **shared
            )
        else:
            layer = nf.flows.CoupledRationalQuadraticSpline(
                dim, cfg.blocks, cfg.hidden, reverse_mask=bool(i % 2), **shared
            )
            if identity_init:
                _zero_last_layer(layer.prqct.transform_net.final_layer)
        layers.append(layer)
        if dim > 1 and cfg.kind == "autoregressive":
            layers.append(Reverse(dim))
    if dim > 1 and cfg.kind == "autoregressive" and cfg.layers % 2:
        layers.pop()  # an even number of reversals composes to the identity
    return layers


class StandardNormal(nf.distributions.BaseDistribution):
    """Standard normal base of dimension ``dim`` (no parameters; dtype follows its input)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("_ref", torch.zeros(()))

    def forward(self, num_samples: int = 1, context: torch.Tensor | None = None):
        z = torch.randn(num_samples, self.dim, dtype=self._ref.dtype, device=self._ref.device)
        return z, self.log_prob(z)

    def log_prob(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return -0.5 * (z * z).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)


def build_density_flow(
    dim: int, cfg: FlowConfig, *, context_dim: int = 0
) -> nf.ConditionalNormalizingFlow:
    """A density flow: spline layers on a standard normal base."""
    flow = nf.ConditionalNormalizingFlow(
        q0=StandardNormal(dim), flows=build_layers(dim, cfg, context_dim=context_dim)
    )
    flow.context_dim = context_dim
    return flow


def _check_context(flow: nn.Module, context: torch.Tensor | None, n: int) -> None:
    need = getattr(flow, "context_dim", 0)
    if need and context is None:
        raise ValueError("this flow is conditional: pass the condition values")
    if not need and context is not None:
        raise ValueError("this flow is not conditional but a condition was given")
    if context is not None and (context.shape[0] != n or context.shape[1] != need):
        raise ValueError(f"condition has shape {tuple(context.shape)}, expected ({n}, {need})")


def _layers(flow: nn.Module) -> nn.ModuleList:
    layers = flow.flows
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(flow).__name__} has no layer list .flows")
    return layers


def to_base(
    flow: nn.Module, x: torch.Tensor, context: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Data -> base through ``flow.flows``; returns ``(z, log|det J|)``."""
    _check_context(flow, context, len(x))
    logdet = x.new_zeros(len(x))
    layer: Any
    for layer in reversed(_layers(flow)):
        x, ld = splines.layer_pass(layer, x, context, to_base=True)
        logdet = logdet + ld
    return x, logdet


def from_base(
    flow: nn.Module, z: torch.Tensor, context: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Base -> data through ``flow.flows``; returns ``(x, log|det J|)``."""
    _check_context(flow, context, len(z))
    logdet = z.new_zeros(len(z))
    for layer in _layers(flow):
        z, ld = splines.layer_pass(layer, z, context, to_base=False)
        logdet = logdet + ld
    return z, logdet


def log_prob(flow: nn.Module, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """``log p(x | context)`` of a flow with base ``flow.q0``."""
    z, logdet = to_base(flow, x, context)
    base: Any = flow.q0
    return base.log_prob(z, context=context) + logdet


class TorchScaler(nn.Module):
    """A :class:`~coffea_f4f.scaling.Scaler` applied to tensors (same maths, no parameters)."""

    def __init__(self, scaler: _scaling.Scaler) -> None:
        super().__init__()
        self.scaler = scaler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _scaling.forward(self.scaler, x, torch)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return _scaling.inverse(self.scaler, z, torch)

    def log_abs_det(self, x: torch.Tensor) -> torch.Tensor:
        return _scaling.log_abs_det(self.scaler, x, torch)


class ScalingBridge(nn.Module):
    """From one scaled space to another of the same data: ``z -> s_there(s_here^-1(z))``.

    Used where a trained density lives in another scaling than the space it serves (features
    and conditions of :class:`FlowAsBase`, the condition of a base-transfer map). Build it with
    :meth:`between`, which gives None when the two scalings agree (nothing to do).
    """

    def __init__(self, here: _scaling.Scaler, there: _scaling.Scaler) -> None:
        super().__init__()
        _scaling.check_bridgeable(here)  # dequantised kinds have no torch form: fail now
        _scaling.check_bridgeable(there)
        self.here = TorchScaler(here)
        self.there = TorchScaler(there)

    @classmethod
    def between(
        cls, here: _scaling.Scaler | None, there: _scaling.Scaler | None
    ) -> ScalingBridge | None:
        """The bridge ``here -> there``, or None when either is missing or they agree."""
        if here is None or there is None or here.same_as(there):
            return None
        return cls(here, there)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.there(self.here.inverse(z))

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.here(self.there.inverse(z))

    def log_abs_det(self, z: torch.Tensor) -> torch.Tensor:
        """``log |det d forward / dz|`` per row."""
        x = self.here.inverse(z)
        return self.there.log_abs_det(x) - self.here.log_abs_det(x)


def bridged(bridge: ScalingBridge | None, z: torch.Tensor | None) -> torch.Tensor | None:
    """``bridge(z)``, or ``z`` itself when there is no bridge (or no ``z``)."""
    return z if bridge is None or z is None else bridge(z)


class FlowAsBase(nf.distributions.BaseDistribution):
    """A frozen, trained density flow used as the base distribution of another flow.

    The wrapped flow never receives gradients and stays in eval mode (``train()`` does not
    change it). When the density was trained in a differently scaled space than the flow it
    serves as base for, pass both scalings: ``log_prob`` then applies the change of variables
    ``log p_here(z) = log q(s_d(s_h^-1(z))) + log|ds_d/dx| - log|ds_h/dx|`` (and maps the
    condition between the two condition scalings).

    Args:
        flow: a density flow from :func:`build_density_flow` (trained).
        here: the scaling of the space this base is used in (features), or None if shared.
        there: the scaling the density was trained in (features).
        here_context / there_context: the same for the condition.
    """

    def __init__(
        self,
        flow: nf.ConditionalNormalizingFlow,
        *,
        here: _scaling.Scaler | None = None,
        there: _scaling.Scaler | None = None,
        here_context: _scaling.Scaler | None = None,
        there_context: _scaling.Scaler | None = None,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.flow.requires_grad_(False)
        self.flow.eval()
        self.context_dim = getattr(flow, "context_dim", 0)
        self.bridge = ScalingBridge.between(here, there)
        self.context_bridge = ScalingBridge.between(here_context, there_context)

    def train(self, mode: bool = True) -> FlowAsBase:
        super().train(mode)
        self.flow.eval()  # frozen: dropout etc. never switch on
        return self

    def log_prob(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = bridged(self.context_bridge, context)
        if self.bridge is None:
            return log_prob(self.flow, z, context)
        return log_prob(self.flow, self.bridge(z), context) + self.bridge.log_abs_det(z)

    def forward(self, num_samples: int = 1, context: torch.Tensor | None = None):
        """Sample ``num_samples`` points (one per context row when conditional)."""
        if context is not None:
            num_samples = len(context)
        ctx = bridged(self.context_bridge, context)
        ref = next(iter(self.flow.buffers()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = ref.device if ref is not None else None
        with torch.no_grad():
            u = torch.randn(num_samples, self.flow.q0.dim, dtype=dtype, device=device)
            zd, _ = from_base(self.flow, u, ctx)
            if self.bridge is not None:
                zd = self.bridge.inverse(zd)
        return zd, self.log_prob(zd, context)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave torch's setting), and
    restore the previous count afterwards, also on errors."""
    previous = torch.get_num_threads()
    if n is not None and n != previous:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when CUDA is available, else ``"cpu"``; others checked.

    Raises:
        ValueError: a CUDA device is asked for on a machine without CUDA.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available here")
    return device
