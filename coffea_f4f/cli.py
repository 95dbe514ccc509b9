"""The ``coffea-f4f`` command line.

Commands (``coffea-f4f COMMAND --help`` describes each):

- ``coffea-f4f demo [--out DIR] [--quick]`` runs the whole chain on built-in data (see
  :mod:`coffea_f4f.demo`): dijet sim and data samples are generated, the conditional morph
  sim -> data at each mjj is trained, held-out events are written as NanoAOD-schema ROOT files
  and morphed inside a coffea processor, and the metrics (classifier AUC before/after,
  Wasserstein distances, distance moved, transport ratio) are printed and written to
  ``DIR/metrics.json`` with plots and the saved model. ``--toy`` runs the same on two 2D toy
  shapes instead, without coffea.
- ``coffea-f4f train CONFIG`` trains a morph from ROOT (uproot) or parquet inputs described by
  a TOML (or YAML) file and saves the model directory.
- ``coffea-f4f apply MODEL INPUT OUTPUT`` writes a copy of a ROOT tree with morphed branches
  ``<branch>_morphed`` added, chunk by chunk.
- ``coffea-f4f evaluate MODEL --source FILE:TREE --target FILE:TREE`` morphs the source, prints
  the metrics and writes ``metrics.json`` and plots.

Inputs are written ``file.root:tree`` (the tree defaults to ``Events``), or ``file.parquet``.

Errors in arguments or inputs are reported as one line on stderr with exit code 2 (no
traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

TOY_DEMO_PRESETS: dict[str, dict[str, Any]] = {
    # events per sample, epochs, layers, hidden units
    "quick": {"n": 8000, "epochs": 10, "layers": 4, "hidden": 64},
    "full": {"n": 30000, "epochs": 20, "layers": 6, "hidden": 64},
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _print_table(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def run_toy_demo(out: Path, *, quick: bool, source: str, target: str, seed: int,
                 progress: bool = True) -> dict[str, Any]:
    """Train a toy morph ``source -> target`` and evaluate it; returns the metrics dict."""
    from . import datasets, metrics
    from .config import FlowConfig, TrainConfig
    from .train import fit_morpher

    for name in (source, target):
        if name not in datasets.TOY_NAMES:
            raise CLIError(f"unknown toy shape {name!r}; choose from "
                           f"{', '.join(datasets.TOY_NAMES)}")
    preset = TOY_DEMO_PRESETS["quick" if quick else "full"]
    out.mkdir(parents=True, exist_ok=True)
    n = preset["n"]
    xs = datasets.toy(source, n, seed=seed)
    xt = datasets.toy(target, n, seed=seed + 1)
    flow = FlowConfig(layers=preset["layers"], hidden=preset["hidden"])
    train = TrainConfig(epochs=preset["epochs"], batch_size=256, lr=2e-3, seed=seed,
                        progress=progress)
    print(f"coffea-f4f demo: morph {source!r} -> {target!r} ({n} events each, "
          f"{'quick' if quick else 'full'} preset)", flush=True)
    t0 = time.perf_counter()
    morpher = fit_morpher(xs, xt, features=["x", "y"], flow=flow, density=flow, train=train)
    t_train = time.perf_counter() - t0

    hs = datasets.toy(source, 4000, seed=seed + 10)
    ht = datasets.toy(target, 4000, seed=seed + 11)
    t0 = time.perf_counter()
    hm = morpher.morph(hs)
    t_morph = time.perf_counter() - t0
    summary = metrics.summary(hs, hm, ht, seed=seed)
    summary.update({
        "source": source, "target": target, "train_seconds": t_train,
        "morph_events_per_second": len(hs) / max(t_morph, 1e-9),
        "variant": morpher.variant,
    })
    morpher.save(out / "model")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    plots_written = []
    try:
        import matplotlib.pyplot as plt

        from . import plots

        for fig in (plots.toy_panels(hs, hm, ht, path=out / "toy_panels.png"),
                    plots.loss_curves(morpher.history, path=out / "loss_curves.png")):
            plt.close(fig)
        plots_written = ["toy_panels.png", "loss_curves.png"]
    except ImportError as err:  # plotting extras not installed
        print(f"(plots skipped: {err}; pip install 'coffea-f4f[plots]')")

    print("\nResults on held-out events (C2ST AUC: 0.5 = indistinguishable)")
    _print_table([
        *metrics.summary_rows(summary, ["x", "y"]),
        ("training time", f"{t_train:.1f} s"),
        ("morph speed", f"{summary['morph_events_per_second']:.0f} events/s"),
    ])
    written = ", ".join(["model/", "metrics.json", *plots_written])
    print(f"\nWrote {written} to {out}")
    return summary


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.toy:
        run_toy_demo(Path(args.out), quick=args.quick, source=args.source, target=args.target,
                     seed=args.seed, progress=not args.no_progress)
        return 0
    try:
        from . import demo
    except ImportError as err:
        raise CLIError(f"the dijet demo needs coffea ({err}); pip install 'coffea-f4f[all]', "
                       "or run the toy demo with --toy") from err
    demo.run(Path(args.out), quick=args.quick, seed=args.seed, progress=not args.no_progress)
    return 0


# =============================================================================================
# inputs: "file.root:tree", "file.parquet", lists of them
# =============================================================================================
DEFAULT_TREE = "Events"
_TREE_CLASSES = ("TTree", "TNtuple", "TNtupleD")


@dataclass(frozen=True)
class InputSpec:
    """One input file: a ROOT file and the name of its tree, or a parquet file.

    Attributes:
        path: the file path (or a URL uproot can open).
        tree: the tree name inside a ROOT file; None for parquet.
    """

    path: str
    tree: str | None

    def __str__(self) -> str:
        return self.path if self.tree is None else f"{self.path}:{self.tree}"


def parse_input(spec: str, *, default_tree: str = DEFAULT_TREE,
                base: Path | None = None) -> InputSpec:
    """Parse ``"file.root:tree"``, ``"file.root"`` (tree ``default_tree``) or ``"x.parquet"``.

    Args:
        spec: the input as written by the user.
        default_tree: the tree used when ``spec`` names none.
        base: directory that relative local paths are relative to (None: the working dir).

    Returns:
        The parsed :class:`InputSpec`.

    Raises:
        CLIError: ``spec`` is empty or not a string.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise CLIError(f"an input must be a non-empty string like 'file.root:Events', got {spec!r}")
    spec = spec.strip()
    if spec.lower().endswith(".parquet"):
        path, tree = spec, None
    elif ".root:" in spec:
        head, tree = spec.rsplit(".root:", 1)
        path = head + ".root"
    else:
        scheme_end = spec.find("://") + 3 if "://" in spec else 0
        colon = spec.rfind(":")
        if colon >= scheme_end and colon > 0 and not spec[colon + 1:].startswith("/"):
            path, tree = spec[:colon], spec[colon + 1:]
        else:
            path, tree = spec, default_tree
    if tree is not None and not tree:
        tree = default_tree
    if base is not None and "://" not in path and not Path(path).is_absolute():
        path = str(base / path)
    return InputSpec(path, tree)


