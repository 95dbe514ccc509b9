"""Training: density flows, morph flows and between-condition morphs, by maximum likelihood.

- :func:`fit_density` learns ``q(x | c)`` of one dataset.
- :func:`fit_morpher` learns a map from a source to a target dataset. Both densities are learned
  (or supplied), frozen, and used as base distributions of one morph flow ``M`` (source ->
  target):

  * ``bidirectional`` (default): source events through ``M`` must be likely under the target
    density, and target events through ``M^-1`` likely under the source density. Every event
    of both datasets is used in every epoch (the smaller one is cycled).
  * ``unidirectional``: only the target term (``M^-1`` of target events under the source
    density).
  * ``base_transfer``: no morph flow: encode with the source density flow, decode with the
    target density flow.

  ``penalty="l1"|"l2"`` adds ``penalty_weight`` times the mean L1 / squared L2 distance moved
  (in the scaled space) to each term. ``identity_init=True`` starts ``M`` as the exact identity.
- :func:`fit_condition_morpher` learns, on one dataset, a map between condition values.

The loop: Adam, cosine learning-rate schedule per step, gradient clipping, a validation split
with early stopping that restores the best state, a tqdm progress bar, seeded reproducibility,
a checkpoint after every epoch and resume from it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import flows
from .columns import condition_vector, to_matrix
from .config import FlowConfig, TrainConfig
from .morpher import DensityModel, Morpher, _resolve_device
from .scaling import Scaler

VARIANTS = ("bidirectional", "unidirectional", "base_transfer")
PENALTIES = (None, "l1", "l2")
Callback = Callable[[int, dict], Any]

__all__ = [
    "fit_density",
    "fit_morpher",
    "fit_condition_morpher",
    "DensityModel",
    "Morpher",
    "VARIANTS",
]


# ----------------------------------------------------------------------------- inputs
def _check_names(features: Sequence[str], condition: str | None) -> list[str]:
    if isinstance(features, str):
        raise TypeError(f"features must be a list of field names, got the string {features!r}")
    features = list(features)
    if not features:
        raise ValueError("features is empty: name at least one field to morph")
    dupes = sorted({f for f in features if features.count(f) > 1})
    if dupes:
        raise ValueError(f"features listed more than once: {dupes}")
    if condition is not None:
        if not isinstance(condition, str):
            raise TypeError(
                f"condition must be one field name, got {condition!r}; a multi-dimensional "
                "condition is not supported"
            )
        if condition in features:
            raise ValueError(f"{condition!r} is both a feature and the condition")
    return features


def _extract(data: Any, features: list[str], condition: str | None, what: str):
    """Feature matrix and condition column of one training dataset, validated."""
    x, _ = to_matrix(data, features, what=f"{what} feature")
    c = None
    if condition is not None:
        c = condition_vector(condition, len(x), condition, data=data)
        if len(c) != len(x):
            raise ValueError(
                f"{what}: condition {condition!r} has {len(c)} values but the features have "
                f"{len(x)} rows (jagged features need an event-level condition broadcast first)"
            )
    if len(x) < 2:
        raise ValueError(f"{what} has {len(x)} events; at least 2 are needed to train")
    return x, c


@dataclass
class _Split:
    train: tuple[torch.Tensor, torch.Tensor | None]
    val: tuple[torch.Tensor, torch.Tensor | None] | None


def _split(x, c, cfg: TrainConfig, device: str, salt: int) -> _Split:
    rng = np.random.default_rng([cfg.seed, salt])
    idx = rng.permutation(len(x))
    if cfg.max_events is not None:
        idx = idx[: cfg.max_events]
    n_val = int(round(cfg.val_fraction * len(idx)))
    if cfg.val_fraction > 0 and len(idx) - n_val < 1:
        raise ValueError(f"too few events ({len(idx)}) for val_fraction={cfg.val_fraction}")

    def t(a, sel):
        return None if a is None else torch.as_tensor(a[sel], dtype=torch.float32, device=device)

    tr, va = idx[n_val:], idx[:n_val]
    return _Split(train=(t(x, tr), t(c, tr)), val=(t(x, va), t(c, va)) if n_val else None)


# ----------------------------------------------------------------------------- loop
@dataclass
class _Term:
    """One likelihood term: per-event loss ``fn(x, c)`` on one dataset."""

    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    data: _Split


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _device(cfg: TrainConfig) -> str:
    return _resolve_device(cfg.device)


def _epoch_indices(n: int, n_max: int, gen: torch.Generator) -> torch.Tensor:
    """Indices covering all ``n`` events, cycled (fresh permutations) up to ``n_max``."""
    reps = math.ceil(n_max / n)
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])[:n_max]


def _val_loss(terms: Sequence[_Term], chunk: int = 65536) -> float | None:
    if any(t.data.val is None for t in terms):
        return None
    total = 0.0
    with torch.no_grad():
        for term in terms:
            x, c = term.data.val
            s = 0.0
            for i in range(0, len(x), chunk):
                cc = None if c is None else c[i:i + chunk]
                s += float(term.fn(x[i:i + chunk], cc).sum())
            total += s / len(x)
    return total


def _run_loop(
    model: torch.nn.Module,
    terms: Sequence[_Term],
    cfg: TrainConfig,
    *,
    desc: str,
    checkpoint: str | None,
    callback: Callback | None = None,
    gen_hook: Callable[[torch.Generator], None] | None = None,
) -> dict[str, Any]:
    """Train ``model``'s trainable parameters on the sum of the terms' mean losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_max = max(len(t.data.train[0]) for t in terms)
    steps = math.ceil(n_max / cfg.batch_size)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
        if cfg.schedule == "cosine" else None
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    state: dict[str, Any] = {
        "epoch": 0, "train_loss": [], "val_loss": [], "best_val": math.inf, "best_epoch": -1,
        "bad_epochs": 0, "finished": False, "seconds": 0.0,
    }
    best_state = copy.deepcopy(model.state_dict())

    resume_from = cfg.resume if isinstance(cfg.resume, str) else (
        checkpoint if cfg.resume else None)
    if resume_from and Path(resume_from).is_file():
        ck = torch.load(resume_from, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if sched is not None and ck.get("scheduler"):
            sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        best_state = ck["best_state"]
        state.update(ck["state"])
    if gen_hook is not None:  # terms that draw random numbers use the checkpointed generator
        gen_hook(gen)

    n_param = flows.count_parameters(model)
    bar = tqdm(total=cfg.epochs * steps, initial=state["epoch"] * steps, desc=desc,
               disable=not cfg.progress, unit="step", dynamic_ncols=True, leave=True)
    bar.set_postfix_str(f"{n_param} params")
    t_start = time.perf_counter() - state["seconds"]
    try:
        while state["epoch"] < cfg.epochs and not state["finished"]:
            model.train()
            orders = [_epoch_indices(len(t.data.train[0]), n_max, gen) for t in terms]
            run, count = 0.0, 0
            for s in range(steps):
                loss = 0.0
                for term, order in zip(terms, orders, strict=True):
                    sel = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                    x, c = term.data.train
                    sel = sel.to(x.device)
                    loss = loss + term.fn(x[sel], None if c is None else c[sel]).mean()
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
            val = _val_loss(terms)
            state["epoch"] += 1
            state["train_loss"].append(train_loss)
            state["val_loss"].append(val)
            monitor = val if val is not None else train_loss
            if monitor < state["best_val"]:
                state["best_val"], state["best_epoch"], state["bad_epochs"] = (
                    monitor, state["epoch"], 0)
                best_state = copy.deepcopy(model.state_dict())
            else:
                state["bad_epochs"] += 1
            if (cfg.patience is not None and val is not None
                    and state["bad_epochs"] >= cfg.patience):
                state["finished"] = True
                state["stopped_early"] = True
            state["seconds"] = time.perf_counter() - t_start
            bar.set_postfix_str(
                f"epoch {state['epoch']}/{cfg.epochs} loss {train_loss:.4f}"
                + (f" val {val:.4f}" if val is not None else "")
            )
            if checkpoint:  # before the callback: an exception there loses no epoch
                _save_checkpoint(checkpoint, model, opt, sched, gen, best_state, state)
            if callback is not None and callback(state["epoch"], dict(state)):
                state["finished"] = True
    finally:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    state["finished"] = True
    if checkpoint:
        _save_checkpoint(checkpoint, model, opt, sched, gen, best_state, state)
    return {
        "train_loss": state["train_loss"], "val_loss": state["val_loss"],
        "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
        "stopped_early": bool(state.get("stopped_early", False)),
        "seconds": state["seconds"], "events_per_second": (
            state["epoch"] * sum(len(t.data.train[0]) for t in terms) / max(state["seconds"],
                                                                            1e-9)),
    }


def _save_checkpoint(path, model, opt, sched, gen, best_state, state) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({
        "model": model.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": None if sched is None else sched.state_dict(),
        "generator": gen.get_state(), "best_state": best_state, "state": state,
    }, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint


def _stage_checkpoint(cfg: TrainConfig, stage: str | None) -> tuple[str | None, TrainConfig]:
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


def _require_checkpoint(cfg: TrainConfig, stages: Sequence[str | None]) -> None:
    """``resume=PATH`` must find a checkpoint (``resume=True`` may start afresh)."""
    if not isinstance(cfg.resume, str):
        return
    paths = [cfg.resume if s is None else f"{cfg.resume}.{s}" for s in stages]
    if not any(Path(p).is_file() for p in paths):
        raise FileNotFoundError(
            f"resume={cfg.resume!r}: no checkpoint file there (looked for {paths}); use "
            "resume=True with checkpoint=PATH to resume only when a checkpoint exists"
        )


# ----------------------------------------------------------------------------- densities
def _fit_scalers(xs, cs, features, condition, scaling):
    scaler = Scaler.fit(np.concatenate(xs), features, scaling)
    cscaler = None
    if condition is not None:
        cscaler = Scaler.fit(np.concatenate(cs), [condition], "standard")
    return scaler, cscaler


def _train_density(x, c, *, features, condition, scaler, cscaler, flow_cfg, cfg, desc,
                   stage, callback, salt) -> DensityModel:
    device = _device(cfg)
    z = scaler.forward(x)
    cz = None if c is None else cscaler.forward(c)
    data = _split(z, cz, cfg, device, salt)
    with _seeded(cfg.seed + salt):
        model = flows.build_density_flow(len(features), flow_cfg,
                                         context_dim=0 if c is None else 1)
    model.to(device)

    def nll(xb, cb):
        return -flows.log_prob(model, xb, cb)

    ckpt, cfg = _stage_checkpoint(cfg, stage)
    previous = flows.set_torch_threads(cfg.num_threads)
    try:
        history = _run_loop(model, [_Term(nll, data)], cfg, desc=desc, checkpoint=ckpt,
                            callback=callback)
    finally:
        flows.set_torch_threads(previous)
    model.to("cpu")
    return DensityModel(features=features, condition=condition, flow=model, scaler=scaler,
                        condition_scaler=cscaler, config=flow_cfg, history=history)


def fit_density(
    data: Any,
    *,
    features: Sequence[str],
    condition: str | None = None,
    flow: FlowConfig = FlowConfig(),
    train: TrainConfig = TrainConfig(),
    scaling: str | Mapping[str, Any] = "standard",
    callback: Callback | None = None,
) -> DensityModel:
    """Learn the density ``q(x | c)`` of one dataset by maximum likelihood.

    Args:
        data: awkward records, a mapping of field -> array, or an ``(N, D)`` array.
        features: field names to model, in order.
        condition: a field name to condition on (one value per event), or None.
        flow: the flow architecture.
        train: the training settings.
        scaling: preprocessing per feature (see :mod:`coffea_f4f.scaling`).
        callback: called after each epoch as ``callback(epoch, logs)``; returning True stops.

    Returns:
        A frozen :class:`~coffea_f4f.morpher.DensityModel` (``log_prob``, ``sample``).

    Raises:
        MissingColumnError, ValueError, TypeError: bad input (named field, count, shape).
    """
    features = _check_names(features, condition)
    _require_checkpoint(train, [None])
    x, c = _extract(data, features, condition, "data")
    scaler, cscaler = _fit_scalers([x], [c] if c is not None else None, features, condition,
                                   scaling)
    return _train_density(x, c, features=features, condition=condition, scaler=scaler,
                          cscaler=cscaler, flow_cfg=flow, cfg=train, desc="density",
                          stage=None, callback=callback, salt=0)


def _check_density(d: DensityModel | None, features, condition, name: str) -> None:
    if d is None:
        return
    if not isinstance(d, DensityModel):
        raise TypeError(f"{name} must be a DensityModel from fit_density, got {type(d).__name__}")
    if list(d.features) != list(features):
        raise ValueError(f"{name} was trained on features {d.features}, not {list(features)}; "
                         "the order matters too")
    if d.condition != condition:
        raise ValueError(f"{name} has condition {d.condition!r}, the morph {condition!r}")


# ----------------------------------------------------------------------------- morphers
def _range(*conditions: np.ndarray | None) -> list[float] | None:
    """``[min, max]`` over the training conditions (None when unconditional)."""
    cs = [c for c in conditions if c is not None]
    if not cs:
        return None
    both = np.concatenate(cs)
    return [float(both.min()), float(both.max())]


def _movement(y: torch.Tensor, x: torch.Tensor, penalty: str | None) -> torch.Tensor | None:
    if penalty is None:
        return None
    d = y - x
    return d.abs().sum(1) if penalty == "l1" else (d * d).sum(1)


def fit_morpher(
    source: Any,
    target: Any,
    *,
    features: Sequence[str],
    condition: str | None = None,
    variant: str = "bidirectional",
    penalty: str | None = None,
    penalty_weight: float = 0.0,
    identity_init: bool = True,
    density: FlowConfig = FlowConfig(),
    flow: FlowConfig = FlowConfig(),
    train: TrainConfig = TrainConfig(),
    source_density: DensityModel | None = None,
    target_density: DensityModel | None = None,
    scaling: str | Mapping[str, Any] = "standard",
    density_train: TrainConfig | None = None,
    callback: Callback | None = None,
) -> Morpher:
    """Learn a map that moves source events onto the target distribution (flows for flows).

    Args:
        source, target: awkward records, mappings of field -> array, or ``(N, D)`` arrays.
        features: field names to morph, in order.
        condition: a field present in both, each event is morphed at its own value (the same
            condition on both sides), or None.
        variant: ``"bidirectional"`` (default), ``"unidirectional"`` or ``"base_transfer"``.
        penalty: None, ``"l1"`` or ``"l2"``: penalise the distance moved (scaled space).
        penalty_weight: weight of the penalty (> 0 when a penalty is set).
        identity_init: start the morph flow as the exact identity.
        density: architecture of the density flows trained here.
        flow: architecture of the morph flow.
        train: training settings of the morph (and of the densities unless ``density_train``).
        source_density, target_density: already trained densities (from :func:`fit_density`)
            to use instead of training new ones; their own scalings are bridged exactly.
        scaling: preprocessing of the morph space, fitted on source and target together.
        density_train: training settings of the densities (default: ``train``).
        callback: called after each epoch of each stage as ``callback(epoch, logs)``.

    Returns:
        A :class:`~coffea_f4f.morpher.Morpher`.
    """
    features = _check_names(features, condition)
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: choose one of {VARIANTS}")
    if penalty not in PENALTIES:
        raise ValueError(f"penalty={penalty!r}: choose one of {PENALTIES}")
    if penalty is not None and not penalty_weight > 0:
        raise ValueError(f"penalty={penalty!r} needs penalty_weight > 0")
    if penalty_weight < 0:
        raise ValueError("penalty_weight must be >= 0")
    if penalty is not None and variant == "base_transfer":
        raise ValueError("a movement penalty has no effect on base_transfer (nothing is trained)")
    _check_density(source_density, features, condition, "source_density")
    _check_density(target_density, features, condition, "target_density")
    dtrain = density_train or train
    _require_checkpoint(train, ["source_density", "target_density", "morph"])

    xs, cs = _extract(source, features, condition, "source")
    xt, ct = _extract(target, features, condition, "target")
    scaler, cscaler = _fit_scalers(
        [xs, xt], None if condition is None else [cs, ct], features, condition, scaling)

    densities = {}
    for name, x, c, given, salt in (("source_density", xs, cs, source_density, 1),
                                    ("target_density", xt, ct, target_density, 2)):
        densities[name] = given if given is not None else _train_density(
            x, c, features=features, condition=condition, scaler=scaler, cscaler=cscaler,
            flow_cfg=density, cfg=dtrain, desc=name.replace("_", " "), stage=name,
            callback=callback, salt=salt)
    q_s, q_t = densities["source_density"], densities["target_density"]
    cdim = 0 if condition is None else 1

    if variant == "base_transfer":
        spec = {"kind": "base_transfer", "dim": len(features), "context_dim": cdim,
                "source": q_s.config.to_dict(), "target": q_t.config.to_dict()}
        module = build_base_transfer(q_s, q_t, spec)
        return Morpher(
            features=features, condition=condition, module=module, spec=spec,
            scaler=q_s.scaler, target_scaler=q_t.scaler,
            condition_scaler=q_s.condition_scaler, variant=variant,
            history={"source_density": q_s.history, "target_density": q_t.history},
            source_density=q_s, target_density=q_t,
            info={"identity_init": False, "condition_range": _range(cs, ct)},
        )

    device = _device(train)
    base_t = flows.FlowAsBase(q_t.flow, here=scaler, there=q_t.scaler,
                              here_context=cscaler, there_context=q_t.condition_scaler).to(device)
    base_s = flows.FlowAsBase(q_s.flow, here=scaler, there=q_s.scaler,
                              here_context=cscaler, there_context=q_s.condition_scaler).to(device)
    spec = {"kind": "flow", "dim": len(features), "context_dim": cdim, "flow": flow.to_dict()}
    from .morpher import FlowMap

    with _seeded(train.seed + 3):
        module = FlowMap(flows.build_layers(len(features), flow, context_dim=cdim,
                                            identity_init=identity_init), context_dim=cdim)
    module.to(device)

    def forward_term(x, c):  # source -> target, scored by the target density
        y, ld = flows.to_base(module, x, c)
        loss = -(base_t.log_prob(y, c) + ld)
        move = _movement(y, x, penalty)
        return loss if move is None else loss + penalty_weight * move

    def inverse_term(x, c):  # target -> source, scored by the source density
        y, ld = flows.from_base(module, x, c)
        loss = -(base_s.log_prob(y, c) + ld)
        move = _movement(y, x, penalty)
        return loss if move is None else loss + penalty_weight * move

    zs = scaler.forward(xs)
    zt = scaler.forward(xt)
    czs = None if cs is None else cscaler.forward(cs)
    czt = None if ct is None else cscaler.forward(ct)
    terms = [_Term(inverse_term, _split(zt, czt, train, device, 5))]
    if variant == "bidirectional":
        terms.insert(0, _Term(forward_term, _split(zs, czs, train, device, 4)))
    ckpt, mcfg = _stage_checkpoint(train, "morph")
    previous = flows.set_torch_threads(train.num_threads)
    try:
        history = _run_loop(module, terms, mcfg, desc=f"morph ({variant})", checkpoint=ckpt,
                            callback=callback)
    finally:
        flows.set_torch_threads(previous)
    for m in (module, base_s, base_t):  # the densities' flows live inside the bases
        m.to("cpu")
    return Morpher(
        features=features, condition=condition, module=module, spec=spec, scaler=scaler,
        condition_scaler=cscaler, variant=variant,
        history={"morph": history, "source_density": q_s.history,
                 "target_density": q_t.history},
        source_density=q_s, target_density=q_t,
        info={"penalty": penalty, "penalty_weight": penalty_weight,
              "identity_init": identity_init, "condition_range": _range(cs, ct)},
    )


def build_base_transfer(q_s: DensityModel, q_t: DensityModel, spec: dict[str, Any]):
    """The base-transfer map of two densities (copies of their flows).

    When the densities scale the condition differently (trained apart with
    :func:`fit_density`), the spec records both scalings and the map converts the condition.
    """
    from .morpher import build_map

    if (q_s.condition_scaler is not None
            and not q_s.condition_scaler.same_as(q_t.condition_scaler)):
        spec["context_bridge"] = [q_s.condition_scaler.to_dict(),
                                  q_t.condition_scaler.to_dict()]
    module = build_map(spec)
    module.source.load_state_dict(q_s.flow.state_dict())
    module.target.load_state_dict(q_t.flow.state_dict())
    return module


def fit_condition_morpher(
    data: Any,
    *,
    features: Sequence[str],
    condition: str,
    density: FlowConfig = FlowConfig(),
    flow: FlowConfig = FlowConfig(),
    train: TrainConfig = TrainConfig(),
    density_model: DensityModel | None = None,
    scaling: str | Mapping[str, Any] = "standard",
    density_train: TrainConfig | None = None,
    callback: Callback | None = None,
) -> Morpher:
    """Learn, on one dataset, a map between condition values (CURTAINs-F4F).

    A conditional density ``q(x | c)`` is learned (or supplied as ``density_model``) and frozen.
    The morph is one conditional flow ``g(x; c)`` (identity-initialised); the map from ``a``
    to ``b`` is ``T(x; a, b) = g^-1(g(x; a); b)``, trained so that ``T(x; a, b)`` of events at
    ``a`` is likely under ``q(. | b)`` for ``b`` drawn from the other events' conditions. By
    construction ``T(.; b, a)`` is the exact inverse of ``T(.; a, b)``.

    Apply with ``morpher.morph(x, condition=a, target_condition=b)``.
    """
    if condition is None:
        raise ValueError("fit_condition_morpher needs condition= (the field to morph between)")
    features = _check_names(features, condition)
    _check_density(density_model, features, condition, "density_model")
    _require_checkpoint(train, ["density", "morph"])
    x, c = _extract(data, features, condition, "data")
    scaler, cscaler = _fit_scalers([x], [c], features, condition, scaling)
    q = density_model if density_model is not None else _train_density(
        x, c, features=features, condition=condition, scaler=scaler, cscaler=cscaler,
        flow_cfg=density, cfg=density_train or train, desc="density", stage="density",
        callback=callback, salt=6)
    device = _device(train)
    base = flows.FlowAsBase(q.flow, here=scaler, there=q.scaler, here_context=cscaler,
                            there_context=q.condition_scaler).to(device)
    spec = {"kind": "condition", "dim": len(features), "context_dim": 1, "flow": flow.to_dict()}
    from .morpher import ConditionMap

    with _seeded(train.seed + 7):
        module = ConditionMap(flows.build_layers(len(features), flow, context_dim=1,
                                                 identity_init=True))
    module.to(device)
    shared: dict[str, torch.Generator] = {}

    def seed_pairs(gen: torch.Generator) -> None:
        shared["gen"] = gen

    def term(xb, cb):
        if module.training:
            target_c = cb[torch.randperm(len(cb), generator=shared["gen"]).to(cb.device)]
        else:  # validation: a fixed pairing (reverse order) so the loss is comparable
            target_c = cb.flip(0)
        y, ld = module(xb, cb, target_c)
        return -(base.log_prob(y, target_c) + ld)

    ckpt, mcfg = _stage_checkpoint(train, "morph")
    previous = flows.set_torch_threads(train.num_threads)
    try:
        history = _run_loop(module, [_Term(term, _split(scaler.forward(x), cscaler.forward(c),
                                                         train, device, 8))],
                            mcfg, desc="condition morph", checkpoint=ckpt, callback=callback,
                            gen_hook=seed_pairs)
    finally:
        flows.set_torch_threads(previous)
    module.to("cpu")
    base.to("cpu")
    return Morpher(
        features=features, condition=condition, module=module, spec=spec, scaler=scaler,
        condition_scaler=cscaler, variant="condition",
        history={"morph": history, "density": q.history}, source_density=q,
        target_density=None, info={"identity_init": True, "condition_range": _range(c)},
    )
