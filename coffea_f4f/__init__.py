"""coffea-f4f: morph one HEP dataset into another with normalizing flows (flows for flows).

The package map (one module per concept; see DESIGN-NOTES.md):

- :mod:`coffea_f4f.columns`   awkward / mapping <-> (N, D) arrays, validation
- :mod:`coffea_f4f.scaling`   invertible per-feature preprocessing (numpy only)
- :mod:`coffea_f4f.config`    :class:`FlowConfig`, :class:`TrainConfig`
- :mod:`coffea_f4f.flows`     normflows builders and :class:`~coffea_f4f.flows.FlowAsBase`
- :mod:`coffea_f4f.train`     :func:`fit_density`, :func:`fit_morpher`,
  :func:`fit_condition_morpher`
- :mod:`coffea_f4f.morpher`   :class:`Morpher` (the trained artefact) and :func:`load`
- :mod:`coffea_f4f.transform` :class:`MorphTransform` for coffea processors
- :mod:`coffea_f4f.metrics`   two-sample AUC, Wasserstein, transport ratio
- :mod:`coffea_f4f.plots`     hist + mplhep comparison plots
- :mod:`coffea_f4f.datasets`  toy shapes and a dijet sampler

Importing the package is light: torch, dask and coffea are imported only when an attribute
that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .columns import MissingColumnError

# attribute -> module that defines it (loaded on first access)
_LAZY_ATTRS = {
    "FlowConfig": "config",
    "TrainConfig": "config",
    "fit_density": "train",
    "fit_morpher": "train",
    "fit_condition_morpher": "train",
    "DensityModel": "train",
    "Morpher": "morpher",
    "load": "morpher",
    "MorphTransform": "transform",
}
_LAZY_MODULES = (
    "columns",
    "scaling",
    "config",
    "flows",
    "train",
    "morpher",
    "transform",
    "metrics",
    "plots",
    "datasets",
    "cli",
)

__all__ = ["__version__", "MissingColumnError", *_LAZY_ATTRS, *_LAZY_MODULES]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from . import datasets, metrics, plots  # noqa: F401
    from .config import FlowConfig, TrainConfig  # noqa: F401
    from .morpher import Morpher, load  # noqa: F401
    from .train import DensityModel, fit_condition_morpher, fit_density, fit_morpher  # noqa: F401
    from .transform import MorphTransform  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        module = importlib.import_module(f".{_LAZY_ATTRS[name]}", __name__)
        value = getattr(module, name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'coffea_f4f' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