def _one_line(err: object) -> str:
    return " ".join(str(err).split())


def _uproot() -> Any:
    try:
        import uproot
    except ImportError as err:  # pragma: no cover - uproot is in the [coffea] extra
        raise CLIError("reading ROOT files needs uproot: pip install 'coffea-f4f[coffea]'") from err
    return uproot


def _check_local_file(path: str) -> None:
    if "://" in path:
        return
    p = Path(path)
    if not p.exists():
        raise CLIError(f"no such file: {path}")
    if not p.is_file():
        raise CLIError(f"{path} is not a file")


def open_tree(spec: InputSpec) -> Any:
    """Open the TTree of a ROOT input, with one-line errors for missing files and trees.

    Raises:
        CLIError: the file does not exist or is not a ROOT file, or it has no such tree (close
            matches are named).
    """
    uproot = _uproot()
    _check_local_file(spec.path)
    try:
        file = uproot.open(spec.path)
    except Exception as err:  # uproot raises many types for files it cannot read
        raise CLIError(f"cannot read {spec.path} as a ROOT file: {_one_line(err)}") from err
    classes = {k: v for k, v in file.classnames(cycle=False).items()}
    trees = [k for k, v in classes.items() if v in _TREE_CLASSES]
    if spec.tree not in classes:
        from .columns import MissingColumnError

        raise CLIError(f"{spec.path}: {MissingColumnError(spec.tree, trees, what='tree')}")
    if spec.tree not in trees:
        raise CLIError(f"{spec}: is a {classes[spec.tree]}, not a TTree; coffea-f4f reads TTrees")
    return file[spec.tree]


def _check_branches(tree: Any, spec: InputSpec, names: Sequence[str]) -> None:
    from .columns import MissingColumnError

    keys = tree.keys()
    for name in names:
        if name not in keys:
            raise CLIError(f"{spec}: {MissingColumnError(name, keys, what='branch')}")


def _read_one(spec: InputSpec, names: Sequence[str], entry_stop: int | None) -> dict[str, Any]:
    import awkward as ak

    from .columns import MissingColumnError, get_field

    if spec.tree is None:
        _check_local_file(spec.path)
        try:
            columns = ak.metadata_from_parquet(spec.path)["form"].columns()
        except Exception as err:  # pyarrow raises its own types for unreadable files
            raise CLIError(f"cannot read {spec.path} as parquet: {_one_line(err)}") from err
        for name in names:
            if name not in columns:
                raise CLIError(f"{spec}: {MissingColumnError(name, columns, what='column')}")
        data = ak.from_parquet(spec.path, columns=list(names))
        if entry_stop is not None:
            data = data[:entry_stop]
        return {name: get_field(data, name) for name in names}
    tree = open_tree(spec)
    _check_branches(tree, spec, names)
    wanted = set(names)
    stop = None if entry_stop is None else min(entry_stop, tree.num_entries)
    arrays = tree.arrays(filter_name=lambda n: n in wanted, entry_stop=stop, library="ak",
                         how=dict)
    return {name: arrays[name] for name in names}


