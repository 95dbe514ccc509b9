"""Checkpoints of the training loop: what they hold, what they belong to, reading and writing.

A checkpoint is one ``torch.save`` file, written by :func:`~coffea_f4f.train.loop.run_loop`
atomically (a ``.tmp`` file next to it, then ``os.replace``) after every epoch and once more
when the stage finishes. It holds the module's state dict, the optimiser's and the
scheduler's states, the state of the shuffling generator, the best state so far, the loop
state (epochs run, the training and validation losses per epoch, the best validation loss
and its epoch, the current bad streak, whether the stage finished, the seconds trained) and
the run's :func:`fingerprint`. It is read with ``torch.load(weights_only=True)``: only plain
values and tensors are unpickled. See DESIGN-NOTES.md, "Training loop".

**Checkpoints know what they belong to.** Each holds a :func:`fingerprint` of its run: the
SHA-256 of the rows the loop trains on (every term's training and validation features,
conditions and weights, as the float32 tensors after scaling, split and shuffle, in that
order), the stage, the module's state-dict names, shapes and dtypes, the stage's settings
(flow architecture, variant, penalty...), a SHA-256 of the frozen modules' weights (the base
densities of a morph) and the :data:`TRAJECTORY_FIELDS` of :class:`TrainConfig`. A resume
from a checkpoint whose fingerprint differs raises :class:`CheckpointMismatchError` naming the
path and each difference; ``progress``, ``num_threads``, ``device``, ``checkpoint`` and
``resume`` may change. Two exceptions, because the resumed run then still equals an
uninterrupted one: while a checkpoint is unfinished, ``patience`` may grow (or become None),
and ``epochs`` may change (to at least the epochs already run) when ``schedule="constant"``
(a cosine schedule's length is fixed by ``epochs``). A finished checkpoint resumes only with
the same settings (it holds the best state, not the last one, so it cannot be continued
exactly).

A file that is damaged or not a checkpoint (truncated, random bytes, a dict with missing or
malformed entries, tensors of the wrong shapes) raises :class:`CheckpointError` naming it, as
does a checkpoint without a fingerprint (written before fingerprints existed: it is refused,
since nothing tells what it belongs to). Checkpoint paths are probed before the first epoch
(:func:`check_writable`: the directory is created, and the temporary file written next to the
checkpoint is created and removed), so an unwritable path fails at once rather than after an
epoch. :func:`stage_checkpoint` and :func:`require_checkpoint` map a fit's checkpoint path to
its stages' and check them before the fit trains anything.

This module knows nothing of the loop itself (:mod:`coffea_f4f.train.loop` imports it, not
the other way round): the terms it fingerprints are anything with the ``data`` rows of a
:class:`~coffea_f4f.train.loop.Term`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig

__all__ = [
    "FINGERPRINT_VERSION",
    "TRAJECTORY_FIELDS",
    "CheckpointError",
    "CheckpointMismatchError",
    "check_writable",
    "data_digest",
    "fingerprint",
    "require_checkpoint",
    "stage_checkpoint",
]

#: ``TrainConfig`` fields that change a run's trajectory: a checkpoint's fingerprint holds them
#: and a resume must match them (``patience`` may grow, and ``epochs`` with a constant
#: schedule may change, while the checkpoint is unfinished; see the module docstring)
TRAJECTORY_FIELDS = (
    "seed",
    "batch_size",
    "lr",
    "weight_decay",
    "schedule",
    "grad_clip",
    "epochs",
    "val_fraction",
    "max_events",
    "patience",
)
#: the layout of :func:`fingerprint` (a checkpoint of another layout is refused)
FINGERPRINT_VERSION = 1
_CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "generator", "best_state", "state")
_FINGERPRINT_KEYS = ("version", "stage", "data", "rows", "model", "frozen", "setup", "train")
_STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "epoch": int,
    "train_loss": list,
    "val_loss": list,
    "best_val": (int, float),
    "best_epoch": int,
    "bad_epochs": int,
    "finished": bool,
    "seconds": (int, float),
}
_FRESH = "delete it, choose another checkpoint path, or pass resume=False (which overwrites it)"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged or not a checkpoint, written without a
    fingerprint, of another run (:class:`CheckpointMismatchError`), or a path that cannot be
    written.

    Attributes:
        path: the checkpoint file.
        problem: what is wrong with it (the message without the path).
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"checkpoint {self.path!r} {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (raised in ensemble workers)
        return type(self), (self.path, self.problem)


class CheckpointMismatchError(CheckpointError):
    """The checkpoint was written by another run: other data, architecture or settings.

    Attributes:
        differences: one line per difference (what the checkpoint holds, what this run has).
    """

    def __init__(self, path: str | os.PathLike[str], differences: Sequence[str]) -> None:
        self.differences = list(differences)
        super().__init__(
            path,
            "was written by another run: "
            + "; ".join(self.differences)
            + f". A checkpoint resumes only the run it was written for: {_FRESH}",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.differences)


class _Rows(Protocol):
    """What a fingerprint reads of a :class:`~coffea_f4f.train.loop.Split`."""

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    @property
    def val(self) -> tuple[torch.Tensor, torch.Tensor | None] | None: ...

    @property
    def train_weights(self) -> torch.Tensor | None: ...

    @property
    def val_weights(self) -> torch.Tensor | None: ...


class _Term(Protocol):
    """What a fingerprint reads of a :class:`~coffea_f4f.train.loop.Term`: its rows."""

    @property
    def data(self) -> _Rows: ...


# ----------------------------------------------------------------------------- fingerprints
def _hash_tensor(h: Any, a: torch.Tensor | None) -> None:
    if a is None:
        h.update(b"none;")
        return
    t = a.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)};".encode())
    if t.dtype == torch.bfloat16:  # no numpy form
        t = t.to(torch.float32)
    h.update(np.ascontiguousarray(t.numpy()).data)


def data_digest(terms: Sequence[_Term]) -> str:
    """SHA-256 (hex) of the rows the loop trains on: for every term, its training features,
    conditions and weights, then its validation ones, as the tensors (dtype, shape and bytes)
    after scaling, split and shuffle."""
    h = hashlib.sha256()
    for term in terms:
        d = term.data
        val = d.val if d.val is not None else (None, None)
        for a in (*d.train, d.train_weights, *val, d.val_weights):
            _hash_tensor(h, a)
    return h.hexdigest()


def _modules_digest(modules: Sequence[nn.Module]) -> str:
    """SHA-256 (hex) of the state dicts (names, dtypes, shapes, values) of ``modules``."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in m.state_dict().items():
            h.update(f"{name}:".encode())
            _hash_tensor(h, t)
    return h.hexdigest()


