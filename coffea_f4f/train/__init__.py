"""Training by maximum likelihood: the fits (:mod:`~coffea_f4f.train.fits`) on a generic loop
(:mod:`~coffea_f4f.train.loop`)."""

from .fits import fit_condition_morpher, fit_density, fit_morpher

__all__ = ["fit_condition_morpher", "fit_density", "fit_morpher"]
