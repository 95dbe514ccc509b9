"""FatJet four-vectors for the :func:`~coffea_f4f.datasets.dijet` events and a NanoAOD writer.

:func:`dijet_fatjets` gives each dijet event two jets consistent with its record;
:func:`write_dijet_nanoaod` writes them as a NanoAOD-schema ROOT file. awkward and uproot are
imported only when these functions run.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .dijets import _PARAMS, _sample_dijet, dijet

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import awkward as ak

__all__ = ["dijet_fatjets", "write_dijet_nanoaod"]


def _balanced_pt(mjj, m1, m2, eta1, eta2, dphi) -> np.ndarray:
    """pT of two balanced jets (masses m1, m2, pseudorapidities, azimuth gap) with mass mjj.

    With ``p_i = pT cosh(eta_i)``, ``E_i = sqrt(p_i^2 + m_i^2)``, solves
    ``mjj^2 = m1^2 + m2^2 + 2 (E1 E2 - pT^2 (cos(dphi) + sinh(eta1) sinh(eta2)))`` for ``pT``
    (increasing in ``pT`` for back-to-back jets) by bisection.
    """
    lo, hi = np.zeros_like(mjj), np.array(mjj, dtype=np.float64)
    for _ in range(64):
        pt = 0.5 * (lo + hi)
        e1 = np.hypot(pt * np.cosh(eta1), m1)
        e2 = np.hypot(pt * np.cosh(eta2), m2)
        dot = pt**2 * (np.cos(dphi) + np.sinh(eta1) * np.sinh(eta2))
        low = m1**2 + m2**2 + 2 * (e1 * e2 - dot) < mjj**2
        lo, hi = np.where(low, pt, lo), np.where(low, hi, pt)
    return 0.5 * (lo + hi)


def dijet_fatjets(n: int, *, kind: str = "sim", seed: int = 0) -> tuple[ak.Array, ak.Array]:
    """The events of :func:`dijet` (same ``n``, ``kind``, ``seed``) with their two jets.

    The jets are four-vectors consistent with the event: their invariant mass is ``mjj``,
    their separation is ``delta_r`` (``delta_eta``, ``delta_phi`` of the model), their masses
    are ``mj1`` and ``mj1 + delta_mj``, and ``tau2 / tau1`` is the event's tau21. Both jets
    get the same pT (solved from ``mjj`` and the masses); the pair's rapidity centre and the
    azimuth are drawn from an independent generator, and the harder-looking jet order is
    random (j1, the lighter jet, is first in half of the events).

    Returns:
        ``(events, fatjets)``: the :func:`dijet` records and an ``(n, 2)`` jagged record
        array with fields ``pt, eta, phi, mass, msoftdrop, tau1, tau2``.
    """
    import awkward as ak

    events = dijet(n, kind=kind, seed=seed)
    rng = np.random.default_rng(seed)
    cols = _sample_dijet(n, _PARAMS[kind], rng)  # the same draws: deta and dphi of each event
    extra = np.random.default_rng([seed, 7919])
    m1 = cols["mj1"]
    m2 = cols["mj1"] + cols["delta_mj"]
    deta, dphi = cols["_deta"], cols["_dphi"]
    centre = 0.4 * extra.standard_normal(n)
    sign = np.where(extra.random(n) < 0.5, 1.0, -1.0)
    eta1, eta2 = centre + sign * deta / 2, centre - sign * deta / 2
    pt = _balanced_pt(cols["mjj"], m1, m2, eta1, eta2, dphi)
    phi1 = extra.uniform(-math.pi, math.pi, n)
    phi2 = np.mod(phi1 + dphi + math.pi, 2 * math.pi) - math.pi
    tau1 = extra.uniform(0.15, 0.45, (2, n))
    jet = {
        "pt": np.stack([pt, pt], 1),
        "eta": np.stack([eta1, eta2], 1),
        "phi": np.stack([phi1, phi2], 1),
        "mass": np.stack([m1, m2], 1),
        "msoftdrop": np.stack([m1, m2], 1),
        "tau1": tau1.T,
        "tau2": np.stack([cols["tau21_j1"] * tau1[0], cols["tau21_j2"] * tau1[1]], 1),
    }
    flip = extra.random(n) < 0.5  # random order of the two jets
    for k, v in jet.items():
        jet[k] = np.where(flip[:, None], v[:, ::-1], v)
    counts = np.full(n, 2)
    fatjets = ak.unflatten(ak.zip({k: v.ravel() for k, v in jet.items()}), counts)
    return events, fatjets


def write_dijet_nanoaod(path: str, n: int, *, kind: str = "sim", seed: int = 0) -> ak.Array:
    """Write :func:`dijet_fatjets` events as a NanoAOD-schema ROOT file (needs uproot).

    The ``Events`` TTree holds ``run``, ``luminosityBlock``, ``event`` and a ``FatJet``
    collection (``nFatJet``, ``FatJet_pt/eta/phi/mass/msoftdrop/tau1/tau2``, float32), which
    ``coffea.nanoevents.NanoAODSchema`` reads as four-vectors.

    Returns:
        The truth records of :func:`dijet` for these events.
    """
    import awkward as ak
    import uproot

    events, fatjets = dijet_fatjets(n, kind=kind, seed=seed)
    fields = ("pt", "eta", "phi", "mass", "msoftdrop", "tau1", "tau2")
    fj = ak.zip({f: ak.values_astype(fatjets[f], np.float32) for f in fields})
    with uproot.recreate(path) as f:
        f.mktree(
            "Events",
            {
                "run": np.uint32,
                "luminosityBlock": np.uint32,
                "event": np.uint64,
                "FatJet": fj.type.content,
            },
            counter_name=lambda c: "n" + c,
            field_name=lambda outer, inner: f"{outer}_{inner}",
        )
        if n:
            f["Events"].extend(
                {
                    "run": np.ones(n, np.uint32),
                    "luminosityBlock": np.ones(n, np.uint32),
                    "event": np.arange(1, n + 1, dtype=np.uint64) + np.uint64(seed) * 10**9,
                    "FatJet": fj,
                }
            )
    return events
