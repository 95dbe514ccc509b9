"""Built-in data: the 2D toy shapes of the flows-for-flows paper, a parametric dijet sampler
and a photon-like tag-and-probe sampler.

Three samplers, all seeded and fully vectorized with numpy:

- :func:`toy` draws the two-dimensional shapes used in the flows-for-flows paper
  (arXiv:2309.06472), such as ``"star"``, ``"fourcircles"``, ``"checkerboard"``,
  ``"concentricrings"`` and ``"gaussian"``, plus a few extras (see :data:`TOY_NAMES`).
- :func:`dijet` draws LHC-Olympics-R&D-like QCD dijet background events (the fields in
  :data:`DIJET_FIELDS`) from a physics-motivated parametric model. Its ``"sim"`` and ``"data"``
  kinds differ the way two event generators do, with an mjj-dependent difference that goes beyond
  the one-dimensional marginals, so that there is something real to morph.
- :func:`photons` draws photons with conditions (pt, eta, rho, era), shower shapes and
  zero-inflated isolations, sim with signed MC weights (:mod:`~coffea_f4f.datasets.photon_sampler`).

:func:`dijet_fatjets` adds FatJet four-vectors to the :func:`dijet` events and
:func:`write_dijet_nanoaod` writes them as a NanoAOD-schema ROOT file.

Submodules: :mod:`~coffea_f4f.datasets.toys` (the toy shapes), :mod:`~coffea_f4f.datasets.dijets`
(the sampler and the mjj bands :data:`SIGNAL_REGION`, :data:`SIDEBANDS`, :func:`in_bands`) and
:mod:`~coffea_f4f.datasets.nanoaod` (the four-vectors and the writer).

The package imports only numpy; awkward is imported when :func:`dijet` builds its output, and
uproot when :func:`write_dijet_nanoaod` runs.

Example:
    >>> from coffea_f4f import datasets
    >>> datasets.toy("star", 3, seed=1).shape
    (3, 2)
    >>> events = datasets.dijet(1000, kind="data", seed=2)
    >>> events.fields == list(datasets.DIJET_FIELDS)
    True
"""

from __future__ import annotations

from .dijets import DIJET_FIELDS, DIJET_KINDS, SIDEBANDS, SIGNAL_REGION, dijet, in_bands
from .nanoaod import dijet_fatjets, write_dijet_nanoaod
from .photon_sampler import (
    BARREL_ETA_MAX,
    ENDCAP_ETA_MAX,
    ENDCAP_ETA_MIN,
    ERA_FRACTIONS,
    ERAS,
    PHOTON_CONDITIONS,
    PHOTON_FEATURES,
    PHOTON_FIELDS,
    PHOTON_KINDS,
    PHOTON_ZERO_FRACTIONS,
    photons,
)
from .toys import TOY_NAMES, toy

__all__ = [
    "BARREL_ETA_MAX",
    "DIJET_FIELDS",
    "DIJET_KINDS",
    "ENDCAP_ETA_MAX",
    "ENDCAP_ETA_MIN",
    "ERAS",
    "ERA_FRACTIONS",
    "PHOTON_CONDITIONS",
    "PHOTON_FEATURES",
    "PHOTON_FIELDS",
    "PHOTON_KINDS",
    "PHOTON_ZERO_FRACTIONS",
    "SIDEBANDS",
    "SIGNAL_REGION",
    "TOY_NAMES",
    "dijet",
    "dijet_fatjets",
    "in_bands",
    "photons",
    "toy",
    "write_dijet_nanoaod",
]
