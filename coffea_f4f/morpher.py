"""The trained artefacts: :class:`DensityModel` and :class:`Morpher`, with save and load.

A :class:`Morpher` holds everything needed to move events: the feature (and condition)
scalings and a torch map between the two scaled spaces. Three maps exist:

- ``"flow"`` (variants ``bidirectional`` and ``unidirectional``): a spline flow trained with the
  frozen target density as its base; morphing source -> target is its data -> base direction,
  which is a single network pass per layer for autoregressive splines.
- ``"base_transfer"``: encode with the source density flow, decode with the target density flow.
- ``"condition"`` (from :func:`~coffea_f4f.train.fit_condition_morpher`): one conditional flow
  ``g(x; c)``; the map from condition ``a`` to ``b`` is ``g^-1(g(x; a); b)``, so the map from
  ``b`` to ``a`` is its exact inverse and the map from ``a`` to ``a`` is the identity.

Applying runs in batches under ``torch.no_grad`` in float64 by default (results do not depend on
the batching beyond ~1e-15 relative, and inverses are exact to ~1e-10); ``precision="float32"``
is about twice as fast. Saved models are a directory with ``config.json`` and
``weights.safetensors``; loading never unpickles anything.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import flows
from ._version import __version__
from .columns import condition_vector, replace_fields, to_matrix
from .config import FlowConfig
from .scaling import Scaler

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
DEFAULT_BATCH_SIZE = 65536


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available here")
    return device


# ----------------------------------------------------------------------------- torch maps
class FlowMap(nn.Module):
    """Source -> target = the morph flow's data -> base direction."""

    def __init__(self, layers, context_dim: int = 0) -> None:
        super().__init__()
        self.flows = nn.ModuleList(layers)
        self.context_dim = context_dim

    def forward(self, z, context=None, target_context=None):
        return flows.to_base(self, z, context)

    def inverse(self, z, context=None, target_context=None):
        return flows.from_base(self, z, context)


class BaseTransferMap(nn.Module):
    """Source -> latent (source density flow) -> target (target density flow).

    The context arrives in the source density's condition scaling; when the target density
    scales the condition differently, ``context_bridge = (source_scaler, target_scaler)`` maps
    it (densities trained separately with :func:`~coffea_f4f.train.fit_density`).
    """

    def __init__(self, source, target, context_bridge: tuple[Scaler, Scaler] | None = None):
        super().__init__()
        self.source, self.target = source, target
        self.bridge = (None if context_bridge is None else
                       (flows.TorchScaler(context_bridge[0]), flows.TorchScaler(context_bridge[1])))

    def _target_context(self, context):
        if context is None or self.bridge is None:
            return context
        return self.bridge[1](self.bridge[0].inverse(context))

    def forward(self, z, context=None, target_context=None):
        u, ld1 = flows.to_base(self.source, z, context)
        y, ld2 = flows.from_base(self.target, u, self._target_context(context))
        return y, ld1 + ld2

    def inverse(self, z, context=None, target_context=None):
        u, ld1 = flows.to_base(self.target, z, self._target_context(context))
        x, ld2 = flows.from_base(self.source, u, context)
        return x, ld1 + ld2


class ConditionMap(nn.Module):
    """``T(x; a -> b) = g^-1(g(x; a); b)`` with one conditional flow ``g``."""

    def __init__(self, layers) -> None:
        super().__init__()
        self.flows = nn.ModuleList(layers)
        self.context_dim = 1

    def forward(self, z, context=None, target_context=None):
        if context is None or target_context is None:
            raise ValueError("a condition morph needs condition= and target_condition=")
        u, ld1 = flows.to_base(self, z, context)
        y, ld2 = flows.from_base(self, u, target_context)
        same = (context == target_context).all(1)  # a -> a: exactly the identity
        if same.any():
            y = torch.where(same[:, None], z, y)
            ld1, ld2 = torch.where(same, 0.0, ld1), torch.where(same, 0.0, ld2)
        return y, ld1 + ld2

    def inverse(self, z, context=None, target_context=None):
        return self.forward(z, target_context, context)


