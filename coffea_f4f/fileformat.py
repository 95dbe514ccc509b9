"""The model file and the worker payload of a :class:`~coffea_f4f.morpher.Morpher`.

A saved model is a directory: ``config.json`` (format name and version, package version,
features, condition, the map spec, scalings, the densities' specs, history, info, and the
SHA-256 of the weights file) and ``weights.safetensors`` (whose metadata holds the SHA-256 of
the config's content). The payload that :class:`~coffea_f4f.MorphTransform` pickles is the
same config without densities and history plus the map's weights as safetensors bytes.
Nothing is ever unpickled. The :class:`~coffea_f4f.morpher.Morpher` methods (``to_dict``,
``from_dict``, ``payload``, ``save``; :func:`coffea_f4f.load`) are the interface; this module
holds how the bytes look (writing, reading, rebuilding). What a file is checked for before it
is used is :mod:`coffea_f4f.modelcheck` (every failure is a :class:`ModelFileError` naming the
file; re-exported here with :data:`LIMITS`, :func:`check_config` and
:func:`estimate_parameters`). See DESIGN-NOTES.md, "Saved models".
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from . import flows
from ._version import __version__
from .density import DensityModel
from .maps import architecture_buffers, build_map
from .modelcheck import (
    DENSITIES,
    FORMAT_NAME,
    FORMAT_VERSION,
    LIMITS,
    MEMBER,
    ModelFileError,
    _Check,
    _check_finite,
    _check_fit,
    _check_format,
    _check_parts,
    _parse_json,
    _show,
    check_config,
    estimate_parameters,
)
from .scaling import Scaler

if TYPE_CHECKING:  # pragma: no cover - the morpher imports this module
    from .morpher import Morpher

__all__ = [
    "CONFIG_FILE",
    "CONFIG_HASH",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LIMITS",
    "WEIGHTS_FILE",
    "WEIGHTS_HASH",
    "ModelFileError",
    "check_config",
    "compact",
    "config_digest",
    "describe",
    "estimate_parameters",
    "parts",
    "read_compact",
    "read_dir",
    "read_model",
    "weights",
    "write_dir",
]

# FORMAT_NAME, FORMAT_VERSION, DENSITIES and MEMBER are modelcheck's (its checks use them)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
#: ``config.json`` key: the SHA-256 (hex) of the bytes of ``weights.safetensors``
WEIGHTS_HASH = "weights_sha256"
#: ``weights.safetensors`` metadata key: :func:`config_digest` of ``config.json``
CONFIG_HASH = "config_sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------------------- writing
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


def config_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a description: its canonical JSON (sorted keys, no spaces) without
    the :data:`WEIGHTS_HASH` entry, so it does not depend on how ``config.json`` is laid out."""
    content = {k: v for k, v in config.items() if k != WEIGHTS_HASH}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def compact(m: Morpher, *, members: bool = True) -> tuple[bytes, bytes]:
    """The payload: ``(config JSON bytes, safetensors bytes)`` with what applying needs.

    Left out: the training densities and history, the map's buffers that the architecture
    determines, and (``members=False``) the ensemble members. float64 weights that are exact
    float32 values are stored as float32, so the bytes (and their hash) do not depend on the
    precision the model was last applied in.
    """
    from safetensors.torch import save as save_weights

    config = describe(m)
    config.update(dict.fromkeys(DENSITIES), history={})
    kept = m.members if members else []
    config["ensemble_size"] = len(kept)
    derived = architecture_buffers(m.module)
    state = {}
    for prefix, module in (
        ("map.", m.module),
        *((f"{MEMBER}{i}.", mm) for i, mm in enumerate(kept, 1)),
    ):
        for k, v in module.state_dict().items():
            if k in derived:
                continue
            v = v.detach().to("cpu").contiguous()
            if v.dtype == torch.float64 and bool((v.float().double() == v).all()):
                v = v.float()
            state[f"{prefix}{k}"] = v
    return json.dumps(config, sort_keys=True).encode(), save_weights(state)


