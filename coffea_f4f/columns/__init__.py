"""The column layer: everything between the user's columns and a model's ``(N, D)`` matrix.

Field paths (dotted or tuple) and their lookup with close-match suggestions
(:mod:`~coffea_f4f.columns.paths`), jagged flatten / unflatten and the event -> object
broadcast (:mod:`~coffea_f4f.columns.jagged`), validation
(:mod:`~coffea_f4f.columns.validate`), and the type dispatch for awkward, dask-awkward,
mappings, pandas and numpy (:mod:`~coffea_f4f.columns.table`). Training, ``Morpher``,
``MorphTransform`` and the CLI all read columns through here; see DESIGN-NOTES.md, "Layout".

This package imports numpy and awkward only.
"""

from .jagged import Layout, broadcast_to_objects, flatten, list_depth, unflatten
from .paths import (
    FieldPath,
    MissingColumnError,
    as_path,
    available_fields,
    form_of,
    get_field,
    is_awkward,
    is_dask,
    path_name,
)
from .specs import ColumnSpec, ResolvedColumn, check_spec, resolve_column
from .table import condition_matrix, input_kind, replace_fields, to_matrix
from .validate import check_lengths, require_finite, to_float

__all__ = [
    "ColumnSpec",
    "FieldPath",
    "Layout",
    "MissingColumnError",
    "ResolvedColumn",
    "as_path",
    "available_fields",
    "broadcast_to_objects",
    "check_lengths",
    "check_spec",
    "condition_matrix",
    "flatten",
    "form_of",
    "get_field",
    "input_kind",
    "is_awkward",
    "is_dask",
    "list_depth",
    "path_name",
    "replace_fields",
    "require_finite",
    "resolve_column",
    "to_float",
    "to_matrix",
    "unflatten",
]
