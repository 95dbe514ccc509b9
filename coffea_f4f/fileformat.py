"""The model file and the worker payload of a :class:`~coffea_f4f.morpher.Morpher`.

A saved model is a directory: ``config.json`` (format name and version, package version,
features, condition, the map spec, scalings, the densities' specs, history, info, and the
SHA-256 of the weights file) and ``weights.safetensors`` (whose metadata holds the SHA-256 of
the config's content). The payload that :class:`~coffea_f4f.MorphTransform` pickles is the
same config without densities and history plus the map's weights as safetensors bytes.
Nothing is ever unpickled. The :class:`~coffea_f4f.morpher.Morpher` methods (``to_dict``,
``from_dict``, ``payload``, ``save``; :func:`coffea_f4f.load`) are the interface; this module
holds how the bytes look and everything a file is checked for before it is used (every
failure is a :class:`ModelFileError` naming the file). See DESIGN-NOTES.md, "Saved models".
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import re
import reprlib
import secrets
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import torch
from torch import nn

from . import flows
from ._version import __version__
from .config import FLOW_KINDS, FlowConfig
from .density import DensityModel
from .maps import MAP_KINDS, architecture_buffers, build_map
from .scaling import CATEGORICAL, DEQUANTISED_KINDS, KINDS, Scaler

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

FORMAT_NAME = "coffea-f4f-morpher"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
#: ``config.json`` key: the SHA-256 (hex) of the bytes of ``weights.safetensors``
WEIGHTS_HASH = "weights_sha256"
#: ``weights.safetensors`` metadata key: :func:`config_digest` of ``config.json``
CONFIG_HASH = "config_sha256"
DENSITIES = ("source_density", "target_density")
#: weight-name prefix of ensemble member ``i`` (1-based): ``members.<i>.<map weight>``
MEMBER = "members."

#: What a model file may describe; checked before anything is built (DESIGN-NOTES.md, "Saved
#: models"). Generous for real use; a file beyond them is refused with the field named.
LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "layers": 64,  # FlowConfig.layers
        "hidden": 4096,  # FlowConfig.hidden
        "blocks": 64,  # FlowConfig.blocks
        "bins": 256,  # FlowConfig.bins
        "tail_bound": 10**6,  # FlowConfig.tail_bound (standard deviations; default 4)
        "dim": 1024,  # features
        "context_dim": 1024,  # condition columns of the flows (one-hot codes included)
        "ensemble_size": 1000,  # bootstrap members
        "json_bytes": 64 * 2**20,  # size of config.json (and of a payload's config)
        "json_depth": 64,  # nesting of objects and lists in config.json
    }
)
# a config whose estimated parameter count exceeds this multiple of the numbers the weights
# file holds for that module (plus a small slack) is refused before it is built
_SIZE_FACTOR = 2
_SIZE_SLACK = 65536
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FLOAT_DTYPES = (torch.float32, torch.float64)
_NUMPY_KINDS = (*DEQUANTISED_KINDS, CATEGORICAL)  # no torch form: never in a context bridge


class ModelFileError(ValueError):
    """A model file (or payload) that cannot be used: unreadable, damaged or changed after
    saving, inconsistent, or beyond the loader's :data:`LIMITS`.

    Attributes:
        source: the file (its path) or ``"payload"`` the problem is in.
        problem: what is wrong.
    """

    def __init__(self, source: str | os.PathLike[str], problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (dask workers send errors back)
        return (type(self), (self.source, self.problem))


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
class _Check:
    """Typed reads of a parsed description; every failure is a :class:`ModelFileError`
    naming ``source``."""

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.source = str(source)

    def fail(self, problem: str) -> NoReturn:
        raise ModelFileError(self.source, problem)

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(f"{where} must be a JSON object, got {_show(value)}")
        return value

    def get(self, d: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in d:
            self.fail(f"{_at(where, key)} is missing")
        return d[key]

    def seq(self, value: Any, where: str, n: int | None = None) -> list[Any]:
        if not isinstance(value, list):
            self.fail(f"{where} must be a list, got {_show(value)}")
        if n is not None and len(value) != n:
            self.fail(f"{where} has {len(value)} entries, expected {n}")
        return value

    def string(self, value: Any, where: str, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            self.fail(f"{where} must be a non-empty string, got {_show(value)}")
        if choices is not None and value not in choices:
            self.fail(f"{where}={value!r} is not one of {tuple(choices)}")
        return value

    def names(self, value: Any, where: str, limit: int) -> list[str]:
        names = [self.string(v, f"{where}[{i}]") for i, v in enumerate(self.seq(value, where))]
        if len(names) > limit:
            self.fail(f"{where} has {len(names)} names, more than the limit {limit}")
        if len(set(names)) != len(names):
            self.fail(f"{where} repeats a name: {names}")
        return names

    def integer(self, value: Any, where: str, lo: int, hi: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"{where} must be an integer, got {_show(value)}")
        if not lo <= value <= hi:
            self.fail(f"{where}={_show(value)} is outside [{lo}, {hi}]")
        return value

    def number(self, value: Any, where: str, *, positive: bool = False) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(f"{where} must be a number, got {_show(value)}")
        try:
            v = float(value)
        except OverflowError:  # an integer beyond the float range
            self.fail(f"{where} must be a finite number, got {_show(value)}")
        if not math.isfinite(v) or (positive and not v > 0):
            self.fail(
                f"{where} must be a finite{' positive' if positive else ''} number, got {v!r}"
            )
        return v


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _show(value: Any) -> str:
    shown = reprlib.repr(value)
    return shown if isinstance(value, int | float | str) else f"{type(value).__name__} {shown}"


def _parse_json(data: bytes, check: _Check, what: str = "") -> dict[str, Any]:
    """A JSON object from ``data``, within the size and depth :data:`LIMITS`."""
    what = f"{what} " if what else ""
    if len(data) > LIMITS["json_bytes"]:
        check.fail(f"{what}is larger than the limit of {LIMITS['json_bytes']} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        check.fail(f"{what}is not UTF-8 text ({err.reason} at byte {err.start})")
    try:
        obj = json.loads(text)
    except RecursionError:
        check.fail(f"{what}nests deeper than the limit of {LIMITS['json_depth']} levels")
    except ValueError as err:  # JSONDecodeError, and integers with too many digits
        check.fail(f"{what}is not valid JSON: {err}")
    if _too_deep(obj, LIMITS["json_depth"]):
        check.fail(f"{what}nests deeper than the limit of {LIMITS['json_depth']} levels")
    if not isinstance(obj, dict):
        check.fail(f"{what}does not hold a JSON object, got {type(obj).__name__}")
    return obj


def _too_deep(obj: Any, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, depth = stack.pop()
        children = o.values() if isinstance(o, dict) else o if isinstance(o, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((v, depth + 1) for v in children)
    return False


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


# ---------------------------------------------------------------------------- checking
@dataclass
class _Plan:
    """What a checked description builds: per weight prefix, the flows (config, context
    width) it is made of, for the size estimate."""

    features: list[str]
    conditions: list[str]
    ensemble_size: int
    modules: dict[str, list[tuple[FlowConfig, int]]]
    densities: dict[str, tuple[FlowConfig, int] | None]


def check_config(config: Mapping[str, Any], source: str | os.PathLike[str] = "config") -> None:
    """Check a description (``config.json`` or a payload's) for everything that can be
    checked without the weights: types, the format version, consistent sizes (features =
    map dimension = scalings; conditions = condition scaling = context), finite scalings with
    positive scales, and the :data:`LIMITS`.

    Raises:
        ModelFileError: the first problem, naming ``source`` and the field.
    """
    _plan(config, _Check(source))


def _plan(config: Mapping[str, Any], c: _Check) -> _Plan:
    config = c.mapping(config, "the config")
    _check_format(config, c)
    features = c.names(c.get(config, "features", ""), "features", LIMITS["dim"])
    if not features:
        c.fail("features is empty")
    conditions = _condition_names(c, config.get("condition"), "condition")
    c.string(config.get("variant", "?"), "variant")
    n_members = c.integer(
        config.get("ensemble_size", 0), "ensemble_size", 0, LIMITS["ensemble_size"]
    )
    for key in ("history", "info"):
        if config.get(key) is not None:
            c.mapping(config[key], key)
    _check_scaler(c, c.get(config, "scaler", ""), "scaler", features)
    _check_scaler(c, c.get(config, "target_scaler", ""), "target_scaler", features)
    width = _condition_scaler(c, config.get("condition_scaler"), "condition_scaler", conditions)
    _check_info(c, config.get("info") or {}, conditions)
    kind, map_flows = _check_map(c, c.get(config, "map", ""), features, conditions, width)
    densities: dict[str, tuple[FlowConfig, int] | None] = {}
    for name in DENSITIES:
        spec = config.get(name)
        densities[name] = (
            None if spec is None else _check_density(c, spec, name, features, conditions, kind)
        )
    modules = {"map.": map_flows}
    modules.update({f"{MEMBER}{i}.": map_flows for i in range(1, n_members + 1)})
    modules.update({f"{name}.": [d] for name, d in densities.items() if d is not None})
    return _Plan(features, conditions, n_members, modules, densities)


def _check_format(config: Mapping[str, Any], c: _Check) -> None:
    version = config.get("format_version")
    if config.get("format") != FORMAT_NAME or version is None:
        c.fail("not a coffea-f4f morpher config (no format / format_version)")
    if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION:
        package = config.get("package_version", "?")
        c.fail(
            f"model format version {_show(version)} is not supported by coffea-f4f "
            f"{__version__} (reads version {FORMAT_VERSION}); retrain, or use the coffea-f4f "
            f"version {_show(package)} that wrote it"
        )


def _condition_names(c: _Check, value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [c.string(value, where)]
    return c.names(value, where, LIMITS["context_dim"])


def _check_scaler(
    c: _Check, d: Any, where: str, names: list[str], *, conditions: bool = False
) -> int:
    """Check a saved :class:`~coffea_f4f.scaling.Scaler`; returns its width."""
    d = c.mapping(d, where)
    got = c.names(c.get(d, "names", where), f"{where}.names", LIMITS["context_dim"] + 1)
    if got != names:
        what = "conditions" if conditions else "features"
        c.fail(f"{where}.names is {got}, not the model's {what} {names}")
    kinds = c.seq(c.get(d, "kinds", where), f"{where}.kinds", len(names))
    params = c.seq(c.get(d, "params", where), f"{where}.params", len(names))
    allowed = KINDS if conditions else tuple(k for k in KINDS if k != CATEGORICAL)
    width = 0
    for j, (kind, p) in enumerate(zip(kinds, params, strict=True)):
        c.string(kind, f"{where}.kinds[{j}]", allowed)
        at = f"{where}.params[{j}]"
        p = c.mapping(p, at)
        for key, v in p.items():
            c.number(v, f"{at}.{key}")
        c.number(c.get(p, "loc", at), f"{at}.loc")
        c.number(c.get(p, "scale", at), f"{at}.scale", positive=True)
        if kind == "logit":
            lo = c.number(c.get(p, "low", at), f"{at}.low")
            hi = c.number(c.get(p, "high", at), f"{at}.high")
            if not lo < hi:
                c.fail(f"{at}: logit needs low < high, got {lo!r}, {hi!r}")
        elif kind == "zero_inflated":
            for key in ("offset", "width"):
                c.number(c.get(p, key, at), f"{at}.{key}", positive=True)
            c.number(c.get(p, "threshold", at), f"{at}.threshold")
        elif kind == "discrete":
            bounds = [float(p[b]) for b in ("low", "high") if b in p]
            if any(b != math.floor(b) for b in bounds) or (
                len(bounds) == 2 and bounds[0] > bounds[1]
            ):
                c.fail(f"{at}: discrete low/high must be integers with low <= high")
        width += _check_codes(c, p, at) if kind == CATEGORICAL else 1
    return width


def _check_codes(c: _Check, p: Mapping[str, Any], at: str) -> int:
    n = c.number(c.get(p, "n_codes", at), f"{at}.n_codes")
    if n != math.floor(n) or not 1 <= n <= LIMITS["context_dim"]:
        c.fail(f"{at}.n_codes must be an integer in [1, {LIMITS['context_dim']}], got {n!r}")
    codes = [c.number(c.get(p, f"code_{i}", at), f"{at}.code_{i}") for i in range(int(n))]
    if any(v != math.floor(v) for v in codes) or any(a >= b for a, b in itertools.pairwise(codes)):
        c.fail(f"{at}: categorical codes must be increasing integers, got {codes[:10]}")
    return int(n)


def _condition_scaler(c: _Check, d: Any, where: str, conditions: list[str]) -> int:
    """Check a condition scaling against the condition names; returns its width (0: none)."""
    if d is None:
        if conditions:
            c.fail(f"{where} is missing for the conditions {conditions}")
        return 0
    if not conditions:
        c.fail(f"{where} is given, but the model has no condition")
    width = _check_scaler(c, d, where, conditions, conditions=True)
    if width > LIMITS["context_dim"]:
        c.fail(f"{where} has {width} columns, more than the limit {LIMITS['context_dim']}")
    return width


def _check_info(c: _Check, info: Mapping[str, Any], conditions: list[str]) -> None:
    policy = info.get("condition_policy", "clamp")
    c.string(policy, "info.condition_policy", ("clamp", "error"))
    rng = info.get("condition_range")
    if rng is None:
        return
    rng = c.seq(rng, "info.condition_range")
    if len(rng) == 2 and not isinstance(rng[0], list):
        rng = [rng]  # one condition, saved before several were possible
    c.seq(rng, "info.condition_range", len(conditions))
    for i, pair in enumerate(rng):
        lo, hi = (
            c.number(v, f"info.condition_range[{i}]")
            for v in c.seq(pair, f"info.condition_range[{i}]", 2)
        )
        if not lo <= hi:
            c.fail(f"info.condition_range[{i}] = [{lo!r}, {hi!r}]: needs min <= max")


def _check_flow(c: _Check, d: Any, where: str, dim: int) -> FlowConfig:
    d = c.mapping(d, where)
    for key in ("layers", "hidden", "blocks", "bins"):
        if key in d:
            c.integer(d[key], f"{where}.{key}", 1, LIMITS[key])
    if "kind" in d:
        c.string(d["kind"], f"{where}.kind", FLOW_KINDS)
    if (
        "tail_bound" in d
        and c.number(d["tail_bound"], f"{where}.tail_bound", positive=True) > (LIMITS["tail_bound"])
    ):
        c.fail(f"{where}.tail_bound={d['tail_bound']!r} is beyond the limit {LIMITS['tail_bound']}")
    if "dropout" in d and not 0 <= c.number(d["dropout"], f"{where}.dropout") < 1:
        c.fail(f"{where}.dropout must be in [0, 1), got {d['dropout']!r}")
    try:
        cfg = FlowConfig.from_dict(d)
    except ValueError as err:
        c.fail(f"{where}: {err}")
    if cfg.kind == "coupling" and dim < 2:
        c.fail(f"{where}: a coupling flow needs at least 2 features, the model has {dim}")
    return cfg


def _check_map(
    c: _Check, spec: Any, features: list[str], conditions: list[str], width: int
) -> tuple[str, list[tuple[FlowConfig, int]]]:
    """Check the map spec; returns its kind and its flows (config, context width)."""
    spec = c.mapping(spec, "map")
    kind = c.string(c.get(spec, "kind", "map"), "map.kind", MAP_KINDS)
    dim = c.integer(c.get(spec, "dim", "map"), "map.dim", 1, LIMITS["dim"])
    if dim != len(features):
        c.fail(f"map.dim={dim} but the model has {len(features)} features {features}")
    cdim = c.integer(spec.get("context_dim", 0), "map.context_dim", 0, LIMITS["context_dim"])
    if cdim != width:
        c.fail(f"map.context_dim={cdim} but the condition scaling {conditions} has {width} columns")
    if kind == "base_transfer":
        pair = [
            _check_flow(c, c.get(spec, k, "map"), f"map.{k}", dim) for k in ("source", "target")
        ]
        bridge = spec.get("context_bridge")
        if bridge is not None:
            for i, s in enumerate(c.seq(bridge, "map.context_bridge", 2)):
                at = f"map.context_bridge[{i}]"
                if _condition_scaler(c, s, at, conditions) != cdim:
                    c.fail(f"{at} has a width other than map.context_dim={cdim}")
                if any(k in _NUMPY_KINDS for k in s["kinds"]):
                    c.fail(f"{at}: zero_inflated/discrete/categorical scalings cannot be bridged")
        return kind, [(cfg, cdim) for cfg in pair]
    if kind == "condition" and cdim < 1:
        c.fail("a condition morph (map.kind='condition') needs at least one condition")
    cfg = _check_flow(c, c.get(spec, "flow", "map"), "map.flow", dim)
    return kind, [(cfg, cdim + (kind == "switch"))]  # switch: the sample label is a condition


def _check_density(
    c: _Check, spec: Any, where: str, features: list[str], conditions: list[str], kind: str
) -> tuple[FlowConfig, int]:
    spec = c.mapping(spec, where)
    got = c.names(c.get(spec, "features", where), f"{where}.features", LIMITS["dim"])
    if got != features:
        c.fail(f"{where}.features is {got}, not the model's features {features}")
    names = _condition_names(c, spec.get("condition"), f"{where}.condition")
    switch = kind == "switch" and names[:-1] == conditions and len(names) == len(conditions) + 1
    if names != conditions and not switch:
        c.fail(f"{where}.condition is {names}, the model's conditions are {conditions}")
    _check_scaler(c, c.get(spec, "scaler", where), f"{where}.scaler", features)
    width = _condition_scaler(c, spec.get("condition_scaler"), f"{where}.condition_scaler", names)
    return _check_flow(c, c.get(spec, "flow", where), f"{where}.flow", len(features)), width


def estimate_parameters(dim: int, cfg: FlowConfig, context_dim: int = 0) -> int:
    """The number of trainable parameters of a spline flow of ``cfg`` on ``dim`` features
    with ``context_dim`` condition columns, computed without building it (exact for the
    normflows layers :func:`~coffea_f4f.flows.build_layers` uses; tested)."""
    h, b, per = cfg.hidden, cfg.blocks, 3 * cfg.bins - 1  # linear tails: 3 K - 1 per feature
    ctx = (context_dim + 1) * h if context_dim else 0
    blocks = b * (2 * (h + 1) * h + ctx)
    total = 0
    for i in range(cfg.layers):
        if cfg.kind == "autoregressive":
            total += (dim + 1) * h + ctx + blocks + (h + 1) * dim * per
        else:
            moved = dim // 2 if i % 2 == 0 else dim - dim // 2
            kept = dim - moved
            total += (kept + context_dim + 1) * h + blocks + (h + 1) * moved * per + kept * per
    return total


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
    plan = _plan(config, c)
    groups = _group(state, plan, w)
    _check_finite(state, w)
    for prefix, parts_of in plan.modules.items():  # refuse a huge claim before building
        claimed = sum(estimate_parameters(len(plan.features), cfg, n) for cfg, n in parts_of)
        held = sum(t.numel() for t in groups[prefix].values())
        if claimed > _SIZE_FACTOR * held + _SIZE_SLACK:
            c.fail(
                f"describes a {_what(prefix)} of about {claimed:,} parameters, but the weights "
                f"hold {held:,} numbers for it: the config and the weights do not belong "
                "together (nothing was built)"
            )
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


def _what(prefix: str) -> str:
    if prefix.startswith(MEMBER):
        return f"ensemble member {prefix[len(MEMBER) : -1]}"
    return prefix[:-1].replace("_", " ")


def _group(
    state: Mapping[str, torch.Tensor], plan: _Plan, w: _Check
) -> dict[str, dict[str, torch.Tensor]]:
    """The weights split by module prefix; every weight belongs to a module of the plan."""
    if not isinstance(state, Mapping):
        w.fail(f"the weights must be a mapping of name -> tensor, got {type(state).__name__}")
    groups: dict[str, dict[str, torch.Tensor]] = {p: {} for p in plan.modules}
    beyond, unknown = set(), []
    for key, t in state.items():
        if not isinstance(key, str) or not isinstance(t, torch.Tensor):
            w.fail(f"weight {_show(key)} is not a named tensor")
        prefix, rest = _split(key)
        if prefix in groups and rest:
            groups[prefix][rest] = t
        elif prefix.startswith(MEMBER) and rest:
            beyond.add(int(prefix[len(MEMBER) : -1]))
        else:
            unknown.append(key)
    if beyond:
        w.fail(
            f"the weights hold ensemble members beyond ensemble_size={plan.ensemble_size}: "
            f"{sorted(beyond)[:5]}"
        )
    if unknown:
        w.fail(f"holds weights no part of the model has: {sorted(unknown)[:5]}")
    for prefix, group in groups.items():
        if not group:
            n = f" (the config says ensemble_size={plan.ensemble_size})" if MEMBER in prefix else ""
            w.fail(f"holds no weights for the {_what(prefix)}{n}")
    return groups


def _split(key: str) -> tuple[str, str]:
    """``("map.", rest)``, ``("members.3.", rest)``, ... of a weight name."""
    head, _, rest = key.partition(".")
    if head != MEMBER[:-1]:
        return f"{head}.", rest
    index, _, rest = rest.partition(".")
    if index.isascii() and index.isdigit() and len(index) <= 6 and index[0] != "0":
        return f"{MEMBER}{index}.", rest
    return key, ""


def _check_finite(state: Mapping[str, torch.Tensor], w: _Check) -> None:
    for key, t in state.items():
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                w.fail(f"weight {key!r} holds {bad} non-finite values (NaN or inf)")


def _fit(
    module: nn.Module, state: Mapping[str, torch.Tensor], partial: bool, prefix: str, w: _Check
) -> Any:
    """``module`` with ``state`` loaded, after checking that the names, shapes and dtypes are
    the ones it has, and that its buffers (which the architecture determines) are equal to
    the rebuilt ones (``partial``: the MADE masks and degrees may be absent)."""
    expected = module.state_dict()
    optional = architecture_buffers(module) if partial else set()
    missing = sorted(k for k in expected if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        w.fail(
            f"the weights of the {_what(prefix)} do not fit the model's architecture (missing "
            f"{missing[:5]}, unexpected {unexpected[:5]})"
        )
    buffers = {k for k, _ in module.named_buffers()}
    for k, t in state.items():
        e, name = expected[k], f"{prefix}{k}"
        if tuple(t.shape) != tuple(e.shape):
            w.fail(
                f"weight {name!r} has shape {tuple(t.shape)}; the architecture in the config "
                f"builds {tuple(e.shape)}"
            )
        ok = t.dtype in _FLOAT_DTYPES if e.dtype in _FLOAT_DTYPES else t.dtype == e.dtype
        if not ok:
            w.fail(f"weight {name!r} has dtype {t.dtype}; the architecture builds {e.dtype}")
        if k in buffers and not torch.equal(t.to(e.dtype), e):
            w.fail(
                f"weight {name!r} is a buffer that the architecture determines, and it differs "
                "from the rebuilt one"
            )
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