def write_dir(path: str | os.PathLike[str], m: Morpher, *, overwrite: bool = False) -> Path:
    """Write ``config.json`` and ``weights.safetensors`` of ``m`` as directory ``path``.

    Both files are written into a new directory beside ``path`` and renamed into place; an
    existing model at ``path`` is first renamed to a backup name beside it and removed only
    once the new one is in place, so a failure while writing leaves the previous model
    loadable. Nothing is written that :func:`read_dir` and :func:`parts` would refuse.

    Args:
        path: the model directory.
        m: the model.
        overwrite: replace ``path`` even when it is a file, or a directory holding anything
            besides a coffea-f4f model's two files.

    Raises:
        FileExistsError: ``path`` exists and is not a coffea-f4f model directory (names the
            unexpected files), and ``overwrite`` is False.
        ModelFileError: the model is beyond what loading accepts (a :data:`LIMITS` bound,
            non-finite weights); nothing is written.
    """
    from safetensors.torch import save as to_bytes

    path = Path(path)
    # a symlink: replace what it points to; "." or "a/..": the directory itself, by name
    target = Path(os.path.realpath(path) if path.is_symlink() else os.path.abspath(path))
    _check_target(target, path, overwrite)
    config = json.loads(json.dumps(describe(m)))  # as loading will read it
    state = weights(m)
    try:
        check_config(config, path)
        _check_finite(state, _Check(path))
    except ModelFileError as err:
        raise ModelFileError(
            path, f"refusing to save a model that loading would refuse: {err.problem}"
        ) from None
    metadata = {"format_version": str(FORMAT_VERSION), CONFIG_HASH: config_digest(config)}
    data = to_bytes(state, metadata=metadata)
    config[WEIGHTS_HASH] = hashlib.sha256(data).hexdigest()
    text = json.dumps(config, indent=2) + "\n"
    _replace_dir(target, {WEIGHTS_FILE: data, CONFIG_FILE: text.encode()})
    return path


def _check_target(target: Path, given: Path, overwrite: bool) -> None:
    """Refuse (``FileExistsError``) to replace what is not a coffea-f4f model directory."""
    if not (target.exists() or target.is_symlink()) or overwrite:
        return
    if not target.is_dir():
        raise FileExistsError(
            f"{given} exists and is not a directory; pass overwrite=True to replace it with "
            "the model"
        )
    entries = sorted(os.listdir(target))
    foreign = [e for e in entries if e not in (CONFIG_FILE, WEIGHTS_FILE)]
    if not foreign and CONFIG_FILE in entries and not _is_model_config(target / CONFIG_FILE):
        foreign = [f"{CONFIG_FILE} (not a coffea-f4f config)"]
    if foreign:
        shown = ", ".join(foreign[:10]) + (f", ... ({len(foreign)} in all)" if foreign[10:] else "")
        raise FileExistsError(
            f"{given} exists and is not a coffea-f4f model directory (it holds {shown}); "
            "save to a new or empty directory, or pass overwrite=True to replace the "
            "directory and everything in it"
        )


def _is_model_config(file: Path) -> bool:
    try:
        with open(file, "rb") as f:
            config = _parse_json(f.read(LIMITS["json_bytes"] + 1), _Check(file))
        return config.get("format") == FORMAT_NAME
    except (OSError, ModelFileError):
        return False