def build_map(spec: Mapping[str, Any]) -> nn.Module:
    """Build the torch module of a morph from its JSON spec (weights not loaded)."""
    kind = spec["kind"]
    dim, cdim = int(spec["dim"]), int(spec.get("context_dim", 0))
    if kind == "flow":
        layers = flows.build_layers(dim, FlowConfig.from_dict(spec["flow"]), context_dim=cdim)
        return FlowMap(layers, context_dim=cdim)
    if kind == "base_transfer":
        bridge = spec.get("context_bridge")
        return BaseTransferMap(
            flows.build_density_flow(dim, FlowConfig.from_dict(spec["source"]), context_dim=cdim),
            flows.build_density_flow(dim, FlowConfig.from_dict(spec["target"]), context_dim=cdim),
            None if bridge is None else (Scaler.from_dict(bridge[0]), Scaler.from_dict(bridge[1])),
        )
    if kind == "condition":
        if cdim != 1:
            raise ValueError("a condition morph needs exactly one condition")
        return ConditionMap(
            flows.build_layers(dim, FlowConfig.from_dict(spec["flow"]), context_dim=1)
        )
    raise ValueError(f"unknown morph kind {kind!r} in saved model")


# ----------------------------------------------------------------------------- density
class DensityModel:
    """A trained density ``q(x | c)``: a frozen normflows flow plus its scalings.

    Returned by :func:`~coffea_f4f.train.fit_density`; pass it to
    :func:`~coffea_f4f.train.fit_morpher` as ``source_density=`` / ``target_density=``.

    Attributes:
        features: feature names, in order.
        condition: the condition field name, or None.
        flow: the normflows ``ConditionalNormalizingFlow`` (frozen, eval mode), in scaled space.
        scaler: feature scaling (data -> the flow's space).
        condition_scaler: condition scaling, or None.
        config: the :class:`~coffea_f4f.config.FlowConfig` of the flow.
        history: training history (losses per epoch, best epoch, time).
    """

    def __init__(self, *, features, condition, flow, scaler, condition_scaler, config,
                 history=None) -> None:
        self.features = list(features)
        self.condition = condition
        self.flow = flow
        self.scaler = scaler
        self.condition_scaler = condition_scaler
        self.config = config
        self.history = dict(history or {})
        self.flow.requires_grad_(False)
        self.flow.eval()

    def _context(self, data: Any, condition: Any, n: int):
        if self.condition is None:
            if condition is not None:
                raise ValueError("this density is not conditional; do not pass condition=")
            return None
        c = condition_vector(self.condition if condition is None else condition, n,
                             self.condition, data=data)
        return self.condition_scaler.forward(c)

    def log_prob(self, data: Any, *, condition: Any = None) -> np.ndarray:
        """Log density in the data space (the scaling's Jacobian included), shape ``(N,)``."""
        x, layout = to_matrix(data, self.features)
        ctx = self._context(data, condition, len(x))
        z = self.scaler.forward(x)
        jac = self.scaler.log_abs_det(x)
        dtype = next(self.flow.parameters()).dtype
        device = next(self.flow.parameters()).device
        out = np.empty(len(x))
        with torch.no_grad():
            for i in range(0, len(x), DEFAULT_BATCH_SIZE):
                zz = torch.as_tensor(z[i:i + DEFAULT_BATCH_SIZE], dtype=dtype, device=device)
                cc = None if ctx is None else torch.as_tensor(
                    ctx[i:i + DEFAULT_BATCH_SIZE], dtype=dtype, device=device)
                out[i:i + DEFAULT_BATCH_SIZE] = flows.log_prob(self.flow, zz, cc).cpu().numpy()
        return out + jac

    def sample(self, n: int, *, condition: Any = None, seed: int | None = None) -> np.ndarray:
        """Draw ``n`` events in the data space, shape ``(n, D)``.

        For a conditional density, ``condition`` is a scalar or ``n`` values.
        """
        ctx = self._context(None, condition, n)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        dtype = next(self.flow.parameters()).dtype
        device = next(self.flow.parameters()).device
        u = torch.randn(n, len(self.features), generator=gen, dtype=torch.float64)
        out = np.empty((n, len(self.features)))
        with torch.no_grad():
            for i in range(0, n, DEFAULT_BATCH_SIZE):
                cc = None if ctx is None else torch.as_tensor(
                    ctx[i:i + DEFAULT_BATCH_SIZE], dtype=dtype, device=device)
                z, _ = flows.from_base(self.flow, u[i:i + DEFAULT_BATCH_SIZE].to(dtype=dtype,
                                       device=device), cc)
                out[i:i + DEFAULT_BATCH_SIZE] = z.double().cpu().numpy()
        return self.scaler.inverse(out)

    def spec(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "condition": self.condition,
            "scaler": self.scaler.to_dict(),
            "condition_scaler": None if self.condition_scaler is None
            else self.condition_scaler.to_dict(),
            "flow": self.config.to_dict(),
        }

    def __repr__(self) -> str:
        cond = f", condition={self.condition!r}" if self.condition else ""
        return f"DensityModel(features={self.features}{cond}, kind={self.config.kind!r})"