def read_columns(specs: str | Sequence[str], names: Sequence[str], *,
                 max_events: int | None = None, base: Path | None = None) -> dict[str, Any]:
    """Read branches (columns) ``names`` from one or several inputs, concatenated.

    Only the named branches are read. ``max_events`` caps the total number of events (the first
    ones, file after file).

    Args:
        specs: one input string or a list of them (see :func:`parse_input`).
        names: branch names (ROOT) or field paths (parquet) to read.
        max_events: read at most this many events in total (None: all).
        base: directory that relative paths are relative to.

    Returns:
        ``{name: awkward array}``, one entry per name, in order.

    Raises:
        CLIError: a file, tree or branch is missing or unreadable.
    """
    import awkward as ak

    if isinstance(specs, str):
        specs = [specs]
    parts: list[dict[str, Any]] = []
    remaining = max_events
    for text in specs:
        if remaining is not None and remaining <= 0:
            break
        part = _read_one(parse_input(text, base=base), names, remaining)
        parts.append(part)
        if remaining is not None and names:
            remaining -= len(part[names[0]])
    if len(parts) == 1:
        return parts[0]
    return {name: ak.concatenate([p[name] for p in parts]) for name in names}


def _is_jagged(col: Any) -> bool:
    return getattr(col, "ndim", 1) > 1


def _condition_values(data: Mapping[str, Any], name: str, what: str) -> Any:
    from .columns import to_matrix

    if _is_jagged(data[name]):
        raise CLIError(f"{what} branch {name!r} is jagged; the condition must be one value per "
                       "event")
    values, _ = to_matrix({name: data[name]}, [name], what="condition", allow_jagged=False)
    return values[:, 0]


def morph_columns(morpher: Any, data: Mapping[str, Any], inputs: Mapping[str, str], *,
                  condition: str | None = None, target_condition: str | float | None = None,
                  ) -> tuple[Any, Any, Any]:
    """Morph the feature columns of ``data`` with ``morpher``.

    Args:
        morpher: a :class:`~coffea_f4f.morpher.Morpher`.
        data: ``{branch: array}`` holding at least the input (and condition) branches.
        inputs: ``{model feature: branch}`` for every feature of the model.
        condition: branch with the (event-level) condition, for conditional models.
        target_condition: between-condition models: a value, or a branch of ``data``.

    Returns:
        ``(x, y, counts)``: the input and morphed ``(N, D)`` matrices and, for jagged
        (per-object) features, the objects per event (else None). An event-level condition is
        repeated for the objects of its event.

    Raises:
        CLIError / ValueError / TypeError: bad input (named branch, shape, count).
    """
    import numpy as np

    from .columns import to_matrix

    columns = {feature: data[branch] for feature, branch in inputs.items()}
    jagged = [b for b in inputs.values() if _is_jagged(data[b])]
    if jagged and len(jagged) != len(inputs):
        flat = [b for b in inputs.values() if b not in jagged]
        raise CLIError(f"features mix per-object (jagged) branches {jagged} with per-event "
                       f"branches {flat}; morph branches of one kind")
    x, layout = to_matrix(columns, morpher.features)
    counts = layout.counts

    def per_row(values: Any) -> Any:
        return values if counts is None else np.repeat(values, counts)

    cond = None if condition is None else per_row(_condition_values(data, condition,
                                                                    "condition"))
    tcond = target_condition
    if isinstance(target_condition, str):
        tcond = per_row(_condition_values(data, target_condition, "target condition"))
    y = morpher.morph(x, condition=cond, target_condition=tcond)
    return x, y, counts


# =============================================================================================
# train
# =============================================================================================
#: Keys of a training config and what they mean (shown by ``coffea-f4f train --help``).
CONFIG_KEYS: dict[str, str] = {
    "source": "source input(s): 'file.root:tree', 'file.parquet' or a list of them",
    "target": "target input(s), same forms",
    "features": "list of branch names to morph (the model's feature names)",
    "condition": "optional branch to condition on (one value per event)",
    "variant": "'bidirectional' (default), 'unidirectional' or 'base_transfer'",
    "penalty": "optional movement penalty: 'l1' or 'l2'",
    "penalty_weight": "weight of the penalty (> 0 with a penalty)",
    "identity_init": "start the morph flow as the identity (default true)",
    "scaling": "'standard' (default), 'log', 'logit', 'minmax', 'identity', or a table "
               "{feature = kind}",
    "output": "directory the model is saved to (Morpher.save)",
    "max_events": "read at most this many events of each of source and target",
    "entry_stop": "the same as max_events (uproot's name)",
    "flow": "table: FlowConfig of the morph flow (kind, layers, hidden, blocks, bins, ...)",
    "density": "table: FlowConfig of the two density flows",
    "train": "table: TrainConfig (epochs, batch_size, lr, patience, device, seed, ...)",
    "density_train": "table: TrainConfig of the densities (default: [train])",
}
_TABLES = ("flow", "density", "train", "density_train")
VARIANTS = ("bidirectional", "unidirectional", "base_transfer")  # as coffea_f4f.train.VARIANTS
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
    raise CLIError(f"{where}: unknown key{s} {', '.join(parts)}; known keys: "
                   f"{', '.join(known)}")


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
        import tomllib

        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise CLIError(f"{path}: invalid TOML: {_one_line(err)}") from err
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as err:
            raise CLIError(f"{path}: YAML configs need PyYAML, which is not installed; write "
                           "the config as TOML (same keys) or pip install pyyaml") from err
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise CLIError(f"{path}: invalid YAML: {_one_line(err)}") from err
    else:
        raise CLIError(f"{path}: unknown config format {suffix or '(no suffix)'!r}; use a .toml "
                       "file (or .yaml/.yml with PyYAML installed)")
    if not isinstance(data, dict):
        raise CLIError(f"{path}: the config must be a table of keys, got "
                       f"{type(data).__name__}")
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
    condition: str | None
    options: dict[str, Any]
    output: Path | None
    max_events: int | None


