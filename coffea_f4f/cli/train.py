"""``coffea-f4f train CONFIG``: the config schema, its validation, and the training run.

Checking a config imports no torch: :data:`VARIANTS` and :data:`PENALTIES` come from
:mod:`coffea_f4f.config`, and :mod:`coffea_f4f.train` is imported only when training starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import PENALTIES, VARIANTS, FlowConfig, TrainConfig
from ..demo import print_table
from .errors import CLIError, one_line
from .inputs import parse_input, read_columns
from .morph import check_device

if TYPE_CHECKING:  # pragma: no cover - for type checkers only (the morpher imports torch)
    from ..morpher import Morpher

__all__ = [
    "CONFIG_EXAMPLE",
    "CONFIG_KEYS",
    "PENALTIES",
    "VARIANTS",
    "TrainJob",
    "build_job",
    "load_config",
    "run_train",
]

#: Keys of a training config and what they mean (shown by ``coffea-f4f train --help``).
CONFIG_KEYS: dict[str, str] = {
    "source": "source input(s): 'file.root:tree', 'file.parquet' or a list of them",
    "target": "target input(s), same forms",
    "features": "list of branch names to morph (the model's feature names)",
    "condition": "optional branch to condition on, or a list of them (a condition vector)",
    "condition_scaling": "table {condition = kind}: 'standard' (default), 'log', 'minmax', "
    "'categorical' (integer codes, e.g. eras), ...",
    "source_weights": "optional branch of event weights of the source (signed MC weights)",
    "target_weights": "optional branch of event weights of the target",
    "variant": "'bidirectional' (default), 'unidirectional', 'base_transfer' or 'switch'",
    "penalty": "optional movement penalty: 'l1' or 'l2'",
    "penalty_weight": "weight of the penalty (> 0 with a penalty)",
    "identity_init": "start the morph flow as the identity (default true)",
    "ensemble": "train this many bootstrap members too (0: none); the model then has "
    "up/down variations (Morpher.variations, MorphTransform(variations=True))",
    "ensemble_jobs": "worker processes for the members (default: one per CPU core besides "
    "the nominal's; 1: one after the other)",
    "scaling": "'standard' (default), 'robust' (median/IQR, for outliers), 'log', 'logit', "
    "'minmax', 'identity', 'zero_inflated', 'discrete', or a table {feature = kind}",
    "output": "directory the model is saved to (Morpher.save)",
    "max_events": "read at most this many events of each of source and target",
    "entry_stop": "the same as max_events (uproot's name)",
    "flow": "table: FlowConfig of the morph flow (kind, layers, hidden, blocks, bins, ...)",
    "density": "table: FlowConfig of the two density flows",
    "train": "table: TrainConfig (epochs, batch_size, lr, patience, device, seed, ...)",
    "density_train": "table: TrainConfig of the densities (default: [train])",
}
_TABLES: dict[str, type[FlowConfig] | type[TrainConfig]] = {
    "flow": FlowConfig,
    "density": FlowConfig,
    "train": TrainConfig,
    "density_train": TrainConfig,
}
_NONE_WORDS = ("none", "null")

CONFIG_EXAMPLE = """\
example config (TOML; paths are relative to the config file):

  source = "sim.root:Events"        # or ["a.root:Events", "b.root:Events"], "sim.parquet"
  target = "data.root:Events"
  features = ["mj1", "delta_mj", "tau21_j1"]
  condition = "mjj"                 # optional
  variant = "bidirectional"         # or "unidirectional", "base_transfer"
  penalty = "l2"                    # optional; with penalty_weight > 0
  penalty_weight = 0.1
  output = "model"
  max_events = 200000               # optional: first N events of each dataset
  scaling = { mj1 = "log" }         # optional

  [flow]                            # the morph flow (FlowConfig)
  layers = 6
  [density]                         # the density flows (FlowConfig)
  layers = 4
  [train]                           # TrainConfig; "none" stands for None
  epochs = 20
  device = "auto"
  num_threads = 1
"""


def _check_keys(table: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = [k for k in table if k not in known]
    if not unknown:
        return
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    s = "s" if len(unknown) > 1 else ""
    raise CLIError(f"{where}: unknown key{s} {', '.join(parts)}; known keys: {', '.join(known)}")


def load_config(path: Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``, needs PyYAML) config file.

    Raises:
        CLIError: missing file, unknown format, syntax error, or not a table at the top.
    """
    if not path.exists():
        raise CLIError(f"no such config file: {path}")
    if not path.is_file():
        raise CLIError(f"{path} is not a file")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise CLIError(f"{path}: invalid TOML: {one_line(err)}") from err
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml  # optional dependency: PyYAML, only for .yaml configs
        except ImportError as err:
            raise CLIError(
                f"{path}: YAML configs need PyYAML, which is not installed; write "
                "the config as TOML (same keys) or pip install pyyaml"
            ) from err
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise CLIError(f"{path}: invalid YAML: {one_line(err)}") from err
    else:
        raise CLIError(
            f"{path}: unknown config format {suffix or '(no suffix)'!r}; use a .toml "
            "file (or .yaml/.yml with PyYAML installed)"
        )
    if not isinstance(data, dict):
        raise CLIError(f"{path}: the config must be a table of keys, got {type(data).__name__}")
    return data


