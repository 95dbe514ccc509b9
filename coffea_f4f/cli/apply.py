"""``coffea-f4f apply MODEL INPUT OUTPUT``: a copy of a ROOT tree with morphed branches added.

Flat and jagged numeric branches are copied; each feature gets a float64 branch
``<branch><suffix>``, jagged ones on their collection's counter. Written chunk by chunk.
"""

from __future__ import annotations

import argparse
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from tqdm.auto import tqdm

from .errors import CLIError
from .inputs import check_branches, import_uproot, open_tree, parse_input
from .morph import (
    check_one_kind,
    condition_args,
    feature_map,
    input_branches,
    load_model,
    morph_columns,
)

__all__ = ["CopyPlan", "plan_copy", "run_apply"]


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
    return ak.types.from_datashape(f"var * {dtype}", highlevel=False)


def plan_copy(tree: Any) -> CopyPlan:
    """Decide which branches of ``tree`` can be copied (flat and jagged numeric branches).

    Counter branches (``nJet``) are not copied as such: uproot writes them for the jagged
    branches they count, under the same name (as ``int32``). Branches of other types
    (strings, fixed-size arrays, nested vectors, objects) are skipped.
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
    for name in counter_names:
        types.pop(name, None)
    return CopyPlan(types=types, counters=counters, copied=list(types), skipped=skipped)


def _output_branches(
    plan: CopyPlan, tree: Any, inputs: dict[str, str], suffix: str
) -> dict[str, str]:
    """``{feature: output branch}``; adds the output branches to ``plan``."""
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
        if branch in jagged:
            plan.types[name] = _jagged_type("float64")
            plan.counters[name] = plan.counters[branch]
        else:
            plan.types[name] = np.dtype(np.float64)
    return names


def run_apply(args: argparse.Namespace) -> dict[str, Any]:
    """Copy the input tree to OUTPUT with morphed branches added; returns a short summary."""
    uproot = import_uproot()
    morpher = load_model(args.model)
    if args.device is not None:
        morpher.to(args.device)
    inputs = feature_map(morpher, args.branch)
    condition, target_condition = condition_args(
        morpher, args.condition_branch, args.target_condition
    )
    spec = parse_input(args.input, default_tree=args.tree)
    if spec.tree is None:
        raise CLIError(
            f"{spec.path}: apply reads and writes ROOT files (parquet is not supported here)"
        )
    out_path = Path(args.output)
    if "://" not in spec.path and out_path.resolve() == Path(spec.path).resolve():
        raise CLIError("OUTPUT is the INPUT file; write to a new file")
    tree = open_tree(spec)
    needed = input_branches(inputs, condition, target_condition)
    check_branches(tree, spec, needed)

    plan = plan_copy(tree)
    morphed_names = _output_branches(plan, tree, inputs, args.suffix)
    read = set(plan.copied) | set(needed)
    total = tree.num_entries
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="ev", desc="apply", disable=args.no_progress, dynamic_ncols=True)
    try:
        with uproot.recreate(out_path) as out:
            out.mktree(spec.tree, plan.types, counter_name=lambda n: plan.counters.get(n, f"n{n}"))
            for chunk in tree.iterate(
                filter_name=lambda n: n in read, step_size=args.step_size, library="ak", how=dict
            ):
                morphed = morph_columns(
                    morpher, chunk, inputs, condition=condition, target_condition=target_condition
                )
                data = {name: chunk[name] for name in plan.copied}
                data.update((morphed_names[f], column) for f, column in morphed.items())
                out[spec.tree].extend(data)
                bar.update(len(chunk[needed[0]]))
    except BaseException:
        bar.close()
        out_path.unlink(missing_ok=True)
        raise
    bar.close()
    seconds = time.perf_counter() - t0
    print(
        f"coffea-f4f apply: wrote {total} events of {spec.tree!r} to {out_path} "
        f"({seconds:.1f} s, {total / max(seconds, 1e-9):.0f} events/s)"
    )
    print(f"  morphed: {', '.join(f'{b} -> {morphed_names[f]}' for f, b in inputs.items())}")
    print(
        f"  copied {len(plan.copied)} branches"
        + (
            f"; skipped {len(plan.skipped)} that uproot cannot write here: "
            f"{', '.join(plan.skipped[:10])}{' ...' if len(plan.skipped) > 10 else ''}"
            if plan.skipped
            else ""
        )
    )
    return {
        "events": total,
        "morphed": morphed_names,
        "copied": plan.copied,
        "skipped": plan.skipped,
    }
