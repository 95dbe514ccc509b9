"""Invertible per-feature preprocessing, fitted on training data and saved with the model.

Each feature gets one of these maps to the flow's working space, each followed by a
standardisation fitted on the training data (so the flows see roughly unit-variance inputs and
the spline ``tail_bound`` of 4 means "4 standard deviations"):

- ``"standard"``: ``z = (x - mean) / std``.
- ``"log"``: for positive features (masses, pT): ``z = standardise(log(x))``.
- ``"logit"``: for bounded features (e.g. tau21 in (0, 1)): ``u = (x - low) / (high - low)``,
  ``z = standardise(log(u) - log(1 - u))``. ``low``/``high`` are given, or fitted as the training
  range widened by 5% on each side.
- ``"minmax"``: ``z = 6 (x - min) / (max - min) - 3`` (the paper's [-3, 3] scaling).
- ``"identity"``: ``z = x``.

Values outside the domain of ``log``/``logit`` cannot be mapped and raise ``ValueError`` naming
the feature and the count. Values that are merely outside the training range are mapped
normally; if they land beyond the spline ``tail_bound`` they pass through the flows unchanged
(the spline tails are the identity there).

The math is written once for any array module with ``log``, ``log1p`` and ``exp`` (numpy here;
:mod:`coffea_f4f.flows` reuses it with torch for the change of variables between two scalings).
This module imports numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["KINDS", "Scaler", "forward", "inverse", "log_abs_det"]

KINDS = ("standard", "log", "logit", "minmax", "identity")
_LOGIT_MARGIN = 0.05


def _spec(spec: Any, name: str) -> dict[str, Any]:
    """Normalise a per-feature spec: ``"log"`` or ``{"kind": "logit", "low": 0, "high": 1}``."""
    if isinstance(spec, str):
        spec = {"kind": spec}
    elif isinstance(spec, Mapping):
        spec = dict(spec)
    else:
        raise TypeError(f"scaling for {name!r} must be a kind name or a dict, got {spec!r}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown scaling {kind!r} for {name!r}; choose one of {KINDS}")
    return spec


@dataclass
class Scaler:
    """Per-feature invertible preprocessing.

    Attributes:
        names: feature names, in column order.
        kinds: one kind per feature (see module docstring).
        params: per feature, the fitted numbers (``low``, ``high``, ``loc``, ``scale``).
    """

    names: list[str]
    kinds: list[str]
    params: list[dict[str, float]] = field(default_factory=list)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        names: Sequence[str],
        scaling: str | Mapping[str, Any] | Sequence[Any] = "standard",
    ) -> Scaler:
        """Fit on training data ``x`` of shape ``(N, D)``.

        Args:
            x: training data.
            names: one name per column.
            scaling: one kind for all features, a mapping ``{name: kind or spec}`` (unnamed
                features use ``"standard"``), or a sequence with one spec per feature.

        Raises:
            ValueError: unknown kinds or names, too few events, a feature outside the domain
                of its kind, or a constant feature.
        """
        x = np.asarray(x, dtype=np.float64)
        names = list(names)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise ValueError(f"expected shape (N, {len(names)}), got {x.shape}")
        if len(x) < 2:
            raise ValueError(f"need at least 2 events to fit the scaling, got {len(x)}")
        if isinstance(scaling, str):
            specs = [_spec(scaling, n) for n in names]
        elif isinstance(scaling, Mapping):
            unknown = sorted(set(scaling) - set(names))
            if unknown:
                raise ValueError(f"scaling given for unknown features {unknown}; features: {names}")
            specs = [_spec(scaling.get(n, "standard"), n) for n in names]
        else:
            scaling = list(scaling)
            if len(scaling) != len(names):
                raise ValueError(f"{len(scaling)} scaling specs for {len(names)} features")
            specs = [_spec(s, n) for s, n in zip(scaling, names, strict=True)]

        kinds, params = [], []
        for j, (name, spec) in enumerate(zip(names, specs, strict=True)):
            col = x[:, j]
            kind = spec["kind"]
            p: dict[str, float] = {"loc": 0.0, "scale": 1.0}
            if kind == "logit":
                lo, hi = float(col.min()), float(col.max())
                pad = _LOGIT_MARGIN * max(hi - lo, 1e-12)
                p["low"] = float(spec.get("low", lo - pad))
                p["high"] = float(spec.get("high", hi + pad))
                if not p["high"] > p["low"]:
                    raise ValueError(f"logit scaling of {name!r} needs high > low, got {p}")
            elif kind == "minmax":
                lo, hi = float(col.min()), float(col.max())
                p["loc"], p["scale"] = (lo + hi) / 2.0, max(hi - lo, 1e-12) / 6.0
            pre = _pre(col, kind, p, np, name=name)
            if kind in ("standard", "log", "logit"):
                mean, std = float(pre.mean()), float(pre.std())
                if not std > 0:
                    raise ValueError(
                        f"feature {name!r} is constant in the training data ({col[0]!r}); a "
                        "flow cannot learn a density for it: drop it from the features"
                    )
                p["loc"], p["scale"] = mean, std
            kinds.append(kind)
            params.append(p)
        return cls(names=names, kinds=kinds, params=params)

    # ---------------------------------------------------------------- transforms
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Data space -> working space."""
        return forward(self, np.asarray(x, dtype=np.float64), np)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Working space -> data space."""
        return inverse(self, np.asarray(z, dtype=np.float64), np)

    def in_domain(self, x: np.ndarray) -> np.ndarray:
        """Boolean mask ``(N,)``: rows whose every feature is inside its map's domain (the
        rows :meth:`forward` accepts)."""
        x = np.asarray(x, dtype=np.float64)
        ok = np.ones(len(x), dtype=bool)
        for j, (kind, p) in enumerate(zip(self.kinds, self.params, strict=True)):
            ok &= _domain(x[:, j], kind, p)
        return ok

    def log_abs_det(self, x: np.ndarray) -> np.ndarray:
        """``log |det d forward / dx|`` per event, shape ``(N,)``."""
        return log_abs_det(self, np.asarray(x, dtype=np.float64), np)

    # -------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "kinds": list(self.kinds), "params": self.params}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scaler:
        kinds = list(d["kinds"])
        for k in kinds:
            if k not in KINDS:
                raise ValueError(f"unknown scaling kind {k!r} in saved model")
        params = [{k: float(v) for k, v in p.items()} for p in d["params"]]
        return cls(names=list(d["names"]), kinds=kinds, params=params)

    def same_as(self, other: Scaler) -> bool:
        """True when both map data identically (same kinds and parameters)."""
        return self.kinds == other.kinds and all(
            p.keys() == q.keys() and all(np.isclose(p[k], q[k], rtol=0, atol=0) for k in p)
            for p, q in zip(self.params, other.params, strict=True)
        )


# ---------------------------------------------------------------------- array-module math
def _domain_error(name: str, kind: str, count: int, total: int, domain: str) -> ValueError:
    return ValueError(
        f"feature {name!r}: {count} of {total} values are outside the domain {domain} of its "
        f"{kind!r} scaling; remove them or refit with a different scaling for {name!r}"
    )


def _domain(col: np.ndarray, kind: str, p: Mapping[str, float]) -> np.ndarray:
    """Which values of one column the feature map accepts (``log``: x > 0; ``logit``: inside
    (low, high); other kinds: everything)."""
    if kind == "log":
        return col > 0
    if kind == "logit":
        return (col > p["low"]) & (col < p["high"])
    return np.ones(col.shape, dtype=bool)


def _pre(col: Any, kind: str, p: Mapping[str, float], xp: Any, *, name: str = "") -> Any:
    """The fixed (non-standardising) part of a feature map."""
    if xp is np and kind in ("log", "logit"):
        bad = int(np.sum(~_domain(col, kind, p)))
        if bad:
            domain = "x > 0" if kind == "log" else f"({p['low']:.6g}, {p['high']:.6g})"
            raise _domain_error(name, kind, bad, len(col), domain)
    if kind == "log":
        return xp.log(col)
    if kind == "logit":
        u = (col - p["low"]) / (p["high"] - p["low"])
        return xp.log(u) - xp.log1p(-u)
    return col


def _column(x: Any, j: int) -> Any:
    return x[:, j]


def forward(s: Scaler, x: Any, xp: Any) -> Any:
    """``Scaler`` forward map written for array module ``xp`` (numpy or torch)."""
    cols = []
    for j, (kind, p) in enumerate(zip(s.kinds, s.params, strict=True)):
        pre = _pre(_column(x, j), kind, p, xp, name=s.names[j])
        cols.append((pre - p["loc"]) / p["scale"])
    return xp.stack(cols, 1) if cols else x


def inverse(s: Scaler, z: Any, xp: Any) -> Any:
    """``Scaler`` inverse map for array module ``xp``."""
    cols = []
    for j, (kind, p) in enumerate(zip(s.kinds, s.params, strict=True)):
        t = _column(z, j) * p["scale"] + p["loc"]
        if kind == "log":
            t = xp.exp(t)
        elif kind == "logit":
            t = p["low"] + (p["high"] - p["low"]) / (1.0 + xp.exp(-t))
        cols.append(t)
    return xp.stack(cols, 1) if cols else z


def log_abs_det(s: Scaler, x: Any, xp: Any) -> Any:
    """``log |det J_forward(x)|`` per row for array module ``xp``."""
    total = 0.0 * _column(x, 0) if len(s.kinds) else None
    for j, (kind, p) in enumerate(zip(s.kinds, s.params, strict=True)):
        col = _column(x, j)
        term = -float(np.log(p["scale"])) + 0.0 * col
        if kind == "log":
            term = term - xp.log(col)
        elif kind == "logit":
            width = p["high"] - p["low"]
            u = (col - p["low"]) / width
            term = term - xp.log(u) - xp.log1p(-u) - float(np.log(width))
        total = total + term
    return total
