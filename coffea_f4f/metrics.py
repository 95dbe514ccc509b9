"""How good is a morph, and how far did the events move?

All functions take plain ``(N, D)`` numpy arrays (a 1D array is read as ``(N, 1)``) and return
numpy arrays or Python floats. Nothing here imports torch; scikit-learn, scipy and POT are
imported only inside the functions that need them.

The quantities (see DESIGN.md, section 5):

- :func:`c2st_auc`: classifier two-sample test. A gradient-boosted classifier tries to tell
  the two samples apart; its out-of-fold ROC AUC is 0.5 when it cannot. The primary metric.
- :func:`wasserstein` and :func:`wasserstein_floor`: per-feature 1D Wasserstein-1 distance in
  units of the reference standard deviation, and the same quantity for two halves of the
  reference (the finite-sample floor).
- :func:`correlation_difference`: Pearson and Spearman correlation matrices, difference.
- :func:`distance_moved` and :func:`transport_ratio`: per-event displacement |T(x) - x| and how
  it compares to the cheapest way of moving the same points onto the same images.
- :func:`summary`: all of the above for one (source, morphed, target) triple, as plain JSON.

Inputs should be held-out events (not the ones the morph was trained on); otherwise the metrics
are optimistic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "c2st_auc",
    "correlation_difference",
    "distance_moved",
    "summary",
    "transport_ratio",
    "wasserstein",
    "wasserstein_floor",
]

#: Fewest events per sample that :func:`c2st_auc` accepts (each class also needs ``folds``).
MIN_EVENTS_C2ST = 10

#: Settings of the C2ST classifier. Early stopping on an internal 10% validation split and a
#: little regularisation keep the classifier from fitting noise: with scikit-learn's defaults
#: (no early stopping below 10k events) the out-of-fold AUC of two samples from the *same*
#: distribution scattered ~1.6-1.9x wider than the null sigma; with these settings ~1.1-1.3x,
#: at equal or better power on shifted, correlated and shape-distorted toy alternatives, and
#: several times faster.
C2ST_CLASSIFIER_PARAMS: dict[str, Any] = {
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
    "max_iter": 200,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 50,
    "l2_regularization": 1.0,
}


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------
def _as_2d(x: Any, name: str, *, min_events: int = 1) -> np.ndarray:
    """Return ``x`` as a finite float64 ``(N, D)`` array or raise ValueError.

    Awkward record arrays and mappings of name -> array are stacked field by field (in their
    field order); jagged fields are flattened per object.
    """
    fields = list(x.keys()) if isinstance(x, Mapping) else getattr(x, "fields", None)
    if fields:
        from .columns import to_matrix

        x, _ = to_matrix(x, fields, what=name, check_finite=False)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be a numeric array of shape (N, D) or (N,); got {type(x).__name__} "
            f"that numpy cannot convert to float ({err})"
        ) from err
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must have shape (N, D) or (N,); got an array with shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {arr.shape}); pass at least one column")
    if arr.shape[0] < min_events:
        raise ValueError(f"{name} has {arr.shape[0]} events; at least {min_events} are needed here")
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0)).tolist()
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite values (NaN/inf) in feature column(s) "
            f"{cols}; drop or fix those events first"
        )
    return arr


def _same_dims(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} has {a.shape[1]} features but {name_b} has {b.shape[1]}; both must have "
            "the same columns in the same order"
        )


def _paired(x: Any, tx: Any, name_x: str = "x", name_tx: str = "tx") -> tuple[np.ndarray, ...]:
    xa = _as_2d(x, name_x)
    ta = _as_2d(tx, name_tx)
    if xa.shape != ta.shape:
        raise ValueError(
            f"{name_x} and {name_tx} must have the same shape (event i of {name_tx} is the image "
            f"of event i of {name_x}); got {xa.shape} and {ta.shape}"
        )
    return xa, ta


def _weights(w: Any, n: int, name: str) -> np.ndarray | None:
    if w is None:
        return None
    try:
        arr = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a 1D numeric array ({err})") from err
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one weight per event); got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN/inf weights")
    if (arr < 0).any():
        raise ValueError(
            f"{name} has {int((arr < 0).sum())} negative weights; the weighted AUC needs "
            "non-negative weights (clip them or drop those events)"
        )
    if arr.sum() <= 0:
        raise ValueError(f"{name} sums to zero; at least one event needs a positive weight")
    return arr


def _ref_std(b: np.ndarray, name: str, undefined: str = "W1 / std is") -> np.ndarray:
    std = b.std(axis=0)
    flat = np.flatnonzero(~(std > 0))
    if flat.size:
        raise ValueError(
            f"{name} has zero spread in feature column(s) {flat.tolist()}; {undefined} "
            "undefined (drop constant features)"
        )
    return std


# --------------------------------------------------------------------------------------------
# classifier two-sample test
# --------------------------------------------------------------------------------------------
def c2st_auc(
    a: np.ndarray,
    b: np.ndarray,
    *,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
) -> tuple[float, float]:
    """Classifier two-sample test: out-of-fold ROC AUC of a classifier separating ``a`` from ``b``.

    A :class:`~sklearn.ensemble.HistGradientBoostingClassifier` (settings in
    :data:`C2ST_CLASSIFIER_PARAMS`: early stopping, mild regularisation) is trained to tell
    events of ``a`` (label 0) from events of ``b`` (label 1) with stratified ``folds``-fold
    cross-validation; every event is scored by the model that did not see it, and the ROC AUC
    of all out-of-fold scores (pooled over the folds) is returned.

    The larger sample is first subsampled at random (without replacement, seeded by ``seed``)
    to the size of the smaller one, so the test is balanced and ``n = m``; the weights of the
    kept events are kept with them.

    The AUC is reported raw, never folded to ``max(auc, 1 - auc)``: under the null it scatters
    around 0.5 on both sides, and a value well below 0.5 signals a problem (for example the same
    events in both samples). The AUC is symmetric in its arguments: ``c2st_auc(b, a)`` is close
    to ``c2st_auc(a, b)``, since the classifier is retrained with the labels swapped.

    Args:
        a: first sample, shape ``(N, D)`` or ``(N,)``, e.g. morphed source events.
        b: second sample, shape ``(M, D)`` or ``(M,)``, e.g. target events.
        weights_a: optional non-negative per-event weights of ``a``, shape ``(N,)``.
        weights_b: optional non-negative per-event weights of ``b``, shape ``(M,)``. When either
            is given (the other defaults to ones) the weights are used as ``sample_weight`` in
            the fit (rescaled so that each sample's weights average to one, i.e. the classes are
            balanced) and in the weighted ROC AUC.
        folds: number of cross-validation folds (>= 2).
        seed: seeds the subsampling, the fold split and the classifier.

    Returns:
        ``(auc, sigma)``: the raw AUC and the standard deviation of the AUC under the null
        hypothesis (no difference), ``sqrt((n + m + 1) / (12 n m))`` with ``n`` and ``m`` the
        sample sizes used (after subsampling). This is the exact null spread of the AUC of a
        *fixed* score; a classifier trained on the same data adds some spread of its own
        (measured on 2D gaussians with 3000 + 3000 events: about 1.3 sigma), and with strongly
        varying weights the effective sample size is smaller than ``n`` and the spread larger
        still. A good morph has ``|auc - 0.5|`` within about 2 sigma.

    Raises:
        ValueError: on malformed input (shape, mismatched features, NaN/inf, bad weights), too
            few events (fewer than ``max(folds, 10)`` in the smaller sample) or a bad ``folds``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")
    folds = int(folds)
    xa = _as_2d(a, "a")
    xb = _as_2d(b, "b")
    _same_dims(xa, xb, "a", "b")
    wa = _weights(weights_a, len(xa), "weights_a")
    wb = _weights(weights_b, len(xb), "weights_b")
    n_min = max(folds, MIN_EVENTS_C2ST)
    if min(len(xa), len(xb)) < n_min:
        raise ValueError(
            f"c2st_auc needs at least {n_min} events in each sample (folds={folds}); got "
            f"{len(xa)} in a and {len(xb)} in b"
        )

    rng = np.random.default_rng(seed)
    n = min(len(xa), len(xb))
    if len(xa) > n:
        keep = np.sort(rng.choice(len(xa), size=n, replace=False))
        xa = xa[keep]
        wa = None if wa is None else wa[keep]
    elif len(xb) > n:
        keep = np.sort(rng.choice(len(xb), size=n, replace=False))
        xb = xb[keep]
        wb = None if wb is None else wb[keep]

    weighted = wa is not None or wb is not None
    sample_weight = None
    if weighted:
        wa = np.ones(n) if wa is None else wa
        wb = np.ones(n) if wb is None else wb
        if wa.sum() <= 0 or wb.sum() <= 0:
            raise ValueError(
                "after subsampling to equal sizes one sample has zero total weight; pass more "
                "events or check the weights"
            )
        sample_weight = np.concatenate([wa * (n / wa.sum()), wb * (n / wb.sum())])

    x = np.concatenate([xa, xb])
    y = np.concatenate([np.zeros(n, dtype=np.int8), np.ones(n, dtype=np.int8)])
    scores = np.empty(len(y), dtype=np.float64)
    split_seed = int(rng.integers(2**31 - 1))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=split_seed)
    for train_idx, test_idx in splitter.split(x, y):
        clf = HistGradientBoostingClassifier(random_state=split_seed, **C2ST_CLASSIFIER_PARAMS)
        fit_kwargs = {} if sample_weight is None else {"sample_weight": sample_weight[train_idx]}
        clf.fit(x[train_idx], y[train_idx], **fit_kwargs)
        scores[test_idx] = clf.predict_proba(x[test_idx])[:, 1]

    auc = float(roc_auc_score(y, scores, sample_weight=sample_weight))
    sigma = math.sqrt((n + n + 1) / (12.0 * n * n))
    return auc, sigma


