"""Frozen, validated configuration of flow architectures and of training.

Both dataclasses are keyword-only, have defaults that work on the package's toy and dijet
problems, validate on construction (a bad value raises ``ValueError`` naming the field) and
round-trip through JSON-compatible dicts (``to_dict`` / ``from_dict``), which is how they are
saved inside a model's ``config.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

_T = TypeVar("_T")

__all__ = [
    "COMPACT",
    "FAST",
    "FLOW_KINDS",
    "PAPER",
    "PENALTIES",
    "PRESETS",
    "VARIANTS",
    "FlowConfig",
    "Preset",
    "TrainConfig",
]

FLOW_KINDS = ("autoregressive", "coupling")
#: ``fit_morpher(variant=)``: how the morph is trained (see :mod:`coffea_f4f.train.morph`)
VARIANTS = ("bidirectional", "unidirectional", "base_transfer", "switch")
#: ``fit_morpher(penalty=)``: the movement penalty (None: none)
PENALTIES = (None, "l1", "l2")


class _DictMixin:
    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict of all fields."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def replace(self: _T, **changes: Any) -> _T:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def from_dict(cls: type[_T], d: Mapping[str, Any]) -> _T:
        """Build from a dict; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(names)}")
        return cls(**dict(d))


def _check(cond: bool, cls: str, name: str, value: Any, need: str) -> None:
    if not cond:
        raise ValueError(f"{cls}.{name}={value!r}: {need}")


