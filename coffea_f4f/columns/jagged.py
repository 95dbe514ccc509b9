"""One row per object: flattening jagged columns, putting results back, broadcasting.

The rule, in one place: features of one collection (jagged, the same number of objects per
event) are flattened to one row per object; an event-level column next to them (a feature or
a condition) is broadcast to the objects of its event. Results are put back on the input's
own offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from .paths import _LISTS, _WRAPPERS, form_of

__all__ = ["Layout", "broadcast_to_objects", "flatten", "list_depth", "unflatten"]


@dataclass(frozen=True)
class Layout:
    """How the rows of a matrix map back to the input.

    Attributes:
        n_rows: rows of the matrix (objects when jagged, else events).
        counts: objects per event when the rows are objects of a jagged collection, else None.
    """

    n_rows: int
    counts: np.ndarray | None = None

    @property
    def jagged(self) -> bool:
        """True when the rows are objects (one list per event)."""
        return self.counts is not None

    @property
    def n_events(self) -> int:
        """Events of the input (= rows when not jagged)."""
        return self.n_rows if self.counts is None else len(self.counts)


def list_depth(column: Any) -> tuple[int, Any]:
    """List depth of an awkward column (0: one value per event, 1: a list per event) and the
    form of its leaf; option and index layers are skipped."""
    form = form_of(column)
    depth = 0
    while True:
        if isinstance(form, _LISTS):
            depth += 1
        elif isinstance(form, ak.forms.NumpyForm):
            return depth + len(form.inner_shape), form
        elif not isinstance(form, _WRAPPERS):
            return depth, form
        form = form.content


def flatten(column: ak.Array) -> tuple[ak.Array, np.ndarray]:
    """One jagged level removed: the flat values and the objects per event (a missing list
    counts as empty)."""
    counts = ak.to_numpy(ak.fill_none(ak.num(column, axis=1), 0)).astype(np.int64)
    return ak.flatten(column, axis=1), counts


def broadcast_to_objects(values: np.ndarray, layout: Layout) -> np.ndarray:
    """Event-level values ``(n_events, ...)`` repeated for each object of their event."""
    if layout.counts is None:
        return values
    return np.repeat(values, layout.counts, axis=0)


def unflatten(values: np.ndarray, layout: Layout) -> Any:
    """Per-row values back in the input's structure: a jagged ``ak.Array`` on the layout's
    counts, or the values themselves when the rows are events."""
    if layout.counts is None:
        return values
    return ak.unflatten(values, layout.counts)