def _input_list(value: Any, key: str, where: str, base: Path) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(
            isinstance(v, str) and v.strip() for v in items):
        raise CLIError(f"{where}: {key} must be an input string like 'file.root:Events' or a "
                       f"non-empty list of them, got {value!r}")
    out = []
    for item in items:
        spec = parse_input(item, base=base)
        out.append(str(spec))
    return out


def _positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CLIError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    return value


def build_job(config: Mapping[str, Any], *, path: Path) -> TrainJob:
    """Validate a config dict and turn it into a :class:`TrainJob`.

    Args:
        config: the parsed config file.
        path: the config file (for messages; relative paths are relative to its directory).

    Raises:
        CLIError: unknown keys (close matches named), missing or mistyped values.
    """
    from .config import FlowConfig, TrainConfig

    where = str(path)
    base = path.resolve().parent
    _check_keys(config, list(CONFIG_KEYS), where)
    missing = [k for k in ("source", "target", "features") if k not in config]
    if missing:
        raise CLIError(f"{where}: missing required key{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(missing)}")
    source = _input_list(config["source"], "source", where, base)
    target = _input_list(config["target"], "target", where, base)
    features = config["features"]
    if isinstance(features, str):
        features = [features]
    if not isinstance(features, list) or not features or not all(
            isinstance(f, str) and f for f in features):
        raise CLIError(f"{where}: features must be a non-empty list of branch names, got "
                       f"{config['features']!r}")
    condition = _none(config.get("condition"))
    if condition is not None and not isinstance(condition, str):
        raise CLIError(f"{where}: condition must be one branch name, got {condition!r}")

    if "max_events" in config and "entry_stop" in config:
        raise CLIError(f"{where}: give max_events or entry_stop, not both")
    max_events = _none(config.get("max_events", config.get("entry_stop")))
    if max_events is not None:
        max_events = _positive_int(max_events, "max_events", where)

    output = config.get("output")
    if output is not None and (not isinstance(output, str) or not output):
        raise CLIError(f"{where}: output must be a directory path, got {output!r}")

    options: dict[str, Any] = {}
    for key, types, need in (("variant", str, "a string"), ("penalty", str, "'l1' or 'l2'"),
                             ("penalty_weight", (int, float), "a number"),
                             ("identity_init", bool, "true or false"),
                             ("scaling", (str, dict), "a kind name or a table")):
        if key not in config:
            continue
        value = _none(config[key]) if key == "penalty" else config[key]
        if value is not None and (not isinstance(value, types)
                                  or (key == "penalty_weight" and isinstance(value, bool))):
            raise CLIError(f"{where}: {key} must be {need}, got {value!r}")
        options[key] = value
    for key, allowed in (("variant", VARIANTS), ("penalty", ("l1", "l2"))):
        value = options.get(key)
        if value is not None and value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CLIError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}{hint}")

    classes = {"flow": FlowConfig, "density": FlowConfig, "train": TrainConfig,
               "density_train": TrainConfig}
    for table in _TABLES:
        if table not in config:
            continue
        values = config[table]
        if not isinstance(values, dict):
            raise CLIError(f"{where}: [{table}] must be a table of keys, got {values!r}")
        cls = classes[table]
        _check_keys(values, [f.name for f in dataclasses.fields(cls)], f"{where} [{table}]")
        values = {k: _none(v) for k, v in values.items()}
        if cls is TrainConfig:
            for key in ("checkpoint", "resume"):
                if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                    values[key] = str(base / values[key])
        try:
            options[table] = cls(**values)
        except (TypeError, ValueError) as err:
            raise CLIError(f"{where} [{table}]: {_one_line(err)}") from err
    return TrainJob(source=source, target=target, features=list(features), condition=condition,
                    options=options, output=base / output if output is not None else None,
                    max_events=max_events)


