"""What a model file (or a worker payload) is checked for before it is used.

A model file is input like any other: it may be truncated, damaged, edited by hand, written by
another version, or describe a model far larger than its weights (a few bytes of JSON asking
for gigabytes). So before :func:`coffea_f4f.load` or
:meth:`~coffea_f4f.morpher.Morpher.from_payload` builds anything, the JSON is read within a
size and nesting limit, the description is checked (:func:`check_config`: types, the format
version, consistent sizes, finite scalings, the :data:`LIMITS`) and the weights are checked
against it (every weight belongs to a part of the model, all values are finite, and the
parameter count the description implies, :func:`estimate_parameters`, is not far beyond what
the weights hold); once the modules are built, the weights' names, shapes and dtypes must fit
them and the buffers that the architecture determines must equal the rebuilt ones. Every
failure is one :class:`ModelFileError` naming the file and the field or weight: a bad file is
refused with a reason, not with a crash, an unbounded allocation or silently moved events.
The bytes (and the hashes that bind the two files) are :mod:`coffea_f4f.fileformat`, which
calls these checks and re-exports the public names. See DESIGN-NOTES.md, "Saved models".
"""

from __future__ import annotations

import itertools
import json
import math
import os
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NoReturn

import torch
from torch import nn

from ._version import __version__
from .config import FLOW_KINDS, FlowConfig
from .maps import MAP_KINDS, architecture_buffers
from .scaling import CATEGORICAL, DEQUANTISED_KINDS, KINDS

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LIMITS",
    "ModelFileError",
    "check_config",
    "estimate_parameters",
]

FORMAT_NAME = "coffea-f4f-morpher"
FORMAT_VERSION = 1
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


# ---------------------------------------------------------------------------- typed reads
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


# ---------------------------------------------------------------------------- the description
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


# ---------------------------------------------------------------------------- the weights
def _check_parts(
    config: Mapping[str, Any], state: Mapping[str, torch.Tensor], c: _Check, w: _Check
) -> tuple[_Plan, dict[str, dict[str, torch.Tensor]]]:
    """Everything checked before the modules are built: the description, the weights' names
    against its parts, finite values, and the size it claims against what the weights hold;
    returns the plan and the weights split by module prefix."""
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
    return plan, groups


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


def _check_fit(
    module: nn.Module, state: Mapping[str, torch.Tensor], partial: bool, prefix: str, w: _Check
) -> None:
    """Check that the names, shapes and dtypes of ``state`` are the ones the rebuilt
    ``module`` has, and that its buffers (which the architecture determines) are equal to the
    rebuilt ones (``partial``: the MADE masks and degrees may be absent)."""
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
