"""The generic training loop: split, epochs, validation, early stopping, checkpoints, resume.

It trains any ``nn.Module`` on a sum of likelihood :class:`Term` s and knows nothing of
densities or morphs (those are the fits in :mod:`coffea_f4f.train`). Adam with a cosine
learning-rate schedule per step, gradient clipping, a validation split with early stopping that
restores the best state, a progress bar (:mod:`coffea_f4f.progress`), seeded reproducibility,
a checkpoint after every epoch and an exact resume from it. :func:`train_stage` is the ritual
every stage of a fit goes through. See DESIGN-NOTES.md, "Training loop".

What a checkpoint holds, its fingerprint (what it belongs to, and which settings may change on
resume), the reading, checking and writing of checkpoint files and the probing of their paths
are :mod:`coffea_f4f.train.checkpoint`; its public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import flows
from ..config import TrainConfig
from ..progress import progress_bar
from .checkpoint import (
    FINGERPRINT_VERSION,
    TRAJECTORY_FIELDS,
    CheckpointError,
    CheckpointMismatchError,
    _differences,
    _read_checkpoint,
    _restore,
    _save_checkpoint,
    check_writable,
    data_digest,
    fingerprint,
    require_checkpoint,
    stage_checkpoint,
)

__all__ = [
    "FINGERPRINT_VERSION",
    "TRAJECTORY_FIELDS",
    "Callback",
    "CheckpointError",
    "CheckpointMismatchError",
    "Salt",
    "Split",
    "Term",
    "adam",
    "check_writable",
    "data_digest",
    "epoch_indices",
    "fingerprint",
    "require_checkpoint",
    "run_loop",
    "seeded",
    "split",
    "stage_checkpoint",
    "train_stage",
    "val_loss",
    "weighted_mean",
]

Callback = Callable[[int, dict], Any]


class Salt(enum.IntEnum):
    """Offsets added to ``TrainConfig.seed`` so that every random stream of a fit is its own
    (data splits, network initialisations). The values are part of reproducibility: changing
    one changes trained models."""

    DENSITY = 0
    SOURCE_DENSITY = 1
    TARGET_DENSITY = 2
    MORPH_INIT = 3
    SOURCE_SPLIT = 4
    TARGET_SPLIT = 5
    CONDITION_DENSITY = 6
    CONDITION_MORPH_INIT = 7
    CONDITION_SPLIT = 8
    SWITCH_DENSITY = 9
    BOOTSTRAP = 10
    ENSEMBLE = 11


@dataclass
class Split:
    """The training and validation rows of one dataset (on the training device), and their
    event weights when the dataset is weighted."""

    train: tuple[torch.Tensor, torch.Tensor | None]
    val: tuple[torch.Tensor, torch.Tensor | None] | None
    train_weights: torch.Tensor | None = None
    val_weights: torch.Tensor | None = None

    @functools.cached_property
    def mean_weight(self) -> float:
        """Mean training weight (1 unweighted): the fallback normaliser of a batch whose
        weights sum to <= 0."""
        return 1.0 if self.train_weights is None else float(self.train_weights.mean())


def split(
    x: np.ndarray,
    c: np.ndarray | None,
    cfg: TrainConfig,
    device: str,
    salt: int,
    weights: np.ndarray | None = None,
) -> Split:
    """Shuffle (seeded by ``cfg.seed`` and ``salt``), cap at ``cfg.max_events`` and split off
    ``cfg.val_fraction`` for validation."""
    rng = np.random.default_rng([cfg.seed, int(salt)])
    idx = rng.permutation(len(x))
    if cfg.max_events is not None:
        idx = idx[: cfg.max_events]
    n_val = round(cfg.val_fraction * len(idx))
    if cfg.val_fraction > 0 and len(idx) - n_val < 1:
        raise ValueError(f"too few events ({len(idx)}) for val_fraction={cfg.val_fraction}")

    def t(a: np.ndarray | None, sel: np.ndarray) -> torch.Tensor | None:
        return None if a is None else torch.as_tensor(a[sel], dtype=torch.float32, device=device)

    tr, va = idx[n_val:], idx[:n_val]
    return Split(
        train=(_req(t(x, tr)), t(c, tr)),
        val=(_req(t(x, va)), t(c, va)) if n_val else None,
        train_weights=t(weights, tr),
        val_weights=t(weights, va) if n_val else None,
    )


def _req(a: torch.Tensor | None) -> torch.Tensor:
    assert a is not None
    return a


def weighted_mean(nll: torch.Tensor, w: torch.Tensor | None, fallback: float) -> torch.Tensor:
    """``sum(w * nll) / sum(w)`` of one batch (the plain mean when unweighted). Signed weights
    count with their sign; a batch whose weights sum to <= 0 (possible with many negative
    weights in a small batch) is normalised by ``len(batch) * fallback`` instead (the
    dataset's mean weight), so its gradient keeps the right sign."""
    if w is None:
        return nll.mean()
    total = w.sum()
    norm = total if float(total) > 0 else torch.as_tensor(len(w) * fallback, dtype=nll.dtype)
    return (w * nll).sum() / norm


# ----------------------------------------------------------------------------- loop
@dataclass
class Term:
    """One likelihood term: per-event loss ``fn(x, c)`` on one dataset."""

    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    data: Split


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def epoch_indices(n: int, n_max: int, gen: torch.Generator) -> torch.Tensor:
    """Indices covering all ``n`` events, cycled (fresh permutations) up to ``n_max``."""
    reps = math.ceil(n_max / n)
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])[:n_max]