def _training_columns(data: Mapping[str, Any], features: Sequence[str],
                      condition: str | None) -> dict[str, Any]:
    """Flat ``{name: column}`` for training; jagged features become one row per object."""
    if not any(_is_jagged(data[f]) for f in features):
        return dict(data)
    from .columns import to_matrix

    x, layout = to_matrix({f: data[f] for f in features}, features)
    out: dict[str, Any] = {f: x[:, j] for j, f in enumerate(features)}
    if condition is not None:
        import numpy as np

        out[condition] = np.repeat(_condition_values(data, condition, "condition"),
                                   layout.counts)
    return out


def run_train(job: TrainJob, *, progress: bool | None = None,
              device: str | None = None) -> Any:
    """Read the inputs of ``job``, train the morph, save it and print a summary.

    Args:
        job: the validated config.
        progress: override ``[train] progress`` (None: keep).
        device: override ``[train] device`` (None: keep).

    Returns:
        The trained :class:`~coffea_f4f.morpher.Morpher`.
    """
    from .config import TrainConfig
    from .train import fit_morpher

    if job.output is None:
        raise CLIError("no output directory: set output = \"DIR\" in the config or pass --output")
    options = dict(job.options)
    for table in ("train", "density_train"):
        cfg = options.get(table, TrainConfig() if table == "train" else None)
        if cfg is None:
            continue
        changes = {k: v for k, v in (("progress", progress), ("device", device)) if v is not None}
        options[table] = cfg.replace(**changes) if changes else cfg
    names = list(job.features) + ([job.condition] if job.condition else [])
    t0 = time.perf_counter()
    source = read_columns(job.source, names, max_events=job.max_events)
    target = read_columns(job.target, names, max_events=job.max_events)
    n_src, n_tgt = len(source[names[0]]), len(target[names[0]])
    print(f"coffea-f4f train: {', '.join(job.source)} -> {', '.join(job.target)}")
    print(f"  read {n_src} source and {n_tgt} target events ({time.perf_counter() - t0:.1f} s); "
          f"features {job.features}" + (f", condition {job.condition!r}" if job.condition
                                        else ""), flush=True)
    source = _training_columns(source, job.features, job.condition)
    target = _training_columns(target, job.features, job.condition)
    t0 = time.perf_counter()
    morpher = fit_morpher(source, target, features=job.features, condition=job.condition,
                          **options)
    seconds = time.perf_counter() - t0
    path = morpher.save(job.output)

    rows = [("variant", morpher.variant), ("training time", f"{seconds:.1f} s")]
    for stage in ("source_density", "target_density", "morph"):
        hist = morpher.history.get(stage)
        if not isinstance(hist, Mapping) or not hist.get("train_loss"):
            continue
        val = [v for v in hist.get("val_loss", []) if v is not None]
        best = f"best val loss {min(val):.4f}" if val else \
            f"last loss {hist['train_loss'][-1]:.4f}"
        rows.append((stage.replace("_", " "),
                     f"{hist.get('epochs_run', len(hist['train_loss']))} epochs, {best}"))
    print("\nTrained")
    _print_table(rows)
    print(f"\nSaved the model to {path}")
    return morpher


def _cmd_train(args: argparse.Namespace) -> int:
    path = Path(args.config)
    job = build_job(load_config(path), path=path)
    if args.output is not None:
        job.output = Path(args.output)
    if args.max_events is not None:
        job.max_events = args.max_events
    run_train(job, progress=False if args.no_progress else None, device=args.device)
    return 0


# =============================================================================================
# apply
# =============================================================================================
@dataclass
class CopyPlan:
    """Which branches of an input tree are written to the output tree, and how.

    Attributes:
        types: output branch -> numpy dtype (flat) or awkward ``var * dtype`` type (jagged),
            in order.
        counters: jagged output branch -> name of its counter branch.
        copied: input branches copied unchanged.
        skipped: input branches uproot cannot write here (with the reason).
    """

    types: dict[str, Any]
    counters: dict[str, str]
    copied: list[str]
    skipped: list[str]


@functools.cache
def _jagged_type(dtype: str) -> Any:
    """The awkward type ``var * dtype``, parsed once (parsing costs ~30 ms per call)."""
    import awkward as ak

    return ak.types.from_datashape(f"var * {dtype}", highlevel=False)


