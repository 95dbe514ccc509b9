"""Validation of columns: numbers only, no None, no NaN/inf, equal lengths. One error style:
the message names the column, what is wrong (with counts) and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import awkward as ak
import numpy as np

__all__ = ["check_lengths", "require_finite", "to_float"]


def to_float(
    column: Any, name: str, *, what: str = "field", none_as_nan: bool = False
) -> np.ndarray:
    """A flat column as a float64 numpy array.

    ``none_as_nan=True`` turns missing values into NaN instead of raising (the transform's
    NaN policy: such rows come out NaN).

    Raises:
        ValueError: the column holds None values or is not one-dimensional.
        TypeError: the column is not numeric.
    """
    if isinstance(column, ak.Array):
        if column.ndim != 1:
            raise ValueError(f"{what} {name!r} is not flat: {column.type}")
        if none_as_nan:
            column = ak.fill_none(ak.values_astype(column, np.float64), np.nan)
        missing = ak.is_none(column, axis=0)
        if ak.any(missing):
            raise ValueError(
                f"{what} {name!r} has {int(ak.sum(missing))} missing (None) values; fill or "
                "drop them (ak.fill_none / ak.drop_none) first"
            )
        try:
            array = ak.to_numpy(column)
        except Exception as err:
            raise TypeError(f"{what} {name!r} of type {column.type} is not numeric") from err
    else:
        array = np.asarray(column)
    if array.ndim != 1:
        raise ValueError(
            f"{what} {name!r} has shape {array.shape}; expected one value per event (a 1D "
            "array) or one list per event"
        )
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{what} {name!r} has dtype {array.dtype}, not a number; convert it (e.g. with "
            "astype(float)) or choose a numeric field"
        )
    return array.astype(np.float64, copy=False)


def require_finite(matrix: np.ndarray, names: Sequence[str], *, what: str = "feature") -> None:
    """Raise ``ValueError`` naming each column that holds NaN or inf, with the count."""
    bad = ~np.isfinite(matrix)
    if bad.any():
        per = bad.sum(axis=0)
        parts = [f"{n!r}: {int(c)} of {len(matrix)}" for n, c in zip(names, per, strict=True) if c]
        raise ValueError(
            f"non-finite (NaN or inf) values in {what} "
            + ", ".join(parts)
            + "; drop or fill these events before training or morphing"
        )


def check_lengths(arrays: Sequence[np.ndarray], names: Sequence[str], *, what: str) -> int:
    """The common length of the columns; ``ValueError`` listing each length otherwise."""
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        shapes = {n: len(a) for n, a in zip(names, arrays, strict=True)}
        raise ValueError(f"{what} fields have different lengths: {shapes}")
    return lengths.pop() if lengths else 0
