"""The parametric LHCO-like dijet sampler and the mjj bands.

:func:`dijet` draws LHC-Olympics-R&D-like QCD dijet background events (the fields in
:data:`DIJET_FIELDS`) from a physics-motivated parametric model, in a ``"sim"`` and a ``"data"``
kind (:data:`DIJET_KINDS`). :func:`in_bands` selects events in the mjj bands such as
:data:`SIGNAL_REGION` and :data:`SIDEBANDS`.

Imports only numpy; awkward is imported when :func:`dijet` builds its output.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._checks import _check_n, _unknown_choice

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import awkward as ak

__all__ = [
    "DIJET_FIELDS",
    "DIJET_KINDS",
    "SIDEBANDS",
    "SIGNAL_REGION",
    "dijet",
    "in_bands",
]

#: Fields of the records returned by :func:`dijet`, in order.
DIJET_FIELDS: tuple[str, ...] = ("mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r")

#: Valid values of the ``kind`` argument of :func:`dijet`.
DIJET_KINDS: tuple[str, ...] = ("sim", "data")

#: The LHCO-style signal region in mjj, ``(low, high)`` in GeV.
SIGNAL_REGION: tuple[float, float] = (3300.0, 3700.0)

#: The two mjj sidebands around :data:`SIGNAL_REGION`, each ``(low, high)`` in GeV.
SIDEBANDS: tuple[tuple[float, float], tuple[float, float]] = (
    (2900.0, 3300.0),
    (3700.0, 4100.0),
)


_SQRT_S = 13000.0  # GeV
_PT_MIN = 1100.0  # GeV, leading-jet threshold that shapes the low-mjj turn-on
_ETA_CAP = 2.6  # largest |delta eta| between the two jets
_MJJ_RANGE = (2 * _PT_MIN, 9000.0)
_JET_R = 1.0  # large-R jet radius
_CF, _CA = 4.0 / 3.0, 3.0
_B0 = (33.0 - 2.0 * 5.0) / (12.0 * math.pi)  # one-loop beta-function coefficient, 5 flavours
_LAMBDA_QCD = 0.09  # GeV, one-loop Lambda giving alpha_s(1.5 TeV) ~ 0.084
_M_NP_SPREAD = 0.3  # log-normal spread of the non-perturbative mass
_DPHI_MIN = 2.0  # smallest delta phi: two well separated R = 1 jets


@dataclass(frozen=True)
class _DijetParams:
    """Parameters of the dijet model for one ``kind`` (see :func:`dijet` for the equations)."""

    p1: float  # dijet-function exponent of (1 - x)
    p2: float  # dijet-function exponent of 1 / x
    phi_recoil: float  # mean of pi - delta phi in radians (radiation recoil)
    gluon_fraction: float  # probability that a jet is gluon-initiated
    sudakov_kappa: float  # scales the Sudakov width s = kappa sqrt(pi / (alpha_s C))
    mass_corr: float  # rho_m, shared fraction of the two jets' Sudakov variables
    mass_scale: float  # xi_0, jet-mass scale at pT = 1.5 TeV
    mass_scale_slope: float  # xi_1, d xi / d ln(pT / 1.5 TeV)
    m_np: float  # GeV, median non-perturbative mass added in quadrature
    tau_alpha: float  # logit(tau21) at m = 100 GeV, pT = 1.5 TeV, quark jet
    tau_beta: float  # d logit(tau21) / d ln m
    tau_gamma: float  # d logit(tau21) / d ln(pT / 1.5 TeV)
    tau_alpha_mjj: float  # d logit(tau21) / d ln(mjj / 3.5 TeV) (generator-dependent)
    tau_gluon: float  # logit(tau21) shift for gluon jets
    tau_sigma: float  # logit-space width of tau21
    tau_corr: float  # rho_tau, shared fraction of the two jets' tau21 noise


_PARAMS: dict[str, _DijetParams] = {
    # a Pythia-like reference
    "sim": _DijetParams(
        p1=10.0,
        p2=4.5,
        phi_recoil=0.12,
        gluon_fraction=0.5,
        sudakov_kappa=0.58,
        mass_corr=0.30,
        mass_scale=0.62,
        mass_scale_slope=0.0,
        m_np=15.0,
        tau_alpha=0.45,
        tau_beta=-0.5,
        tau_gamma=0.25,
        tau_alpha_mjj=0.0,
        tau_gluon=0.10,
        tau_sigma=0.45,
        tau_corr=0.20,
    ),
    # a Herwig-like alternative ("data"): a slightly steeper mjj spectrum and more recoil; a
    # narrower jet-mass distribution whose scale grows with pT (so the shift depends on mjj)
    # and a larger hadronization mass; a steeper tau21-mass slope, a narrower tau21 with an
    # mjj-dependent offset and a larger gluon shift; stronger jet-jet correlations
    "data": _DijetParams(
        p1=10.0,
        p2=4.6,
        phi_recoil=0.14,
        gluon_fraction=0.5,
        sudakov_kappa=0.56,
        mass_corr=0.45,
        mass_scale=0.6,
        mass_scale_slope=0.12,
        m_np=20.0,
        tau_alpha=0.49,
        tau_beta=-0.6,
        tau_gamma=0.3,
        tau_alpha_mjj=0.15,
        tau_gluon=0.2,
        tau_sigma=0.4,
        tau_corr=0.5,
    ),
}


def _alpha_s(q: np.ndarray) -> np.ndarray:
    """One-loop running coupling at scale ``q`` (GeV)."""
    return 1.0 / (_B0 * np.log(q**2 / _LAMBDA_QCD**2))


def _eta_max(mjj: np.ndarray) -> np.ndarray:
    """Largest |delta eta| with both jets above the pT threshold at LO: mjj = 2 pT cosh(deta/2)."""
    ratio = np.maximum(mjj / (2 * _PT_MIN), 1.0)
    return np.minimum(2.0 * np.arccosh(ratio), _ETA_CAP)


def _mjj_density(m: np.ndarray, p: _DijetParams) -> np.ndarray:
    """Unnormalized mjj density: dijet function times the angular (chi) acceptance."""
    x = m / _SQRT_S
    acceptance = np.expm1(_eta_max(m)) / math.expm1(_ETA_CAP)
    return (1.0 - x) ** p.p1 * x ** (-p.p2) * acceptance


@functools.lru_cache(maxsize=8)
def _mjj_inverse_cdf(p: _DijetParams) -> tuple[np.ndarray, np.ndarray]:
    """Tabulate the mjj CDF on a fine grid (trapezoid rule) for inverse-CDF sampling."""
    grid = np.linspace(*_MJJ_RANGE, 8193)
    dens = _mjj_density(grid, p)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    return cdf / cdf[-1], grid


def _sample_dijet(n: int, p: _DijetParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` events from the model with parameters ``p`` (see :func:`dijet`)."""
    # 1. dijet invariant mass: inverse CDF of the tabulated density (linear within grid cells)
    cdf, grid = _mjj_inverse_cdf(p)
    mjj = np.interp(rng.random(n), cdf, grid)

    # 2. angles: chi = exp|deta| flat up to chi_max(mjj); pi - dphi from radiation recoil
    chi = 1.0 + rng.random(n) * np.expm1(_eta_max(mjj))
    deta = np.log(chi)
    span = math.pi - _DPHI_MIN
    dphi = _DPHI_MIN + span * np.exp(-rng.exponential(p.phi_recoil, size=n) / span)
    delta_r = np.hypot(deta, dphi)

    # 3. jet transverse momentum (balanced at LO)
    pt = mjj / (2.0 * np.cosh(0.5 * deta))
    lpt = np.log(pt / 1500.0)

    # 4. jet masses from a Sudakov form factor: L = ln(pT^2 R^2 / m^2) is Rayleigh(s) with
    #    s^2 = kappa^2 pi / (alpha_s(pT) C); the Rayleigh pairs share a gaussian component
    gluon = rng.random((2, n)) < p.gluon_fraction
    colour = np.where(gluon, _CA, _CF)
    s = p.sudakov_kappa * np.sqrt(math.pi / (_alpha_s(pt) * colour))
    shared = rng.standard_normal((2, n))
    own = rng.standard_normal((2, 2, n))
    g = math.sqrt(p.mass_corr) * shared + math.sqrt(1.0 - p.mass_corr) * own
    big_l = s * np.hypot(g[:, 0], g[:, 1])
    xi = p.mass_scale + p.mass_scale_slope * lpt
    m_pert = xi * pt * _JET_R * np.exp(-0.5 * big_l)
    m_np = p.m_np * np.exp(_M_NP_SPREAD * rng.standard_normal((2, n)))
    mass = np.sqrt(m_pert**2 + m_np**2)

    # 5. tau21: logit-normal with a mean falling with jet mass; noise partly shared per event
    noise = math.sqrt(p.tau_corr) * rng.standard_normal(n) + math.sqrt(
        1.0 - p.tau_corr
    ) * rng.standard_normal((2, n))
    logit = (
        p.tau_alpha
        + p.tau_alpha_mjj * np.log(mjj / 3500.0)
        + p.tau_beta * np.log(mass / 100.0)
        + p.tau_gamma * lpt
        + p.tau_gluon * gluon
        + p.tau_sigma * noise
    )
    tau21 = np.clip(1.0 / (1.0 + np.exp(-logit)), 1e-6, 1.0 - 1e-6)

    # 6. order the two jets by mass: j1 is the lighter one
    swap = mass[0] > mass[1]
    mj1 = np.where(swap, mass[1], mass[0])
    mj2 = np.where(swap, mass[0], mass[1])
    tau_j1 = np.where(swap, tau21[1], tau21[0])
    tau_j2 = np.where(swap, tau21[0], tau21[1])
    return {
        "mjj": mjj,
        "mj1": mj1,
        "delta_mj": mj2 - mj1,
        "tau21_j1": tau_j1,
        "tau21_j2": tau_j2,
        "delta_r": delta_r,
        "_deta": deta,
        "_dphi": dphi,
    }


