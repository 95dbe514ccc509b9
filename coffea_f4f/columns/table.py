"""Inputs to ``(N, D)`` float64 matrices and back, for every input type the package accepts.

:func:`to_matrix` turns the features of an input into a matrix, :func:`condition_matrix` the
conditions (fields of the input or arrays given by the caller) into rows that match it, and
:func:`replace_fields` puts results back into a copy of the input of the same type. Types:
awkward record arrays (also NanoEvents and uproot arrays), mappings of name -> array, pandas
DataFrames (read by column *name*), and plain ``(N, D)`` arrays (columns in model order).
dask-awkward arrays are rejected with a pointer to :class:`~coffea_f4f.MorphTransform`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

from .jagged import Layout, broadcast_to_objects, flatten, list_depth, unflatten
from .paths import as_path, get_field, is_awkward, is_dask, path_name
from .validate import check_lengths, require_finite, to_float

__all__ = ["condition_matrix", "input_kind", "replace_fields", "to_matrix"]


def _is_pandas(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "columns")


def input_kind(data: Any) -> str:
    """``"awkward"``, ``"dask"``, ``"pandas"``, ``"mapping"`` or ``"array"``.

    Raises:
        TypeError: any other type.
    """
    if is_dask(data):
        return "dask"
    if is_awkward(data):
        return "awkward"
    if _is_pandas(data):
        return "pandas"
    if isinstance(data, Mapping):
        return "mapping"
    if isinstance(data, np.ndarray) or (
        hasattr(data, "__array__") and not isinstance(data, list | tuple)
    ):
        return "array"
    raise TypeError(
        f"unsupported input type {type(data).__name__}; pass an awkward record array, a "
        "mapping of field name -> array, a pandas DataFrame, or an (N, D) numpy array"
    )


def _columns_of(data: Any) -> Any:
    """A view of ``data`` whose columns :func:`get_field` can look up by name."""
    kind = input_kind(data)
    if kind == "pandas":
        return {str(c): data[c].to_numpy() for c in data.columns}
    if kind == "dask":
        raise TypeError(
            "a dask_awkward array cannot be morphed eagerly; use coffea_f4f.MorphTransform "
            "(it runs the morph in dask.map_partitions), or call .compute() first"
        )
    return data


def _depth(column: Any, name: str, what: str) -> int:
    """0 for one value per event, 1 for one list per event; errors otherwise."""
    if isinstance(column, ak.Array):
        depth, leaf = list_depth(column)
        if isinstance(leaf, ak.forms.RecordForm):
            fields = list(leaf.fields)
            raise TypeError(
                f"{what} {name!r} is a record with fields {fields[:8]}, not a number; name one "
                f"of its fields, e.g. '{name}.{fields[0]}'"
            )
        if depth > 1:
            raise ValueError(
                f"{what} {name!r} has {depth} list dimensions ({column.type}); only one value "
                "per event or one jagged list per event is supported"
            )
        return depth
    array = np.asarray(column)
    if array.ndim != 1:
        raise ValueError(
            f"{what} {name!r} has shape {array.shape}; expected one value per event (a 1D array)"
        )
    return 0


def _gather(
    columns: Sequence[Any],
    names: Sequence[str],
    *,
    what: str,
    layout: Layout | None = None,
    allow_jagged: bool = True,
    check_finite: bool = True,
) -> tuple[np.ndarray, Layout]:
    """Stack columns (event-level or jagged) into rows.

    Without ``layout`` the columns define it: the jagged ones give the objects, and
    event-level ones are broadcast to them. With ``layout`` (conditions for given features)
    an event-level column gives one value per event and a jagged one one value per object.
    """
    depths = [_depth(c, n, what) for c, n in zip(columns, names, strict=True)]
    jagged = [n for n, d in zip(names, depths, strict=True) if d]
    if jagged and not allow_jagged:
        raise ValueError(
            f"{what} fields {jagged} are jagged (one list per event); expected one value per event"
        )
    counts = None if layout is None else layout.counts
    if layout is not None and layout.counts is None and jagged:
        raise ValueError(
            f"{what} {jagged} is jagged (one value per object) but the features are one value "
            "per event; give one value per event"
        )
    flat: list[np.ndarray] = []
    levels: list[int] = []
    for column, name, depth in zip(columns, names, depths, strict=True):
        if depth:
            values, n_obj = flatten(
                ak.Array(column) if not isinstance(column, ak.Array) else column
            )
            if counts is None:
                counts, first = n_obj, name
            elif len(n_obj) != len(counts) or not np.array_equal(n_obj, counts):
                other = "the features" if layout is not None else repr(first)
                raise ValueError(
                    f"jagged {what} {name!r} has different numbers of objects per event than "
                    f"{other}; use fields of one collection together"
                )
            flat.append(to_float(values, name, what=what))
        else:
            flat.append(to_float(column, name, what=what))
        levels.append(depth)
    rows = []
    for values, name, depth in zip(flat, names, levels, strict=True):
        if counts is not None and not depth:
            if len(values) != len(counts):
                raise ValueError(
                    f"{what} {name!r} has {len(values)} values for {len(counts)} events (it is "
                    "one value per event, to be broadcast to the objects of each event)"
                )
            values = broadcast_to_objects(values, Layout(int(counts.sum()), counts))
        rows.append(values)
    n = check_lengths(rows, names, what=what)
    if layout is not None and n != layout.n_rows and rows:
        raise ValueError(
            f"{what} has {n} values for {layout.n_rows} "
            f"{'objects' if layout.jagged else 'events'}; give one value per event"
        )
    matrix = np.stack(rows, axis=1) if rows else np.zeros((n, 0))
    if check_finite:
        require_finite(matrix, names, what=what)
    return matrix, Layout(n, counts)


def to_matrix(
    data: Any,
    fields: Sequence[Any],
    *,
    what: str = "feature",
    allow_jagged: bool = True,
    check_finite: bool = True,
) -> tuple[np.ndarray, Layout]:
    """Stack ``fields`` of ``data`` into an ``(N, D)`` float64 matrix.

    Args:
        data: awkward records, a mapping or DataFrame ``{name: column}``, or an ``(N, D)``
            array whose columns are already in ``fields`` order.
        fields: field paths (dotted or tuples), in model order.
        what: the word used in error messages ("feature", "condition").
        allow_jagged: accept per-object (jagged) fields, flattened to one row per object;
            event-level fields among them are broadcast to the objects.
        check_finite: raise on NaN/inf (naming the field and the count).

    Returns:
        The matrix and the :class:`~coffea_f4f.columns.Layout` to put results back.

    Raises:
        MissingColumnError: a field is missing (close matches are named).
        TypeError: a field is not numeric, or ``data`` is of an unsupported type.
        ValueError: shapes do not fit, or values are not finite.
    """
    names = [path_name(f) for f in fields]
    if input_kind(data) == "array":
        matrix = np.asarray(data)
        if matrix.ndim == 1 and len(names) == 1:
            matrix = matrix[:, None]
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise ValueError(
                f"expected an array of shape (N, {len(names)}) with columns {names}, got shape "
                f"{matrix.shape}; pass one column per {what} in this order"
            )
        if matrix.dtype.kind not in "biuf":
            raise TypeError(f"{what} array has dtype {matrix.dtype}, not a number")
        matrix = matrix.astype(np.float64, copy=False)
        if check_finite:
            require_finite(matrix, names, what=what)
        return matrix, Layout(len(matrix))
    view = _columns_of(data)
    columns = [get_field(view, f) for f in fields]
    return _gather(columns, names, what=what, allow_jagged=allow_jagged, check_finite=check_finite)


def condition_matrix(
    data: Any, condition: Any, names: Sequence[str], layout: Layout, *, what: str = "condition"
) -> np.ndarray:
    """The conditions of the rows of ``layout`` as an ``(n_rows, k)`` float64 matrix.

    Args:
        data: the input the features came from (for conditions given by field name).
        condition: None (the fields ``names`` of ``data``), a field path or a list of them, a
            scalar (the same value for every row; one condition only), or values: an
            ``(N,)`` / ``(N, k)`` array in the order of ``names``, or an awkward array.
            With jagged features a flat array is one value per *event* (broadcast to its
            objects) and a jagged array one value per object; nothing is guessed from lengths.
        names: the condition names, in model order (``k = len(names)``).
        layout: the layout of the feature rows.

    Raises:
        MissingColumnError / ValueError / TypeError: missing, misshapen or non-finite
            conditions (the message names them).
    """
    names = list(names)
    if condition is None:
        condition = names
    if isinstance(condition, str | tuple):
        condition = [condition]
    if isinstance(condition, list) and all(isinstance(c, str | tuple) for c in condition):
        if len(condition) != len(names):
            raise ValueError(f"{len(condition)} condition fields given for conditions {names}")
        if input_kind(data) == "array":
            raise ValueError(
                f"{what} {path_name(condition[0])!r} given by name but the input is a plain "
                "array; pass the condition values as an array instead"
            )
        view = _columns_of(data)
        columns = [get_field(view, c, what=what) for c in condition]
        return _gather(columns, names, what=what, layout=layout)[0]
    if isinstance(condition, ak.Array):
        if len(names) != 1:
            raise ValueError(
                f"an awkward condition array holds one condition; the model has "
                f"{names}: pass an (N, {len(names)}) array"
            )
        return _gather([condition], names, what=what, layout=layout)[0]
    values = np.asarray(condition)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{what} values have dtype {values.dtype}, not a number")
    values = values.astype(np.float64)
    if values.ndim == 0:
        if len(names) != 1:
            raise ValueError(
                f"a scalar condition is ambiguous for conditions {names}; pass an "
                f"(N, {len(names)}) array"
            )
        matrix = np.full((layout.n_rows, 1), float(values))
        require_finite(matrix, names, what=what)
        return matrix
    if values.ndim == 1 and len(names) == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(
            f"{what} has shape {values.shape}, but the model has {len(names)} condition(s) "
            f"{names}: pass (N, {len(names)}) values in this order (a multi-dimensional "
            "condition needs a model trained on as many conditions)"
        )
    return _gather(list(values.T), names, what=what, layout=layout)[0]


def replace_fields(data: Any, fields: Sequence[Any], matrix: np.ndarray, layout: Layout) -> Any:
    """A copy of ``data`` with ``fields`` replaced by the columns of ``matrix``, same type.

    Awkward records keep their other fields and behaviours (jagged fields come back on the
    input's object counts); mappings and DataFrames are copied.

    Raises:
        ValueError: an event-level field was morphed per object (next to jagged fields): its
            per-object results have no place in the event-level field.
    """
    kind = input_kind(data)
    if kind == "array":
        return matrix
    view = _columns_of(data)
    columns = []
    for j, f in enumerate(fields):
        original = get_field(view, f)
        if layout.jagged and not (isinstance(original, ak.Array) and original.ndim == 2):
            raise ValueError(
                f"feature {path_name(f)!r} is one value per event but was morphed per object "
                "next to jagged features; its per-object results cannot replace the event-level "
                "field. Broadcast it to the objects yourself (ak.broadcast_arrays) or morph "
                "the (N, D) array"
            )
        columns.append(unflatten(np.ascontiguousarray(matrix[:, j]), layout))
    if kind == "pandas":
        out = data.copy()
        for f, col in zip(fields, columns, strict=True):
            out[path_name(f)] = col
        return out
    if kind == "mapping":
        result = dict(data)
        result.update((path_name(f), col) for f, col in zip(fields, columns, strict=True))
        return result
    out = data
    for f, col in zip(fields, columns, strict=True):
        path = as_path(f)
        out = ak.with_field(
            out,
            col if isinstance(col, ak.Array) else ak.Array(col),
            where=path if len(path) > 1 else path[0],
        )
    return out
