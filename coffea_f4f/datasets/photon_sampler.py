"""A photon-like tag-and-probe sampler: shower shapes, isolations and weights, sim and data.

:func:`photons` draws probe photons (the fields in :data:`PHOTON_FIELDS`) from a
physics-motivated parametric model in the spirit of the CMS photon-identification corrections
(arXiv:2403.18582): the conditions :data:`PHOTON_CONDITIONS` (``pt``, ``eta``, ``rho``, ``era``),
the shower-shape and isolation features :data:`PHOTON_FEATURES` and a ``weight``. The ``"sim"``
and ``"data"`` kinds (:data:`PHOTON_KINDS`) differ the way a detector simulation and collision
data do: narrower showers in simulation, by an amount that depends on ``eta``, ``pt`` and
``era``, different isolation zero fractions and pile-up dependences, and different correlations.

Imports only numpy; awkward is imported when :func:`photons` builds its output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from ._checks import _check_n, _unknown_choice

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from collections.abc import Mapping

    import awkward as ak

__all__ = [
    "BARREL_ETA_MAX",
    "ENDCAP_ETA_MAX",
    "ENDCAP_ETA_MIN",
    "ERAS",
    "ERA_FRACTIONS",
    "PHOTON_CONDITIONS",
    "PHOTON_FEATURES",
    "PHOTON_FIELDS",
    "PHOTON_KINDS",
    "PHOTON_ZERO_FRACTIONS",
    "photons",
]

#: The conditions of :func:`photons`: the variables the corrections depend on, in order.
PHOTON_CONDITIONS: tuple[str, ...] = ("pt", "eta", "rho", "era")

#: The shower-shape and isolation features of :func:`photons` (the ones to correct), in order.
PHOTON_FEATURES: tuple[str, ...] = (
    "r9",
    "sieie",
    "etawidth",
    "phiwidth",
    "s4",
    "pho_iso",
    "ch_iso",
)

#: Fields of the records returned by :func:`photons`, in order: conditions, features, weight.
PHOTON_FIELDS: tuple[str, ...] = (*PHOTON_CONDITIONS, *PHOTON_FEATURES, "weight")

#: Valid values of the ``kind`` argument of :func:`photons`.
PHOTON_KINDS: tuple[str, ...] = ("sim", "data")

#: Labels of the data-taking eras; the ``era`` field holds the index into this tuple (0, 1, 2).
ERAS: tuple[str, ...] = ("2022", "2023", "2024")

#: Fraction of the events in each era of :data:`ERAS` (both kinds).
ERA_FRACTIONS: tuple[float, ...] = (0.35, 0.25, 0.40)

#: Largest supercluster ``|eta|`` of the ECAL barrel.
BARREL_ETA_MAX: float = 1.4442

#: Smallest supercluster ``|eta|`` of the ECAL endcaps; the barrel-endcap gap
#: ``BARREL_ETA_MAX <= |eta| < ENDCAP_ETA_MIN`` holds no photons.
ENDCAP_ETA_MIN: float = 1.566

#: Largest supercluster ``|eta|`` (the tracker acceptance).
ENDCAP_ETA_MAX: float = 2.5

#: The model's fraction of events with an isolation of exactly 0.0, per kind and field (the
#: averages over the ``pt``, ``eta``, ``rho`` and ``era`` distributions of :func:`photons`).
PHOTON_ZERO_FRACTIONS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "sim": MappingProxyType({"pho_iso": 0.62, "ch_iso": 0.72}),
        "data": MappingProxyType({"pho_iso": 0.54, "ch_iso": 0.66}),
    }
)

_PT_RANGE = (20.0, 1000.0)  # GeV
_PT_INDEX = 3.0  # dN/dpt ~ pt^-n
_PT_REF = 40.0  # GeV, reference pt of the pt dependences
_RHO_SHAPE = 8.0  # gamma shape of rho
_RHO_MEAN = (24.0, 27.0, 30.0)  # GeV, mean rho in data per era
_RHO_REF = 25.0  # GeV, reference rho of the rho dependences
_BELOW_ONE = float(np.nextafter(1.0, 0.0))  # keeps the Weibull quantiles finite


@dataclass(frozen=True)
class _PhotonParams:
    """Parameters of the photon model for one ``kind`` (see :func:`photons` for the equations)."""

    simulated: bool  # MC: signed NLO-like weights times a pile-up weight; data: weight 1
    rho_scale: float  # mean rho relative to data (a residual pile-up mismatch)
    width_barrel: float  # delta_B, extra shower width at |eta| = 0, pt = 40 GeV
    width_barrel_eta: float  # d delta_B / d (|eta| / 1.4442)^2
    width_endcap: float  # delta_E, extra shower width in the endcaps at pt = 40 GeV
    width_pt: float  # p, the extra width scales as (pt / 40 GeV)^-p
    width_era: float  # extra endcap width per era code (crystal ageing)
    s4_coupling: float  # lambda, share of the 3x3 leakage that also leaks out of the 2x2
    sieie_scale: float  # sieie scale factor (both regions)
    sieie_spread: float  # factor on the log-normal width of sieie
    etawidth_scale: float  # etawidth scale factor
    phiwidth_scale: float  # phiwidth scale factor
    iso_copula: float  # theta of the Clayton copula of the two isolations
    pho_zero: float  # logit of the pho_iso zero probability at rho = 25 GeV, barrel
    pho_zero_rho: float  # d logit / d rho of the pho_iso zero probability (per GeV)
    pho_tail_rho: float  # GeV per GeV of rho in the pho_iso tail scale
    ch_zero: float  # logit of the ch_iso zero probability at rho = 25 GeV
    ch_tail: float  # GeV, ch_iso tail scale at rho = 0
    ch_tail_rho: float  # GeV per GeV of rho in the ch_iso tail scale


_PARAMS: dict[str, _PhotonParams] = {
    # the detector simulation: narrower showers, more isolated photons, weaker pile-up
    # dependence, weaker correlations; pile-up slightly lower (fixed by the weight)
    "sim": _PhotonParams(
        simulated=True,
        rho_scale=0.96,
        width_barrel=0.0,
        width_barrel_eta=0.0,
        width_endcap=0.0,
        width_pt=0.3,
        width_era=0.0,
        s4_coupling=0.80,
        sieie_scale=1.0,
        sieie_spread=1.0,
        etawidth_scale=1.0,
        phiwidth_scale=1.0,
        iso_copula=1.0,
        pho_zero=0.666,
        pho_zero_rho=0.040,
        pho_tail_rho=0.040,
        ch_zero=0.957,
        ch_tail=1.0,
        ch_tail_rho=0.010,
    ),
    # collision data: wider showers, more in the endcaps, at low pt and in later eras
    "data": _PhotonParams(
        simulated=False,
        rho_scale=1.0,
        width_barrel=0.06,
        width_barrel_eta=0.06,
        width_endcap=0.14,
        width_pt=0.3,
        width_era=0.03,
        s4_coupling=0.90,
        sieie_scale=1.005,
        sieie_spread=1.12,
        etawidth_scale=1.02,
        phiwidth_scale=1.04,
        iso_copula=1.6,
        pho_zero=0.410,
        pho_zero_rho=0.060,
        pho_tail_rho=0.055,
        ch_zero=0.686,
        ch_tail=1.1,
        ch_tail_rho=0.016,
    ),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _weibull_tail(u: np.ndarray, p0: np.ndarray, scale: np.ndarray, shape: float) -> np.ndarray:
    """Zero-inflated Weibull by inverse CDF: 0 where ``u < p0``, else the Weibull quantile."""
    v = np.clip((u - p0) / (1.0 - p0), 0.0, _BELOW_ONE)
    tail = scale * (-np.log1p(-v)) ** (1.0 / shape)
    return np.where(u < p0, 0.0, tail)


def _sample_photons(n: int, p: _PhotonParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` probe photons from the model with parameters ``p`` (see :func:`photons`)."""
    # 1. conditions: era, a truncated power-law pt, eta flat outside the gap, gamma rho
    era = rng.choice(len(ERAS), size=n, p=np.asarray(ERA_FRACTIONS))
    lo, hi = (x ** (1.0 - _PT_INDEX) for x in _PT_RANGE)
    pt = (lo - rng.random(n) * (lo - hi)) ** (1.0 / (1.0 - _PT_INDEX))
    abs_eta = rng.random(n) * (ENDCAP_ETA_MAX - (ENDCAP_ETA_MIN - BARREL_ETA_MAX))
    abs_eta = np.where(abs_eta < BARREL_ETA_MAX, abs_eta, abs_eta + ENDCAP_ETA_MIN - BARREL_ETA_MAX)
    eta = np.where(rng.random(n) < 0.5, -abs_eta, abs_eta)
    endcap = abs_eta >= ENDCAP_ETA_MIN
    rho_mean_data = np.asarray(_RHO_MEAN)[era]
    rho = rng.gamma(_RHO_SHAPE, p.rho_scale * rho_mean_data / _RHO_SHAPE)
    lpt = np.log(pt / _PT_REF)
    drho = rho - _RHO_REF

    # 2. weight: NLO-like sign times the pile-up weight p_data(rho) / p_sim(rho)
    if not p.simulated:
        weight = np.ones(n)
    else:
        theta_data = rho_mean_data / _RHO_SHAPE
        theta_sim = p.rho_scale * theta_data
        log_w = _RHO_SHAPE * math.log(p.rho_scale) + rho * (1.0 / theta_sim - 1.0 / theta_data)
        p_neg = 0.03 + 0.02 * np.clip(np.log10(pt / _PT_RANGE[0]), 0.0, 1.0)
        weight = np.where(rng.random(n) < p_neg, -1.0, 1.0) * np.exp(log_w)

    # 3. showering: leakage L out of the 3x3 core, a two-component gamma mixture
    p_show = 0.20 + 0.30 * np.exp(-(((abs_eta - 1.5) / 0.6) ** 2))
    show = rng.random(n) < p_show
    g = np.where(show, rng.gamma(1.5, 0.17, n), rng.gamma(2.0, 0.0225, n))
    g = g * np.where(endcap, 1.3, 1.0)
    extra = np.where(
        endcap,
        p.width_endcap + p.width_era * era,
        p.width_barrel + p.width_barrel_eta * (abs_eta / BARREL_ETA_MAX) ** 2,
    ) * np.exp(-p.width_pt * lpt)
    width = (1.0 + extra) * np.exp(-0.10 * lpt) * (1.0 + 0.004 * drho)
    leak = width * g
    r9 = np.exp(-leak)

    # 4. s4 = E2x2 / E5x5: most of the 3x3 leakage plus its own
    own = width * rng.gamma(2.0, np.where(endcap, 0.05, 0.04), n)
    s4 = np.exp(-(p.s4_coupling * leak + own))

    # 5. sieie and the supercluster widths: log-normal, correlated with the leakage
    sieie0 = np.where(endcap, 0.0250 * (1.0 + 0.05 * (abs_eta - 2.0)), 0.0090)
    spread = np.where(endcap, 0.07, 0.08) * p.sieie_spread
    scale = p.sieie_scale * (1.0 + 0.2 * extra)
    z_sieie = spread * rng.standard_normal(n)
    sieie = sieie0 * scale * np.exp(0.3 * (leak - 0.1) + 0.002 * drho - 0.02 * lpt + z_sieie)
    ew0 = np.where(endcap, 0.026, 0.0095)
    etawidth = (
        ew0
        * p.etawidth_scale
        * (1.0 + 0.25 * extra)
        * np.exp(0.6 * z_sieie + 0.5 * leak + 0.003 * drho + 0.12 * rng.standard_normal(n))
    )
    pw0 = np.where(endcap, 0.022, 0.018)
    phiwidth = (
        pw0
        * p.phiwidth_scale
        * (1.0 + 6.0 * (1.0 - r9))
        * np.exp(-0.25 * lpt + 0.003 * drho + 0.25 * rng.standard_normal(n))
    )

    # 6. isolations: zero-inflated Weibull tails tied by a Clayton copula (gamma frailty)
    frailty = rng.gamma(1.0 / p.iso_copula, 1.0, n)
    u = (1.0 + rng.exponential(1.0, (2, n)) / frailty) ** (-1.0 / p.iso_copula)
    p0_pho = _sigmoid(p.pho_zero - p.pho_zero_rho * drho - 0.3 * endcap)
    scale_pho = (0.5 + p.pho_tail_rho * rho + 0.002 * pt) * (1.0 + 1.5 * (1.0 - r9))
    pho_iso = _weibull_tail(u[0], p0_pho, scale_pho, 0.9)
    p0_ch = _sigmoid(p.ch_zero - 0.01 * drho)
    ch_iso = _weibull_tail(u[1], p0_ch, p.ch_tail + p.ch_tail_rho * rho, 0.8)

    return {
        "pt": pt,
        "eta": eta,
        "rho": rho,
        "era": era,
        "r9": r9,
        "sieie": sieie,
        "etawidth": etawidth,
        "phiwidth": phiwidth,
        "s4": s4,
        "pho_iso": pho_iso,
        "ch_iso": ch_iso,
        "weight": weight,
    }


