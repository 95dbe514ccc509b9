"""Write small generated NanoAOD-schema ROOT files for tests and tutorials.

The files hold a TTree ``Events`` written with uproot's ``mktree`` (NanoAOD branch naming:
``nFatJet`` counters and ``FatJet_pt`` fields), so that ``NanoAODSchema`` builds the usual
collections with their behaviours and cross-references:

- ``run``, ``luminosityBlock``, ``event`` (event numbers unique and increasing from
  ``first_event``);
- ``FatJet``: ``pt``, ``eta``, ``phi``, ``mass``, ``msoftdrop``, ``tau1``, ``tau2``, ``tau3``,
  ``jetId``, ``subJetIdx1``, ``subJetIdx2`` (indices into ``SubJet``, -1 when absent); sorted
  by descending pt;
- ``SubJet``: ``pt``, ``eta``, ``phi``, ``mass``;
- ``Jet``: ``pt``, ``eta``, ``phi``, ``mass``, ``jetId``, ``btagDeepFlavB``.

Values are loosely realistic (GeV): falling pt spectra, masses with a W/top-like bump,
``msoftdrop <= mass`` and ``0 < tau3 < tau2 < tau1``. Floats are float32 as in NanoAOD.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

__all__ = ["write_nanoaod"]

_BASKET = 20_000  # events per basket


def _jagged(counts: np.ndarray, flat: dict[str, np.ndarray]) -> ak.Array:
    return ak.unflatten(ak.zip(flat, depth_limit=1), counts)


def _fatjets(rng: np.random.Generator, n_events: int, max_fatjets: int, mass_shift: float):
    counts = np.minimum(rng.poisson(1.6, n_events), max_fatjets).astype(np.int64)
    n = int(counts.sum())
    pt = 200.0 + rng.exponential(150.0, n)
    # sort by descending pt inside each event, as NanoAOD does
    event_of = np.repeat(np.arange(n_events), counts)
    order = np.lexsort((-pt, event_of))
    pt = pt[order]
    eta = rng.uniform(-2.4, 2.4, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    kind = rng.uniform(size=n)
    mass = np.where(
        kind < 0.25,
        rng.normal(80.0 + mass_shift, 8.0, n),
        np.where(
            kind < 0.4, rng.normal(172.0 + mass_shift, 12.0, n), rng.gamma(2.0, 25.0, n) + 10.0
        ),
    )
    mass = np.clip(mass, 5.0, None)
    msoftdrop = mass * rng.uniform(0.55, 1.0, n)
    tau1 = rng.uniform(0.05, 0.6, n)
    tau2 = tau1 * rng.beta(5.0, 3.0, n).clip(0.05, 0.98)
    tau3 = tau2 * rng.beta(5.0, 2.0, n).clip(0.05, 0.98)
    jet_id = rng.choice(np.array([2, 6], dtype=np.int32), n)
    # zero, one or two subjets per fat jet; global numbering is done per event below
    n_sub = rng.choice(np.array([0, 1, 2]), n, p=[0.1, 0.2, 0.7])
    return (
        counts,
        {
            "pt": pt,
            "eta": eta,
            "phi": phi,
            "mass": mass,
            "msoftdrop": msoftdrop,
            "tau1": tau1,
            "tau2": tau2,
            "tau3": tau3,
            "jetId": jet_id,
        },
        n_sub,
        event_of,
    )


def _subjets(
    rng: np.random.Generator,
    n_events: int,
    fj: dict[str, np.ndarray],
    n_sub: np.ndarray,
    event_of: np.ndarray,
):
    sub_counts = np.bincount(event_of, weights=n_sub, minlength=n_events).astype(np.int64)
    # local index of the first subjet of each fat jet within its event
    starts_global = np.cumsum(n_sub) - n_sub
    event_start = np.cumsum(sub_counts) - sub_counts
    first_local = starts_global - event_start[event_of]
    idx1 = np.where(n_sub >= 1, first_local, -1).astype(np.int32)
    idx2 = np.where(n_sub >= 2, first_local + 1, -1).astype(np.int32)
    parent = np.repeat(np.arange(len(n_sub)), n_sub)
    share = rng.uniform(0.3, 0.7, len(parent))
    k = np.arange(len(parent)) - (np.cumsum(n_sub) - n_sub)[parent]
    frac = np.where((n_sub[parent] == 1), 0.95, np.where(k == 0, share, 1 - share))
    sub = {
        "pt": fj["pt"][parent] * frac,
        "eta": fj["eta"][parent] + rng.normal(0, 0.2, len(parent)),
        "phi": fj["phi"][parent] + rng.normal(0, 0.2, len(parent)),
        "mass": fj["mass"][parent] * frac * rng.uniform(0.2, 0.5, len(parent)),
    }
    return sub_counts, sub, idx1, idx2


def _jets(rng: np.random.Generator, n_events: int):
    counts = rng.poisson(4.0, n_events).astype(np.int64)
    n = int(counts.sum())
    event_of = np.repeat(np.arange(n_events), counts)
    pt = 15.0 + rng.exponential(40.0, n)
    order = np.lexsort((-pt, event_of))
    pt = pt[order]
    return counts, {
        "pt": pt,
        "eta": rng.uniform(-4.7, 4.7, n),
        "phi": rng.uniform(-np.pi, np.pi, n),
        "mass": pt * rng.uniform(0.04, 0.25, n),
        "jetId": rng.choice(np.array([2, 6], dtype=np.int32), n),
        "btagDeepFlavB": rng.beta(0.4, 2.0, n),
    }


def _f32(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v if v.dtype.kind == "i" else v.astype(np.float32) for k, v in d.items()}


def write_nanoaod(
    path: str | Path,
    n_events: int = 1000,
    *,
    seed: int = 0,
    first_event: int = 1,
    max_fatjets: int = 4,
    mass_shift: float = 0.0,
    jets: bool = True,
) -> Path:
    """Write a generated NanoAOD-schema ROOT file and return its path.

    Args:
        path: the ``.root`` file to write (parent directories are created).
        n_events: number of events.
        seed: random seed (the same arguments always give the same file content).
        first_event: the ``event`` number of the first event (numbers increase by one).
        max_fatjets: at most this many FatJets per event (0 to 4 typically; some events have
            fewer than two, some none).
        mass_shift: GeV added to the W/top-like mass peaks (to make "sim" and "data" differ).
        jets: also write the ``Jet`` collection (off: a smaller file, e.g. for benchmarks).

    Returns:
        The path written.
    """
    rng = np.random.default_rng(seed)
    fj_counts, fj, n_sub, event_of = _fatjets(rng, n_events, max_fatjets, mass_shift)
    sub_counts, sub, idx1, idx2 = _subjets(rng, n_events, fj, n_sub, event_of)
    fj = {**fj, "subJetIdx1": idx1, "subJetIdx2": idx2}
    jet_counts, jet = _jets(rng, n_events)  # drawn even when not written: same FatJets
    events = np.arange(first_event, first_event + n_events, dtype=np.uint64)
    data = {
        "run": np.ones(n_events, dtype=np.uint32),
        "luminosityBlock": (1 + (events - first_event) // 100).astype(np.uint32),
        "event": events,
        "FatJet": _jagged(fj_counts, _f32(fj)),
        "SubJet": _jagged(sub_counts, _f32(sub)),
    }
    if jets:
        data["Jet"] = _jagged(jet_counts, _f32(jet))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with uproot.recreate(path) as f:
        f.mktree(
            "Events",
            {k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in data.items()},
            counter_name=lambda c: "n" + c,
            field_name=lambda outer, inner: f"{outer}_{inner}",
        )
        for start in range(0, n_events, _BASKET):  # several baskets, as real files have
            f["Events"].extend({k: v[start : start + _BASKET] for k, v in data.items()})
    return path