def _none(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip().lower() in _NONE_WORDS else value


@dataclass
class TrainJob:
    """A validated training config (what ``coffea-f4f train`` runs).

    Attributes:
        source, target: lists of input strings (paths already resolved).
        features: branch names to morph.
        condition: condition branch, or None.
        options: keyword arguments of :func:`~coffea_f4f.train.fit_morpher` (variant, penalty,
            configs, scaling).
        output: model directory.
        max_events: events read per dataset, or None.
    """

    source: list[str]
    target: list[str]
    features: list[str]
    condition: str | list[str] | None
    options: dict[str, Any]
    output: Path | None
    max_events: int | None


def _input_list(value: Any, key: str, where: str, base: Path) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(v, str) and v.strip() for v in items)
    ):
        raise CLIError(
            f"{where}: {key} must be an input string like 'file.root:Events' or a "
            f"non-empty list of them, got {value!r}"
        )
    return [str(parse_input(item, base=base)) for item in items]


def _positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CLIError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    return value


def _options(config: Mapping[str, Any], where: str, base: Path) -> dict[str, Any]:
    """The keyword arguments of ``fit_morpher`` from the config's option keys and tables."""
    options: dict[str, Any] = {}
    for key, types, need in (
        ("variant", str, "a string"),
        ("penalty", str, "'l1' or 'l2'"),
        ("penalty_weight", (int, float), "a number"),
        ("identity_init", bool, "true or false"),
        ("scaling", (str, dict), "a kind name or a table"),
        ("condition_scaling", (str, dict), "a kind name or a table"),
        ("source_weights", str, "a branch name"),
        ("target_weights", str, "a branch name"),
        ("ensemble", int, "an integer >= 0"),
        ("ensemble_jobs", int, "an integer >= 1"),
    ):
        if key not in config:
            continue
        value = _none(config[key]) if key in ("penalty", "ensemble_jobs") else config[key]
        if value is not None and (
            not isinstance(value, types)
            or (key in ("penalty_weight", "ensemble", "ensemble_jobs") and isinstance(value, bool))
        ):
            raise CLIError(f"{where}: {key} must be {need}, got {value!r}")
        if isinstance(value, int) and (
            (key == "ensemble" and value < 0) or (key == "ensemble_jobs" and value < 1)
        ):
            raise CLIError(f"{where}: {key} must be {need}, got {value!r}")
        options[key] = value
    penalties = [p for p in PENALTIES if p is not None]
    for key, allowed in (("variant", list(VARIANTS)), ("penalty", penalties)):
        value = options.get(key)
        if value is not None and value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CLIError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}{hint}")

    for table, cls in _TABLES.items():
        if table not in config:
            continue
        values = config[table]
        if not isinstance(values, dict):
            raise CLIError(f"{where}: [{table}] must be a table of keys, got {values!r}")
        _check_keys(values, [f.name for f in dataclasses.fields(cls)], f"{where} [{table}]")
        values = {k: _none(v) for k, v in values.items()}
        if cls is TrainConfig:
            for key in ("checkpoint", "resume"):
                if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                    values[key] = str(base / values[key])
        try:
            options[table] = cls(**values)
        except (TypeError, ValueError) as err:
            raise CLIError(f"{where} [{table}]: {one_line(err)}") from err
    return options