def _write_file(file: Path, data: bytes) -> None:
    """Write ``data`` to a new file and flush it to the disk."""
    with open(file, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not possible on every platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fresh(parent: Path, stem: str, *, make: bool) -> Path:
    """A name beside the target that nothing uses (a new empty directory when ``make``)."""
    while True:
        candidate = parent / f".{stem}.{secrets.token_hex(4)}"
        if make:
            try:
                candidate.mkdir()  # the umask applies, as for any new directory
            except FileExistsError:  # pragma: no cover - 32 random bits collided
                continue
            return candidate
        if not (candidate.exists() or candidate.is_symlink()):
            return candidate


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _replace_dir(target: Path, files: Mapping[str, bytes]) -> None:
    """Make ``target`` a directory holding exactly ``files``, replacing what is there so that
    an error at any point before the final rename leaves the old content in place."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh(parent, f"{target.name}.saving", make=True)
    try:
        for name, data in files.items():
            _write_file(tmp / name, data)
        _fsync_dir(tmp)
        if target.exists() or target.is_symlink():
            backup = _fresh(parent, f"{target.name}.replaced", make=False)
            os.replace(target, backup)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(backup, target)  # the old model back under its name
                raise
            try:
                _remove(backup)
            except OSError as err:  # pragma: no cover - the new model is in place anyway
                warnings.warn(
                    f"the new model is saved at {target}, but the previous one could not be "
                    f"removed from {backup}: {err}",
                    RuntimeWarning,
                    stacklevel=3,
                )
        else:
            os.replace(tmp, target)
        _fsync_dir(parent)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------- reading bytes
def _parse_weights(data: bytes, check: _Check) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of safetensors bytes."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_weights

    if len(data) < 8:
        check.fail(
            f"is not a valid safetensors file: {len(data)} bytes (truncated?); it starts with "
            "an 8-byte header length"
        )
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        check.fail(
            f"is not a valid safetensors file (truncated?): its header claims {n} bytes, the "
            f"file has {len(data) - 8} after the length"
        )
    header = _parse_json(data[8 : 8 + n], check, "is not a valid safetensors file: its header")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        check.fail("is not a valid safetensors file: its __metadata__ is not a str -> str map")
    try:
        state = load_weights(data)
    except (SafetensorError, ValueError, TypeError, RuntimeError, OverflowError, KeyError) as err:
        check.fail(f"is not a valid safetensors file: {type(err).__name__}: {err}")
    return state, meta


def read_compact(config: bytes, state: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The description and weights of a :func:`compact` payload (structure checked when it
    is rebuilt with :func:`parts`).

    Raises:
        ModelFileError: bytes that are not JSON or not safetensors (named ``"payload"``).
    """
    check = _Check("payload")
    if not isinstance(config, bytes | bytearray) or not isinstance(state, bytes | bytearray):
        check.fail("the config and weights must be bytes")
    return _parse_json(bytes(config), check, "config"), _parse_weights(bytes(state), check)[0]


def read_dir(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The description and weights in a model directory (never unpickles), with the hashes
    checked: the weights' SHA-256 recorded in ``config.json`` and the config's SHA-256
    recorded in the weights' metadata (models saved before the hashes: not checked).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelFileError: ``path`` is not a coffea-f4f model directory, a file is unreadable,
            its format version is unsupported, or a file was damaged or changed after saving.
    """
    config, state, edited = _read_dir(Path(path))
    if edited is not None:
        raise ModelFileError(Path(path) / CONFIG_FILE, edited)
    return config, state


def read_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The :class:`~coffea_f4f.morpher.Morpher` constructor arguments of the model directory
    ``path``: :func:`read_dir`, then :func:`parts`, every error naming its file. When
    ``config.json`` was changed after saving, the error also says what the change breaks,
    if it breaks something :func:`parts` checks.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelFileError: anything :func:`read_dir` or :func:`parts` refuses.
    """
    path = Path(path)
    config, state, edited = _read_dir(path)
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    try:
        args = parts(config, state, source=cfg_file, weights_source=w_file)
    except ModelFileError as err:
        if edited is None:
            raise
        where = "" if err.source == str(cfg_file) else f" ({Path(err.source).name})"
        raise ModelFileError(
            cfg_file, f"{edited}; what the change breaks{where}: {err.problem}"
        ) from None
    if edited is not None:
        raise ModelFileError(cfg_file, edited)
    return args


def _read_dir(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], str | None]:
    """:func:`read_dir`, returning what is wrong with the config's hash (if anything) instead
    of raising it."""
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not path.is_dir() or not cfg_file.is_file() or not w_file.is_file():
        raise ModelFileError(
            path,
            f"is not a coffea-f4f model directory (expected {CONFIG_FILE} and {WEIGHTS_FILE} "
            "inside; write one with Morpher.save)",
        )
    c_check, w_check = _Check(cfg_file), _Check(w_file)
    try:
        with open(cfg_file, "rb") as f:
            raw = f.read(LIMITS["json_bytes"] + 1)
        data = w_file.read_bytes()
    except OSError as err:
        raise ModelFileError(path, f"cannot be read: {err}") from err
    config = _parse_json(raw, c_check)
    _check_format(config, c_check)  # another version may hash differently: say so first
    recorded = config.get(WEIGHTS_HASH)
    if recorded is not None:
        if not isinstance(recorded, str) or not _HEX64.fullmatch(recorded):
            c_check.fail(f"{WEIGHTS_HASH} must be 64 hex digits, got {_show(recorded)}")
        if hashlib.sha256(data).hexdigest() != recorded:
            w_check.fail(
                f"does not match the SHA-256 recorded in {CONFIG_FILE}: it was damaged or "
                f"changed after saving, or {CONFIG_FILE} belongs to another save; restore "
                "the model directory from a copy or retrain"
            )
    state, meta = _parse_weights(data, w_check)
    edited = None
    if recorded is None and CONFIG_HASH in meta:
        edited = (
            f"has no {WEIGHTS_HASH}, but {WEIGHTS_FILE} was saved with hashes: "
            f"{CONFIG_FILE} was edited or belongs to another save"
        )
    elif recorded is not None and meta.get(CONFIG_HASH) != config_digest(config):
        edited = (
            f"was changed after saving: its content does not match the SHA-256 recorded in "
            f"{WEIGHTS_FILE}; restore it from a copy (to change a model, load it, change it "
            "and save it again)"
        )
    return config, state, edited


# ---------------------------------------------------------------------------- rebuilding
def parts(
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    *,
    partial: bool = False,
    source: str | os.PathLike[str] | None = None,
    weights_source: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The :class:`~coffea_f4f.morpher.Morpher` constructor arguments of a description and its
    weights (the map and densities rebuilt and loaded), after checking that they fit: the
    description (:func:`check_config`), then the weights' names, shapes and dtypes against
    what the description builds (the size estimated before building), finite values, and
    the buffers the architecture determines equal to the rebuilt ones.

    ``partial=True`` accepts weights without the buffers that the architecture determines
    (a :func:`compact` payload); they come from the rebuilt map.

    Args:
        config, state: the description and the flat weights.
        partial: see above.
        source / weights_source: the names errors give the description and the weights
            (default ``"payload"`` when ``partial``, else ``"model description"``).

    Raises:
        ModelFileError: the first problem found, naming the source.
    """
    src = source if source is not None else ("payload" if partial else "model description")
    c, w = _Check(src), _Check(weights_source if weights_source is not None else src)
    try:
        return _parts(config, state, partial, c, w)
    except ModelFileError:
        raise
    except (
        KeyError,
        TypeError,
        IndexError,
        ValueError,
        AttributeError,
        RuntimeError,
        ArithmeticError,
        RecursionError,
    ) as err:  # a case the checks above do not name: still one error type, with the file
        c.fail(f"cannot be rebuilt: {type(err).__name__}: {err}")


def _parts(
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    partial: bool,
    c: _Check,
    w: _Check,
) -> dict[str, Any]:
    plan, groups = _check_parts(config, state, c, w)
    spec = config["map"]

    def built(make: Callable[[], nn.Module]) -> nn.Module:
        try:
            return make()
        except ValueError as err:
            c.fail(f"the map cannot be built: {err}")

    module = _fit(built(lambda: build_map(spec)), groups["map."], partial, "map.", w)
    members = [
        _fit(built(lambda: build_map(spec)), groups[p], partial, p, w)
        for p in (f"{MEMBER}{i}." for i in range(1, plan.ensemble_size + 1))
    ]
    densities: dict[str, DensityModel | None] = {}
    for name, d in plan.densities.items():
        if d is None:
            densities[name] = None
            continue
        cfg, width = d
        ds = config[name]
        flow = _fit(
            built(
                functools.partial(
                    flows.build_density_flow, len(plan.features), cfg, context_dim=width
                )
            ),
            groups[f"{name}."],
            False,
            f"{name}.",
            w,
        )
        cs = ds.get("condition_scaler")
        densities[name] = DensityModel(
            features=ds["features"],
            condition=ds.get("condition"),
            flow=flow,
            scaler=Scaler.from_dict(ds["scaler"]),
            condition_scaler=None if cs is None else Scaler.from_dict(cs),
            flow_config=cfg,
        )
    cs = config.get("condition_scaler")
    return {
        "features": plan.features,
        "condition": config.get("condition"),
        "module": module,
        "map_spec": spec,
        "scaler": Scaler.from_dict(config["scaler"]),
        "target_scaler": Scaler.from_dict(config["target_scaler"]),
        "condition_scaler": None if cs is None else Scaler.from_dict(cs),
        "variant": config.get("variant", "?"),
        "history": config.get("history"),
        "info": config.get("info"),
        "members": members,
        **densities,
    }


def _fit(
    module: nn.Module, state: Mapping[str, torch.Tensor], partial: bool, prefix: str, w: _Check
) -> Any:
    """``module`` with ``state`` loaded, after checking that they fit
    (:func:`~coffea_f4f.modelcheck._check_fit`)."""
    _check_fit(module, state, partial, prefix, w)
    module.load_state_dict(state, strict=False)
    return module


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
