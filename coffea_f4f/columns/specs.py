"""Columns named by a path or computed by a callable ``events -> array`` (how
:class:`~coffea_f4f.MorphTransform` and the CLI name their inputs), resolved on eager or dask
arrays without reading data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import awkward as ak
import numpy as np

from .jagged import list_depth
from .paths import as_path, get_field, is_dask, path_name

__all__ = ["ColumnSpec", "ResolvedColumn", "check_spec", "resolve_column"]

#: An input: a field path (``"FatJet.msoftdrop"``, ``("FatJet", "msoftdrop")``) or a callable.
ColumnSpec: TypeAlias = str | tuple[str, ...] | Callable[[Any], Any]


@dataclass(frozen=True)
class ResolvedColumn:
    """A resolved input: the array, its list depth (0 event-level, 1 jagged) and its label."""

    array: Any
    depth: int
    name: str


def check_spec(spec: Any, what: str) -> None:
    if callable(spec):
        return
    try:
        as_path(spec)
    except TypeError:
        raise TypeError(
            f"{what} must be a field path such as 'FatJet.msoftdrop' (or a tuple path) or a "
            f"callable events -> array, got {spec!r}"
        ) from None


def resolve_column(events: Any, spec: ColumnSpec, name: str, what: str) -> ResolvedColumn:
    """Look up (or compute) one input or condition column and check what it holds."""
    if callable(spec):
        arr = spec(events)
        label = f"{what} {name!r} (callable)"
    else:
        arr = get_field(events, spec)
        label = f"{what} {path_name(spec)!r}"
    if is_dask(events) != is_dask(arr):
        raise TypeError(
            f"{label} is a {type(arr).__name__} but the events are a {type(events).__name__}; "
            "a callable must return an array of the same kind (dask or not) as the events"
        )
    if not is_dask(arr) and not isinstance(arr, ak.Array):
        values = np.asarray(arr)
        if values.ndim == 0:
            raise TypeError(
                f"{label} is a scalar ({type(arr).__name__}); return one value per "
                "event or per object"
            )
        arr = ak.Array(values)
    depth, leaf = list_depth(arr)
    if isinstance(leaf, ak.forms.RecordForm):
        raise TypeError(
            f"{label} is a record with fields {list(leaf.fields)[:8]}, not a number; name one of "
            "its fields (e.g. 'FatJet.msoftdrop')"
        )
    if not isinstance(leaf, ak.forms.NumpyForm):
        raise TypeError(
            f"{label} has an unsupported type ({type(leaf).__name__}); expected numbers"
        )
    if np.dtype(leaf.primitive).kind not in "iuf":
        raise TypeError(f"{label} has dtype {leaf.primitive}, not a number")
    if depth > 1:
        raise ValueError(
            f"{label} has {depth} list dimensions; only one value per event or one list of "
            "objects per event (a jagged collection field) is supported"
        )
    return ResolvedColumn(arr, depth, label)
