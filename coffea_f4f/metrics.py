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
- :func:`summary`: all of the above for one (source, morphed, target) triple, as plain JSON;
  with an ensemble's band (``up`` / ``down``) and member morphs also their W1 and the C2ST AUC
  of each member (the spread of the AUC over the ensemble).
- :func:`summary_rows`: a :func:`summary` as the rows of a printed table.

Inputs should be held-out events (not the ones the morph was trained on); otherwise the metrics
are optimistic.

Event weights: every statistic takes optional per-event weights (``weights_a`` / ``weights_b``,
``weights``, or ``source_weights`` / ``target_weights`` in :func:`summary`); ``None`` (the
default) runs exactly the unweighted computation. Weights must be finite, one per event, with
a positive sum. Signed weights (e.g. negative NLO weights) are accepted where the statistic stays
defined: :func:`wasserstein` and :func:`wasserstein_floor` (L1 distance of the signed weighted
CDFs), :func:`correlation_difference` (weighted moments, weighted mid-ranks) and weighted means.
The classifier test (:func:`c2st_auc`) and optimal transport (:func:`transport_ratio`, and so
:func:`summary`) need non-negative weights and raise ValueError otherwise. Integer weights give
the same results as duplicating the events (up to round-off), except in the C2ST: there
literally duplicated rows leak across the cross-validation folds (a held-out event's twin is in
the training folds) and inflate the AUC, so weights are the right way to pass them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "as_matrix",
    "c2st_auc",
    "correlation_difference",
    "distance_moved",
    "summary",
    "summary_rows",
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
def as_matrix(x: Any, name: str, *, min_events: int = 1) -> np.ndarray:
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
    xa = as_matrix(x, name_x)
    ta = as_matrix(tx, name_tx)
    if xa.shape != ta.shape:
        raise ValueError(
            f"{name_x} and {name_tx} must have the same shape (event i of {name_tx} is the image "
            f"of event i of {name_x}); got {xa.shape} and {ta.shape}"
        )
    return xa, ta


#: What to do about negative weights where a statistic cannot use them (ValueError messages).
NEGATIVE_WEIGHTS_ADVICE = (
    "drop or reweight the negative weights (e.g. pass np.abs(w) or np.clip(w, 0, None) here) "
    "and report the signed-weight W1 (metrics.wasserstein) and correlations "
    "(metrics.correlation_difference), which accept negative weights"
)


def _weights(w: Any, n: int, name: str, *, signed: bool, why: str = "") -> np.ndarray | None:
    """Return ``w`` as a float64 ``(n,)`` array (``None`` stays ``None``) or raise ValueError.

    The weights must be finite with a positive sum; negative ones are refused unless ``signed``
    (``why`` says which computation cannot take them).
    """
    if w is None:
        return None
    try:
        arr = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a 1D numeric array ({err})") from err
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one weight per event); got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(
            f"{name} contains {int((~np.isfinite(arr)).sum())} NaN/inf weights; drop or fix "
            "those events first"
        )
    if not signed and (arr < 0).any():
        raise ValueError(
            f"{name} has {int((arr < 0).sum())} negative weights; {why} needs non-negative "
            f"weights: {NEGATIVE_WEIGHTS_ADVICE}"
        )
    total = float(arr.sum())
    if not total > 1e-12 * float(np.abs(arr).sum()):
        raise ValueError(
            f"{name} sums to {total:g}; the total weight must be positive (at least one event "
            "with a positive weight, and the negative ones must not cancel the positive ones)"
        )
    return arr


def _n_eff(w: np.ndarray | None, n: int) -> float:
    """Effective sample size ``(sum w)**2 / sum w**2`` (``n`` without weights)."""
    if w is None:
        return float(n)
    return float(w.sum() ** 2 / np.dot(w, w))