def plan_copy(tree: Any) -> CopyPlan:
    """Decide which branches of ``tree`` can be copied (flat and jagged numeric branches).

    Counter branches (``nJet``) are not copied as such: uproot writes them for the jagged
    branches they count, under the same name (as ``int32``). Branches of other types
    (strings, fixed-size arrays, nested vectors, objects) are skipped.
    """
    import numpy as np

    uproot = _uproot()
    types: dict[str, Any] = {}
    counters: dict[str, str] = {}
    skipped: list[str] = []
    counter_names: set[str] = set()
    for branch in tree.branches:
        interp = branch.interpretation
        if len(branch.branches):
            skipped.append(branch.name)
        elif (isinstance(interp, uproot.AsDtype) and interp.inner_shape == ()
              and interp.to_dtype.kind in "biuf"):
            types[branch.name] = np.dtype(interp.to_dtype.newbyteorder("="))
        elif (isinstance(interp, uproot.AsJagged) and isinstance(interp.content, uproot.AsDtype)
              and interp.content.inner_shape == () and interp.content.to_dtype.kind in "biuf"):
            types[branch.name] = _jagged_type(np.dtype(interp.content.to_dtype).name)
            count = branch.count_branch
            counters[branch.name] = count.name if count is not None else f"n{branch.name}"
            if count is not None:
                counter_names.add(count.name)
        else:
            skipped.append(branch.name)
    for name in counter_names:
        types.pop(name, None)
    return CopyPlan(types=types, counters=counters, copied=list(types), skipped=skipped)


def _feature_map(morpher: Any, pairs: Sequence[tuple[str, str]] | None) -> dict[str, str]:
    """``{feature: branch}``: the features' own names unless ``--branch FEATURE=BRANCH``."""
    from .columns import MissingColumnError

    inputs = {f: f for f in morpher.features}
    for feature, branch in pairs or []:
        if feature not in inputs:
            raise CLIError(f"--branch {feature}={branch}: "
                           f"{MissingColumnError(feature, morpher.features, what='model feature')}")
        inputs[feature] = branch
    return inputs


def _condition_args(morpher: Any, condition_branch: str | None,
                    target_condition: str | None) -> tuple[str | None, str | float | None]:
    if morpher.condition is None:
        if condition_branch is not None or target_condition is not None:
            raise CLIError("this model is not conditional; drop --condition-branch and "
                           "--target-condition")
        return None, None
    cond = condition_branch or morpher.condition
    if not morpher.between_conditions:
        if target_condition is not None:
            raise CLIError("--target-condition is only for models trained with "
                           "fit_condition_morpher (morphs between condition values)")
        return cond, None
    if target_condition is None:
        raise CLIError(f"this model morphs between values of {morpher.condition!r}: pass "
                       "--target-condition VALUE (or a branch name)")
    try:
        return cond, float(target_condition)
    except ValueError:
        return cond, target_condition


def _load_model(path: str) -> Any:
    from .morpher import load

    try:
        return load(path)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(_one_line(err)) from err


def run_apply(args: argparse.Namespace) -> dict[str, Any]:
    """Copy the input tree to OUTPUT with morphed branches added; returns a short summary."""
    import awkward as ak
    import numpy as np
    from tqdm.auto import tqdm

    uproot = _uproot()
    morpher = _load_model(args.model)
    if args.device is not None:
        morpher.to(args.device)
    inputs = _feature_map(morpher, args.branch)
    condition, target_condition = _condition_args(morpher, args.condition_branch,
                                                  args.target_condition)
    spec = parse_input(args.input, default_tree=args.tree)
    if spec.tree is None:
        raise CLIError(f"{spec.path}: apply reads and writes ROOT files (parquet is not "
                       "supported here)")
    out_path = Path(args.output)
    if "://" not in spec.path and out_path.resolve() == Path(spec.path).resolve():
        raise CLIError("OUTPUT is the INPUT file; write to a new file")
    tree = open_tree(spec)
    needed = list(dict.fromkeys([*inputs.values(), *([condition] if condition else []),
                                 *([target_condition] if isinstance(target_condition, str)
                                   else [])]))
    _check_branches(tree, spec, needed)

    plan = plan_copy(tree)
    jagged = [b for b in inputs.values() if b in plan.counters]
    counters = {plan.counters[b] for b in jagged}
    if len(counters) > 1:
        raise CLIError(f"jagged feature branches {jagged} have different counters "
                       f"{sorted(counters)}; morph fields of one collection together")
    morphed_names = {}
    for feature, branch in inputs.items():
        name = f"{branch}{args.suffix}"
        if name in tree.keys() or name in morphed_names.values():
            raise CLIError(f"output branch {name!r} already exists; choose another --suffix")
        morphed_names[feature] = name
        if branch in jagged:
            plan.types[name] = _jagged_type("float64")
            plan.counters[name] = plan.counters[branch]
        else:
            plan.types[name] = np.dtype(np.float64)
    read = set(plan.copied) | set(needed)
    total = tree.num_entries
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="ev", desc="apply", disable=args.no_progress,
               dynamic_ncols=True)
    try:
        with uproot.recreate(out_path) as out:
            out.mktree(spec.tree, plan.types, counter_name=lambda n: plan.counters.get(n, f"n{n}"))
            for chunk in tree.iterate(filter_name=lambda n: n in read, step_size=args.step_size,
                                      library="ak", how=dict):
                _, y, counts = morph_columns(morpher, chunk, inputs, condition=condition,
                                             target_condition=target_condition)
                data = {name: chunk[name] for name in plan.copied}
                for j, feature in enumerate(morpher.features):
                    col = y[:, j]
                    if counts is not None:
                        col = ak.unflatten(col, counts)
                    data[morphed_names[feature]] = col
                out[spec.tree].extend(data)
                bar.update(len(y) if counts is None else len(counts))
    except BaseException:
        bar.close()
        out_path.unlink(missing_ok=True)
        raise
    bar.close()
    seconds = time.perf_counter() - t0
    print(f"coffea-f4f apply: wrote {total} events of {spec.tree!r} to {out_path} "
          f"({seconds:.1f} s, {total / max(seconds, 1e-9):.0f} events/s)")
    print(f"  morphed: {', '.join(f'{b} -> {morphed_names[f]}' for f, b in inputs.items())}")
    print(f"  copied {len(plan.copied)} branches" + (
        f"; skipped {len(plan.skipped)} that uproot cannot write here: "
        f"{', '.join(plan.skipped[:10])}{' ...' if len(plan.skipped) > 10 else ''}"
        if plan.skipped else ""))
    return {"events": total, "morphed": morphed_names, "copied": plan.copied,
            "skipped": plan.skipped}