def fingerprint(
    model: nn.Module,
    terms: Sequence[_Term],
    cfg: TrainConfig,
    *,
    stage: str,
    frozen: Sequence[nn.Module] = (),
    setup: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a checkpoint belongs to (see the module docstring).

    Args:
        model: the module being trained (its state-dict names, shapes and dtypes count).
        terms: the likelihood terms (their rows count, see :func:`data_digest`).
        cfg: the training settings (their :data:`TRAJECTORY_FIELDS` count).
        stage: the stage's name.
        frozen: modules the terms use unchanged (their weights count).
        setup: JSON-compatible settings of the stage that shapes cannot show (the
            ``FlowConfig``: ``tail_bound``, ``dropout``...; a morph's variant and penalty).

    Returns:
        A dict of plain values (loadable with ``torch.load(weights_only=True)``).
    """
    return {
        "version": FINGERPRINT_VERSION,
        "stage": stage,
        "data": data_digest(terms),
        "rows": [
            [len(t.data.train[0]), 0 if t.data.val is None else len(t.data.val[0])] for t in terms
        ],
        "model": [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()],
        "frozen": _modules_digest(frozen),
        "setup": json.loads(json.dumps(dict(setup or {}))),
        "train": {f: getattr(cfg, f) for f in TRAJECTORY_FIELDS},
    }


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _architecture_differences(saved: Any, here: Any) -> str:
    """The first differences between two ``[[name, shape, dtype], ...]`` lists."""

    def as_map(entries: Any) -> dict[str, Any]:
        return {str(e[0]): list(e[1:]) for e in entries if isinstance(e, list | tuple) and e}

    def shown(entry: list[Any]) -> str:
        return " ".join(str(v) for v in entry)

    a, b = as_map(saved), as_map(here)
    parts = [f"{k} only in the checkpoint" for k in a if k not in b]
    parts += [f"{k} only here" for k in b if k not in a]
    parts += [
        f"{k}: {shown(a[k])} in the checkpoint, {shown(b[k])} here"
        for k in a
        if k in b and a[k] != b[k]
    ]
    more = f" and {len(parts) - 2} more" if len(parts) > 2 else ""
    return ", ".join(parts[:2]) + more or "the parameters are listed in another order"


_MISSING = object()


def _differences(saved: Mapping[str, Any], here: Mapping[str, Any], state: Mapping) -> list[str]:
    """Each way the checkpoint's fingerprint ``saved`` differs from this run's ``here`` that
    forbids the resume (``state``: the checkpoint's loop state)."""
    out = []
    if saved["version"] != here["version"]:
        return [
            f"fingerprint version {saved['version']!r}, this coffea-f4f writes {here['version']}"
        ]
    if saved["stage"] != here["stage"]:
        out.append(f"stage {saved['stage']!r} in the checkpoint, {here['stage']!r} here")
    if saved["data"] != here["data"]:
        out.append(
            "other training data (SHA-256 of the training and validation rows after scaling, "
            f"split and shuffle: {str(saved['data'])[:12]}... in the checkpoint, "
            f"{here['data'][:12]}... here; [train, validation] rows per term "
            f"{saved['rows']} in the checkpoint, {here['rows']} here)"
        )
    if saved["model"] != here["model"]:
        arch = _architecture_differences(saved["model"], here["model"])
        out.append(f"another architecture ({arch})")
    if saved["frozen"] != here["frozen"]:
        out.append("other frozen modules (the base densities' weights differ)")
    a, b = _flat(saved["setup"]), _flat(here["setup"])
    for key in [*a, *(k for k in b if k not in a)]:
        if a.get(key, _MISSING) != b.get(key, _MISSING):
            out.append(
                f"{key}={a.get(key, 'unset')!r} in the checkpoint, {b.get(key, 'unset')!r} here"
            )
    finished, epoch = state["finished"], state["epoch"]
    old_cfg, new_cfg = saved["train"], here["train"]
    for name in TRAJECTORY_FIELDS:
        old, new = old_cfg.get(name, _MISSING), new_cfg[name]
        if old == new:
            continue
        note = ""
        if name == "patience":
            grows = new is None or (isinstance(old, int) and new >= old)
            if grows and not finished:
                continue  # every bad streak so far was shorter: as if run with it throughout
            note = (
                " (the run has finished; only an unfinished checkpoint may change patience)"
                if finished
                else " (patience may only grow on resume: a bad streak so far may already be "
                "as long as the new one)"
            )
        elif name == "epochs":
            constant = new_cfg["schedule"] == old_cfg.get("schedule") == "constant"
            if constant and not finished and epoch <= new:
                continue
            note = (
                " (the run has finished: its checkpoint holds the best state, not the last, so "
                "it cannot be continued exactly)"
                if finished
                else f" (it has run {epoch} epochs already)"
                if constant
                else " (only schedule='constant' runs may change epochs: a cosine schedule's "
                "length is fixed by them)"
            )
        shown = "unset" if old is _MISSING else repr(old)
        out.append(f"TrainConfig.{name}={shown} in the checkpoint, {new!r} here{note}")
    return out


# ----------------------------------------------------------------------------- reading
def _reason(exc: BaseException) -> str:
    """The exception's type and first sentence (torch's messages run for lines)."""
    text = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _damaged(path: str, what: str) -> CheckpointError:
    return CheckpointError(
        path,
        f"is damaged or not a coffea-f4f checkpoint ({what}); delete it to start afresh",
    )


def _read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint at ``path``, checked for every entry the loop reads (or
    :class:`CheckpointError`). Only plain values and tensors are unpickled
    (``weights_only=True``)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, a refused pickle global, ...
        raise _damaged(path, f"it cannot be read: {_reason(exc)}") from exc
    if not isinstance(ck, dict):
        raise _damaged(path, f"it holds a {type(ck).__name__}, not a dict")
    missing = [k for k in _CHECKPOINT_KEYS if k not in ck]
    if missing:
        raise _damaged(path, f"it has no {', '.join(missing)}")
    if "fingerprint" not in ck:
        raise CheckpointError(
            path,
            "has no fingerprint of the data and settings it was written with (it was written "
            "by coffea-f4f before checkpoints carried one), so nothing tells whether it "
            f"belongs to this run; {_FRESH}",
        )
    fp, state = ck["fingerprint"], ck["state"]
    if not (isinstance(fp, dict) and all(k in fp for k in _FINGERPRINT_KEYS)):
        raise _damaged(path, "its fingerprint is malformed")
    kinds = {"stage": str, "data": str, "frozen": str, "rows": list, "model": list}
    if not (
        all(isinstance(fp[k], kind) for k, kind in kinds.items())
        and isinstance(fp["setup"], dict)
        and isinstance(fp["train"], dict)
    ):
        raise _damaged(path, "its fingerprint is malformed")
    if not isinstance(state, dict):
        raise _damaged(path, "its loop state is not a dict")
    for key, kind in _STATE_KEYS.items():
        value = state.get(key, _MISSING)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _damaged(path, f"its loop state has {key}={value!r}")
    if (
        state["epoch"] < 0
        or not len(state["train_loss"]) == len(state["val_loss"]) == state["epoch"]
    ):
        raise _damaged(path, f"its loop state does not hold {state['epoch']} epochs")
    for key in ("model", "best_state"):
        sd = ck[key]
        if not (
            isinstance(sd, dict)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())
        ):
            raise _damaged(path, f"its {key} is not a state dict")
    if not isinstance(ck["optimizer"], dict) or not isinstance(ck["generator"], torch.Tensor):
        raise _damaged(path, "its optimizer or generator state is malformed")
    if ck["scheduler"] is not None and not isinstance(ck["scheduler"], dict):
        raise _damaged(path, "its scheduler state is malformed")
    return ck


def _restore(
    path: str,
    ck: Mapping[str, Any],
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Load a checked checkpoint into the loop's objects; returns its best state."""
    expected = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    for key in ("model", "best_state"):
        got = [[k, list(v.shape), str(v.dtype)] for k, v in ck[key].items()]
        if got != expected:
            arch = _architecture_differences(got, expected)
            raise _damaged(path, f"its {key} tensors do not fit the model: {arch}")
    if (sched is None) != (ck["scheduler"] is None):
        raise _damaged(path, "its scheduler state does not fit the schedule")
    try:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        for group in opt.param_groups:
            for param in group["params"]:
                for key, value in opt.state.get(param, {}).items():
                    if key != "step" and getattr(value, "shape", param.shape) != param.shape:
                        raise ValueError(f"optimizer {key} of shape {tuple(value.shape)}")
        if sched is not None:
            sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
    except Exception as exc:  # tensors or states that do not fit the loop's objects
        raise _damaged(path, f"it cannot be restored: {_reason(exc)}") from exc
    return dict(ck["best_state"])


def check_writable(path: str | os.PathLike[str]) -> None:
    """Make sure a checkpoint can be written at ``path``: create its directory, then create
    and remove the temporary file the atomic write uses next to it.

    Raises:
        CheckpointError: the directory cannot be created, ``path`` is a directory, or the
            file cannot be written there.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            path, f"cannot be written: its directory cannot be created ({_reason(exc)})"
        ) from exc
    if p.is_dir():
        raise CheckpointError(path, "is a directory; give the path of a file to write")
    tmp = _tmp_path(p)
    try:
        with open(tmp, "wb"):
            pass
        tmp.unlink()
    except OSError as exc:
        raise CheckpointError(
            path, f"cannot be written ({_reason(exc)}); choose a writable location"
        ) from exc


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


# ----------------------------------------------------------------------------- writing
def _save_checkpoint(path, model, opt, sched, gen, best_state, state, fp) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": None if sched is None else sched.state_dict(),
            "generator": gen.get_state(),
            "best_state": best_state,
            "state": state,
            "fingerprint": fp,
        },
        tmp,
    )
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint


# ----------------------------------------------------------------------------- stages
def stage_checkpoint(cfg: TrainConfig, stage: str | None) -> tuple[str | None, TrainConfig]:
    """Checkpoint path of one training stage, and the config with ``resume`` mapped to it.

    ``fit_density`` uses the path as given; the stages of ``fit_morpher`` and
    ``fit_condition_morpher`` append ``.source_density``, ``.target_density``, ``.density``
    and ``.morph`` to it.
    """
    base = cfg.resume if isinstance(cfg.resume, str) else cfg.checkpoint
    if base is None:
        return None, cfg
    path = base if stage is None else f"{base}.{stage}"
    return path, cfg.replace(checkpoint=path, resume=bool(cfg.resume))


def require_checkpoint(*plan: tuple[TrainConfig, Sequence[str | None]]) -> None:
    """Check a fit's checkpoints before it trains anything.

    Args:
        plan: ``(config, stages)`` pairs: the stages each training config runs (e.g. the
            densities with ``density_train``, the morph with ``train``).

    Raises:
        FileNotFoundError: a ``resume=PATH`` and no checkpoint of any of its stages there
            (``resume=True`` may start afresh).
        CheckpointError: a stage's checkpoint path cannot be written (see
            :func:`check_writable`).
    """
    wanted = [(cfg, stage) for cfg, stages in plan for stage in stages]
    resumes = [cfg.resume for cfg, _ in wanted if isinstance(cfg.resume, str)]
    if resumes:
        paths = [
            str(stage_checkpoint(cfg, s)[0]) for cfg, s in wanted if isinstance(cfg.resume, str)
        ]
        if not any(Path(p).is_file() for p in paths):
            raise FileNotFoundError(
                f"resume={resumes[0]!r}: no checkpoint file there (looked for {paths}); use "
                "resume=True with checkpoint=PATH to resume only when a checkpoint exists"
            )
    for path in dict.fromkeys(stage_checkpoint(cfg, s)[0] for cfg, s in wanted):
        if path is not None:
            check_writable(path)