@dataclass(frozen=True, kw_only=True)
class FlowConfig(_DictMixin):
    """Architecture of one rational-quadratic spline flow (normflows).

    Attributes:
        kind: ``"autoregressive"`` (masked autoregressive spline layers, MADE with residual
            blocks; the paper's choice) or ``"coupling"`` (coupling spline layers).
        layers: number of spline layers (a feature reversal sits between layers).
        hidden: hidden units of each layer's network.
        blocks: residual blocks of each layer's network.
        bins: spline bins.
        tail_bound: the splines act on [-tail_bound, tail_bound] of the standardised space and
            are the identity outside it.
        dropout: dropout probability in the networks.
    """

    kind: Literal["autoregressive", "coupling"] = "autoregressive"
    layers: int = 4
    hidden: int = 64
    blocks: int = 2
    bins: int = 8
    tail_bound: float = 4.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        c = "FlowConfig"
        _check(self.kind in FLOW_KINDS, c, "kind", self.kind, f"choose one of {FLOW_KINDS}")
        for name in ("layers", "hidden", "blocks", "bins"):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 1, c, name, v, "must be an integer >= 1")
        _check(self.tail_bound > 0, c, "tail_bound", self.tail_bound, "must be > 0")
        _check(0 <= self.dropout < 1, c, "dropout", self.dropout, "must be in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(_DictMixin):
    """How a flow is trained (maximum likelihood with Adam).

    Attributes:
        epochs: maximum number of passes over the training data.
        batch_size: events per gradient step.
        lr: peak learning rate of Adam.
        weight_decay: Adam weight decay.
        schedule: ``"cosine"`` (decay to 0 over all steps of ``epochs``) or ``"constant"``.
        grad_clip: max gradient norm (``None``: no clipping).
        val_fraction: share of the events held out for validation and early stopping.
        patience: stop when the validation loss has not improved for this many epochs and
            restore the best state (``None``: run all epochs, keep the best state).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        seed: seeds the data split, the shuffling and the network initialisation.
        progress: show a progress bar (:mod:`coffea_f4f.progress`; ``COFFEA_F4F_PROGRESS=0``
            turns every bar off).
        checkpoint: a file path; the full training state is written there after each epoch.
        resume: continue from ``checkpoint`` if it exists (or from this path, if a string).
        num_threads: torch intra-op threads while training (``None``: leave torch's setting).
        max_events: use at most this many events of each dataset (``None``: all).
    """

    epochs: int = 30
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float | None = 5.0
    val_fraction: float = 0.2
    patience: int | None = 8
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    checkpoint: str | None = None
    resume: bool | str = False
    num_threads: int | None = None
    max_events: int | None = None

    def __post_init__(self) -> None:
        c = "TrainConfig"
        _check(
            isinstance(self.epochs, int) and self.epochs >= 1,
            c,
            "epochs",
            self.epochs,
            "must be an integer >= 1",
        )
        _check(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            c,
            "batch_size",
            self.batch_size,
            "must be an integer >= 1",
        )
        _check(self.lr > 0, c, "lr", self.lr, "must be > 0")
        _check(self.weight_decay >= 0, c, "weight_decay", self.weight_decay, "must be >= 0")
        _check(
            self.schedule in ("cosine", "constant"),
            c,
            "schedule",
            self.schedule,
            "choose 'cosine' or 'constant'",
        )
        _check(
            self.grad_clip is None or self.grad_clip > 0,
            c,
            "grad_clip",
            self.grad_clip,
            "must be > 0 or None",
        )
        _check(
            0 <= self.val_fraction < 1, c, "val_fraction", self.val_fraction, "must be in [0, 1)"
        )
        _check(
            self.patience is None or (isinstance(self.patience, int) and self.patience >= 1),
            c,
            "patience",
            self.patience,
            "must be an integer >= 1 or None",
        )
        _check(
            isinstance(self.device, str)
            and self.device.split(":")[0] in ("auto", "cpu", "cuda", "mps"),
            c,
            "device",
            self.device,
            "use 'auto', 'cpu', 'cuda' or 'cuda:N'",
        )
        _check(isinstance(self.seed, int), c, "seed", self.seed, "must be an integer")
        _check(
            self.num_threads is None or self.num_threads >= 1,
            c,
            "num_threads",
            self.num_threads,
            "must be >= 1 or None",
        )
        _check(
            self.max_events is None or self.max_events >= 1,
            c,
            "max_events",
            self.max_events,
            "must be >= 1 or None",
        )
        _check(
            not (self.resume is True and self.checkpoint is None),
            c,
            "resume",
            self.resume,
            "resume=True needs checkpoint=PATH (or pass the path as resume=PATH)",
        )


@dataclass(frozen=True, kw_only=True)
class Preset:
    """A named, measured set of ``fit_morpher`` settings: both architectures, both trainings
    and the feature scaling. ``fit_morpher(source, target, ..., **FAST.fit_kwargs())``.

    Attributes:
        name: the preset's name (a key of :data:`PRESETS`).
        density: architecture of the two density flows.
        flow: architecture of the morph flow.
        train: training of the morph.
        density_train: training of the densities.
        scaling: the feature scaling kind.
    """

    name: str
    density: FlowConfig
    flow: FlowConfig
    train: TrainConfig
    density_train: TrainConfig
    scaling: str = "standard"

    def fit_kwargs(self, **train_changes: Any) -> dict[str, Any]:
        """Keyword arguments for :func:`coffea_f4f.fit_morpher`; ``train_changes`` (for example
        ``progress=False, num_threads=1, device="cuda"``) replace those fields of both
        trainings."""
        return {
            "density": self.density,
            "flow": self.flow,
            "train": dataclasses.replace(self.train, **train_changes),
            "density_train": dataclasses.replace(self.density_train, **train_changes),
            "scaling": self.scaling,
        }


def _paper_train(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=128, lr=1e-4, patience=None)


#: The paper's LHCO protocol (arXiv:2309.06472): masked autoregressive splines, 128 hidden,
#: 8 bins, tail bound 4; densities 4 layers x 2 blocks for 60 epochs, the morph 8 x 3 for 64
#: (the paper's density epochs; its morph epochs), batch 128, Adam 1e-4 with cosine decay,
#: every epoch run, features min-max scaled to [-3, 3]. Use it with ``identity_init=False``
#: for the paper's random initialisation. About 600 CPU-seconds on 10k + 10k dijets (one thread).
PAPER = Preset(
    name="paper",
    density=FlowConfig(layers=4, hidden=128, blocks=2, bins=8, tail_bound=4.0),
    flow=FlowConfig(layers=8, hidden=128, blocks=3, bins=8, tail_bound=4.0),
    train=_paper_train(64),
    density_train=_paper_train(60),
    scaling="minmax",
)

#: The paper's quality at a fraction of its cost (``benchmarks/time_to_quality.py``): default
#: densities, a coupling morph (one network pass in both directions, so the bidirectional
#: loss's target term costs as much as its source term) trained at batch 256 with Adam 3e-4.
FAST = Preset(
    name="fast",
    density=FlowConfig(),
    flow=FlowConfig(kind="coupling"),
    train=TrainConfig(lr=3e-4, batch_size=256, patience=15),
    density_train=TrainConfig(),
)

#: Compact, centred shapes such as the paper's 2D toys (``benchmarks/toy_pairs.py``): features
#: min-max scaled to [-3, 3] and splines on exactly that interval (tail bound 3) with 16 bins,
#: so that the bins cover the training range and no more, and batch 256 for at most 40 epochs
#: (more steps; early stopping as in the defaults). Not for heavy-tailed features: min-max
#: scaling lets the extreme events squeeze the bulk into a few bins (16 bins made dijets worse).
COMPACT = Preset(
    name="compact",
    density=FlowConfig(bins=16, tail_bound=3.0),
    flow=FlowConfig(bins=16, tail_bound=3.0),
    train=TrainConfig(batch_size=256, epochs=40),
    density_train=TrainConfig(batch_size=256, epochs=40),
    scaling="minmax",
)

#: The presets by name.
PRESETS = {p.name: p for p in (FAST, PAPER, COMPACT)}
