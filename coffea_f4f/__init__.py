"""coffea-f4f: morph one HEP dataset into another with normalizing flows (flows for flows).

The package layout (one concept per module) is described in DESIGN-NOTES.md, "Layout".
Importing the package is light: torch, dask and coffea are imported only when a name that
needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .columns import MissingColumnError

# public name -> module that defines it, loaded on first access (the one lazy-import map)
_LAZY_ATTRS = {
    "FlowConfig": "config",
    "TrainConfig": "config",
    "fit_density": "train",
    "fit_morpher": "train",
    "fit_condition_morpher": "train",
    "DensityModel": "density",
    "Morpher": "morpher",
    "load": "morpher",
    "ModelFileError": "fileformat",
    "ConditionClampWarning": "morpher",
    "MorphTransform": "transform",
}
# user-facing submodules (in __all__), loaded on first access
_LAZY_MODULES = ("config", "datasets", "metrics", "plots", "demo")
# the other modules: importable as attributes too, but not part of the promise
_INNER_MODULES = (
    "columns",
    "scaling",
    "flows",
    "maps",
    "density",
    "fileformat",
    "modelcheck",
    "train",
    "morpher",
    "modelcache",
    "transform",
    "cli",
)

__all__ = ["MissingColumnError", "__version__", *_LAZY_ATTRS, *_LAZY_MODULES]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from . import config as config
    from . import datasets as datasets
    from . import demo as demo
    from . import metrics as metrics
    from . import plots as plots
    from .config import FlowConfig as FlowConfig
    from .config import TrainConfig as TrainConfig
    from .density import DensityModel as DensityModel
    from .fileformat import ModelFileError as ModelFileError
    from .morpher import ConditionClampWarning as ConditionClampWarning
    from .morpher import Morpher as Morpher
    from .morpher import load as load
    from .train import fit_condition_morpher as fit_condition_morpher
    from .train import fit_density as fit_density
    from .train import fit_morpher as fit_morpher
    from .transform import MorphTransform as MorphTransform


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(f".{_LAZY_ATTRS[name]}", __name__), name)
    elif name in _LAZY_MODULES or name in _INNER_MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'coffea_f4f' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
