""":class:`DensityModel`: a trained density ``q(x | c)`` (a frozen flow plus its scalings)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from . import flows
from .columns import Layout, condition_matrix, to_matrix
from .config import FlowConfig
from .scaling import Scaler

__all__ = ["EVAL_BATCH_SIZE", "DensityModel", "condition_field", "condition_names"]

#: rows per torch call when evaluating or sampling a density
EVAL_BATCH_SIZE = 65536


class DensityModel:
    """A trained density ``q(x | c)``: a frozen normflows flow plus its scalings.

    Returned by :func:`~coffea_f4f.fit_density`; pass it to :func:`~coffea_f4f.fit_morpher`
    as ``source_density=`` / ``target_density=``.

    Attributes:
        features: feature names, in order.
        conditions: the condition field names, in order (empty when unconditional).
        condition: the one condition name, the list when there are several, or None.
        flow: the normflows ``ConditionalNormalizingFlow`` (frozen, eval mode), in scaled space.
        scaler: feature scaling (data -> the flow's space).
        condition_scaler: condition scaling, or None.
        flow_config: the :class:`~coffea_f4f.config.FlowConfig` of the flow.
        history: training history (losses per epoch, best epoch, time).
    """

    def __init__(
        self,
        *,
        features: Sequence[str],
        condition: str | Sequence[str] | None,
        flow: torch.nn.Module,
        scaler: Scaler,
        condition_scaler: Scaler | None,
        flow_config: FlowConfig,
        history: Mapping[str, Any] | None = None,
    ) -> None:
        self.features = list(features)
        self.conditions = condition_names(condition)
        self.flow = flow
        self.scaler = scaler
        self.condition_scaler = condition_scaler
        self.flow_config = flow_config
        self.history = dict(history or {})
        self.flow.requires_grad_(False)
        self.flow.eval()

    @property
    def condition(self) -> str | list[str] | None:
        """The one condition name, the list of names when there are several, or None."""
        return condition_field(self.conditions)

    def _context(self, data: Any, condition: Any, layout: Layout) -> np.ndarray | None:
        if self.condition_scaler is None:
            if condition is not None:
                raise ValueError("this density is not conditional; do not pass condition=")
            return None
        c = condition_matrix(data, condition, self.conditions, layout)
        return self.condition_scaler.forward(c)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        p = next(self.flow.parameters())
        return torch.as_tensor(a, dtype=p.dtype, device=p.device)

    def log_prob(self, data: Any, *, condition: Any = None) -> np.ndarray:
        """Log density in the data space (the scaling's Jacobian included), shape ``(N,)``.

        ``condition``: default the condition field of ``data``; or values (see
        :func:`~coffea_f4f.columns.condition_matrix`).
        """
        x, layout = to_matrix(data, self.features)
        ctx = self._context(data, condition, layout)
        z = self.scaler.forward(x)
        out = np.empty(len(x))
        bs = EVAL_BATCH_SIZE
        with torch.no_grad():
            for i in range(0, len(x), bs):
                c = None if ctx is None else self._tensor(ctx[i : i + bs])
                lp = flows.log_prob(self.flow, self._tensor(z[i : i + bs]), c)
                out[i : i + bs] = lp.double().cpu().numpy()
        return out + self.scaler.log_abs_det(x)

    def sample(self, n: int, *, condition: Any = None, seed: int | None = None) -> np.ndarray:
        """Draw ``n`` events in the data space, shape ``(n, D)``.

        For a conditional density, ``condition`` is a scalar or ``n`` values.
        """
        ctx = self._context(None, condition, Layout(n))
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        u = torch.randn(n, len(self.features), generator=gen, dtype=torch.float64)
        out = np.empty((n, len(self.features)))
        bs = EVAL_BATCH_SIZE
        with torch.no_grad():
            for i in range(0, n, bs):
                c = None if ctx is None else self._tensor(ctx[i : i + bs])
                z, _ = flows.from_base(self.flow, self._tensor(u[i : i + bs].numpy()), c)
                out[i : i + bs] = z.double().cpu().numpy()
        return self.scaler.inverse(out)

    # ------------------------------------------------------------------ persistence
    def to_spec(self) -> dict[str, Any]:
        """The JSON description (features, condition, scalings, architecture)."""
        return {
            "features": self.features,
            "condition": condition_field(self.conditions),
            "scaler": self.scaler.to_dict(),
            "condition_scaler": None
            if self.condition_scaler is None
            else self.condition_scaler.to_dict(),
            "flow": self.flow_config.to_dict(),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], state: Mapping[str, Any]) -> DensityModel:
        """Rebuild from :meth:`to_spec` and the flow's state dict."""
        cs = spec.get("condition_scaler")
        cscaler = None if cs is None else Scaler.from_dict(cs)
        cfg = FlowConfig.from_dict(spec["flow"])
        flow = flows.build_density_flow(
            len(spec["features"]), cfg, context_dim=0 if cscaler is None else cscaler.width
        )
        flow.load_state_dict(state, strict=True)
        return cls(
            features=spec["features"],
            condition=spec.get("condition"),
            flow=flow,
            scaler=Scaler.from_dict(spec["scaler"]),
            condition_scaler=cscaler,
            flow_config=cfg,
        )

    def __repr__(self) -> str:
        cond = f", condition={self.condition!r}" if self.conditions else ""
        return f"DensityModel(features={self.features}{cond}, kind={self.flow_config.kind!r})"


def condition_names(condition: str | Sequence[str] | None) -> list[str]:
    """A saved or given ``condition`` (None, a name or a list of names) as a list."""
    if condition is None:
        return []
    return [condition] if isinstance(condition, str) else list(condition)


def condition_field(names: list[str]) -> str | list[str] | None:
    """How ``condition`` reads: None, the one name, or the list (also in saved files)."""
    if not names:
        return None
    return names[0] if len(names) == 1 else list(names)