def photons(n: int, *, kind: str = "sim", seed: int = 0) -> ak.Array:
    """Sample photon-like tag-and-probe probes with shower shapes, isolations and weights.

    A parametric toy in the spirit of the CMS photon-identification corrections
    (arXiv:2403.18582), not a shower simulation: each record is one probe photon (think of the
    probe electron of Z -> ee reconstructed as a photon) with the conditions of
    :data:`PHOTON_CONDITIONS`, the features of :data:`PHOTON_FEATURES` and a ``weight``.
    Below, ``EB`` / ``EE`` is the barrel / endcap, ``[EE]`` is 1 in the endcaps and 0 in the
    barrel, ``l = ln(pt / 40 GeV)``, ``r = rho - 25 GeV``, ``Z_i`` are standard normals, and a
    parameter with a ``sim | data`` value is listed in the table at the end. Per event:

    1. **Conditions.** ``era`` is 0, 1 or 2 (:data:`ERAS`) with probabilities
       :data:`ERA_FRACTIONS` = (0.35, 0.25, 0.40). ``pt`` follows a power law
       ``dN/dpt ~ pt^-3`` on [20, 1000] GeV (inverse CDF; median ~28 GeV, 4% above 100 GeV).
       ``|eta|`` (supercluster eta) is flat on [0, 1.4442) and [1.566, 2.5) (the barrel-endcap
       gap of :data:`BARREL_ETA_MAX`, :data:`ENDCAP_ETA_MIN` is empty; ~61% barrel) with a
       random sign. The pile-up density is ``rho ~ Gamma(k = 8, mean = c_rho mu_era)`` with
       data means ``mu_era`` = (24, 27, 30) GeV.
    2. **Weight.** Data: ``w = 1``. Sim: ``w = s w_pu`` with the pile-up weight
       ``w_pu = c_rho^k exp((1 / c_rho - 1) k rho / mu_era)`` = ``p_data(rho) / p_sim(rho)``
       (so that the weighted sim ``rho`` follows data) and an NLO-like sign ``s = -1`` with
       probability ``0.03 + 0.02 clip(log10(pt / 20 GeV), 0, 1)`` (~3.4% negative weights).
    3. **Shower leakage and r9.** A probe "showers" early (conversion, bremsstrahlung) with the
       material-driven probability ``0.2 + 0.3 exp(-((|eta| - 1.5) / 0.6)^2)``; the leakage
       out of the 3x3 core is ``L = W G`` with ``G ~ Gamma(1.5, scale 0.17)`` if it showers,
       else ``Gamma(2, scale 0.0225)``, times 1.3 in EE, and the width factor
       ``W = (1 + delta) (pt / 40)^-0.1 (1 + 0.004 r)``. The data-over-sim extra width is
       ``delta = (delta_B + delta_B2 (|eta| / 1.4442)^2) (pt / 40)^-0.3`` in EB and
       ``delta = (delta_E + delta_era era) (pt / 40)^-0.3`` in EE: largest in the endcaps, at
       low pt and in later eras (ageing). Then ``r9 = exp(-L)`` in (0, 1]: peaked near
       0.93-0.95 with a long lower tail, lower in EE.
    4. **s4** = E2x2 / E5x5 ``= exp(-(lambda L + W H))``, ``H ~ Gamma(2, scale 0.04 EB / 0.05
       EE)``: correlated with r9 (~0.9), ``lambda`` couples the two.
    5. **sigma_ieta_ieta.** ``sieie = s0 a_s (1 + 0.2 delta) exp(0.3 (L - 0.1) + 0.002 r
       - 0.02 l + sigma_s f_s Z_1)`` with ``s0 = 0.0090`` (EB) and ``0.0250 (1 + 0.05 (|eta|
       - 2))`` (EE), ``sigma_s = 0.08`` (EB) / ``0.07`` (EE).
    6. **Supercluster widths.** ``etawidth = e0 a_e (1 + 0.25 delta) exp(0.6 sigma_s f_s Z_1
       + 0.5 L + 0.003 r + 0.12 Z_2)``, ``e0 = 0.0095`` (EB) / ``0.026`` (EE), correlated with
       sieie; ``phiwidth = p0 a_p (1 + 6 (1 - r9)) (pt / 40)^-0.25 exp(0.003 r + 0.25 Z_3)``,
       ``p0 = 0.018`` (EB) / ``0.022`` (EE), strongly anti-correlated with r9 (~ -0.83).
    7. **Isolations (zero-inflated).** ``(U_1, U_2)`` follow a Clayton copula with parameter
       ``theta_c`` (``V ~ Gamma(1 / theta_c)``, ``U_i = (1 + E_i / V)^(-1 / theta_c)``,
       ``E_i ~ Exp(1)``), so that clean probes tend to have both isolations zero. With
       ``pi_pho = sigmoid(b_pho - c_pho r - 0.3 [EE])`` and
       ``pi_ch = sigmoid(b_ch - 0.01 r)``: ``pho_iso = 0`` exactly if ``U_1 < pi_pho``, else
       the Weibull quantile ``s_pho (-ln(1 - v))^(1 / 0.9)`` at ``v = (U_1 - pi_pho) / (1 -
       pi_pho)`` with ``s_pho = (0.5 + t_pho rho + 0.002 pt) (1 + 1.5 (1 - r9))`` GeV; likewise
       ``ch_iso`` from ``U_2``, ``pi_ch``, shape 0.8 and ``s_ch = a_ch + t_ch rho`` GeV. More
       pile-up means fewer zeros and a longer tail; the zero fractions average to
       :data:`PHOTON_ZERO_FRACTIONS` (sim 0.62 / data 0.54 for ``pho_iso``, 0.72 / 0.66 for
       ``ch_iso``).

    ============================  ===============  ===============
    parameter                     sim              data
    ============================  ===============  ===============
    ``c_rho`` (pile-up scale)     0.96             1
    ``delta_B``, ``delta_B2``     0, 0             0.06, 0.06
    ``delta_E``, ``delta_era``    0, 0             0.14, 0.03
    ``lambda`` (s4)               0.80             0.90
    ``a_s``, ``f_s`` (sieie)      1, 1             1.005, 1.12
    ``a_e``, ``a_p`` (widths)     1, 1             1.02, 1.04
    ``theta_c`` (copula)          1.0              1.6
    ``b_pho``, ``c_pho``          0.666, 0.040     0.410, 0.060
    ``t_pho`` (GeV / GeV)         0.040            0.055
    ``b_ch``                      0.957            0.686
    ``a_ch``, ``t_ch``            1.0, 0.010       1.1, 0.016
    ============================  ===============  ===============

    So simulation has narrower showers (r9 and s4 higher, sieie, etawidth, phiwidth smaller;
    e.g. median r9 higher by ~0.005 in EB and ~0.013 in EE, sieie ~3% / ~5% narrower, more
    at low pt and, in EE, in later eras), more isolated probes with a weaker pile-up
    dependence, and weaker s4-r9 and isolation-isolation couplings; ``rho`` is ~4% lower in
    sim before the weight. The conditions ``pt``, ``eta`` and ``era`` follow the same
    distributions in both kinds.

    Args:
        n: Number of events, a non-negative integer.
        kind: ``"sim"`` or ``"data"`` (see :data:`PHOTON_KINDS`).
        seed: Seed for :func:`numpy.random.default_rng`; the same seed gives identical output.

    Returns:
        An awkward array of ``n`` records with the fields of :data:`PHOTON_FIELDS`: ``era`` as
        int64 codes, all others float64 (``pt``, ``rho`` and the isolations in GeV).

    Raises:
        ValueError: If ``kind`` is not one of :data:`PHOTON_KINDS` or ``n`` is not a
            non-negative integer.

    Example:
        >>> from coffea_f4f import datasets
        >>> probes = datasets.photons(1000, kind="sim", seed=1)
        >>> probes.fields == list(datasets.PHOTON_FIELDS)
        True
        >>> str(probes.era.type.content), str(probes.r9.type.content)
        ('int64', 'float64')
        >>> import numpy as np
        >>> r9, pho_iso = np.asarray(probes.r9), np.asarray(probes.pho_iso)
        >>> bool((r9 > 0).all() and (r9 <= 1).all() and (pho_iso >= 0).all())
        True
        >>> round(float(np.mean(pho_iso == 0.0)), 2)  # about 0.62 (PHOTON_ZERO_FRACTIONS)
        0.62
        >>> bool((np.asarray(datasets.photons(1000, kind="data", seed=1).weight) == 1).all())
        True
    """
    if not isinstance(kind, str) or kind not in _PARAMS:
        raise _unknown_choice("kind", kind, PHOTON_KINDS)
    n = _check_n(n)
    import awkward as ak

    rng = np.random.default_rng(seed)
    columns = _sample_photons(n, _PARAMS[kind], rng)
    out = {}
    for f in PHOTON_FIELDS:
        dtype = np.int64 if f == "era" else np.float64
        out[f] = np.ascontiguousarray(columns[f], dtype=dtype)
    return ak.zip(out, depth_limit=1)