def dijet(n: int, *, kind: str = "sim", seed: int = 0) -> ak.Array:
    """Sample LHC-Olympics-R&D-like QCD dijet background events.

    The model mimics the LHC Olympics 2020 R&D background (QCD dijets at 13 TeV, anti-kt
    R = 1.0 jets, leading jet pT above ~1.2 TeV) closely enough for morphing studies; it is a
    parametric toy, not a shower simulation. Per event:

    1. **Dijet mass.** ``mjj`` follows the dijet function times the angular acceptance,
       ``f(mjj) ~ (1 - x)^p1 x^-p2 (chi_max(mjj) - 1)``, with ``x = mjj / 13 TeV`` and
       ``chi_max = exp(eta_max)``, ``eta_max = min(2 arccosh(mjj / (2 pT_min)), 2.6)``,
       ``pT_min = 1.1 TeV``, on [2.2, 9] TeV, sampled by inverse CDF. The acceptance makes the
       turn-on near 2.2-2.5 TeV; the spectrum then falls steeply (tail beyond 5 TeV).
    2. **Angles.** ``chi = exp|delta_eta|`` is flat on ``[1, chi_max(mjj)]`` (the Rutherford-like
       QCD angular distribution). The recoil against extra radiation ``X ~ Exp(phi_recoil)``
       gives ``delta_phi = 2 + (pi - 2) exp(-X / (pi - 2))`` (~ ``pi - X`` for small ``X``,
       never below 2 for two separated R = 1 jets), and
       ``delta_r = hypot(delta_eta, delta_phi)``: peaked near 3.1-3.2, floor ~2.7, tail to ~4.
    3. **Jet pT.** Both jets get the leading-order ``pT = mjj / (2 cosh(delta_eta / 2))``.
    4. **Jet masses (Sudakov).** Each jet is a gluon with probability ``f_g`` (colour factor
       ``C = C_A``), else a quark (``C = C_F``). The double-log Sudakov form factor
       ``P(rho' < rho) = exp(-alpha_s C / (2 pi) ln^2 rho)`` for ``rho = m^2 / (pT R)^2`` makes
       ``L = -ln rho`` Rayleigh distributed with scale ``s = kappa sqrt(pi / (alpha_s(pT) C))``
       (one-loop running ``alpha_s``). ``L_i = s_i |g_i|`` with ``g_i`` a 2D gaussian
       ``sqrt(rho_m) W + sqrt(1 - rho_m) A_i``; the shared ``W`` correlates the two jets'
       masses. Then ``m_i = sqrt((xi(pT) pT R exp(-L_i / 2))^2 + m_np,i^2)``, with mass scale
       ``xi(pT) = xi_0 + xi_1 ln(pT / 1.5 TeV)`` and a log-normal hadronization mass
       ``m_np,i``. Masses therefore grow with pT (and so with mjj) and stay below ``pT R``.
    5. **N-subjettiness.** ``logit(tau21_i) = alpha + alpha_mjj ln(mjj / 3.5 TeV)
       + beta ln(m_i / 100 GeV) + gamma ln(pT / 1.5 TeV) + delta_g [gluon]
       + sigma (sqrt(rho_tau) V + sqrt(1 - rho_tau) E_i)`` with ``beta < 0`` (heavier jets
       have lower tau21, as for a DDT-like ``ln(m^2 / pT)`` dependence), standard normal ``V``
       shared by the two jets and ``E_i`` per jet; ``tau21`` is strictly inside (0, 1).
    6. **Ordering.** ``j1`` is the lighter jet: ``mj1 = min(m_1, m_2)``,
       ``delta_mj = max - min >= 0``, ``tau21_j1`` and ``tau21_j2`` follow their jets.

    Typical medians: ``mjj`` ~ 2.8 TeV, ``mj1`` ~ 115 GeV, ``delta_mj`` ~ 120-135 GeV,
    ``tau21_j1`` ~ 0.60, ``tau21_j2`` ~ 0.49, ``delta_r`` ~ 3.17.

    ``"sim"`` (Pythia-like) and ``"data"`` (Herwig-like) share the model but not its
    parameters: ``data`` has a slightly steeper mjj spectrum, a narrower jet-mass distribution
    with a scale that rises with pT (``xi_1 > 0``, so the mass shift grows with mjj) and a larger
    hadronization mass, a steeper and narrower tau21 with an mjj-dependent offset
    (``alpha_mjj``) and a larger gluon shift, and stronger mass and tau21 correlations between
    the jets. Matching each one-dimensional distribution separately therefore does not make
    the two kinds agree. A gradient-boosted classifier separates 10k vs 10k events with an AUC
    of about 0.60, and still about 0.57 after a per-feature quantile mapping of sim onto data.

    Args:
        n: Number of events, a non-negative integer.
        kind: ``"sim"`` or ``"data"`` (see :data:`DIJET_KINDS`).
        seed: Seed for :func:`numpy.random.default_rng`; the same seed gives identical output.

    Returns:
        An awkward array of ``n`` records with the float64 fields of :data:`DIJET_FIELDS`.

    Raises:
        ValueError: If ``kind`` is not one of :data:`DIJET_KINDS` or ``n`` is not a
            non-negative integer.
    """
    if not isinstance(kind, str) or kind not in _PARAMS:
        raise _unknown_choice("kind", kind, DIJET_KINDS)
    n = _check_n(n)
    import awkward as ak

    rng = np.random.default_rng(seed)
    columns = _sample_dijet(n, _PARAMS[kind], rng)
    return ak.zip(
        {f: np.ascontiguousarray(columns[f], dtype=np.float64) for f in DIJET_FIELDS},
        depth_limit=1,
    )


def in_bands(
    mjj: np.ndarray | Sequence[float],
    bands: tuple[float, float] | Sequence[tuple[float, float]],
) -> np.ndarray:
    """Select events whose mjj lies in one band or in any of several bands.

    Each band ``(low, high)`` is half-open, ``low <= mjj < high``.

    Args:
        mjj: Dijet masses in GeV (anything :func:`numpy.asarray` accepts, e.g. ``events.mjj``).
        bands: One ``(low, high)`` pair such as :data:`SIGNAL_REGION`, or a sequence of pairs
            such as :data:`SIDEBANDS`.

    Returns:
        A boolean mask with the shape of ``mjj``.

    Raises:
        ValueError: If a band does not have ``low < high``.
    """
    values = np.asarray(mjj, dtype=np.float64)
    arr = np.asarray(bands, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"bands must be (low, high) or a sequence of such pairs, got {bands!r}")
    mask = np.zeros(values.shape, dtype=bool)
    for low, high in arr:
        if not low < high:
            raise ValueError(f"band ({low}, {high}) must have low < high")
        mask |= (values >= low) & (values < high)
    return mask
