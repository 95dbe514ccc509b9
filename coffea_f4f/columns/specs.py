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
from .paths import _LISTS, _WRAPPERS, as_path, form_of, get_field, is_dask, path_name

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


#: The argument of :class:`~coffea_f4f.MorphTransform` each kind of column comes from.
_ARGUMENT = {"input": "inputs", "condition": "condition", "target condition": "target_condition"}
_STRING_PARAMETERS = ("string", "bytestring", "char", "byte")


def _holds_strings(form: Any) -> bool:
    """True when an awkward form is (lists or options of) strings or bytes."""
    while True:
        if form.parameters.get("__array__") in _STRING_PARAMETERS:
            return True
        if not isinstance(form, _LISTS + _WRAPPERS):
            return False
        form = form.content


def _as_awkward(arr: Any, label: str, returned: str) -> ak.Array:
    """A non-awkward column (a callable's result) as an ``ak.Array``: numpy arrays and
    array-likes as they are, ragged Python lists through ``ak.Array``."""
    try:
        values = np.asarray(arr)
    except (ValueError, TypeError):  # ragged nested lists
        values = None
    if values is None or (values.dtype.kind == "O" and isinstance(arr, list | tuple)):
        try:
            return ak.Array(list(arr))
        except Exception as err:  # awkward raises several types for what it cannot read
            raise TypeError(
                f"{label} {returned} a {type(arr).__name__} that awkward cannot read "
                f"({_one_line(err)}); return a numpy or awkward array of numbers"
            ) from None
    if values.ndim == 0:
        raise TypeError(
            f"{label} {returned} a scalar ({type(arr).__name__}); return one value per "
            "event or per object"
        )
    if values.dtype.kind in "USO":
        kind = "strings" if values.dtype.kind in "US" else "Python objects"
        raise TypeError(
            f"{label} {returned} {kind} (dtype {values.dtype}), not numbers; return a numeric array"
        )
    return ak.Array(values)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200]


def resolve_column(events: Any, spec: ColumnSpec, name: str, what: str) -> ResolvedColumn:
    """Look up (or compute) one input or condition column and check what it holds.

    Args:
        events: the (eager or dask) awkward events.
        spec: a field path, or a callable ``events -> array``.
        name: the model feature or condition the column is for.
        what: ``"input"``, ``"condition"`` or ``"target condition"`` (for messages).

    Returns:
        The column, its list depth and its label for messages (a callable's label is
        ``inputs['tau21'] (a callable)``, a field's ``input 'FatJet.tau21'``).

    Raises:
        TypeError: not numbers (strings, records, Python objects, a scalar), or a dask
            column for eager events (or the reverse).
        ValueError: more than one list dimension, or (eager events) a callable that returns
            another number of values than there are events.
    """
    if callable(spec):
        arr = spec(events)
        label = f"{_ARGUMENT.get(what, what)}[{name!r}] (a callable)"
        returned = "returned"
    else:
        arr = get_field(events, spec)
        label = f"{what} {path_name(spec)!r}"
        returned = "holds"
    if is_dask(events) != is_dask(arr):
        raise TypeError(
            f"{label} is a {type(arr).__name__} but the events are a {type(events).__name__}; "
            "a callable must return an array of the same kind (dask or not) as the events"
        )
    if not is_dask(arr):
        if not isinstance(arr, ak.Array):
            arr = _as_awkward(arr, label, returned)
        if len(arr) != len(events):
            raise ValueError(
                f"{label} {returned} {len(arr)} values for {len(events)} events; return one "
                "value (or one list of objects) per event"
            )
    if _holds_strings(form_of(arr)):
        raise TypeError(f"{label} {returned} strings, not numbers; give a numeric column")
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
        raise TypeError(f"{label} {returned} values of dtype {leaf.primitive}, not a number")
    if depth > 1:
        raise ValueError(
            f"{label} has {depth} list dimensions; only one value per event or one list of "
            "objects per event (a jagged collection field) is supported"
        )
    return ResolvedColumn(arr, depth, label)