def _density_from_spec(spec: Mapping[str, Any], state: Mapping[str, Any]) -> DensityModel:
    cs = spec.get("condition_scaler")
    cfg = FlowConfig.from_dict(spec["flow"])
    flow = flows.build_density_flow(len(spec["features"]), cfg,
                                    context_dim=1 if spec.get("condition") else 0)
    flow.load_state_dict(state, strict=True)
    return DensityModel(
        features=spec["features"], condition=spec.get("condition"), flow=flow,
        scaler=Scaler.from_dict(spec["scaler"]),
        condition_scaler=None if cs is None else Scaler.from_dict(cs), config=cfg,
    )


# ----------------------------------------------------------------------------- morpher
class Morpher:
    """A trained morph from a source to a target distribution (the package's artefact).

    Use :meth:`morph` to move source events onto the target distribution and :meth:`inverse`
    for the reverse map; :meth:`save` / :func:`load` to persist it.

    Attributes:
        features: feature names, in the model's order.
        condition: condition field name, or None.
        variant: how it was trained (``bidirectional``, ``unidirectional``, ``base_transfer``,
            ``condition``).
        history: training history.
        source_density / target_density: the :class:`DensityModel` s used in training (or None).
        precision: ``"float64"`` (default) or ``"float32"`` for applying.
        num_threads: torch intra-op threads while applying (default 1; None leaves torch's).
        condition_range: ``(min, max)`` of the training conditions, or None.
        condition_policy: what to do with conditions outside ``condition_range``:
            ``"clamp"`` (default) or ``"error"``.
    """

    def __init__(
        self,
        *,
        features,
        condition,
        module,
        spec: Mapping[str, Any],
        scaler: Scaler,
        target_scaler: Scaler | None = None,
        condition_scaler: Scaler | None = None,
        variant: str = "bidirectional",
        history: Mapping[str, Any] | None = None,
        source_density: DensityModel | None = None,
        target_density: DensityModel | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.features = list(features)
        self.condition = condition
        self.module = module
        self.spec = dict(spec)
        self.scaler = scaler
        self.target_scaler = target_scaler if target_scaler is not None else scaler
        self.condition_scaler = condition_scaler
        self.variant = variant
        self.history = dict(history or {})
        self.source_density = source_density
        self.target_density = target_density
        self.info = dict(info or {})
        self.precision = "float64"
        self.num_threads: int | None = 1
        self.device = "cpu"
        rng = self.info.get("condition_range")
        self.condition_range: tuple[float, float] | None = (
            (float(rng[0]), float(rng[1])) if rng is not None else None)
        self.condition_policy = self.info.get("condition_policy", "clamp")
        self.module.requires_grad_(False)
        self.module.eval()

    # ------------------------------------------------------------------ helpers
    def __repr__(self) -> str:
        cond = f", condition={self.condition!r}" if self.condition else ""
        return f"Morpher(features={self.features}{cond}, variant={self.variant!r})"

    @property
    def between_conditions(self) -> bool:
        """True for a morph between condition values (:func:`fit_condition_morpher`)."""
        return self.spec["kind"] == "condition"

    def to(self, device: str | None = None, *, precision: str | None = None) -> Morpher:
        """Move applying to ``device`` (``"auto"``/``"cpu"``/``"cuda"``) and/or set precision."""
        if precision is not None:
            if precision not in ("float32", "float64"):
                raise ValueError("precision must be 'float32' or 'float64'")
            self.precision = precision
        if device is not None:
            self.device = _resolve_device(device)
        return self

    def _contexts(self, data, condition, target_condition, n):
        if self.condition is None:
            if condition is not None or target_condition is not None:
                raise ValueError(
                    "this morpher is not conditional; do not pass condition= or "
                    "target_condition="
                )
            return None, None
        src = condition_vector(self.condition if condition is None else condition, n,
                               self.condition, data=data)
        ctx = self.condition_scaler.forward(self._in_range(src, "condition"))
        if self.between_conditions:
            if target_condition is None:
                raise ValueError(
                    "this morpher maps between condition values: pass target_condition= "
                    "(a scalar or one value per event)"
                )
            tgt = condition_vector(target_condition, n, self.condition, data=data)
            return ctx, self.condition_scaler.forward(self._in_range(tgt, "target_condition"))
        if target_condition is not None:
            raise ValueError(
                "this morpher maps at a fixed condition (source and target at the same "
                f"{self.condition!r}); target_condition= is only for fit_condition_morpher models"
            )
        return ctx, None

    @property
    def condition_policy(self) -> str:
        """``"clamp"`` or ``"error"``: conditions outside :attr:`condition_range` (saved)."""
        return self._condition_policy

    @condition_policy.setter
    def condition_policy(self, value: str) -> None:
        if value not in ("clamp", "error"):
            raise ValueError(f"condition_policy must be 'clamp' or 'error', got {value!r}")
        self._condition_policy = value
        self.info["condition_policy"] = value

    def _in_range(self, c: np.ndarray, what: str) -> np.ndarray:
        """Apply :attr:`condition_policy` to conditions outside the training range.

        ``"clamp"`` (default): values below/above the range of the training conditions are
        set to its edge (the morph learned at the edge is used; nothing is extrapolated).
        ``"error"``: raise ``ValueError`` naming the count and the range.
        """
        if self.condition_range is None:
            return c
        lo, hi = self.condition_range
        outside = (c < lo) | (c > hi)
        if not outside.any():
            return c
        if self.condition_policy == "error":
            raise ValueError(
                f"{what} {self.condition!r}: {int(outside.sum())} of {len(c)} values are "
                f"outside the training range [{lo:.6g}, {hi:.6g}]; select events inside it, "
                "or set morpher.condition_policy = 'clamp'"
            )
        return np.clip(c, lo, hi)

    def _applied(self, dtype: torch.dtype) -> nn.Module:
        """The map in ``dtype`` on :attr:`device`: a cached copy, so that :attr:`module` (what
        is saved) keeps the trained float32 weights."""
        key = (dtype, str(self.device))
        cache = self.__dict__.setdefault("_applied_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = copy.deepcopy(self.module).to(dtype=dtype, device=self.device).eval()
        return cache[key]

    def _run(self, z, ctx, ctx_to, *, inverse: bool, batch_size: int | None) -> np.ndarray:
        bs = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        module = self._applied(dtype)
        out = np.empty_like(z)
        fn = module.inverse if inverse else module.forward

        def tensor(a, i):
            return None if a is None else torch.as_tensor(a[i:i + bs], dtype=dtype,
                                                          device=self.device)

        previous = flows.set_torch_threads(self.num_threads)
        try:
            with torch.no_grad():
                for i in range(0, len(z), bs):
                    y, _ = fn(tensor(z, i), tensor(ctx, i), tensor(ctx_to, i))
                    out[i:i + bs] = y.double().cpu().numpy()
        finally:
            flows.set_torch_threads(previous)
        return out

    def _apply(self, data, condition, target_condition, batch_size, *, inverse: bool):
        x, layout = to_matrix(data, self.features)
        n = len(x)
        if layout.counts is not None and _is_event_level(condition, len(layout.counts), n):
            n = len(layout.counts)
        ctx, ctx_to = self._contexts(data, condition, target_condition, n)
        if layout.counts is not None and ctx is not None and len(ctx) != len(x):
            # an event-level condition broadcast to the objects of a jagged collection
            ctx = np.repeat(ctx, layout.counts, axis=0)
            ctx_to = None if ctx_to is None else np.repeat(ctx_to, layout.counts, axis=0)
        if len(x) == 0:
            y = np.zeros((0, len(self.features)))
        else:
            scale_in, scale_out = (
                (self.target_scaler, self.scaler) if inverse else (self.scaler, self.target_scaler)
            )
            z = self._run(scale_in.forward(x), ctx, ctx_to, inverse=inverse,
                          batch_size=batch_size)
            y = scale_out.inverse(z)
            if ctx_to is not None:  # a -> a is exactly the identity, scaling round-off included
                same = (ctx == ctx_to).all(1)
                y[same] = x[same]
        if isinstance(data, np.ndarray) or not (isinstance(data, Mapping) or hasattr(data,
                                                                                      "fields")):
            return y
        return replace_fields(data, self.features, y, layout)

    # ------------------------------------------------------------------ public
    def morph(self, x: Any, *, condition: Any = None, target_condition: Any = None,
              batch_size: int | None = None) -> Any:
        """Move source events onto the target distribution.

        Args:
            x: an ``(N, D)`` array (columns in :attr:`features` order), an awkward record
                array, or a mapping of field -> array. Jagged fields are morphed per object.
            condition: for conditional models: values (scalar, ``(N,)``) or a field name;
                default: the :attr:`condition` field of ``x``.
            target_condition: for between-condition models only: the condition to move to.
            batch_size: events per torch call (memory is bounded by it).

        Returns:
            The same type as ``x``: an array, or records / mapping with the feature fields
            replaced by morphed values and all other fields kept.

        Raises:
            MissingColumnError, ValueError, TypeError: bad input (named field, shape, count).
        """
        return self._apply(x, condition, target_condition, batch_size, inverse=False)

    def inverse(self, y: Any, *, condition: Any = None, target_condition: Any = None,
                batch_size: int | None = None) -> Any:
        """The reverse map of :meth:`morph` (same conventions): ``inverse(morph(x)) == x``."""
        return self._apply(y, condition, target_condition, batch_size, inverse=True)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        """The JSON-serialisable description written to ``config.json``."""
        return {
            "format": "coffea-f4f-morpher",
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "features": self.features,
            "condition": self.condition,
            "variant": self.variant,
            "map": self.spec,
            "scaler": self.scaler.to_dict(),
            "target_scaler": self.target_scaler.to_dict(),
            "condition_scaler": None if self.condition_scaler is None
            else self.condition_scaler.to_dict(),
            "source_density": None if self.source_density is None
            else self.source_density.spec(),
            "target_density": None if self.target_density is None
            else self.target_density.spec(),
            "history": _jsonable(self.history),
            "info": _jsonable(self.info),
        }

    def state_dict(self) -> dict[str, Any]:
        """All weights, prefixed ``map.``, ``source_density.``, ``target_density.`` (float32
        as trained; CPU, contiguous)."""
        state = {f"map.{k}": v for k, v in self.module.state_dict().items()}
        for name in ("source_density", "target_density"):
            d = getattr(self, name)
            if d is not None:
                state.update({f"{name}.{k}": v for k, v in d.flow.state_dict().items()})
        return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to directory ``path`` (created; existing model files replaced)."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), str(path / WEIGHTS_FILE),
                  metadata={"format_version": str(FORMAT_VERSION)})
        (path / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2) + "\n")
        return path

    @classmethod
    def from_config(cls, config: Mapping[str, Any], state: Mapping[str, Any]) -> Morpher:
        """Rebuild from a config dict and a flat state dict (as :meth:`save` writes)."""
        version = config.get("format_version")
        if config.get("format") != "coffea-f4f-morpher" or version is None:
            raise ValueError("not a coffea-f4f morpher config (no format / format_version)")
        if int(version) != FORMAT_VERSION:
            raise ValueError(
                f"model format version {version} is not supported by coffea-f4f {__version__} "
                f"(reads version {FORMAT_VERSION}); retrain, or use the coffea-f4f version "
                f"{config.get('package_version', '?')} that wrote it"
            )

        def sub(prefix: str) -> dict[str, Any]:
            n = len(prefix)
            return {k[n:]: v for k, v in state.items() if k.startswith(prefix)}

        module = build_map(config["map"])
        module.load_state_dict(sub("map."), strict=True)
        densities = {
            name: None if config.get(name) is None
            else _density_from_spec(config[name], sub(f"{name}."))
            for name in ("source_density", "target_density")
        }
        cs = config.get("condition_scaler")
        return cls(
            features=config["features"], condition=config.get("condition"), module=module,
            spec=config["map"], scaler=Scaler.from_dict(config["scaler"]),
            target_scaler=Scaler.from_dict(config["target_scaler"]),
            condition_scaler=None if cs is None else Scaler.from_dict(cs),
            variant=config.get("variant", "?"), history=config.get("history"),
            info=config.get("info"), **densities,
        )


def _is_event_level(condition: Any, n_events: int, n_objects: int) -> bool:
    """True when ``condition`` holds one value per event (not per object) of jagged input."""
    if condition is None or isinstance(condition, str):
        return False
    arr = np.asarray(condition)
    return arr.ndim >= 1 and len(arr) == n_events and n_events != n_objects


def load(path: str | os.PathLike) -> Morpher:
    """Load a :class:`Morpher` written by :meth:`Morpher.save` (never unpickles).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a coffea-f4f model, or its format version is unsupported.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not path.is_dir() or not cfg_file.is_file() or not w_file.is_file():
        raise ValueError(
            f"{path} is not a coffea-f4f model directory (expected {CONFIG_FILE} and "
            f"{WEIGHTS_FILE} inside; write one with Morpher.save)"
        )
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_file} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{cfg_file} does not hold a coffea-f4f model config")
    try:
        state = load_file(str(w_file))
    except SafetensorError as err:
        raise ValueError(f"{w_file} is not a valid safetensors file: {err}") from err
    return Morpher.from_config(config, state)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