def _wstats(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and centred data of the columns of ``x``."""
    mean = (w @ x) / w.sum()
    return mean, x - mean


def _wvar(x: np.ndarray, w: np.ndarray, name: str, undefined: str) -> np.ndarray:
    """Weighted (population) variance per column; raise if it is not positive."""
    _, xc = _wstats(x, w)
    var = (w @ (xc * xc)) / w.sum()
    live = w != 0
    flat = np.flatnonzero(np.ptp(x[live], axis=0) == 0)
    if flat.size:
        raise ValueError(
            f"{name} has zero spread in feature column(s) {flat.tolist()} (among the events of "
            f"non-zero weight); {undefined} undefined (drop constant features)"
        )
    neg = np.flatnonzero(~(var > 0))
    if neg.size:
        raise ValueError(
            f"{name} has a weighted variance <= 0 in feature column(s) {neg.tolist()} (negative "
            f"weights outweigh the positive ones there); {undefined} undefined"
        )
    return var


def _ref_std(
    b: np.ndarray, name: str, undefined: str = "W1 / std is", weights: np.ndarray | None = None
) -> np.ndarray:
    if weights is not None:
        return np.sqrt(_wvar(b, weights, name, undefined))
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
            balanced) and in the weighted ROC AUC. Negative weights raise ValueError: a
            classifier cannot be trained on negative sample weights (drop them, or pass
            ``np.abs(w)`` here and the signed weights to :func:`wasserstein`).
        folds: number of cross-validation folds (>= 2).
        seed: seeds the subsampling, the fold split and the classifier.

    Returns:
        ``(auc, sigma)``: the raw AUC and the standard deviation of the AUC under the null
        hypothesis (no difference), ``sqrt((n + m + 1) / (12 n m))`` with ``n`` and ``m`` the
        sample sizes used (after subsampling). With weights, ``n`` and ``m`` are the effective
        sample sizes ``(sum w)**2 / sum(w**2)`` of the weights of the events used (a sample
        without weights counts its events), so strongly varying weights widen the null spread
        (the AUC of a weighted sample scatters like that of an unweighted one of its effective
        size). This is the exact null spread of the AUC of a *fixed* score; a classifier trained
        on the same data adds some spread of its own (measured on 2D gaussians with 3000 + 3000
        events: about 1.3 sigma). A good morph has ``|auc - 0.5|`` within about 2 sigma.

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
    xa = as_matrix(a, "a")
    xb = as_matrix(b, "b")
    _same_dims(xa, xb, "a", "b")
    why = "the classifier test (a fit with sample_weight)"
    wa = _weights(weights_a, len(xa), "weights_a", signed=False, why=why)
    wb = _weights(weights_b, len(xb), "weights_b", signed=False, why=why)
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
    if not weighted:
        sigma = math.sqrt((n + n + 1) / (12.0 * n * n))
    else:
        n_a, n_b = _n_eff(wa, n), _n_eff(wb, n)
        sigma = math.sqrt((n_a + n_b + 1) / (12.0 * n_a * n_b))
    return auc, sigma


# --------------------------------------------------------------------------------------------
# 1D Wasserstein distances
# --------------------------------------------------------------------------------------------
def _w1_per_feature(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.stats import wasserstein_distance

    return np.array([wasserstein_distance(a[:, j], b[:, j]) for j in range(a.shape[1])])


def _w1_signed_1d(u: np.ndarray, v: np.ndarray, wu: np.ndarray, wv: np.ndarray) -> float:
    """``integral |F_u - F_v| dx`` of the weighted empirical CDFs (weights may be signed).

    The same construction as scipy's ``wasserstein_distance`` (which refuses negative weights):
    each CDF is the cumulative weight up to ``x`` divided by the total weight; with non-negative
    weights this is the weighted W1 distance, with signed ones the L1 distance of the CDFs.
    """
    u_order = np.argsort(u, kind="stable")
    v_order = np.argsort(v, kind="stable")
    all_values = np.sort(np.concatenate([u, v]), kind="mergesort")
    deltas = np.diff(all_values)
    u_idx = u[u_order].searchsorted(all_values[:-1], "right")
    v_idx = v[v_order].searchsorted(all_values[:-1], "right")
    u_cum = np.concatenate([[0.0], np.cumsum(wu[u_order])])
    v_cum = np.concatenate([[0.0], np.cumsum(wv[v_order])])
    u_cdf = u_cum[u_idx] / u_cum[-1]
    v_cdf = v_cum[v_idx] / v_cum[-1]
    return float(np.dot(np.abs(u_cdf - v_cdf), deltas))


def _w1_weighted(
    a: np.ndarray, b: np.ndarray, wa: np.ndarray | None, wb: np.ndarray | None
) -> np.ndarray:
    wa = np.ones(len(a)) if wa is None else wa
    wb = np.ones(len(b)) if wb is None else wb
    return np.array([_w1_signed_1d(a[:, j], b[:, j], wa, wb) for j in range(a.shape[1])])


def wasserstein(
    a: np.ndarray,
    b: np.ndarray,
    *,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
) -> np.ndarray:
    """Per-feature 1D Wasserstein-1 distance between ``a`` and ``b``, in units of std(``b``).

    Each feature is compared separately (marginals only; use :func:`c2st_auc` and
    :func:`correlation_difference` for the joint distribution) with
    :func:`scipy.stats.wasserstein_distance`, then divided by the standard deviation of that
    feature in ``b``, so a shift of ``b`` by ``delta`` standard deviations gives about
    ``delta``. Compare with :func:`wasserstein_floor` for the finite-sample noise level.

    With weights, W1 is ``integral |F_a(x) - F_b(x)| dx`` of the weighted empirical CDFs (the
    cumulative weight up to ``x`` over the total weight) and the std of ``b`` is the weighted
    (population) std. Signed weights are allowed: the CDFs need not be monotone, the integral
    is still the L1 distance between them (zero for equal distributions, and events of opposite
    weight at the same point cancel exactly).

    Args:
        a: sample of shape ``(N, D)`` or ``(N,)``, e.g. morphed events.
        b: reference sample of shape ``(M, D)`` or ``(M,)``, e.g. target events.
        weights_a: optional per-event weights of ``a``, shape ``(N,)``, may be signed.
        weights_b: optional per-event weights of ``b``, shape ``(M,)``, may be signed. When
            only one is given the other sample counts its events.

    Returns:
        Array of shape ``(D,)``.

    Raises:
        ValueError: on malformed input, mismatched features, NaN/inf, fewer than 2 events in
            ``b``, a constant feature in ``b`` (or a weighted variance <= 0) or bad weights
            (wrong length, NaN/inf, sum <= 0).
    """
    xa = as_matrix(a, "a")
    xb = as_matrix(b, "b", min_events=2)
    _same_dims(xa, xb, "a", "b")
    wa = _weights(weights_a, len(xa), "weights_a", signed=True)
    wb = _weights(weights_b, len(xb), "weights_b", signed=True)
    if wa is None and wb is None:
        return _w1_per_feature(xa, xb) / _ref_std(xb, "b")
    return _w1_weighted(xa, xb, wa, wb) / _ref_std(xb, "b", weights=wb)


def wasserstein_floor(
    b: np.ndarray, *, weights: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Same-distribution floor of :func:`wasserstein`: W1 between two random halves of ``b``.

    ``b`` is shuffled (seeded) and split into two halves of ``M // 2`` events; the per-feature
    W1 between them, divided by std(``b``), is what :func:`wasserstein` returns for two samples
    that differ only by statistical noise. Because each half holds ``M / 2`` events, this is
    about sqrt(2) times the noise level of a comparison of ``M`` against ``M`` events, so a
    morphed-vs-target W1 at or below the floor is as good as the sample sizes can show.

    With ``weights`` each half keeps the weights of its events (weighted W1 of the halves, over
    the weighted std of ``b``): the floor then reflects the effective sample size, which is
    what limits a weighted comparison.

    Args:
        b: reference sample of shape ``(M, D)`` or ``(M,)``, at least 4 events.
        weights: optional per-event weights of ``b``, shape ``(M,)``, may be signed (each half
            must keep a positive total weight).
        seed: seeds the shuffle.

    Returns:
        Array of shape ``(D,)``.

    Raises:
        ValueError: on malformed input, NaN/inf, fewer than 4 events, a constant feature, bad
            weights, or a half whose weights sum to <= 0.
    """
    xb = as_matrix(b, "b", min_events=4)
    wb = _weights(weights, len(xb), "weights", signed=True)
    std = _ref_std(xb, "b", weights=wb)
    perm = np.random.default_rng(seed).permutation(len(xb))
    half = len(xb) // 2
    first, second = perm[:half], perm[half : 2 * half]
    if wb is None:
        return _w1_per_feature(xb[first], xb[second]) / std
    for part in (first, second):
        if not wb[part].sum() > 1e-12 * np.abs(wb[part]).sum():
            raise ValueError(
                "weights: one random half of b has a total weight <= 0, so the floor is "
                "undefined; use more events or another seed"
            )
    return _w1_weighted(xb[first], xb[second], wb[first], wb[second]) / std


# --------------------------------------------------------------------------------------------
# correlations
# --------------------------------------------------------------------------------------------
def _corr(x: np.ndarray, name: str) -> np.ndarray:
    _ref_std(x, name, "correlations are")
    return np.atleast_2d(np.corrcoef(x, rowvar=False))


def _wcorr(x: np.ndarray, w: np.ndarray, name: str) -> np.ndarray:
    """Weighted Pearson correlation matrix of the columns of ``x`` (weights may be signed)."""
    var = _wvar(x, w, name, "correlations are")
    _, xc = _wstats(x, w)
    cov = ((xc * w[:, None]).T @ xc) / w.sum()
    corr = cov / np.sqrt(np.outer(var, var))
    np.fill_diagonal(corr, 1.0)
    return corr


def _wranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mid-ranks per column: weight below each value plus half the weight at it.

    With unit weights this is ``scipy.stats.rankdata(x, axis=0) - 0.5`` (ties averaged), so the
    weighted Spearman correlation reduces to the usual one; integer weights rank like duplicated
    events (up to that constant shift), and events of opposite weight at one value cancel.
    """
    ranks = np.empty_like(x)
    for j in range(x.shape[1]):
        order = np.argsort(x[:, j], kind="stable")
        xs = x[order, j]
        group = np.cumsum(np.concatenate([[True], xs[1:] != xs[:-1]])) - 1
        at = np.bincount(group, weights=w[order])
        mid = np.cumsum(at) - 0.5 * at
        ranks[order, j] = mid[group]
    return ranks


def _pearson_spearman(x: np.ndarray, w: np.ndarray | None, name: str) -> tuple[np.ndarray, ...]:
    from scipy.stats import rankdata

    if w is None:
        return _corr(x, name), _corr(rankdata(x, axis=0), name)
    return _wcorr(x, w, name), _wcorr(_wranks(x, w), w, name)


def correlation_difference(
    a: np.ndarray,
    b: np.ndarray,
    *,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
) -> dict[str, Any]:
    """Difference of the Pearson and Spearman correlation matrices of ``a`` and ``b``.

    With weights, Pearson is the weighted correlation (weighted means and covariances) and
    Spearman the weighted Pearson correlation of weighted mid-ranks (for each event, the weight
    of the events below its value plus half the weight at its value). Both reduce to the
    unweighted ones for unit weights and give the same values as duplicating events for integer
    weights. Signed weights are allowed (events of opposite weight at the same point cancel); the
    weighted covariance matrix then need not be positive semi-definite, so entries with
    ``|r| > 1`` are possible when the negative weights are large.

    Args:
        a: sample of shape ``(N, D)``, e.g. morphed events.
        b: reference sample of shape ``(M, D)``, e.g. target events.
        weights_a: optional per-event weights of ``a``, shape ``(N,)``, may be signed.
        weights_b: optional per-event weights of ``b``, shape ``(M,)``, may be signed.

    Returns:
        ``{"pearson": corr(a) - corr(b), "spearman": rank-corr(a) - rank-corr(b),
        "max_abs_pearson": float, "max_abs_spearman": float}``; the matrices have shape
        ``(D, D)`` (zero diagonal), the maxima are over all entries.

    Raises:
        ValueError: on malformed input, mismatched features, NaN/inf, fewer than 3 events, a
            constant feature (or a weighted variance <= 0) or bad weights (wrong length,
            NaN/inf, sum <= 0).
    """
    xa = as_matrix(a, "a", min_events=3)
    xb = as_matrix(b, "b", min_events=3)
    _same_dims(xa, xb, "a", "b")
    wa = _weights(weights_a, len(xa), "weights_a", signed=True)
    wb = _weights(weights_b, len(xb), "weights_b", signed=True)
    pearson_a, spearman_a = _pearson_spearman(xa, wa, "a")
    pearson_b, spearman_b = _pearson_spearman(xb, wb, "b")
    pearson = pearson_a - pearson_b
    spearman = spearman_a - spearman_b
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
    standardised (scaled) arrays. The result is per event, so it takes no weights; the weighted
    mean distance is ``np.average(distance_moved(x, tx), weights=w)`` (signed weights are fine
    there), as :func:`summary` and :func:`transport_ratio` compute it.

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
    x: np.ndarray,
    tx: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    max_points: int = 2000,
    seed: int = 0,
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

    With ``weights``, event ``i`` and its image both carry the mass ``w_i / sum(w)``: the
    numerator is the weighted mean distance and ``ot.emd2`` gets these masses on both sides (the
    map's pairing is still a feasible plan, so the ratio stays ``>= 1``). A subsample keeps the
    weights of its events; events of zero weight are left out of the transport problem.
    Negative weights raise ValueError: optimal transport cannot move negative mass (drop or clip
    them, or pass ``np.abs(w)``, and report the signed weighted mean distance separately).

    Args:
        x: events before the map, shape ``(N, D)`` or ``(N,)``.
        tx: the same events after the map, same shape (row ``i`` is the image of row ``i``).
        weights: optional non-negative per-event weights, shape ``(N,)``.
        max_points: at most this many events enter the optimal-transport problem (>= 2).
        seed: seeds the subsampling.

    Returns:
        The ratio as a float: exactly 1.0 when nothing moved (``T`` = identity), ``inf`` when
        the points moved but the images are the same point set (a pure permutation).

    Raises:
        ValueError: on malformed input, mismatched shapes, NaN/inf, fewer than 2 events, a
            bad ``max_points`` or bad weights (wrong length, NaN/inf, negative, sum <= 0).
    """
    import ot

    if isinstance(max_points, bool) or not isinstance(max_points, int | np.integer):
        raise ValueError(f"max_points must be an integer >= 2; got {max_points!r}")
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2; got {max_points}")
    xa, ta = _paired(x, tx)
    if len(xa) < 2:
        raise ValueError(f"transport_ratio needs at least 2 events; got {len(xa)}")
    w = _weights(weights, len(xa), "weights", signed=False, why="optimal transport (ot.emd2)")
    if len(xa) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(xa), size=max_points, replace=False))
        xa, ta = xa[keep], ta[keep]
        w = None if w is None else w[keep]
    if w is not None:
        if not w.sum() > 0:
            raise ValueError(
                f"weights: the {max_points} events subsampled (max_points) all have zero weight; "
                "raise max_points or drop the zero-weight events first"
            )
        live = w > 0
        xa, ta, w = xa[live], ta[live], w[live]

    dist = np.linalg.norm(ta - xa, axis=1)
    moved = float(dist.mean()) if w is None else float(np.dot(w, dist) / w.sum())
    scale = float(np.abs(np.concatenate([xa, ta])).max())
    tiny = 1e-12 * max(scale, 1e-300)
    if moved <= tiny:
        return 1.0

    n = len(xa)
    mass = np.full(n, 1.0 / n) if w is None else w / w.sum()
    cost = ot.dist(xa, ta, metric="euclidean")
    w1, log = ot.emd2(mass, mass, cost, numItermax=max(10**7, 100 * n * n), log=True)
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
    source_weights: np.ndarray | None = None,
    target_weights: np.ndarray | None = None,
    seed: int = 0,
    standardize: bool = False,
    up: Any = None,
    down: Any = None,
    members: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """All metrics for one morph, as a JSON-serialisable dict of floats and lists.

    Pass held-out events: ``morphed`` is the map applied to ``source`` (row by row), ``target``
    the sample the morph aims at.

    With weights every metric is weighted (see the individual functions): the morphed events
    carry the weights of the source events they came from, and the distance moved and the
    standardisation use weighted means and stds. Without weights the results are those of the
    unweighted computation, bit for bit.

    With an ensemble (``fit_morpher(..., ensemble=K)``), pass its band and member morphs of the
    same source events (:meth:`Morpher.variations <coffea_f4f.morpher.Morpher.variations>`):
    ``up`` / ``down`` add their per-feature W1 against the target (weighted as ``w1_after``),
    ``members`` the C2ST AUC of each member against the target and its mean and spread. Without
    them the result is exactly the one without an ensemble.

    Args:
        source: source events before the morph, shape ``(N, D)``.
        morphed: the same events after the morph, shape ``(N, D)``.
        target: target events, shape ``(M, D)``.
        source_weights: optional non-negative per-event weights of ``source`` (and so of
            ``morphed``), shape ``(N,)``.
        target_weights: optional non-negative per-event weights of ``target``, shape ``(M,)``.
            Negative weights raise ValueError, since the summary includes the classifier test
            and optimal transport: pass ``np.abs(w)`` (or drop them) here and compute the
            signed-weight :func:`wasserstein` and :func:`correlation_difference` separately.
        seed: seeds the subsampling and classifiers.
        standardize: if True, divide all three samples by the per-feature (weighted) std of
            ``target`` before computing the distance moved and the transport ratio (recommended
            when the features have different units; AUC, W1 / std and correlations do not
            change).
        up: the band's upper variation of ``morphed`` (``variations(x)["up"]``), shape
            ``(N, D)``, row ``i`` the variation of source row ``i``; given with ``down``.
        down: the lower variation, as ``up``.
        members: the K >= 1 member morphs of the source events (``variations(x,
            members=True)``), a sequence of ``(N, D)`` arrays (or a ``(K, N, D)`` array).

    Returns:
        A dict with keys ``n_source``, ``n_target``, ``auc_before``, ``sigma_before``
        (source vs target), ``auc_after``, ``sigma_after`` (morphed vs target), ``pull_after``
        (``(auc_after - 0.5) / sigma_after``), ``w1_before``, ``w1_after``, ``w1_floor``
        (per-feature lists, see :func:`wasserstein` / :func:`wasserstein_floor`),
        ``max_abs_pearson_before/after``, ``max_abs_spearman_before/after``,
        ``distance_mean``, ``distance_std`` (weighted, of :func:`distance_moved`),
        ``transport_ratio`` (``None`` if infinite), ``standardized``, ``weighted`` (whether any
        weights were given) and ``n_eff_source``, ``n_eff_target`` (effective sample sizes
        ``(sum w)**2 / sum(w**2)``; the event counts without weights). With ``up`` / ``down``
        also ``w1_up``, ``w1_down`` (per-feature lists); with ``members`` also
        ``auc_members`` (the C2ST AUC of each member vs the target, a list),
        ``auc_members_mean`` and ``auc_members_std`` (``ddof=1``; ``None`` for one member).

    Raises:
        ValueError: on malformed or mismatched input (see the individual metrics), ``up``
            without ``down`` (or the reverse), or a band or member whose shape is not that of
            ``morphed`` (the message names the argument).
    """
    src, mor = _paired(source, morphed, "source", "morphed")
    tgt = as_matrix(target, "target")
    _same_dims(src, tgt, "source", "target")
    why = "summary (its classifier test and optimal transport)"
    ws = _weights(source_weights, len(src), "source_weights", signed=False, why=why)
    wt = _weights(target_weights, len(tgt), "target_weights", signed=False, why=why)
    band = _band(up, down, mor)
    ensemble = _members(members, mor)

    auc_before, sigma_before = c2st_auc(src, tgt, weights_a=ws, weights_b=wt, seed=seed)
    auc_after, sigma_after = c2st_auc(mor, tgt, weights_a=ws, weights_b=wt, seed=seed)
    corr_before = correlation_difference(src, tgt, weights_a=ws, weights_b=wt)
    corr_after = correlation_difference(mor, tgt, weights_a=ws, weights_b=wt)

    if standardize:
        std = _ref_std(tgt, "target", weights=wt)
        src_d, mor_d = src / std, mor / std
    else:
        src_d, mor_d = src, mor
    dist = distance_moved(src_d, mor_d)
    if ws is None:
        dist_mean, dist_std = float(dist.mean()), float(dist.std())
    else:
        dist_mean = float(np.dot(ws, dist) / ws.sum())
        dist_std = float(np.sqrt(np.dot(ws, (dist - dist_mean) ** 2) / ws.sum()))

    out: dict[str, Any] = {
        "n_source": len(src),
        "n_target": len(tgt),
        "auc_before": auc_before,
        "sigma_before": sigma_before,
        "auc_after": auc_after,
        "sigma_after": sigma_after,
        "pull_after": (auc_after - 0.5) / sigma_after,
        "w1_before": wasserstein(src, tgt, weights_a=ws, weights_b=wt).tolist(),
        "w1_after": wasserstein(mor, tgt, weights_a=ws, weights_b=wt).tolist(),
        "w1_floor": wasserstein_floor(tgt, weights=wt, seed=seed).tolist(),
        "max_abs_pearson_before": corr_before["max_abs_pearson"],
        "max_abs_pearson_after": corr_after["max_abs_pearson"],
        "max_abs_spearman_before": corr_before["max_abs_spearman"],
        "max_abs_spearman_after": corr_after["max_abs_spearman"],
        "distance_mean": dist_mean,
        "distance_std": dist_std,
        "transport_ratio": _json_float(transport_ratio(src_d, mor_d, weights=ws, seed=seed)),
        "standardized": bool(standardize),
        "weighted": ws is not None or wt is not None,
        "n_eff_source": _n_eff(ws, len(src)),
        "n_eff_target": _n_eff(wt, len(tgt)),
    }
    if band is not None:
        out["w1_up"] = wasserstein(band[0], tgt, weights_a=ws, weights_b=wt).tolist()
        out["w1_down"] = wasserstein(band[1], tgt, weights_a=ws, weights_b=wt).tolist()
    if ensemble is not None:
        aucs = [c2st_auc(m, tgt, weights_a=ws, weights_b=wt, seed=seed)[0] for m in ensemble]
        out["auc_members"] = aucs
        out["auc_members_mean"] = float(np.mean(aucs))
        out["auc_members_std"] = float(np.std(aucs, ddof=1)) if len(aucs) >= 2 else None
    return out