def _cmd_apply(args: argparse.Namespace) -> int:
    run_apply(args)
    return 0


# =============================================================================================
# evaluate
# =============================================================================================
def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Morph the source, compute the metrics, print them and write metrics.json and plots."""
    from . import metrics
    from .columns import to_matrix

    morpher = _load_model(args.model)
    inputs = _feature_map(morpher, args.branch)
    condition, target_condition = _condition_args(morpher, args.condition_branch,
                                                  args.target_condition)
    names = list(dict.fromkeys([*inputs.values(), *([condition] if condition else []),
                                *([target_condition] if isinstance(target_condition, str)
                                  else [])]))
    source = read_columns(args.source, names, max_events=args.max_events)
    target = read_columns(args.target, list(dict.fromkeys(inputs.values())),
                          max_events=args.max_events)
    x, y, _ = morph_columns(morpher, source, inputs, condition=condition,
                            target_condition=target_condition)
    t, _ = to_matrix({f: target[b] for f, b in inputs.items()}, morpher.features)
    summary = metrics.summary(x, y, t, seed=args.seed, standardize=True)
    summary.update({
        "model": str(args.model), "variant": morpher.variant, "features": morpher.features,
        "branches": inputs, "source": list(args.source), "target": list(args.target),
    })
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    written = ["metrics.json"]
    if not args.no_plots:
        written += _evaluate_plots(out, x, y, t, morpher)

    print(f"coffea-f4f evaluate: {morpher!r}")
    print("Metrics (C2ST AUC: 0.5 = indistinguishable)")
    _print_table(metrics.summary_rows(summary, morpher.features))
    print(f"\nWrote {', '.join(written)} to {out}")
    return summary


def _evaluate_plots(out: Path, x: Any, y: Any, t: Any, morpher: Any) -> list[str]:
    try:
        import matplotlib.pyplot as plt

        from . import plots
    except ImportError as err:  # plotting extras not installed
        print(f"(plots skipped: {err}; pip install 'coffea-f4f[plots]')")
        return []
    written = []
    fig = plots.feature_comparison(x, y, t, features=list(morpher.features),
                                   path=out / "feature_comparison.png")
    plt.close(fig)
    written.append("feature_comparison.png")
    try:
        fig = plots.loss_curves(morpher.history, path=out / "loss_curves.png")
    except ValueError as err:  # e.g. a model saved without a training history
        print(f"(loss curves skipped: {_one_line(err)})")
    else:
        plt.close(fig)
        written.append("loss_curves.png")
    return written


def _cmd_evaluate(args: argparse.Namespace) -> int:
    run_evaluate(args)
    return 0


# =============================================================================================
# the parser
# =============================================================================================
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``PROG: error: MESSAGE``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _pair(text: str) -> tuple[str, str]:
    feature, sep, branch = text.partition("=")
    if not sep or not feature.strip() or not branch.strip():
        raise argparse.ArgumentTypeError(f"expected FEATURE=BRANCH, got {text!r}")
    return feature.strip(), branch.strip()


def _add_model_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--branch", action="append", type=_pair, metavar="FEATURE=BRANCH",
                   help="read model feature FEATURE from branch BRANCH (repeatable; default: "
                        "the branch named like the feature)")
    p.add_argument("--condition-branch", metavar="BRANCH",
                   help="branch holding the condition of a conditional model (default: the "
                        "model's condition name)")
    p.add_argument("--target-condition", metavar="VALUE|BRANCH",
                   help="for models that morph between condition values: the value (or branch) "
                        "to morph to")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = _Parser(
        prog="coffea-f4f",
        description="Morph one dataset into another with normalizing flows (flows for flows).",
    )
    parser.add_argument("--version", action="version", version=f"coffea-f4f {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser(
        "demo", help="run the whole chain on built-in data and print the metrics",
        description="Generate LHCO-like dijet sim and data samples, train the conditional "
                    "morph sim -> data at each mjj, write held-out events as NanoAOD ROOT "
                    "files, morph them inside a coffea processor, print the metrics and write "
                    "plots, metrics.json and the model. --toy: the same on 2D toy shapes.")
    demo.add_argument("--out", default="f4f-demo", help="output directory (default: f4f-demo)")
    demo.add_argument("--quick", action="store_true",
                      help="small preset: a few minutes on 2 CPU cores (default: ~15 minutes)")
    demo.add_argument("--toy", action="store_true",
                      help="morph two 2D toy shapes instead of dijets (no coffea needed)")
    demo.add_argument("--source", default="checkerboard", help="source toy shape (--toy)")
    demo.add_argument("--target", default="star", help="target toy shape (--toy)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_cmd_demo)

    keys = "\n".join(f"  {k:<15} {v}" for k, v in CONFIG_KEYS.items())
    train = sub.add_parser(
        "train", help="train a morph from ROOT or parquet files described by a config file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a morph source -> target (both densities, then the morph flow) on "
                    "branches read with uproot\n(only the features and the condition are "
                    "read) and save the model directory (Morpher.save).\nThe config is TOML "
                    "(.toml) or YAML (.yaml/.yml, needs PyYAML).",
        epilog=f"config keys:\n{keys}\n\n{CONFIG_EXAMPLE}")
    train.add_argument("config", metavar="CONFIG", help="the config file (.toml, .yaml)")
    train.add_argument("--output", metavar="DIR",
                       help="model directory, relative to the working directory (overrides "
                            "'output')")
    train.add_argument("--max-events", type=_positive, metavar="N",
                       help="read at most N events per dataset (overrides 'max_events')")
    train.add_argument("--device", help="training device, e.g. cpu or cuda (overrides [train])")
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    train.set_defaults(func=_cmd_train)

    apply = sub.add_parser(
        "apply", help="write a copy of a ROOT tree with morphed branches added",
        description="Morph the feature branches of INPUT's tree chunk by chunk and write OUTPUT "
                    "(a new ROOT file, TTree of the same name) with every flat and jagged "
                    "numeric branch of the input copied and one float64 branch "
                    "<branch><suffix> per feature added. Jagged (per-object) features are "
                    "supported: they are morphed per object and the new branch shares the "
                    "collection's counter (nFatJet -> FatJet_mass_morphed), so NanoAODSchema "
                    "reads it as FatJet.mass_morphed. Counters are written as int32. Branches "
                    "of other types (strings, fixed-size arrays, nested vectors, objects) and "
                    "other objects of the file are not copied.")
    apply.add_argument("model", metavar="MODEL", help="saved model directory")
    apply.add_argument("input", metavar="INPUT", help="input ROOT file (FILE or FILE:TREE)")
    apply.add_argument("output", metavar="OUTPUT", help="output ROOT file (overwritten)")
    apply.add_argument("--tree", default=DEFAULT_TREE,
                       help=f"tree name when INPUT names none (default {DEFAULT_TREE})")
    apply.add_argument("--step-size", type=_positive, default=100_000, metavar="N",
                       help="events per chunk (default 100000)")
    apply.add_argument("--suffix", default="_morphed",
                       help="suffix of the morphed branches (default _morphed)")
    _add_model_inputs(apply)
    apply.add_argument("--device", help="device for morphing (default cpu)")
    apply.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    apply.set_defaults(func=_cmd_apply)

    evaluate = sub.add_parser(
        "evaluate", help="print how good a morph is and write metrics.json and plots",
        description="Morph the source events and compare with the target: classifier AUC "
                    "before/after (with its null sigma), per-feature W1/std, distance moved "
                    "and transport ratio (in target-std units). Writes metrics.json, "
                    "feature_comparison.png and loss_curves.png to --out. Use events the "
                    "model was not trained on.")
    evaluate.add_argument("model", metavar="MODEL", help="saved model directory")
    evaluate.add_argument("--source", required=True, action="append", metavar="FILE:TREE",
                          help="source input (FILE.root[:TREE] or FILE.parquet; repeatable)")
    evaluate.add_argument("--target", required=True, action="append", metavar="FILE:TREE",
                          help="target input (same forms; repeatable)")
    evaluate.add_argument("--out", default="f4f-evaluate", metavar="DIR",
                          help="output directory (default f4f-evaluate)")
    evaluate.add_argument("--max-events", type=_positive, default=100_000, metavar="N",
                          help="use the first N events of each dataset (default 100000)")
    _add_model_inputs(evaluate)
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the metrics (default 0)")
    evaluate.add_argument("--no-plots", action="store_true", help="write metrics.json only")
    evaluate.set_defaults(func=_cmd_evaluate)
    return parser


_USER_ERRORS = (CLIError, ValueError, KeyError, OSError, TypeError, ArithmeticError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coffea-f4f`` console script.

    Returns the exit status: 0 on success, 2 on bad arguments or inputs (one line on stderr,
    ``coffea-f4f COMMAND: error: ...``), 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, argument errors
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    try:
        return int(args.func(args) or 0)
    except _USER_ERRORS as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"coffea-f4f {args.command}: error: {_one_line(msg)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"coffea-f4f {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
