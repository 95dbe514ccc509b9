"""Columns in, columns out: awkward arrays and mappings <-> ``(N, D)`` float arrays.

Everything a model sees goes through :func:`to_matrix`, and everything it gives back goes
through :func:`replace_fields`, so that validation (missing fields, wrong shapes, non-numeric
or non-finite values) happens in one place with one style of error message.

Field paths use dots: ``"mjj"`` is a top-level field, ``"FatJet.msoftdrop"`` a field of a
collection. Jagged (per-object) fields are flattened to one row per object; event-level fields
requested together with jagged ones are broadcast to the objects.

This module imports numpy and awkward only.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np


class MissingColumnError(KeyError):
    """A requested field is not in the input; the message names close matches."""

    def __init__(self, name: str, available: Sequence[str], *, what: str = "field") -> None:
        self.name = name
        self.available = list(available)
        leaf = name.rsplit(".", 1)[-1]
        same_leaf = [a for a in self.available if a != name and a.rsplit(".", 1)[-1] == leaf]
        close = same_leaf[:3] + [
            c for c in difflib.get_close_matches(name, self.available, n=3, cutoff=0.5)
            if c not in same_leaf
        ]
        close = close[:3]
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        shown = ", ".join(repr(a) for a in self.available[:20])
        more = " ..." if len(self.available) > 20 else ""
        self.message = f"{what} {name!r} not found.{hint} Available: [{shown}{more}]"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return self.message


def _is_awkward(data: Any) -> bool:
    return isinstance(data, (ak.Array, ak.Record))


def available_fields(data: Any, prefix: str = "") -> list[str]:
    """Dotted paths of all leaf-ish fields of records, or the keys of a mapping."""
    if isinstance(data, Mapping):
        return [str(k) for k in data.keys()]
    if _is_awkward(data):
        out: list[str] = []
        for name in ak.fields(data):
            path = f"{prefix}{name}"
            out.append(path)
            try:
                sub = data[name]
            except Exception:  # pragma: no cover - virtual arrays that fail to load
                continue
            if ak.fields(sub) and len(out) < 2000:
                out.extend(available_fields(sub, prefix=f"{path}."))
        return out
    return []


def get_field(data: Any, path: str) -> Any:
    """Return the column at dotted ``path`` of an awkward record array or a mapping.

    Raises:
        MissingColumnError: the path does not exist (close matches are named).
    """
    if isinstance(data, Mapping):
        if path in data:
            return data[path]
        raise MissingColumnError(path, available_fields(data))
    if _is_awkward(data):
        current = data
        for part in path.split("."):
            if part not in ak.fields(current):
                raise MissingColumnError(path, available_fields(data))
            current = current[part]
        return current
    raise TypeError(
        f"cannot look up field {path!r} in a {type(data).__name__}; pass an awkward record "
        "array, a mapping of field name -> array, or an (N, D) numpy array"
    )


def _column_depth(col: Any, name: str) -> int:
    """0 for one value per event, 1 for a jagged list per event; errors otherwise."""
    if isinstance(col, ak.Array):
        if ak.fields(col):
            raise TypeError(
                f"field {name!r} is a record with fields {ak.fields(col)}, not a number; "
                f"name one of its fields, e.g. '{name}.{ak.fields(col)[0]}'"
            )
        ndim = col.ndim
        if ndim not in (1, 2):
            raise ValueError(
                f"field {name!r} has {ndim} list dimensions ({col.type}); only one value per "
                "event or one jagged list per event is supported"
            )
        return ndim - 1
    arr = np.asarray(col)
    if arr.ndim != 1:
        raise ValueError(
            f"field {name!r} has shape {arr.shape}; expected one value per event (a 1D array)"
        )
    return 0


def _numeric_1d(col: Any, name: str) -> np.ndarray:
    """Convert a flat column to a float64 numpy array with a clear error for non-numbers."""
    if isinstance(col, ak.Array):
        if col.ndim != 1:  # pragma: no cover - callers flatten first
            raise ValueError(f"field {name!r} is not flat: {col.type}")
        if ak.any(ak.is_none(col)):
            raise ValueError(
                f"field {name!r} has {int(ak.sum(ak.is_none(col)))} missing (None) values; "
                "fill or drop them (ak.fill_none / ak.drop_none) before morphing"
            )
        try:
            arr = ak.to_numpy(col)
        except Exception as err:
            raise TypeError(f"field {name!r} of type {col.type} is not numeric") from err
    else:
        arr = np.asarray(col)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"field {name!r} has dtype {arr.dtype}, not a number; convert it (e.g. with "
            "astype(float)) or choose a numeric field"
        )
    return arr.astype(np.float64, copy=False)


@dataclass(frozen=True)
class Layout:
    """How rows of a matrix map back to the input structure.

    Attributes:
        counts: objects per event when the fields were jagged, else None (one row per event).
    """

    counts: np.ndarray | None = None


def to_matrix(
    data: Any,
    fields: Sequence[str],
    *,
    what: str = "feature",
    allow_jagged: bool = True,
    check_finite: bool = True,
) -> tuple[np.ndarray, Layout]:
    """Stack ``fields`` of ``data`` into an ``(N, D)`` float64 matrix.

    Args:
        data: an awkward record array, a mapping ``{name: array}``, or an ``(N, D)`` array whose
            columns are already in ``fields`` order.
        fields: field paths, in model order.
        what: word used in error messages ("feature", "condition").
        allow_jagged: accept per-object (jagged) fields; they are flattened to one row per object
            and event-level fields among them are broadcast to the objects.
        check_finite: raise on NaN/inf (naming the field and the count).

    Returns:
        The matrix and a :class:`Layout` to undo the flattening.

    Raises:
        MissingColumnError: a field is missing.
        TypeError: a field is not numeric, or ``data`` is of an unsupported type.
        ValueError: shapes do not fit, or values are not finite.
    """
    fields = list(fields)
    if isinstance(data, np.ndarray) or (
        not isinstance(data, Mapping) and not _is_awkward(data) and hasattr(data, "__array__")
    ):
        matrix = np.asarray(data)
        if matrix.ndim == 1 and len(fields) == 1:
            matrix = matrix[:, None]
        if matrix.ndim != 2 or matrix.shape[1] != len(fields):
            raise ValueError(
                f"expected an array of shape (N, {len(fields)}) with columns {fields}, got shape "
                f"{matrix.shape}; pass one column per {what} in this order"
            )
        if matrix.dtype.kind not in "biuf":
            raise TypeError(f"{what} array has dtype {matrix.dtype}, not a number")
        matrix = matrix.astype(np.float64, copy=False)
        if check_finite:
            require_finite(matrix, fields, what=what)
        return matrix, Layout()

    if not isinstance(data, Mapping) and not _is_awkward(data):
        raise TypeError(
            f"unsupported input type {type(data).__name__}; pass an awkward record array, a "
            "mapping of field name -> array, or an (N, D) numpy array"
        )
    cols = [get_field(data, f) for f in fields]
    depths = [_column_depth(c, f) for c, f in zip(cols, fields, strict=True)]
    counts = None
    if any(depths):
        if not allow_jagged:
            jag = [f for f, d in zip(fields, depths, strict=True) if d]
            raise ValueError(f"{what} fields {jag} are jagged (one list per event); expected "
                             "one value per event")
        cols = [ak.Array(c) if not isinstance(c, ak.Array) else c for c in cols]
        ref = cols[depths.index(1)]
        counts_arr = ak.num(ref, axis=1)
        flat_cols = []
        for c, f, d in zip(cols, fields, depths, strict=True):
            if d == 1:
                if not ak.all(ak.num(c, axis=1) == counts_arr):
                    raise ValueError(
                        f"jagged field {f!r} has different object counts per event than "
                        f"{fields[depths.index(1)]!r}; morph fields of one collection together"
                    )
                flat_cols.append(ak.flatten(c, axis=1))
            else:
                flat_cols.append(ak.flatten(ak.broadcast_arrays(c, ref)[0], axis=1))
        cols = flat_cols
        counts = ak.to_numpy(counts_arr).astype(np.int64)
    arrays = [_numeric_1d(c, f) for c, f in zip(cols, fields, strict=True)]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        shapes = {f: len(a) for f, a in zip(fields, arrays, strict=True)}
        raise ValueError(f"{what} fields have different lengths: {shapes}")
    n = lengths.pop() if lengths else 0
    matrix = np.stack(arrays, axis=1) if arrays else np.zeros((n, 0))
    if check_finite:
        require_finite(matrix, fields, what=what)
    return matrix, Layout(counts=counts)


def require_finite(matrix: np.ndarray, fields: Sequence[str], *, what: str = "feature") -> None:
    """Raise ValueError naming each column that holds NaN or inf, with the count."""
    bad = ~np.isfinite(matrix)
    if bad.any():
        per = bad.sum(axis=0)
        parts = [
            f"{f!r}: {int(c)} of {len(matrix)}" for f, c in zip(fields, per, strict=True) if c
        ]
        raise ValueError(
            f"non-finite (NaN or inf) values in {what} " + ", ".join(parts)
            + "; drop or fill these events before training or morphing"
        )


def condition_vector(
    condition: Any, n: int, name: str, *, data: Any = None
) -> np.ndarray:
    """Resolve a condition given as a field name of ``data``, a scalar or an array to ``(n, 1)``.

    Raises:
        MissingColumnError / ValueError: the condition is missing, of the wrong length, or not
            finite.
    """
    if isinstance(condition, str):
        if data is None or isinstance(data, np.ndarray):
            raise ValueError(
                f"condition {condition!r} given by name but the input is a plain array; pass "
                "the condition values as an array instead"
            )
        values, _ = to_matrix(data, [condition], what="condition", allow_jagged=False)
        return values
    arr = np.asarray(condition, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full((n, 1), float(arr))
    elif arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 2 and arr.shape[1] != 1:
        raise ValueError(
            f"condition {name!r} must be one value per event, got shape {arr.shape}; a "
            "multi-dimensional condition is not supported"
        )
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(
            f"condition {name!r} has {arr.shape[0] if arr.ndim else 1} values for {n} events"
        )
    require_finite(arr, [name], what="condition")
    return arr


def replace_fields(data: Any, fields: Sequence[str], matrix: np.ndarray, layout: Layout) -> Any:
    """Return ``data`` with ``fields`` replaced by the columns of ``matrix`` (same container type).

    For awkward records the other fields (and any behaviour) are kept; jagged fields are
    re-wrapped with ``layout.counts``. For mappings a shallow copy is returned (jagged fields
    come back jagged).

    Raises:
        ValueError: an event-level field was morphed per object (next to jagged fields): its
            per-object results have no place in the event-level field.
    """
    columns = []
    for j, f in enumerate(fields):
        original = get_field(data, f)
        col: Any = matrix[:, j].copy()
        if layout.counts is not None:
            if not (isinstance(original, ak.Array) and original.ndim == 2):
                raise ValueError(
                    f"feature {f!r} is one value per event but was morphed per object next to "
                    "jagged features; its per-object results cannot replace the event-level "
                    "field. Broadcast it to the objects yourself (ak.broadcast_arrays) or "
                    "morph the (N, D) array"
                )
            col = ak.unflatten(col, layout.counts)
        columns.append(col)
    if isinstance(data, Mapping):
        out = dict(data)
        out.update(zip(fields, columns, strict=True))
        return out
    result = data
    for f, col in zip(fields, columns, strict=True):
        path = tuple(f.split("."))
        result = ak.with_field(result, ak.Array(col) if isinstance(col, np.ndarray) else col,
                               where=path if len(path) > 1 else path[0])
    return result
