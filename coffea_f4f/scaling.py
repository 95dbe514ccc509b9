"""Invertible per-feature preprocessing, fitted on training data and saved with the model.

Each feature gets one of these maps to the flow's working space, each followed by a
standardisation fitted on the training data (so the flows see roughly unit-variance inputs and
the spline ``tail_bound`` of 4 means "4 standard deviations"):

- ``"standard"``: ``z = (x - mean) / std``.
- ``"robust"``: ``z = (x - median) / (IQR / 1.349)`` (the interquartile range over 1.349 is the
  standard deviation of a normal distribution; a few large values cannot set it). Where more
  than half of the values are equal (IQR 0) the scale is ``1.4826`` times the median distance
  to the median of the values that differ from it.
- ``"log"``: for positive features (masses, pT): ``z = standardise(log(x))``.
- ``"logit"``: for bounded features (e.g. tau21 in (0, 1)): ``u = (x - low) / (high - low)``,
  ``z = standardise(log(u) - log(1 - u))``. ``low``/``high`` are given, or fitted as the training
  range widened by 5% on each side.
- ``"minmax"``: ``z = 6 (x - min) / (max - min) - 3`` (the paper's [-3, 3] scaling).
- ``"identity"``: ``z = x``.
- ``"zero_inflated"``: for non-negative features with a point mass at exactly 0 (isolations,
  H/E, tagger scores). Positive values: ``z = (log1p(x / c) - loc) / scale`` (``c``: the
  ``offset``, by default the median of the positive training values; ``loc``/``scale``: mean
  and std of ``log1p(x / c)`` over the positive training values). Exact zeros are
  *dequantised* into the band ``z = t - w u``, ``u`` in (0, 1), strictly below ``t``, the
  ``threshold``: ``t = max(-loc / scale, z_min - 0.5)`` where ``-loc / scale`` is the image of
  ``x -> 0+`` and ``z_min`` the image of the smallest positive training value (so the band
  touches the positive values, and stays near them when they start far from 0). ``w`` is the
  ``width`` (default 1, in standardised units). Inverse: ``z < t -> 0.0`` exactly, otherwise
  ``c expm1(max(z scale + loc, 0))`` (never negative). So a morph can change the zero fraction.
  Spec options: ``{"kind": "zero_inflated", "offset": c, "width": w}``.
- ``"discrete"``: for integer-valued features (numbers of tracks, jets): ``z = (k + u - loc) /
  scale`` with ``u`` in (0, 1), ``loc = mean(k) + 1/2``, ``scale = sqrt(var(k) + 1/12)`` (the
  moments of ``k + u``). Inverse: ``floor(z scale + loc)``, clipped to the optional spec
  bounds ``low`` / ``high`` (e.g. ``{"kind": "discrete", "low": 0}`` for counts).

**Dequantisation noise** (the two kinds above) is deterministic and chunking-invariant: ``u``
is a function of the row's own values only, never of a global RNG or the row's position. Each
row of the full ``(N, D)`` matrix given to :meth:`Scaler.forward` (and optional extra ``key``
columns, e.g. the condition) is hashed as its float64 bit patterns (``-0.0`` read as ``0.0``)
folded with the splitmix64 finaliser, then mixed with the feature index and mapped to a
uniform in ``[1e-6, 1 - 1e-6]`` (kept off the bin edges, so floors and the threshold test
survive float rounding). The same row gives bitwise the same ``u`` in any batch. Identical
rows get identical noise: a feature set where many rows repeat exactly (only discrete or
zero-inflated features) needs a ``key`` (event numbers, a continuous condition) to dequantise.

**Densities of dequantised features** (:meth:`Scaler.log_abs_det`): ``discrete`` gives
``-log(scale)``, the density of ``k + u``; ``zero_inflated`` gives ``-log(scale) - log(c + x)``
for positive ``x`` and the constant ``log(w)`` for a zero, where ``w = |dz/du|`` of the
noise's map. With a working-space density ``p``, the model's probability of a zero is ``P(0) =
int_band p(z) dz = w E_u[p(t - w u)] >= w exp(E_u log p(t - w u))``, so ``log p(z) + log w``
is the usual (uniform) dequantisation lower bound on ``log P(0)``, and for ``discrete`` (unit
bins) ``log p(z) - log scale`` bounds ``log P(k)``. Maximum-likelihood training on the
dequantised values maximises this bound; the added terms are constants, so they change no
gradient. A ``log_prob`` is thus a density in ``x`` for positive values and a probability
mass for the zeros and integers (the log-likelihood w.r.t. point mass + Lebesgue measure).

Values outside the domain of ``log``/``logit``/``zero_inflated`` (``x >= 0``)/``discrete``
(finite integers) cannot be mapped and raise ``ValueError`` naming the feature and the count.
Values that are merely outside the training range are mapped normally; if they land beyond
the spline ``tail_bound`` they pass through the flows unchanged (the spline tails are the
identity there).

**Non-finite and extreme values.** :meth:`Scaler.forward` and :meth:`Scaler.log_abs_det`
raise ``ValueError`` for NaN or infinite inputs (every kind), and for finite inputs whose
image overflows (e.g. ``1e300`` in a feature of scale ``1e-10``): a finite value in the domain
never silently becomes inf or NaN. :meth:`Scaler.inverse` accepts any ``z`` (it overflows to
inf only beyond the float64 range of the feature). :meth:`Scaler.fit` refuses NaN/inf
training values, and values more than :data:`EXTREME_SIGMAS` (``1e6``) robust standard
deviations (IQR / 1.349) from the median of the space the scale is fitted in (``log x`` for
``log``, ``logit u`` for ``logit``, ``log1p(x / c)`` for ``zero_inflated``; every fitted kind,
not ``identity`` and ``categorical``). One such value would set the mean/std (or min/max) on
its own and squeeze every other event into a sliver of the flow's range (a single ``1e30``
among unit-normal values did: ``std = 1.6e28``), or overflow the std to inf (``1e200``);
and the flows' float32 loss overflows on it whatever the scaling. The error names the
feature, the count and the values; remove those events or fix the values. A scale more than
:data:`SQUEEZE_LIMIT` (100) times the robust one (a handful of large values that are not
beyond ``1e6`` robust sigmas) gives a warning that suggests ``"robust"``. Training values
around ``1e200`` with a spread of the same order are fine: the moments are then computed on
rescaled values so that they do not overflow.

The math of the first six kinds is written once for any array module with ``log``,
``log1p`` and ``exp`` (numpy here; :mod:`coffea_f4f.flows` reuses it with torch for the change
of variables between two scalings). The dequantised kinds are numpy only: with another array
module they raise ``ValueError`` (see :func:`check_bridgeable`). This module imports numpy
only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CATEGORICAL",
    "DEQUANTISED_KINDS",
    "EXTREME_SIGMAS",
    "KINDS",
    "SQUEEZE_LIMIT",
    "Scaler",
    "check_bridgeable",
    "forward",
    "inverse",
    "log_abs_det",
    "row_hash",
]

KINDS = (
    "standard",
    "robust",
    "log",
    "logit",
    "minmax",
    "identity",
    "zero_inflated",
    "discrete",
    "categorical",
)
DEQUANTISED_KINDS = ("zero_inflated", "discrete")
#: integer codes -> one-hot columns inside the flow (conditions only)
CATEGORICAL = "categorical"
_NUMPY_KINDS = (*DEQUANTISED_KINDS, CATEGORICAL)  # no torch form: never bridged
_LOGIT_MARGIN = 0.05
_ZI_GAP = 0.5  # the zero band's top is at most this far (std units) below the smallest image
_ZI_WIDTH = 1.0  # default width of the zero band (std units)
_U_EDGE = 1e-6  # the noise stays in [_U_EDGE, 1 - _U_EDGE]
#: :meth:`Scaler.fit` refuses training values this many robust standard deviations (IQR /
#: 1.349) or more from the median (in the space the scale is fitted in)
EXTREME_SIGMAS = 1e6
#: :meth:`Scaler.fit` warns when a fitted scale is this many times the robust scale
SQUEEZE_LIMIT = 100.0
_IQR_TO_SIGMA = 1.349  # the interquartile range of a unit normal
_MAD_TO_SIGMA = 1.4826  # 1 / the median absolute deviation of a unit normal

# splitmix64 constants (Steele, Lea & Flood 2014)
_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_SEED = np.uint64(0x636F66666561F4F0)  # fixed: saved models rely on the same noise
_NOT_BRIDGEABLE = (
    "zero_inflated/discrete/categorical scalings cannot be bridged between two trainings; "
    "train the densities inside fit_morpher (shared scaling)"
)


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
        params: per feature, the fitted numbers (``low``, ``high``, ``loc``, ``scale``; for
            ``zero_inflated`` also ``offset``, ``width``, ``threshold``, ``zero_fraction``).
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
                of its kind (negative values for ``zero_inflated``, non-integers for
                ``discrete``), a ``zero_inflated`` feature without positive values, bad spec
                options, a constant feature, NaN or infinite values, values
                :data:`EXTREME_SIGMAS` robust standard deviations or more from the median
                (named with their count and values), or training values whose scaling cannot
                be represented in float64.

        Warns:
            UserWarning: a fitted scale more than :data:`SQUEEZE_LIMIT` times the robust one
                (a few extreme values set it; ``"robust"`` is suggested).
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
            if kind == CATEGORICAL:
                p.update(_fit_categorical(col, name))
            elif kind == "zero_inflated":
                p.update(_fit_zero_inflated(col, spec, name))
            elif kind == "discrete":
                p.update(_fit_discrete(col, spec, name))
            else:
                p.update(_fit_continuous(col, spec, name))
            _check_fitted(p, name, kind)
            if not _finite_image(col, kind, p).all():
                raise ValueError(
                    f"feature {name!r}: the training values span more than the float64 range "
                    f"in its {kind!r} scaling ({dict(p)}); rescale the feature (a unit) first"
                )
            kinds.append(kind)
            params.append(p)
        return cls(names=names, kinds=kinds, params=params)

    # ---------------------------------------------------------------- transforms
    def forward(self, x: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
        """Data space -> working space.

        Args:
            x: the full ``(N, D)`` matrix, all features of each row (the dequantisation noise
                of ``zero_inflated`` / ``discrete`` features hashes the whole row).
            key: optional extra per-row values, ``(N,)`` or ``(N, k)``, mixed into that hash
                (e.g. the condition, or event numbers where rows can repeat exactly). Pass the
                same key for a row at every call, or its noise changes.

        Raises:
            ValueError: a wrong shape, NaN or infinite values, values outside the domain of
                their feature's map, or finite values whose image overflows float64 (the
                feature, the count and a few values are named).
        """
        x = self._checked(x, "forward")
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            z = forward(self, x, np, key=key)
        offsets = np.cumsum([0, *self.widths])
        self._check_finite_image(x, [z[:, int(o)] for o in offsets[:-1]])
        return z

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Working space -> data space.

        Any ``z`` is accepted: every real number maps into the feature's domain, overflowing
        to inf only where the value would lie beyond the float64 range (``log``,
        ``zero_inflated``); NaN stays NaN.

        Raises:
            ValueError: ``z`` is not ``(N, width)``.
        """
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.width:
            raise ValueError(f"inverse: expected shape (N, {self.width}), got {z.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            return inverse(self, z, np)

    def in_domain(self, x: np.ndarray) -> np.ndarray:
        """Boolean mask ``(N,)``: rows whose every feature is finite, inside its map's domain
        and maps to a finite value (the rows :meth:`forward` accepts)."""
        x = np.asarray(x, dtype=np.float64)
        ok = np.ones(len(x), dtype=bool)
        for j, (kind, p) in enumerate(zip(self.kinds, self.params, strict=True)):
            col = x[:, j]
            ok &= np.isfinite(col) & _domain(col, kind, p) & _finite_image(col, kind, p)
        return ok

    def log_abs_det(self, x: np.ndarray) -> np.ndarray:
        """``log |det d forward / dx|`` per event, shape ``(N,)`` (for dequantised features,
        the terms explained in the module docstring).

        Raises:
            ValueError: as :meth:`forward` (a wrong shape, NaN/inf, values outside the
                domain, or a log-determinant that overflows).
        """
        x = self._checked(x, "log_abs_det")
        for j, (kind, p) in enumerate(zip(self.kinds, self.params, strict=True)):
            if kind != CATEGORICAL:
                _check_domain(x[:, j], kind, p, self.names[j])
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            out = log_abs_det(self, x, np)
        if len(self.kinds) and not np.isfinite(out).all():
            bad = ~np.isfinite(out)
            raise ValueError(
                f"{int(bad.sum())} of {len(x)} rows have a log-determinant of the scaling that "
                f"overflows float64 (e.g. the row {x[bad][0].tolist()}): values too close to a "
                "'logit' bound or too far outside the training range; remove them"
            )
        return out

    def _checked(self, x: Any, what: str) -> np.ndarray:
        """``x`` as a float64 ``(N, D)`` matrix with finite values (or ``ValueError``)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.names):
            raise ValueError(f"{what}: expected shape (N, {len(self.names)}), got {x.shape}")
        finite = np.isfinite(x)
        if not finite.all():
            j = int(np.flatnonzero(~finite.all(0))[0])
            bad = ~finite[:, j]
            raise ValueError(
                f"feature {self.names[j]!r}: {int(bad.sum())} of {len(x)} values are NaN or "
                f"infinite (e.g. {float(x[bad, j][0])!r}); the {self.kinds[j]!r} scaling maps "
                "finite values only: drop or fix those rows"
            )
        return x

    def _check_finite_image(self, x: np.ndarray, images: Sequence[np.ndarray]) -> None:
        """``ValueError`` naming the feature when finite inputs map to inf or NaN."""
        for j, (kind, p, img) in enumerate(zip(self.kinds, self.params, images, strict=True)):
            bad = ~_representable(img, kind, p)
            if bad.any():
                shown = ", ".join(f"{float(v):.6g}" for v in x[bad, j][:3])
                raise ValueError(
                    f"feature {self.names[j]!r}: {int(bad.sum())} of {len(x)} values ({shown}) "
                    f"map outside the float64 range in its {kind!r} scaling (loc "
                    f"{p['loc']:.6g}, scale {p['scale']:.6g}): they lie too far outside the "
                    "training range (or too close to a 'logit' bound) to be represented; "
                    "remove them"
                )

    @property
    def widths(self) -> list[int]:
        """Columns of the working space per input column (a ``categorical`` one: its codes)."""
        return [
            int(p["n_codes"]) if k == CATEGORICAL else 1
            for k, p in zip(self.kinds, self.params, strict=True)
        ]

    @property
    def width(self) -> int:
        """Columns of the working space (what a flow's context has)."""
        return sum(self.widths)

    def check_codes(self, x: np.ndarray) -> None:
        """Raise ``ValueError`` naming the column and the codes when a ``categorical`` column
        holds codes not seen in training (they are never clamped or guessed)."""
        x = np.asarray(x, dtype=np.float64)
        for j, (kind, p) in enumerate(zip(self.kinds, self.params, strict=True)):
            if kind == CATEGORICAL:
                _code_index(x[:, j], p, self.names[j])

    @property
    def dequantised(self) -> bool:
        """True when a feature is ``zero_inflated`` or ``discrete`` (numpy only, no bridge)."""
        return any(k in DEQUANTISED_KINDS for k in self.kinds)

    # -------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "kinds": list(self.kinds),
            "params": [dict(p) for p in self.params],
        }

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


def check_bridgeable(s: Scaler) -> None:
    """Raise ``ValueError`` when ``s`` has a ``zero_inflated`` or ``discrete`` feature.

    Those maps are numpy only: their forward needs the whole data-space row (the noise hash)
    and their densities are dequantisation bounds, so no exact change of variables links two
    such scalings. Call it where a :class:`Scaler` is about to be used with torch.
    """
    bad = [n for n, k in zip(s.names, s.kinds, strict=True) if k in _NUMPY_KINDS]
    if bad:
        raise ValueError(f"{_NOT_BRIDGEABLE} (features {bad})")


# ---------------------------------------------------------------------- fitting helpers
def _fit_categorical(col: np.ndarray, name: str) -> dict[str, float]:
    """The integer codes of a ``categorical`` column, saved as ``code_0``, ``code_1``, ..."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(col) & (col == np.floor(col)))
    if bad.any():
        raise ValueError(
            f"categorical {name!r}: {int(bad.sum())} of {len(col)} values are not integer "
            f"codes (e.g. {col[bad][0]!r}); encode the categories as integers (eras 0, 1, ...)"
        )
    codes = np.unique(col)
    return {"n_codes": float(len(codes)), **{f"code_{i}": float(c) for i, c in enumerate(codes)}}


def _codes(p: Mapping[str, float]) -> np.ndarray:
    return np.array([p[f"code_{i}"] for i in range(int(p["n_codes"]))])


def _code_index(col: np.ndarray, p: Mapping[str, float], name: str) -> np.ndarray:
    """Position of each value among the training codes; unseen codes raise."""
    codes = _codes(p)
    index = np.clip(np.searchsorted(codes, col), 0, len(codes) - 1)
    unseen = codes[index] != col
    if unseen.any():
        values = sorted({float(v) for v in col[unseen]})
        shown = ", ".join(f"{v:g}" for v in values[:5])
        raise ValueError(
            f"categorical {name!r}: code(s) {shown} not seen in training "
            f"({int(unseen.sum())} of {len(col)} rows; known codes "
            f"{', '.join(f'{c:g}' for c in codes)}); unseen categories are never clamped: "
            "select these events out or retrain with them"
        )
    return index


def _fit_continuous(col: np.ndarray, spec: Mapping[str, Any], name: str) -> dict[str, float]:
    """``loc``/``scale`` (and ``low``/``high``) of the kinds without dequantisation, after the
    finiteness and extreme-value checks (module docstring)."""
    kind = spec["kind"]
    bad = ~np.isfinite(col)
    if bad.any():
        raise ValueError(
            f"feature {name!r}: {int(bad.sum())} of {len(col)} training values are NaN or "
            f"infinite (e.g. {float(col[bad][0])!r}); remove or fix them before fitting"
        )
    p: dict[str, float] = {"loc": 0.0, "scale": 1.0}
    if kind == "identity":
        return p
    if kind in ("logit", "minmax"):
        lo, hi = float(col.min()), float(col.max())
        if kind == "minmax" or "low" not in spec or "high" not in spec:
            _check_extreme(col, col, name, kind, "")  # the range is fitted on x itself
        if kind == "logit":
            pad = _LOGIT_MARGIN * max(hi - lo, 1e-12)
            p["low"] = float(spec.get("low", lo - pad))
            p["high"] = float(spec.get("high", hi + pad))
            if not p["high"] > p["low"]:
                raise ValueError(f"logit scaling of {name!r} needs high > low, got {p}")
        else:
            p["loc"], p["scale"] = (lo + hi) / 2.0, max(hi - lo, 1e-12) / 6.0
    pre = _pre(col, kind, p, np, name=name)
    space = {"log": " of log(x)", "logit": " of logit((x - low) / (high - low))"}.get(kind, "")
    median, robust = _check_extreme(pre, col, name, kind, space)
    if kind in ("standard", "log", "logit"):
        mean, std = _moments(pre)
        if not std > 0:
            raise _constant_error(name, col[0])
        p["loc"], p["scale"] = mean, std
    elif kind == "robust":
        if not robust > 0:
            raise _constant_error(name, col[0])
        p["loc"], p["scale"] = median, robust
    if kind != "robust" and robust > 0 and p["scale"] > SQUEEZE_LIMIT * robust:
        warnings.warn(
            f"feature {name!r}: its {kind!r} scale ({p['scale']:.3g}) is "
            f"{p['scale'] / robust:.3g} times its robust scale{space} (IQR / 1.349 = "
            f"{robust:.3g}): a few extreme values (largest: {_largest(pre, col, median)}) set it "
            "and squeeze the other events into a sliver of the flow's range; remove them, or "
            f"use scaling {{{name!r}: 'robust'}} (median and IQR)",
            stacklevel=3,
        )
    return p


def _moments(v: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of ``v``, computed on ``v / max|v|`` when the plain sums
    overflow (values near the float64 limit) or the squares underflow (a spread below
    ``1e-150``)."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        mean, std = float(v.mean()), float(v.std())
    if np.isfinite(mean) and np.isfinite(std) and (std > 1e-150 or not np.ptp(v) > 0):
        return mean, std
    m = float(np.abs(v).max())
    r = v / m
    return m * float(r.mean()), m * float(r.std())


def _robust_scale(v: np.ndarray) -> tuple[float, float]:
    """``(median, IQR / 1.349)`` of ``v``; when the IQR is 0 (more than half of the values
    equal) the scale is 1.4826 times the median distance to the median of the values that
    differ from it (0 when all are equal)."""
    q1, median, q3 = (float(q) for q in np.percentile(v, [25.0, 50.0, 75.0]))
    with np.errstate(over="ignore", invalid="ignore"):
        robust = (q3 - q1) / _IQR_TO_SIGMA
        if not robust > 0:
            dev = np.abs(v - median)
            off = dev[dev > 0]
            robust = _MAD_TO_SIGMA * float(np.median(off)) if len(off) else 0.0
    return median, float(robust)


def _largest(v: np.ndarray, shown: np.ndarray, median: float, n: int = 3) -> str:
    """The ``n`` values of ``shown`` whose ``v`` lies farthest from ``median``."""
    with np.errstate(over="ignore", invalid="ignore"):
        far = np.argsort(-np.abs(v - median), kind="stable")[:n]
    return ", ".join(f"{float(x):.6g}" for x in shown[far])


def _check_extreme(
    v: np.ndarray, shown: np.ndarray, name: str, kind: str, space: str
) -> tuple[float, float]:
    """Raise ``ValueError`` when values of ``v`` lie :data:`EXTREME_SIGMAS` robust standard
    deviations or more from its median (``shown``: the same rows as the user gave them).
    Returns ``(median, robust scale)`` of ``v``."""
    median, robust = _robust_scale(v)
    if not (robust > 0 and np.isfinite(robust)):
        return median, robust
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~(np.abs(v - median) / robust < EXTREME_SIGMAS)  # an overflow to inf counts
    if bad.any():
        raise ValueError(
            f"feature {name!r}: {int(bad.sum())} of {len(v)} training values lie more than "
            f"{EXTREME_SIGMAS:.0e} robust standard deviations from the median{space} "
            f"(median {median:.6g}, IQR / 1.349 = {robust:.3g}): "
            f"{_largest(v[bad], shown[bad], median)}. A {kind!r} scaling fitted with them "
            "squeezes every other event into a sliver of the flow's range, and the flows' "
            "float32 loss overflows on them: remove these events (a selection cut) or fix the "
            "values before fitting"
        )
    return median, robust


def _check_fitted(p: Mapping[str, float], name: str, kind: str) -> None:
    """Every fitted number finite and the scale positive (or ``ValueError``)."""
    bad = {k: v for k, v in p.items() if not np.isfinite(v)}
    if bad or not p["scale"] >= np.finfo(np.float64).tiny:  # no subnormal scale either
        raise ValueError(
            f"feature {name!r}: its fitted {kind!r} scaling is not finite ({dict(p)}); the "
            "training values are too large or too close together to be represented in float64"
        )


def _constant_error(name: str, value: Any) -> ValueError:
    return ValueError(
        f"feature {name!r} is constant in the training data ({value!r}); a "
        "flow cannot learn a density for it: drop it from the features"
    )


def _option(spec: Mapping[str, Any], key: str, default: float, name: str) -> float:
    """A positive, finite spec option."""
    value = float(spec.get(key, default))
    if not (np.isfinite(value) and value > 0):
        raise ValueError(
            f"{spec['kind']} scaling of {name!r}: {key!r} must be positive and finite, "
            f"got {spec.get(key)!r}"
        )
    return value


def _fit_zero_inflated(col: np.ndarray, spec: Mapping[str, Any], name: str) -> dict[str, float]:
    bad = int(np.sum(~(np.isfinite(col) & (col >= 0))))
    if bad:
        raise _domain_error(name, "zero_inflated", bad, len(col), "finite x >= 0")
    pos = col[col > 0]
    if not len(pos):
        raise ValueError(
            f"feature {name!r}: its 'zero_inflated' scaling needs positive values, but all "
            f"{len(col)} training values are 0: drop it from the features"
        )
    offset = _option(spec, "offset", float(np.median(pos)), name)
    width = _option(spec, "width", _ZI_WIDTH, name)
    with np.errstate(over="ignore"):
        y = np.log1p(pos / offset)
    _check_extreme(y, pos, name, "zero_inflated", " of log1p(x / offset) over the positive values")
    loc, scale = _moments(y)
    if not (scale > 0 and pos.min() < pos.max()):
        raise ValueError(
            f"feature {name!r}: the positive values of its 'zero_inflated' scaling are all "
            f"equal ({float(pos[0])!r}); a flow cannot learn a density for them: use "
            "'discrete' or drop the feature"
        )
    at_zero = -loc / scale
    smallest = (float(y.min()) - loc) / scale
    return {
        "loc": loc,
        "scale": scale,
        "offset": offset,
        "width": width,
        "threshold": max(at_zero, smallest - _ZI_GAP),
        "zero_fraction": 1.0 - len(pos) / len(col),
    }


def _fit_discrete(col: np.ndarray, spec: Mapping[str, Any], name: str) -> dict[str, float]:
    bad = int(np.sum(~_domain(col, "discrete", {})))
    if bad:
        raise _domain_error(name, "discrete", bad, len(col), "finite integers")
    _check_extreme(col, col, name, "discrete", "")
    with np.errstate(over="ignore", invalid="ignore"):
        mean, var = float(col.mean()), float(col.var())
    if not (np.isfinite(mean) and np.isfinite(var)):  # counts near the float64 limit
        mean, std = _moments(col)
        var = std * std
    if not (var > 0 and col.min() < col.max()):
        raise _constant_error(name, col[0])
    p = {"loc": mean + 0.5, "scale": float(np.sqrt(var + 1.0 / 12.0))}
    for bound in ("low", "high"):
        if spec.get(bound) is not None:
            value = float(spec[bound])
            if not (np.isfinite(value) and value == np.floor(value)):
                raise ValueError(
                    f"discrete scaling of {name!r}: {bound!r} must be a finite integer, "
                    f"got {spec[bound]!r}"
                )
            p[bound] = value
    if "low" in p and "high" in p and not p["high"] >= p["low"]:
        raise ValueError(f"discrete scaling of {name!r} needs high >= low, got {p}")
    return p


# ---------------------------------------------------------------------- dequantisation noise
def _mix(h: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def row_hash(x: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
    """A 64-bit hash of each row of ``x`` (and of ``key``), shape ``(N,)``, dtype uint64.

    A function of the row's float64 bit patterns only (``-0.0`` and ``0.0`` hash alike), so the
    same row gives the same hash in any batch, order or chunking.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a (N, D) matrix to hash, got shape {x.shape}")
    blocks = [x]
    if key is not None:
        k = np.asarray(key, dtype=np.float64)
        k = k.reshape(len(k), -1) if k.ndim != 2 else k
        if len(k) != len(x):
            raise ValueError(f"key has {len(k)} rows for {len(x)} rows of features")
        blocks.append(k)
    h = np.full(len(x), _SEED, dtype=np.uint64)
    gamma = np.uint64(_GAMMA)
    for block in blocks:
        bits = np.ascontiguousarray(block + 0.0).view(np.uint64)  # + 0.0: -0.0 -> 0.0
        for j in range(bits.shape[1]):
            h = _mix((h ^ bits[:, j]) + gamma)
    return h


def _uniform(h: np.ndarray, j: int) -> np.ndarray:
    """The noise of feature ``j`` for rows with hash ``h``: uniform in [1e-6, 1 - 1e-6]."""
    v = _mix(h + np.uint64(((j + 1) * _GAMMA) & _MASK64))
    u = ((v >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # in (0, 1)
    return _U_EDGE + (1.0 - 2.0 * _U_EDGE) * u


# ---------------------------------------------------------------------- array-module math
def _domain_error(name: str, kind: str, count: int, total: int, domain: str) -> ValueError:
    return ValueError(
        f"feature {name!r}: {count} of {total} values are outside the domain {domain} of its "
        f"{kind!r} scaling; remove them or refit with a different scaling for {name!r}"
    )


def _domain(col: np.ndarray, kind: str, p: Mapping[str, float]) -> np.ndarray:
    """Which values of one column the feature map accepts (``log``: x > 0; ``logit``: inside
    (low, high); ``zero_inflated``: x >= 0; ``discrete``: finite integers; other kinds:
    everything)."""
    if kind == "log":
        return col > 0
    if kind == "logit":
        return (col > p["low"]) & (col < p["high"])
    if kind == "zero_inflated":
        return col >= 0
    if kind == "discrete":
        with np.errstate(invalid="ignore"):
            return np.isfinite(col) & (col == np.floor(col))
    if kind == CATEGORICAL:
        return np.isin(col, _codes(p))
    return np.ones(col.shape, dtype=bool)


def _finite_image(col: np.ndarray, kind: str, p: Mapping[str, float]) -> np.ndarray:
    """Which values of one column (inside the domain) have a finite image whose
    destandardisation is finite too (the dequantised kinds: without their noise, which is
    below one unit)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if kind == CATEGORICAL:
            return np.ones(col.shape, dtype=bool)
        if kind == "zero_inflated":
            t = np.where(col > 0, (np.log1p(col / p["offset"]) - p["loc"]) / p["scale"], 0.0)
        elif kind == "discrete":
            t = (col - p["loc"]) / p["scale"]
        else:
            t = (_pre(col, kind, p, np, check=False) - p["loc"]) / p["scale"]
    return _representable(t, kind, p)


def _representable(z: np.ndarray, kind: str, p: Mapping[str, float]) -> np.ndarray:
    """``z`` finite and ``z * scale + loc`` (the first step of the inverse) finite too."""
    if kind == CATEGORICAL:
        return np.ones(z.shape, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.isfinite(z) & np.isfinite(z * p["scale"] + p["loc"])


def _check_domain(col: np.ndarray, kind: str, p: Mapping[str, float], name: str) -> None:
    bad = int(np.sum(~_domain(col, kind, p)))
    if bad:
        domain = {
            "log": "x > 0",
            "zero_inflated": "x >= 0",
            "discrete": "finite integers",
        }.get(kind) or f"({p['low']:.6g}, {p['high']:.6g})"
        raise _domain_error(name, kind, bad, len(col), domain)


def _pre(
    col: Any, kind: str, p: Mapping[str, float], xp: Any, *, name: str = "", check: bool = True
) -> Any:
    """The fixed (non-standardising) part of a feature map (not the dequantised kinds); with
    numpy, values outside the domain raise unless ``check`` is False."""
    if check and xp is np and kind in ("log", "logit"):
        _check_domain(col, kind, p, name)
    if kind == "log":
        return xp.log(col)
    if kind == "logit":
        u = (col - p["low"]) / (p["high"] - p["low"])
        return xp.log(u) - xp.log1p(-u)
    return col


def _column(x: Any, j: int) -> Any:
    return x[:, j]


def _numpy_only(s: Scaler, xp: Any) -> bool:
    """True when ``s`` has dequantised or categorical columns; raises when ``xp`` is not
    numpy then."""
    if not any(k in _NUMPY_KINDS for k in s.kinds):
        return False
    if xp is not np:
        check_bridgeable(s)
    return True


def forward(s: Scaler, x: Any, xp: Any, *, key: Any = None) -> Any:
    """``Scaler`` forward map written for array module ``xp`` (numpy or torch; dequantised
    kinds: numpy only, ``x`` the full ``(N, D)`` matrix, ``key`` see :meth:`Scaler.forward`)."""
    h = row_hash(x, key) if _numpy_only(s, xp) and s.dequantised else None
    cols: list[Any] = []
    for j, (kind, p) in enumerate(zip(s.kinds, s.params, strict=True)):
        col = _column(x, j)
        if kind == CATEGORICAL:  # one-hot: a column per code
            index = _code_index(col, p, s.names[j])
            cols.extend((index == i).astype(np.float64) for i in range(int(p["n_codes"])))
            continue
        if h is not None and kind in DEQUANTISED_KINDS:
            _check_domain(col, kind, p, s.names[j])
            u = _uniform(h, j)
            if kind == "zero_inflated":
                positive = (np.log1p(col / p["offset"]) - p["loc"]) / p["scale"]
                cols.append(np.where(col > 0, positive, p["threshold"] - p["width"] * u))
            else:
                cols.append((col + u - p["loc"]) / p["scale"])
            continue
        pre = _pre(col, kind, p, xp, name=s.names[j])
        cols.append((pre - p["loc"]) / p["scale"])
    return xp.stack(cols, 1) if cols else x


def inverse(s: Scaler, z: Any, xp: Any) -> Any:
    """``Scaler`` inverse map for array module ``xp`` (dequantised kinds: numpy only)."""
    _numpy_only(s, xp)
    cols: list[Any] = []
    offsets = np.cumsum([0, *s.widths])
    for j, (kind, p) in enumerate(zip(s.kinds, s.params, strict=True)):
        if kind == CATEGORICAL:  # the code of the largest one-hot entry
            block = z[:, offsets[j] : offsets[j + 1]]
            cols.append(_codes(p)[np.argmax(block, axis=1)])
            continue
        zj = _column(z, int(offsets[j]))
        if kind in DEQUANTISED_KINDS:
            cols.append(_inverse_dequantised(zj, kind, p))
            continue
        t = zj * p["scale"] + p["loc"]
        if kind == "log":
            t = xp.exp(t)
        elif kind == "logit":
            t = p["low"] + (p["high"] - p["low"]) / (1.0 + xp.exp(-t))
        cols.append(t)
    return xp.stack(cols, 1) if cols else z


def _inverse_dequantised(z: np.ndarray, kind: str, p: Mapping[str, float]) -> np.ndarray:
    """Inverse of ``zero_inflated`` (``z < threshold -> 0.0``) and ``discrete`` (floor)."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge z: inf, as for the other kinds
        t = z * p["scale"] + p["loc"]
        if kind == "zero_inflated":
            positive = p["offset"] * np.expm1(np.maximum(t, 0.0))
            return np.where(z < p["threshold"], 0.0, positive) + 0.0  # + 0.0: no -0.0
        t = np.floor(t)
        if "low" in p or "high" in p:
            t = np.clip(t, p.get("low", -np.inf), p.get("high", np.inf))
        return t


def log_abs_det(s: Scaler, x: Any, xp: Any) -> Any:
    """``log |det J_forward(x)|`` per row for array module ``xp`` (dequantised kinds: numpy
    only; a zero of a ``zero_inflated`` feature contributes ``log(width)``, see the module
    docstring)."""
    _numpy_only(s, xp)
    total = 0.0 * _column(x, 0) if len(s.kinds) else None
    for j, (kind, p) in enumerate(zip(s.kinds, s.params, strict=True)):
        col = _column(x, j)
        if kind == CATEGORICAL:  # a condition, not a density variable: no Jacobian
            continue
        term = -float(np.log(p["scale"])) + 0.0 * col
        if kind == "log":
            term = term - xp.log(col)
        elif kind == "logit":
            width = p["high"] - p["low"]
            u = (col - p["low"]) / width
            term = term - xp.log(u) - xp.log1p(-u) - float(np.log(width))
        elif kind == "zero_inflated":
            _check_domain(col, kind, p, s.names[j])
            positive = term - np.log(p["offset"] + col)
            term = np.where(col > 0, positive, float(np.log(p["width"])))
        total = total + term
    return total
