"""``coffea-f4f apply MODEL INPUT OUTPUT``: a copy of a ROOT tree with morphed branches added.

Flat and jagged numeric branches are copied with their types; each feature gets a branch
``<branch><suffix>`` of the input branch's floating type (:func:`morphed_dtype`), jagged ones
on their collection's counter. Written chunk by chunk, compressed as chosen
(:data:`COMPRESSIONS`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from ..progress import progress_bar
from .errors import CLIError
from .inputs import check_branches, import_uproot, iterate_tree, open_tree, parse_input
from .morph import (
    check_device,
    check_one_kind,
    condition_args,
    feature_map,
    input_branches,
    load_model,
    morph_columns,
)
from .outputs import check_output, replacing

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_COMPRESSION",
    "CopyPlan",
    "compression",
    "morphed_dtype",
    "plan_copy",
    "run_apply",
]

#: ``--compression`` choices: uproot's class name and ``(default level, highest level)``.
COMPRESSIONS: dict[str, tuple[str | None, int, int]] = {
    "zlib": ("ZLIB", 1, 9),
    "lzma": ("LZMA", 6, 9),
    "lz4": ("LZ4", 4, 12),
    "zstd": ("ZSTD", 5, 22),
    "none": (None, 0, 0),
}
#: What ``apply`` writes with when ``--compression`` is not given: uproot's own default, fast,
#: and on a generated NanoAOD file (100k events, 2 float32 features) the smallest of the fast
#: ones: zlib 1 1.29x the input, zstd 5 1.49x, lz4 4 1.94x, none 2.24x; lzma 6 1.06x, 4x slower.
DEFAULT_COMPRESSION = "zlib"


@dataclass
class CopyPlan:
    """Which branches of an input tree are written to the output tree, and how.

    Attributes:
        types: output branch -> numpy dtype (flat) or awkward ``var * dtype`` type (jagged),
            in order.
        counters: jagged output branch -> name of its counter branch.
        copied: input branches copied unchanged.
        skipped: input branches uproot cannot write here (with the reason).
        retyped: counters of the input that are not ``int32``, as ``"name (dtype)"``: uproot
            writes them as ``int32`` (same values).
    """

    types: dict[str, Any]
    counters: dict[str, str]
    copied: list[str]
    skipped: list[str]
    retyped: list[str] = field(default_factory=list)


@functools.cache
def _jagged_type(dtype: str) -> Any:
    """The awkward type ``var * dtype``, parsed once (parsing costs ~30 ms per call)."""
    return ak.types.from_datashape(f"var * {dtype}", highlevel=False)


def compression(name: str, level: int | None = None) -> Any:
    """The uproot compression object of ``--compression NAME --compression-level LEVEL``
    (``None`` for ``"none"``); ``level=None`` takes the default level of :data:`COMPRESSIONS`.

    Raises:
        CLIError: an unknown name, or a level outside the algorithm's range.

    Example:
        >>> compression("zlib", 1), compression("none")
        (ZLIB(1), None)
    """
    if name not in COMPRESSIONS:
        raise CLIError(f"unknown compression {name!r}; choose from {', '.join(COMPRESSIONS)}")
    cls, default, highest = COMPRESSIONS[name]
    if cls is None:
        if level not in (None, 0):
            raise CLIError("--compression none takes no --compression-level")
        return None
    level = default if level is None else level
    if not 0 <= level <= highest:
        raise CLIError(f"--compression-level {level}: {name} levels are 0 to {highest}")
    return getattr(import_uproot(), cls)(level) if level else None


def morphed_dtype(input_dtype: Any, precision: str) -> np.dtype:
    """The type of a morphed branch: the input branch's floating type (float32 stays float32,
    float64 stays float64); for integer or boolean inputs, the ``precision`` the model
    applies in.

    A float32 input keeps float32 even when the model applies in float64: its values carry
    float32 precision to begin with, the rounded result differs from the float64 one by less
    than that precision (and the same for any chunking), the branch has the type analysis code
    reads the input with, and it takes half the space.

    Example:
        >>> morphed_dtype(np.float32, "float64"), morphed_dtype(np.int32, "float32")
        (dtype('float32'), dtype('float32'))
    """
    dtype = np.dtype(input_dtype)
    return dtype if dtype.kind == "f" else np.dtype(precision)


def plan_copy(tree: Any) -> CopyPlan:
    """Decide which branches of ``tree`` can be copied (flat and jagged numeric branches,
    each with its type).

    Counter branches (``nJet``) are not copied as such: uproot writes them for the jagged
    branches they count, under the same name and with the same values, but always as
    ``int32`` (uproot offers no other counter type; a ``uint32`` counter becomes ``int32``).
    Branches of other types (strings, fixed-size arrays, nested vectors, objects) are skipped.
    """
    uproot = import_uproot()
    types: dict[str, Any] = {}
    counters: dict[str, str] = {}
    skipped: list[str] = []
    counter_names: set[str] = set()
    for branch in tree.branches:
        interp = branch.interpretation
        if len(branch.branches):
            skipped.append(branch.name)
        elif (
            isinstance(interp, uproot.AsDtype)
            and interp.inner_shape == ()
            and interp.to_dtype.kind in "biuf"
        ):
            types[branch.name] = np.dtype(interp.to_dtype.newbyteorder("="))
        elif (
            isinstance(interp, uproot.AsJagged)
            and isinstance(interp.content, uproot.AsDtype)
            and interp.content.inner_shape == ()
            and interp.content.to_dtype.kind in "biuf"
        ):
            types[branch.name] = _jagged_type(np.dtype(interp.content.to_dtype).name)
            count = branch.count_branch
            counters[branch.name] = count.name if count is not None else f"n{branch.name}"
            if count is not None:
                counter_names.add(count.name)
        else:
            skipped.append(branch.name)
    retyped = [
        f"{name} ({types[name]})"
        for name in sorted(counter_names)
        if name in types and types[name] != np.dtype(np.int32)
    ]
    for name in counter_names:
        types.pop(name, None)
    return CopyPlan(
        types=types, counters=counters, copied=list(types), skipped=skipped, retyped=retyped
    )


def _dtype_of(plan_type: Any) -> np.dtype:
    """The numpy type of a :class:`CopyPlan` entry (flat dtype, or a jagged ``var * dtype``)."""
    if isinstance(plan_type, np.dtype):
        return plan_type
    return np.dtype(str(plan_type.content))


def _output_branches(
    plan: CopyPlan, tree: Any, inputs: dict[str, str], suffix: str, precision: str
) -> dict[str, str]:
    """``{feature: output branch}``; adds the output branches (typed by
    :func:`morphed_dtype`) to ``plan``."""
    check_one_kind(inputs, plan.counters)
    jagged = [b for b in inputs.values() if b in plan.counters]
    counters = {plan.counters[b] for b in jagged}
    if len(counters) > 1:
        raise CLIError(
            f"jagged feature branches {jagged} have different counters "
            f"{sorted(counters)}; morph fields of one collection together"
        )
    existing = set(tree.keys())  # recursive: the names of all (sub-)branches
    names: dict[str, str] = {}
    for feature, branch in inputs.items():
        name = f"{branch}{suffix}"
        if name in existing or name in names.values():
            raise CLIError(f"output branch {name!r} already exists; choose another --suffix")
        names[feature] = name
        dtype = morphed_dtype(_input_dtype(tree, branch, plan), precision)
        if branch in jagged:
            plan.types[name] = _jagged_type(dtype.name)
            plan.counters[name] = plan.counters[branch]
        else:
            plan.types[name] = dtype
    return names


def _input_dtype(tree: Any, branch: str, plan: CopyPlan) -> np.dtype:
    if branch in plan.types:
        return _dtype_of(plan.types[branch])
    interp = tree[branch].interpretation  # e.g. a counter used as a feature
    inner = getattr(interp, "content", interp)
    return np.dtype(getattr(inner, "to_dtype", np.float64)).newbyteorder("=")


def _as_type(column: Any, dtype: np.dtype) -> Any:
    if isinstance(column, ak.Array):
        return ak.values_astype(column, dtype)
    return np.asarray(column, dtype=dtype)


def run_apply(args: argparse.Namespace) -> dict[str, Any]:
    """Copy the input tree to OUTPUT with morphed branches added; returns a short summary.

    OUTPUT is written under a temporary name beside it and renamed over it at the end: an
    error (or Ctrl-C) leaves no partial file and an existing OUTPUT as it was. OUTPUT must not
    be the input file (compared by file identity: links count). Conditions clamped to the
    training range are added up over the chunks into one
    :class:`~coffea_f4f.morpher.ConditionClampWarning` at the end.

    Raises:
        CLIError: bad arguments, a missing or damaged input, OUTPUT is the input.
    """
    uproot = import_uproot()
    level = getattr(args, "compression_level", None)
    codec = compression(getattr(args, "compression", DEFAULT_COMPRESSION), level)
    spec = parse_input(args.input, default_tree=args.tree)
    if spec.tree is None:
        raise CLIError(
            f"{spec.path}: apply reads and writes ROOT files (parquet is not supported here)"
        )
    out_path = Path(args.output)
    check_output(out_path, [spec.path])
    device = check_device(getattr(args, "device", None))
    morpher = load_model(args.model)
    morpher.to(device, precision=getattr(args, "precision", None))
    inputs = feature_map(morpher, args.branch)
    condition, target_condition = condition_args(
        morpher, args.condition_branch, args.target_condition
    )
    tree = open_tree(spec)
    needed = input_branches(inputs, condition, target_condition)
    check_branches(tree, spec, needed)

    plan = plan_copy(tree)
    morphed_names = _output_branches(plan, tree, inputs, args.suffix, morpher.precision)
    out_types = {f: _dtype_of(plan.types[name]) for f, name in morphed_names.items()}
    read = set(plan.copied) | set(needed)
    total = tree.num_entries
    t0 = time.perf_counter()
    bar = progress_bar(total, desc="apply", unit="ev", show=not args.no_progress)
    clamped: dict[tuple[str, str], list[Any]] = {}
    try:
        with replacing(out_path) as tmp, uproot.recreate(tmp, compression=codec) as out:
            out.mktree(spec.tree, plan.types, counter_name=lambda n: plan.counters.get(n, f"n{n}"))
            chunks = iterate_tree(
                tree,
                spec,
                filter_name=lambda n: n in read,
                step_size=args.step_size,
                library="ak",
                how=dict,
            )
            for chunk in chunks:
                with _adding_up_clamps(clamped):
                    morphed = morph_columns(
                        morpher,
                        chunk,
                        inputs,
                        condition=condition,
                        target_condition=target_condition,
                    )
                data = {name: chunk[name] for name in plan.copied}
                data.update(
                    (morphed_names[f], _as_type(column, out_types[f]))
                    for f, column in morphed.items()
                )
                out[spec.tree].extend(data)
                bar.update(len(chunk[needed[0]]))
    finally:
        bar.close()
    if clamped:
        _warn_clamped(clamped)
    seconds = time.perf_counter() - t0
    print(
        f"coffea-f4f apply: wrote {total} events of {spec.tree!r} to {out_path} "
        f"({seconds:.1f} s, {total / max(seconds, 1e-9):.0f} events/s)"
    )
    print(
        "  morphed: "
        + ", ".join(f"{b} -> {morphed_names[f]} ({out_types[f]})" for f, b in inputs.items())
    )
    size = out_path.stat().st_size
    print(f"  {size / 1e6:.2f} MB, compression {_describe(codec)}")
    print(
        f"  copied {len(plan.copied)} branches"
        + (
            f"; skipped {len(plan.skipped)} that uproot cannot write here: "
            f"{', '.join(plan.skipped[:10])}{' ...' if len(plan.skipped) > 10 else ''}"
            if plan.skipped
            else ""
        )
    )
    if plan.retyped:
        print(
            f"  counters written as int32 (uproot writes no other counter type; same values): "
            f"{', '.join(plan.retyped)}"
        )
    return {
        "events": total,
        "bytes": size,
        "morphed": morphed_names,
        "copied": plan.copied,
        "skipped": plan.skipped,
    }


@contextlib.contextmanager
def _adding_up_clamps(clamped: dict[tuple[str, str], list[Any]]) -> Iterator[None]:
    """Catch the block's :class:`~coffea_f4f.morpher.ConditionClampWarning` s and add them up
    in ``clamped`` (``{(what, name): [count, total, low, high]}``); other warnings are passed
    on as they were."""
    from ..morpher import ConditionClampWarning  # torch: the model is loaded already

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConditionClampWarning)
        yield
    for w in caught:
        if isinstance(w.message, ConditionClampWarning):
            for what, name, count, rows, lo, hi in w.message.clamped:
                entry = clamped.setdefault((what, name), [0, 0, lo, hi])
                entry[0] += count
                entry[1] += rows
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _warn_clamped(clamped: dict[tuple[str, str], list[Any]]) -> None:
    """One :class:`~coffea_f4f.morpher.ConditionClampWarning` for the whole file."""
    from ..morpher import ConditionClampWarning

    entries = [(what, name, *counts) for (what, name), counts in clamped.items()]
    warnings.warn(ConditionClampWarning.of(entries), stacklevel=2)


def _describe(codec: Any) -> str:
    return "none" if codec is None else f"{type(codec).__name__.lower()} {codec.level}"