def build_job(config: Mapping[str, Any], *, path: Path) -> TrainJob:
    """Validate a config dict and turn it into a :class:`TrainJob`.

    Args:
        config: the parsed config file.
        path: the config file (for messages; relative paths are relative to its directory).

    Raises:
        CLIError: unknown keys (close matches named), missing or mistyped values.
    """
    where = str(path)
    base = path.resolve().parent
    _check_keys(config, list(CONFIG_KEYS), where)
    missing = [k for k in ("source", "target", "features") if k not in config]
    if missing:
        raise CLIError(
            f"{where}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        )
    source = _input_list(config["source"], "source", where, base)
    target = _input_list(config["target"], "target", where, base)
    features = config["features"]
    if isinstance(features, str):
        features = [features]
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) and f for f in features)
    ):
        raise CLIError(
            f"{where}: features must be a non-empty list of branch names, got "
            f"{config['features']!r}"
        )
    condition = _none(config.get("condition"))
    if condition is not None and not (
        isinstance(condition, str)
        or (
            isinstance(condition, list)
            and condition
            and all(isinstance(c, str) and c for c in condition)
        )
    ):
        raise CLIError(
            f"{where}: condition must be a branch name or a list of them, got {condition!r}"
        )

    if "max_events" in config and "entry_stop" in config:
        raise CLIError(f"{where}: give max_events or entry_stop, not both")
    max_events = _none(config.get("max_events", config.get("entry_stop")))
    if max_events is not None:
        max_events = _positive_int(max_events, "max_events", where)

    output = config.get("output")
    if output is not None and (not isinstance(output, str) or not output):
        raise CLIError(f"{where}: output must be a directory path, got {output!r}")
    return TrainJob(
        source=source,
        target=target,
        features=list(features),
        condition=condition,
        options=_options(config, where, base),
        output=base / output if output is not None else None,
        max_events=max_events,
    )


def _history_rows(morpher: Morpher) -> list[tuple[str, str]]:
    rows = []
    for stage in ("source_density", "target_density", "morph"):
        hist = morpher.history.get(stage)
        if not isinstance(hist, Mapping) or not hist.get("train_loss"):
            continue
        val = [v for v in hist.get("val_loss", []) if v is not None]
        best = f"best val loss {min(val):.4f}" if val else f"last loss {hist['train_loss'][-1]:.4f}"
        rows.append(
            (
                stage.replace("_", " "),
                f"{hist.get('epochs_run', len(hist['train_loss']))} epochs, {best}",
            )
        )
    return rows


def run_train(
    job: TrainJob,
    *,
    progress: bool | None = None,
    device: str | None = None,
    epochs: int | None = None,
) -> Morpher:
    """Read the inputs of ``job``, train the morph, save it and print a summary.

    Jagged (per-object) features are trained per object; an event-level condition is used
    for every object of its event (:mod:`coffea_f4f.columns`).

    Args:
        job: the validated config.
        progress: override ``[train] progress`` (None: keep).
        device: override ``[train] device`` (None: keep).
        epochs: override ``[train] epochs`` (None: keep).

    ``[density_train]``, when the config has it, gets the same overrides.

    Returns:
        The trained :class:`~coffea_f4f.morpher.Morpher`.
    """
    from ..train import fit_morpher  # torch: imported when training starts, not for --help

    if job.output is None:
        raise CLIError('no output directory: set output = "DIR" in the config or pass --output')
    if job.output.exists() and not job.output.is_dir():
        raise CLIError(f"output {job.output} is a file, not a directory; give a model directory")
    device = check_device(device)
    options = dict(job.options)
    for table in ("train", "density_train"):
        cfg = options.get(table, TrainConfig() if table == "train" else None)
        if cfg is None:
            continue
        changes = {
            k: v
            for k, v in (("progress", progress), ("device", device), ("epochs", epochs))
            if v is not None
        }
        options[table] = cfg.replace(**changes) if changes else cfg
        check_device(options[table].device, f"[{table}] device")  # before reading the data
    conditions = [job.condition] if isinstance(job.condition, str) else list(job.condition or [])
    names = list(dict.fromkeys([*job.features, *conditions]))
    extra = {  # each side's own weight branch (data usually has none)
        side: [job.options[f"{side}_weights"]] if job.options.get(f"{side}_weights") else []
        for side in ("source", "target")
    }
    t0 = time.perf_counter()
    source = read_columns(job.source, names + extra["source"], max_events=job.max_events)
    target = read_columns(job.target, names + extra["target"], max_events=job.max_events)
    n_src, n_tgt = len(source[names[0]]), len(target[names[0]])
    print(f"coffea-f4f train: {', '.join(job.source)} -> {', '.join(job.target)}")
    print(
        f"  read {n_src} source and {n_tgt} target events ({time.perf_counter() - t0:.1f} s); "
        f"features {job.features}" + (f", condition {job.condition!r}" if job.condition else ""),
        flush=True,
    )
    t0 = time.perf_counter()
    morpher = fit_morpher(source, target, features=job.features, condition=job.condition, **options)
    seconds = time.perf_counter() - t0
    path = morpher.save(job.output)

    print("\nTrained")
    print_table(
        [
            ("variant", morpher.variant),
            *([("ensemble members", str(morpher.ensemble_size))] if morpher.ensemble_size else []),
            ("training time", f"{seconds:.1f} s"),
            *_history_rows(morpher),
        ]
    )
    print(f"\nSaved the model to {path}")
    return morpher