def val_loss(terms: Sequence[Term], chunk: int = 65536) -> float | None:
    """Sum over the terms of the (weighted) mean validation loss."""
    if any(t.data.val is None for t in terms):
        return None
    total = 0.0
    with torch.no_grad():
        for term in terms:
            assert term.data.val is not None  # checked above
            x, c = term.data.val
            w = term.data.val_weights
            s = 0.0
            for i in range(0, len(x), chunk):
                cc = None if c is None else c[i : i + chunk]
                nll = term.fn(x[i : i + chunk], cc)
                s += float(nll.sum() if w is None else (w[i : i + chunk] * nll).sum())
            total += s / (len(x) if w is None else float(w.sum()))
    return total


def adam(params: Sequence[torch.Tensor], cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with the fused kernel where every parameter allows it (CPU and CUDA floats): one
    kernel per parameter group instead of about ten ops per parameter, the same update up to
    rounding. At the paper's morph size the unfused step took 9.7 ms of a 56 ms training step
    (batch 128, one thread) and the fused one 1.3 ms (``benchmarks/train_speed.py``)."""
    fused = bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
    )
    return torch.optim.Adam(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True if fused else None
    )


def run_loop(
    model: torch.nn.Module,
    terms: Sequence[Term],
    cfg: TrainConfig,
    *,
    desc: str,
    checkpoint: str | None,
    callback: Callback | None = None,
    gen_hook: Callable[[torch.Generator], None] | None = None,
    frozen: Sequence[nn.Module] = (),
    setup: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model``'s trainable parameters on the sum of the terms' mean losses.

    Args:
        model: the module to train.
        terms: the likelihood terms (their data split on the training device).
        cfg: the training settings (``cfg.resume``: resume from ``checkpoint``, or from the
            path it names).
        desc: progress bar label, also the stage name in the checkpoint's fingerprint.
        checkpoint: where to write the training state after every epoch (None: nowhere).
        callback: ``callback(epoch, logs)`` after each epoch; True stops.
        gen_hook: given the shuffling generator (restored on resume) before training.
        frozen: modules the terms use unchanged (part of the fingerprint).
        setup: settings of the stage for the fingerprint (see :func:`fingerprint`).

    Returns:
        The history: losses per epoch, best epoch, epochs run, timing.

    Raises:
        CheckpointError: the checkpoint path cannot be written, or the checkpoint to resume
            from is damaged, has no fingerprint, or belongs to another run
            (:class:`CheckpointMismatchError`); all before the first epoch.
        FloatingPointError: the training loss became NaN or infinite.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adam(params, cfg)
    n_max = max(len(t.data.train[0]) for t in terms)
    steps = math.ceil(n_max / cfg.batch_size)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
        if cfg.schedule == "cosine"
        else None
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    state: dict[str, Any] = {
        "epoch": 0,
        "train_loss": [],
        "val_loss": [],
        "best_val": math.inf,
        "best_epoch": -1,
        "bad_epochs": 0,
        "finished": False,
        "seconds": 0.0,
    }
    best_state = copy.deepcopy(model.state_dict())

    if checkpoint:
        check_writable(checkpoint)  # before the first epoch, not after it
    resume_from = (
        cfg.resume if isinstance(cfg.resume, str) else (checkpoint if cfg.resume else None)
    )
    resuming = bool(resume_from) and Path(str(resume_from)).is_file()
    fp = (
        fingerprint(model, terms, cfg, stage=desc, frozen=frozen, setup=setup)
        if checkpoint or resuming
        else None
    )
    if resuming:
        assert fp is not None
        assert isinstance(resume_from, str)
        ck = _read_checkpoint(resume_from)
        differences = _differences(ck["fingerprint"], fp, ck["state"])
        if differences:
            raise CheckpointMismatchError(resume_from, differences)
        best_state = _restore(resume_from, ck, model, opt, sched, gen)
        state.update(ck["state"])
    if gen_hook is not None:  # terms that draw random numbers use the checkpointed generator
        gen_hook(gen)

    n_param = flows.count_parameters(model)
    bar = progress_bar(
        cfg.epochs * steps,
        initial=state["epoch"] * steps,
        desc=desc,
        unit="step",
        show=cfg.progress,
    )
    bar.set_postfix_str(f"{n_param} params")
    t_start = time.perf_counter() - state["seconds"]
    try:
        while state["epoch"] < cfg.epochs and not state["finished"]:
            model.train()
            orders = [epoch_indices(len(t.data.train[0]), n_max, gen) for t in terms]
            run, count = 0.0, 0
            for s in range(steps):
                loss = torch.zeros(())
                for term, order in zip(terms, orders, strict=True):
                    sel = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                    x, c = term.data.train
                    w = term.data.train_weights
                    sel = sel.to(x.device)
                    nll = term.fn(x[sel], None if c is None else c[sel])
                    batch_w = None if w is None else w[sel]
                    loss = loss + weighted_mean(nll, batch_w, term.data.mean_weight)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{desc}: the training loss became {float(loss)} at epoch "
                        f"{state['epoch'] + 1}; lower TrainConfig.lr or check the scaling of "
                        "extreme feature values"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                if sched is not None:
                    sched.step()
                run += loss.item()
                count += 1
                bar.update(1)
            model.eval()
            train_loss = run / max(count, 1)
            val = val_loss(terms)
            state["epoch"] += 1
            state["train_loss"].append(train_loss)
            state["val_loss"].append(val)
            monitor = val if val is not None else train_loss
            if monitor < state["best_val"]:
                state["best_val"], state["best_epoch"], state["bad_epochs"] = (
                    monitor,
                    state["epoch"],
                    0,
                )
                best_state = copy.deepcopy(model.state_dict())
            else:
                state["bad_epochs"] += 1
            if cfg.patience is not None and val is not None and state["bad_epochs"] >= cfg.patience:
                state["finished"] = True
                state["stopped_early"] = True
            state["seconds"] = time.perf_counter() - t_start
            bar.set_postfix_str(
                f"epoch {state['epoch']}/{cfg.epochs} loss {train_loss:.4f}"
                + (f" val {val:.4f}" if val is not None else "")
            )
            if checkpoint:  # before the callback: an exception there loses no epoch
                _save_checkpoint(checkpoint, model, opt, sched, gen, best_state, state, fp)
            if callback is not None and callback(state["epoch"], dict(state)):
                state["finished"] = True
    finally:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    state["finished"] = True
    if checkpoint:
        _save_checkpoint(checkpoint, model, opt, sched, gen, best_state, state, fp)
    return {
        "train_loss": state["train_loss"],
        "val_loss": state["val_loss"],
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "stopped_early": bool(state.get("stopped_early", False)),
        "seconds": state["seconds"],
        "events_per_second": (
            state["epoch"] * sum(len(t.data.train[0]) for t in terms) / max(state["seconds"], 1e-9)
        ),
    }


def train_stage(
    build: Callable[[], nn.Module],
    make_terms: Callable[[nn.Module, str], Sequence[Term]],
    cfg: TrainConfig,
    *,
    stage: str | None,
    desc: str,
    salt: Salt,
    callback: Callback | None = None,
    gen_hook: Callable[[torch.Generator], None] | None = None,
    frozen: Sequence[nn.Module] = (),
    setup: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """One stage of a fit: build the module under its seed, move it (and the ``frozen``
    modules it uses, e.g. base densities) to the device, train it with the stage's
    checkpoint and thread count, and bring everything back to the CPU.

    Args:
        build: makes the module to train (called under ``seed + salt``).
        make_terms: ``(module, device) -> terms`` (the data split lives on the device).
        cfg: the stage's training settings.
        stage: checkpoint suffix (``None``: the checkpoint path as given).
        desc: progress bar label.
        salt: the stage's seed offset.
        callback, gen_hook: passed to :func:`run_loop`.
        frozen: modules the terms use that must follow the module's device (their weights
            are part of the checkpoint's fingerprint).
        setup: the stage's settings for the checkpoint's fingerprint (JSON-compatible: the
            ``FlowConfig`` as a dict, a morph's variant and penalty...).

    Returns:
        The trained module (best state, eval mode, on the CPU) and its history.

    Raises:
        CheckpointError: see :func:`run_loop`.
    """
    device = flows.resolve_device(cfg.device)
    with seeded(cfg.seed + int(salt)):
        module = build()
    for m in (module, *frozen):
        m.to(device)
    try:
        terms = make_terms(module, device)
        ckpt, stage_cfg = stage_checkpoint(cfg, stage)
        with flows.torch_threads(cfg.num_threads):
            history = run_loop(
                module,
                terms,
                stage_cfg,
                desc=desc,
                checkpoint=ckpt,
                callback=callback,
                gen_hook=gen_hook,
                frozen=frozen,
                setup=setup,
            )
    finally:
        for m in (module, *frozen):
            m.to("cpu")
    return module, history
