"""Training by maximum likelihood: the fits on a generic loop (:mod:`~coffea_f4f.train.loop`).

:func:`fit_density` (:mod:`~coffea_f4f.train.density`), :func:`fit_morpher`
(:mod:`~coffea_f4f.train.morph`), :func:`fit_condition_morpher`
(:mod:`~coffea_f4f.train.condition`); their shared input handling is
:mod:`~coffea_f4f.train.inputs`.
"""

from .condition import fit_condition_morpher
from .density import fit_density
from .morph import fit_morpher

__all__ = ["fit_condition_morpher", "fit_density", "fit_morpher"]