def _like_morphed(x: Any, name: str, mor: np.ndarray) -> np.ndarray:
    """``x`` as a matrix of ``morphed``'s shape (the same events, varied) or ValueError."""
    arr = as_matrix(x, name)
    if arr.shape != mor.shape:
        raise ValueError(
            f"{name} must have the shape of morphed {mor.shape} (row i is a variation of the "
            f"morph of source row i); got {arr.shape}"
        )
    return arr


def _band(up: Any, down: Any, mor: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The band's two variations, checked (None without a band)."""
    if up is None and down is None:
        return None
    if up is None or down is None:
        given, missing = ("up", "down") if down is None else ("down", "up")
        raise ValueError(
            f"{given} was given without {missing}: pass both variations of the band "
            "(Morpher.variations(x) returns them as 'up' and 'down')"
        )
    return _like_morphed(up, "up", mor), _like_morphed(down, "down", mor)


def _members(members: Any, mor: np.ndarray) -> list[np.ndarray] | None:
    """The member morphs, checked (None without members)."""
    if members is None:
        return None
    if isinstance(members, np.ndarray) and members.ndim == 3:
        members = list(members)
    if isinstance(members, Mapping | str | bytes | np.ndarray) or not isinstance(members, Sequence):
        raise ValueError(
            "members must be a list of the K member morphs, each of the shape of morphed "
            f"{mor.shape} (Morpher.variations(x, members=True)); got {type(members).__name__}"
            + (f" of shape {members.shape}" if isinstance(members, np.ndarray) else "")
        )
    if len(members) == 0:
        raise ValueError("members is empty: pass at least one member morph (or None)")
    return [_like_morphed(m, f"members[{k}]", mor) for k, m in enumerate(members)]


def summary_rows(
    summary: Mapping[str, Any],
    features: Sequence[str],
    *,
    names: tuple[str, str, str] = ("source", "morphed", "target"),
) -> list[tuple[str, str]]:
    """``(label, value)`` rows of a printed metrics table for a :func:`summary` dict.

    With an ensemble in the summary the W1 rows also give the band's (``0.300 -> 0.050 (up
    0.060, down 0.070; floor 0.020)``) and the morphed AUC row the members' mean and spread
    (``0.512 +- 0.006 (members 0.515, std 0.004, K=5)``; the first ``+-`` is the null sigma).

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
    rows = [("events (source / target)", f"{summary['n_source']} / {summary['n_target']}")]
    if summary.get("weighted"):
        rows.append(
            (
                "effective events (weighted)",
                f"{summary['n_eff_source']:.0f} / {summary['n_eff_target']:.0f}",
            )
        )
    aucs = summary.get("auc_members")
    if aucs:
        std = summary.get("auc_members_std")
        spread = "" if std is None else f", std {std:.3f}"
        after += f" (members {summary['auc_members_mean']:.3f}{spread}, K={len(aucs)})"
    rows += [
        (f"C2ST AUC {src} vs {tgt}", before),
        (f"C2ST AUC {mor} vs {tgt}", after),
    ]
    band = "w1_up" in summary and "w1_down" in summary
    for j, feature in enumerate(features):
        floor = f"floor {summary['w1_floor'][j]:.3f}"
        if band:
            floor = f"up {summary['w1_up'][j]:.3f}, down {summary['w1_down'][j]:.3f}; {floor}"
        rows.append(
            (
                f"W1/std {feature}",
                f"{summary['w1_before'][j]:.3f} -> {summary['w1_after'][j]:.3f} ({floor})",
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
