"""The model file and the worker payload of a :class:`~coffea_f4f.morpher.Morpher`.

A saved model is a directory: ``config.json`` (format name and version, package version,
features, condition, the map spec, scalings, the densities' specs, history, info) and
``weights.safetensors``. The payload that :class:`~coffea_f4f.MorphTransform` pickles is the
same config without densities and history plus the map's weights as safetensors bytes.
Nothing is ever unpickled. The :class:`~coffea_f4f.morpher.Morpher` methods (``to_dict``,
``from_dict``, ``payload``, ``save``; :func:`coffea_f4f.load`) are the interface; this module
holds how the bytes look. See DESIGN-NOTES.md, "Saved models".
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._version import __version__
from .density import DensityModel
from .maps import architecture_buffers, build_map
from .scaling import Scaler

if TYPE_CHECKING:  # pragma: no cover - the morpher imports this module
    from .morpher import Morpher

__all__ = [
    "CONFIG_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "compact",
    "describe",
    "parts",
    "read_compact",
    "read_dir",
    "weights",
    "write_dir",
]

FORMAT_NAME = "coffea-f4f-morpher"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
DENSITIES = ("source_density", "target_density")
#: weight-name prefix of ensemble member ``i`` (1-based): ``members.<i>.<map weight>``
MEMBER = "members."


def describe(m: Morpher) -> dict[str, Any]:
    """The JSON-serialisable description written to ``config.json``."""
    densities = {}
    for name in DENSITIES:
        d: DensityModel | None = getattr(m, name)
        densities[name] = None if d is None else d.to_spec()
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "features": m.features,
        "condition": m.condition,  # a name, or a list of names for several
        "variant": m.variant,
        "map": m.map_spec,
        "ensemble_size": m.ensemble_size,  # members share the map spec
        "scaler": m.scaler.to_dict(),
        "target_scaler": m.target_scaler.to_dict(),
        "condition_scaler": None if m.condition_scaler is None else m.condition_scaler.to_dict(),
        **densities,
        "history": _jsonable(m.history),
        "info": _jsonable(
            {**m.info, "condition_range": [list(m.condition_ranges[n]) for n in m.conditions]}
            if m.conditions and m.condition_ranges
            else m.info
        ),
    }


def weights(m: Morpher) -> dict[str, torch.Tensor]:
    """All weights, prefixed ``map.``, ``source_density.``, ``target_density.`` (as trained;
    CPU, contiguous)."""
    state = {f"map.{k}": v for k, v in m.module.state_dict().items()}
    for i, member in enumerate(m.members, start=1):
        state.update({f"{MEMBER}{i}.{k}": v for k, v in member.state_dict().items()})
    for name in DENSITIES:
        d: DensityModel | None = getattr(m, name)
        if d is not None:
            state.update({f"{name}.{k}": v for k, v in d.flow.state_dict().items()})
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def parts(
    config: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, partial: bool = False
) -> dict[str, Any]:
    """The :class:`~coffea_f4f.morpher.Morpher` constructor arguments of a description and its
    weights (the map and densities rebuilt and loaded).

    ``partial=True`` accepts weights without the buffers that the architecture determines
    (a :func:`compact` payload); they come from the rebuilt map.

    Raises:
        ValueError: not a morpher description, an unsupported format version, or weights that
            do not fit the architecture.
    """
    version = config.get("format_version")
    if config.get("format") != FORMAT_NAME or version is None:
        raise ValueError("not a coffea-f4f morpher config (no format / format_version)")
    if int(version) != FORMAT_VERSION:
        raise ValueError(
            f"model format version {version} is not supported by coffea-f4f {__version__} "
            f"(reads version {FORMAT_VERSION}); retrain, or use the coffea-f4f version "
            f"{config.get('package_version', '?')} that wrote it"
        )

    def sub(prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix)
        return {k[n:]: v for k, v in state.items() if k.startswith(prefix)}

    module = _load_map(config["map"], sub("map."), partial, "map")
    n_members = config.get("ensemble_size", 0)
    if not isinstance(n_members, int) or n_members < 0:
        raise ValueError(f"ensemble_size must be an integer >= 0, got {n_members!r}")
    members = [
        _load_map(config["map"], sub(f"{MEMBER}{i}."), partial, f"ensemble member {i}")
        for i in range(1, n_members + 1)
    ]
    extra = sorted(k for k in state if k.startswith(MEMBER) and int(k.split(".")[1]) > n_members)
    if extra:
        raise ValueError(
            f"the weights hold ensemble members beyond ensemble_size={n_members}: {extra[:3]}"
        )
    densities = {
        name: None
        if config.get(name) is None
        else DensityModel.from_spec(config[name], sub(f"{name}."))
        for name in DENSITIES
    }
    cs = config.get("condition_scaler")
    return {
        "features": config["features"],
        "condition": config.get("condition"),
        "module": module,
        "map_spec": config["map"],
        "scaler": Scaler.from_dict(config["scaler"]),
        "target_scaler": Scaler.from_dict(config["target_scaler"]),
        "condition_scaler": None if cs is None else Scaler.from_dict(cs),
        "variant": config.get("variant", "?"),
        "history": config.get("history"),
        "info": config.get("info"),
        "members": members,
        **densities,
    }


def _load_map(spec: Mapping[str, Any], state: Mapping[str, torch.Tensor], partial: bool, what: str):
    """The map of ``spec`` with ``state`` loaded (``partial``: without the buffers that the
    architecture determines)."""
    module = build_map(spec)
    result = module.load_state_dict(state, strict=False)
    missing = set(result.missing_keys)
    if partial:
        missing -= architecture_buffers(module)
    if missing or result.unexpected_keys:
        raise ValueError(
            f"the weights of the {what} do not fit the model's architecture (missing "
            f"{sorted(missing)[:5]}, unexpected {sorted(result.unexpected_keys)[:5]})"
        )
    return module


def compact(m: Morpher) -> tuple[bytes, bytes]:
    """The payload: ``(config JSON bytes, safetensors bytes)`` with what applying needs.

    Left out: the training densities and history, and the map's buffers that the
    architecture determines. float64 weights that are exact float32 values are stored as
    float32, so the bytes (and their hash) do not depend on the precision the model was last
    applied in.
    """
    from safetensors.torch import save as save_weights

    config = describe(m)
    config.update(dict.fromkeys(DENSITIES), history={})
    derived = architecture_buffers(m.module)
    state = {}
    for prefix, module in (
        ("map.", m.module),
        *((f"{MEMBER}{i}.", mm) for i, mm in enumerate(m.members, 1)),
    ):
        for k, v in module.state_dict().items():
            if k in derived:
                continue
            v = v.detach().to("cpu").contiguous()
            if v.dtype == torch.float64 and bool((v.float().double() == v).all()):
                v = v.float()
            state[f"{prefix}{k}"] = v
    return json.dumps(config, sort_keys=True).encode(), save_weights(state)


def read_compact(config: bytes, state: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The description and weights of a :func:`compact` payload."""
    from safetensors.torch import load as load_weights

    return json.loads(config.decode()), load_weights(state)


def write_dir(path: str | os.PathLike[str], m: Morpher) -> Path:
    """Write ``config.json`` and ``weights.safetensors`` of ``m`` into directory ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    save_file(
        weights(m), str(path / WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)}
    )
    (path / CONFIG_FILE).write_text(json.dumps(describe(m), indent=2) + "\n")
    return path


def read_dir(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The description and weights in a model directory (never unpickles).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a coffea-f4f model directory, or a file is unreadable.
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
    return config, state


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.floating | float):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
