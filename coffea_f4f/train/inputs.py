"""What every fit does with its inputs first: check the names, read the feature rows and
their conditions through the column layer, fit the scalings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from ..columns import condition_matrix, to_matrix
from ..density import DensityModel
from ..scaling import Scaler

__all__ = ["Scaling", "check_density", "check_names", "condition_range", "extract", "fit_scalers"]

#: ``scaling=``: one kind for all features, or ``{feature: kind or spec}``
Scaling: TypeAlias = str | Mapping[str, Any]


def check_names(features: Sequence[str], condition: str | None) -> list[str]:
    if isinstance(features, str):
        raise TypeError(f"features must be a list of field names, got the string {features!r}")
    features = list(features)
    if not features:
        raise ValueError("features is empty: name at least one field to morph")
    dupes = sorted({f for f in features if features.count(f) > 1})
    if dupes:
        raise ValueError(f"features listed more than once: {dupes}")
    if condition is not None:
        if not isinstance(condition, str):
            raise TypeError(
                f"condition must be one field name, got {condition!r}; a multi-dimensional "
                "condition is not supported"
            )
        if condition in features:
            raise ValueError(f"{condition!r} is both a feature and the condition")
    return features


def extract(
    data: Any, features: list[str], condition: str | None, what: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Feature rows and their conditions of one training dataset, validated. Jagged
    features give one row per object, an event-level condition is broadcast to them."""
    x, layout = to_matrix(data, features, what=f"{what} feature")
    c = None
    if condition is not None:
        c = condition_matrix(data, None, [condition], layout, what=f"{what} condition")
    if len(x) < 2:
        raise ValueError(f"{what} has {len(x)} events; at least 2 are needed to train")
    return x, c


def fit_scalers(
    xs: Sequence[np.ndarray],
    cs: Sequence[np.ndarray] | None,
    features: list[str],
    condition: str | None,
    scaling: Scaling,
) -> tuple[Scaler, Scaler | None]:
    scaler = Scaler.fit(np.concatenate(xs), features, scaling)
    cscaler = None
    if condition is not None and cs is not None:
        cscaler = Scaler.fit(np.concatenate(cs), [condition], "standard")
    return scaler, cscaler


def condition_range(*conditions: np.ndarray | None) -> list[float] | None:
    """``[min, max]`` over the training conditions (None when unconditional)."""
    cs = [c for c in conditions if c is not None]
    if not cs:
        return None
    both = np.concatenate(cs)
    return [float(both.min()), float(both.max())]


def check_density(
    d: DensityModel | None, features: list[str], condition: str | None, name: str
) -> None:
    if d is None:
        return
    if not isinstance(d, DensityModel):
        raise TypeError(f"{name} must be a DensityModel from fit_density, got {type(d).__name__}")
    if list(d.features) != list(features):
        raise ValueError(
            f"{name} was trained on features {d.features}, not {list(features)}; "
            "the order matters too"
        )
    if d.condition != condition:
        raise ValueError(f"{name} has condition {d.condition!r}, the morph {condition!r}")
