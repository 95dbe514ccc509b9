"""What every fit does with its inputs first: check the names, read the feature rows and
their conditions through the column layer, fit the scalings."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from .. import flows
from ..columns import condition_matrix, to_matrix
from ..density import DensityModel
from ..scaling import Scaler

__all__ = [
    "Scaling",
    "as_conditions",
    "check_density",
    "check_effective_size",
    "check_names",
    "condition_range",
    "extract",
    "extract_weights",
    "fit_scalers",
    "frozen_base",
]

#: ``scaling=``: one kind for all features, or ``{feature: kind or spec}``
Scaling: TypeAlias = str | Mapping[str, Any]


def as_conditions(condition: str | Sequence[str] | None) -> list[str]:
    """``condition=`` as a list of names: None -> [], a name -> [name], a list -> the list.

    Raises:
        TypeError: not a field name or a list of them.
        ValueError: a name given twice.
    """
    if condition is None:
        return []
    names = [condition] if isinstance(condition, str) else condition
    if not isinstance(names, Sequence) or not all(isinstance(n, str) and n for n in names):
        raise TypeError(
            f"condition must be a field name or a list of field names, got {condition!r}"
        )
    names = list(names)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"conditions listed more than once: {dupes}")
    return names


def check_names(features: Sequence[str], condition: str | Sequence[str] | None) -> list[str]:
    """The features as a list, checked against the conditions (one name in both is an error)."""
    if isinstance(features, str):
        raise TypeError(f"features must be a list of field names, got the string {features!r}")
    features = list(features)
    if not features:
        raise ValueError("features is empty: name at least one field to morph")
    dupes = sorted({f for f in features if features.count(f) > 1})
    if dupes:
        raise ValueError(f"features listed more than once: {dupes}")
    for name in as_conditions(condition):
        if name in features:
            raise ValueError(f"{name!r} is both a feature and a condition")
    return features


def extract(
    data: Any, features: list[str], conditions: list[str], what: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Feature rows and their conditions ``(N, k)`` of one training dataset, validated.
    Jagged features give one row per object, event-level conditions are broadcast to them."""
    x, layout = to_matrix(data, features, what=f"{what} feature")
    c = None
    if conditions:
        c = condition_matrix(data, None, conditions, layout, what=f"{what} condition")
    if len(x) < 2:
        raise ValueError(f"{what} has {len(x)} events; at least 2 are needed to train")
    return x, c


def extract_weights(data: Any, weights: Any, features: list[str], what: str) -> np.ndarray | None:
    """Event weights of one training dataset, one per feature row: a field name of ``data`` or
    an array (per event; broadcast to the objects of jagged features like a condition).

    Signed weights are kept as they are (negative NLO weights count negatively).

    Raises:
        ValueError: NaN/inf weights, a wrong length, or weights that sum to <= 0.
    """
    if weights is None:
        return None
    _, layout = to_matrix(data, features, what=f"{what} feature")
    w = condition_matrix(data, weights, ["weight"], layout, what=f"{what} weights")[:, 0]
    total = float(w.sum())
    if not total > 0:
        raise ValueError(
            f"{what} weights sum to {total:.6g}; the weighted likelihood needs sum(w) > 0 "
            "(check the sign convention of the weights)"
        )
    return w


#: warn when the weights are worth less than this share of the events
SMALL_EFFECTIVE_SHARE = 0.25


def check_effective_size(w: np.ndarray, what: str) -> float:
    """``(sum w)^2 / sum w^2`` of a weighted dataset, with a warning when it is small (heavy
    cancellation of signed weights, or a few large weights): the fit is then noisier than the
    number of events suggests."""
    ess = float(w.sum() ** 2 / float((w * w).sum()))
    if ess < SMALL_EFFECTIVE_SHARE * len(w):
        warnings.warn(
            f"{what}: the weights are worth {ess:.0f} unweighted events of {len(w)} (effective "
            "sample size (sum w)^2 / sum w^2); expect a noisier fit than the event count says",
            stacklevel=3,
        )
    return ess


def fit_scalers(
    xs: Sequence[np.ndarray],
    cs: Sequence[np.ndarray] | None,
    features: list[str],
    conditions: list[str],
    scaling: Scaling,
    condition_scaling: Scaling | None = None,
) -> tuple[Scaler, Scaler | None]:
    """The feature scaling and (when conditional) the condition scaling, fitted on the
    training rows of all datasets together."""
    scaler = Scaler.fit(np.concatenate(xs), features, scaling)
    if "categorical" in scaler.kinds:
        bad = [n for n, k in zip(features, scaler.kinds, strict=True) if k == "categorical"]
        raise ValueError(
            f"features {bad} are scaled 'categorical': a flow cannot model a category; make "
            "them conditions (condition=[...], condition_scaling={name: 'categorical'})"
        )
    cscaler = None
    if conditions and cs is not None:
        cscaler = Scaler.fit(np.concatenate(cs), conditions, condition_scaling or "standard")
    return scaler, cscaler


def condition_range(*conditions: np.ndarray | None) -> list[list[float]] | None:
    """``[[min, max], ...]`` per condition over the training rows (None when unconditional)."""
    cs = [c for c in conditions if c is not None]
    if not cs:
        return None
    both = np.concatenate(cs)
    return [[float(lo), float(hi)] for lo, hi in zip(both.min(0), both.max(0), strict=True)]


def check_density(
    d: DensityModel | None, features: list[str], conditions: list[str], name: str
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
    if d.conditions != conditions:
        raise ValueError(f"{name} has conditions {d.conditions}, the morph {conditions}")


def frozen_base(q: DensityModel, scaler: Scaler, cscaler: Scaler | None) -> flows.FlowAsBase:
    """A trained density as the frozen base of a morph living in ``scaler`` / ``cscaler``
    space (the exact change of variables when the density was trained in another scaling)."""
    return flows.FlowAsBase(
        q.flow,
        here=scaler,
        there=q.scaler,
        here_context=cscaler,
        there_context=q.condition_scaler,
    )