# --------------------------------------------------------------------------------------------
# 1D Wasserstein distances
# --------------------------------------------------------------------------------------------
def _w1_per_feature(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.stats import wasserstein_distance

    return np.array([wasserstein_distance(a[:, j], b[:, j]) for j in range(a.shape[1])])


def wasserstein(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-feature 1D Wasserstein-1 distance between ``a`` and ``b``, in units of std(``b``).

    Each feature is compared separately (marginals only; use :func:`c2st_auc` and
    :func:`correlation_difference` for the joint distribution) with
    :func:`scipy.stats.wasserstein_distance`, then divided by the standard deviation of that
    feature in ``b``, so a shift of ``b`` by ``delta`` standard deviations gives about
    ``delta``. Compare with :func:`wasserstein_floor` for the finite-sample noise level.

    Args:
        a: sample of shape ``(N, D)`` or ``(N,)``, e.g. morphed events.
        b: reference sample of shape ``(M, D)`` or ``(M,)``, e.g. target events.

    Returns:
        Array of shape ``(D,)``.

    Raises:
        ValueError: on malformed input, mismatched features, NaN/inf, fewer than 2 events in
            ``b`` or a constant feature in ``b``.
    """
    xa = _as_2d(a, "a")
    xb = _as_2d(b, "b", min_events=2)
    _same_dims(xa, xb, "a", "b")
    return _w1_per_feature(xa, xb) / _ref_std(xb, "b")


def wasserstein_floor(b: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Same-distribution floor of :func:`wasserstein`: W1 between two random halves of ``b``.

    ``b`` is shuffled (seeded) and split into two halves of ``M // 2`` events; the per-feature
    W1 between them, divided by std(``b``), is what :func:`wasserstein` returns for two samples
    that differ only by statistical noise. Because each half holds ``M / 2`` events, this is
    about sqrt(2) times the noise level of a comparison of ``M`` against ``M`` events, so a
    morphed-vs-target W1 at or below the floor is as good as the sample sizes can show.

    Args:
        b: reference sample of shape ``(M, D)`` or ``(M,)``, at least 4 events.
        seed: seeds the shuffle.

    Returns:
        Array of shape ``(D,)``.

    Raises:
        ValueError: on malformed input, NaN/inf, fewer than 4 events or a constant feature.
    """
    xb = _as_2d(b, "b", min_events=4)
    std = _ref_std(xb, "b")
    perm = np.random.default_rng(seed).permutation(len(xb))
    half = len(xb) // 2
    return _w1_per_feature(xb[perm[:half]], xb[perm[half : 2 * half]]) / std


# --------------------------------------------------------------------------------------------
# correlations
# --------------------------------------------------------------------------------------------
def _corr(x: np.ndarray, name: str) -> np.ndarray:
    _ref_std(x, name, "correlations are")
    return np.atleast_2d(np.corrcoef(x, rowvar=False))


def correlation_difference(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Difference of the Pearson and Spearman correlation matrices of ``a`` and ``b``.

    Args:
        a: sample of shape ``(N, D)``, e.g. morphed events.
        b: reference sample of shape ``(M, D)``, e.g. target events.

    Returns:
        ``{"pearson": corr(a) - corr(b), "spearman": rank-corr(a) - rank-corr(b),
        "max_abs_pearson": float, "max_abs_spearman": float}``; the matrices have shape
        ``(D, D)`` (zero diagonal), the maxima are over all entries.

    Raises:
        ValueError: on malformed input, mismatched features, NaN/inf, fewer than 3 events or a
            constant feature.
    """
    from scipy.stats import rankdata

    xa = _as_2d(a, "a", min_events=3)
    xb = _as_2d(b, "b", min_events=3)
    _same_dims(xa, xb, "a", "b")
    pearson = _corr(xa, "a") - _corr(xb, "b")
    spearman = _corr(rankdata(xa, axis=0), "a") - _corr(rankdata(xb, axis=0), "b")
    return {
        "pearson": pearson,
        "spearman": spearman,
        "max_abs_pearson": float(np.abs(pearson).max()),
        "max_abs_spearman": float(np.abs(spearman).max()),
    }


# --------------------------------------------------------------------------------------------
# transport
# --------------------------------------------------------------------------------------------
def distance_moved(x: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """Per-event Euclidean distance ``|T(x) - x|``.

    The distance is in the units of the inputs; to compare features with different units pass
    standardised (scaled) arrays.

    Args:
        x: events before the map, shape ``(N, D)`` or ``(N,)``.
        tx: the same events after the map, same shape (row ``i`` is the image of row ``i``).

    Returns:
        Array of shape ``(N,)``.

    Raises:
        ValueError: on malformed input, mismatched shapes or NaN/inf.
    """
    xa, ta = _paired(x, tx)
    return np.linalg.norm(ta - xa, axis=1)


def transport_ratio(
    x: np.ndarray, tx: np.ndarray, *, max_points: int = 2000, seed: int = 0
) -> float:
    """How much further than necessary a map moves its points: ``mean|T(x)-x| / W1(x, T(x))``.

    ``W1(x, T(x))`` is the exact empirical optimal-transport cost (POT's ``ot.emd2``, uniform
    weights, Euclidean cost ``ot.dist(x, tx, metric="euclidean")``) between the points and their
    images, i.e. the least mean distance any pairing of the points with the same images
    achieves. The map's own pairing (point ``i`` to image ``i``) is one such pairing, so the
    ratio is ``>= 1``; it is 1 when the map is optimal on its own endpoints (e.g. any increasing
    map in 1D) and grows the more the map moves events needlessly (e.g. shuffles them).

    When there are more than ``max_points`` events, a random subset of ``max_points`` events
    (seeded) and their images is used; the exact solver needs ``max_points**2`` doubles of
    memory and roughly quadratic-to-cubic time (~1 s for 2000 points).

    Args:
        x: events before the map, shape ``(N, D)`` or ``(N,)``.
        tx: the same events after the map, same shape (row ``i`` is the image of row ``i``).
        max_points: at most this many events enter the optimal-transport problem (>= 2).
        seed: seeds the subsampling.

    Returns:
        The ratio as a float: exactly 1.0 when nothing moved (``T`` = identity), ``inf`` when
        the points moved but the images are the same point set (a pure permutation).

    Raises:
        ValueError: on malformed input, mismatched shapes, NaN/inf, fewer than 2 events or a
            bad ``max_points``.
    """
    import ot

    if isinstance(max_points, bool) or not isinstance(max_points, int | np.integer):
        raise ValueError(f"max_points must be an integer >= 2; got {max_points!r}")
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2; got {max_points}")
    xa, ta = _paired(x, tx)
    if len(xa) < 2:
        raise ValueError(f"transport_ratio needs at least 2 events; got {len(xa)}")
    if len(xa) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(xa), size=max_points, replace=False))
        xa, ta = xa[keep], ta[keep]

    moved = float(np.linalg.norm(ta - xa, axis=1).mean())
    scale = float(np.abs(np.concatenate([xa, ta])).max())
    tiny = 1e-12 * max(scale, 1e-300)
    if moved <= tiny:
        return 1.0

    n = len(xa)
    uniform = np.full(n, 1.0 / n)
    cost = ot.dist(xa, ta, metric="euclidean")
    w1, log = ot.emd2(uniform, uniform, cost, numItermax=max(10**7, 100 * n * n), log=True)
    w1 = float(w1)
    if log.get("result_code", 1) != 1:
        warnings.warn(
            f"ot.emd2 did not report an optimal solution ({log.get('warning')}); the transport "
            "ratio is a lower bound",
            RuntimeWarning,
            stacklevel=2,
        )
    if w1 <= 1e-9 * moved:  # the images are the points themselves, reordered
        return math.inf
    # The identity pairing is feasible, so w1 <= moved; clip round-off undershoot to 1.
    return max(moved / w1, 1.0)


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------
def _json_float(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def summary(
    source: np.ndarray,
    morphed: np.ndarray,
    target: np.ndarray,
    *,
    seed: int = 0,
    standardize: bool = False,
) -> dict[str, Any]:
    """All metrics for one morph, as a JSON-serialisable dict of floats and lists.

    Pass held-out events: ``morphed`` is the map applied to ``source`` (row by row), ``target``
    the sample the morph aims at.

    Args:
        source: source events before the morph, shape ``(N, D)``.
        morphed: the same events after the morph, shape ``(N, D)``.
        target: target events, shape ``(M, D)``.
        seed: seeds the subsampling and classifiers.
        standardize: if True, divide all three samples by the per-feature std of ``target``
            before computing the distance moved and the transport ratio (recommended when the
            features have different units; AUC, W1 / std and correlations do not change).

    Returns:
        A dict with keys ``n_source``, ``n_target``, ``auc_before``, ``sigma_before``
        (source vs target), ``auc_after``, ``sigma_after`` (morphed vs target), ``pull_after``
        (``(auc_after - 0.5) / sigma_after``), ``w1_before``, ``w1_after``, ``w1_floor``
        (per-feature lists, see :func:`wasserstein` / :func:`wasserstein_floor`),
        ``max_abs_pearson_before/after``, ``max_abs_spearman_before/after``,
        ``distance_mean``, ``distance_std`` (of :func:`distance_moved`), ``transport_ratio``
        (``None`` if infinite) and ``standardized``.

    Raises:
        ValueError: on malformed or mismatched input (see the individual metrics).
    """
    src, mor = _paired(source, morphed, "source", "morphed")
    tgt = _as_2d(target, "target")
    _same_dims(src, tgt, "source", "target")

    auc_before, sigma_before = c2st_auc(src, tgt, seed=seed)
    auc_after, sigma_after = c2st_auc(mor, tgt, seed=seed)
    corr_before = correlation_difference(src, tgt)
    corr_after = correlation_difference(mor, tgt)

    if standardize:
        std = _ref_std(tgt, "target")
        src_d, mor_d = src / std, mor / std
    else:
        src_d, mor_d = src, mor
    dist = distance_moved(src_d, mor_d)

    return {
        "n_source": len(src),
        "n_target": len(tgt),
        "auc_before": auc_before,
        "sigma_before": sigma_before,
        "auc_after": auc_after,
        "sigma_after": sigma_after,
        "pull_after": (auc_after - 0.5) / sigma_after,
        "w1_before": wasserstein(src, tgt).tolist(),
        "w1_after": wasserstein(mor, tgt).tolist(),
        "w1_floor": wasserstein_floor(tgt, seed=seed).tolist(),
        "max_abs_pearson_before": corr_before["max_abs_pearson"],
        "max_abs_pearson_after": corr_after["max_abs_pearson"],
        "max_abs_spearman_before": corr_before["max_abs_spearman"],
        "max_abs_spearman_after": corr_after["max_abs_spearman"],
        "distance_mean": float(dist.mean()),
        "distance_std": float(dist.std()),
        "transport_ratio": _json_float(transport_ratio(src_d, mor_d, seed=seed)),
        "standardized": bool(standardize),
    }


def summary_rows(
    summary: Mapping[str, Any],
    features: Sequence[str],
    *,
    names: tuple[str, str, str] = ("source", "morphed", "target"),
) -> list[tuple[str, str]]:
    """``(label, value)`` rows of a printed metrics table for a :func:`summary` dict.

    Args:
        summary: the dict from :func:`summary`.
        features: feature names, in the summary's column order.
        names: how to call the source, morphed and target samples in the labels.
    """
    src, mor, tgt = names
    ratio = summary.get("transport_ratio")
    unit = " (target std units)" if summary.get("standardized") else ""
    before = f"{summary['auc_before']:.3f} +- {summary['sigma_before']:.3f}"
    after = f"{summary['auc_after']:.3f} +- {summary['sigma_after']:.3f}"
    rows = [
        ("events (source / target)", f"{summary['n_source']} / {summary['n_target']}"),
        (f"C2ST AUC {src} vs {tgt}", before),
        (f"C2ST AUC {mor} vs {tgt}", after),
    ]
    for j, feature in enumerate(features):
        rows.append(
            (
                f"W1/std {feature}",
                f"{summary['w1_before'][j]:.3f} -> "
                f"{summary['w1_after'][j]:.3f} (floor {summary['w1_floor'][j]:.3f})",
            )
        )
    rows += [
        (
            "distance moved",
            f"{summary['distance_mean']:.3f} +- {summary['distance_std']:.3f}{unit}",
        ),
        ("transport ratio", "inf" if ratio is None else f"{ratio:.3f} (1 = optimal)"),
    ]
    return rows
