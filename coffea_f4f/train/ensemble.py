"""Bootstrap ensembles of a morph: the members behind :meth:`Morpher.variations
<coffea_f4f.morpher.Morpher.variations>`.

``fit_morpher(..., ensemble=K)`` trains the nominal morph on all events and ``K`` members,
each the whole fit (densities and morph) repeated on a bootstrap replica of both datasets:

- **Replica**: every event gets a Poisson(1) count on top of its own weight (``w * n``), drawn
  from its own stream (``TrainConfig.seed``, the member, the dataset), so weighted and
  signed-weight samples bootstrap correctly. Rows with count 0 contribute nothing to a
  weighted likelihood and are dropped before training (about 37% of the rows, so a member
  costs about 0.63 of the nominal fit per epoch).
- **Seeds**: member ``k`` trains with its own seed (:func:`member_seed`), so its
  initialisation, split and shuffling share no stream with the nominal or another member.
- **Where**: ``jobs > 1`` trains the members in that many spawned worker processes (one torch
  thread each) while the calling process trains the nominal; ``jobs=1`` trains them one after
  the other in the calling process. On a GPU the members run one after the other on it.

See DESIGN-NOTES.md, "Ensembles and variations".
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .. import flows
from ..config import TrainConfig
from ..morpher import Morpher
from ..progress import Bar, progress_bar
from .loop import Salt

__all__ = [
    "WORKER_MIN_WORK",
    "MemberError",
    "Replica",
    "bootstrap",
    "check_ensemble",
    "ensemble_jobs",
    "member_config",
    "member_seed",
    "run_members",
    "shared_data",
    "unspill",
    "with_members",
]

#: ``(rows kept, their weights)`` of one dataset's bootstrap replica
Replica = tuple[np.ndarray, np.ndarray]


def check_ensemble(ensemble: Any, jobs: Any) -> int:
    """``ensemble=`` as an int >= 0 (with ``ensemble_jobs=`` checked)."""
    if isinstance(ensemble, bool) or not isinstance(ensemble, int | np.integer) or ensemble < 0:
        raise ValueError(
            f"ensemble must be an integer >= 0 (the number of bootstrap members), got {ensemble!r}"
        )
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"ensemble_jobs must be an integer >= 1 or None, got {jobs!r}")
    return int(ensemble)


def member_seed(seed: int, k: int) -> int:
    """The training seed of member ``k`` (1-based): a hash of the fit's seed and ``k``."""
    return int(np.random.SeedSequence([int(seed), int(Salt.ENSEMBLE), int(k)]).generate_state(1)[0])


def bootstrap(n: int, weights: np.ndarray | None, seed: int, k: int, which: int) -> Replica:
    """Member ``k``'s replica of a dataset of ``n`` rows: the rows with a non-zero Poisson(1)
    count and their weights ``count * weight`` (``which`` tells the datasets of a fit apart)."""
    rng = np.random.default_rng([int(seed), int(Salt.BOOTSTRAP), int(k), int(which)])
    counts = rng.poisson(1.0, n).astype(np.float64)
    keep = np.flatnonzero(counts)
    w = counts[keep] if weights is None else counts[keep] * weights[keep]
    return keep, w


def member_config(cfg: TrainConfig, k: int, *, threads: int | None) -> TrainConfig:
    """``cfg`` for member ``k``: its own seed, its own checkpoint (``<path>.member<k>``), no
    progress bar of its own."""
    changes: dict[str, Any] = {"seed": member_seed(cfg.seed, k), "progress": False}
    if isinstance(cfg.resume, str):
        changes["resume"] = f"{cfg.resume}.member{k}"
    elif cfg.checkpoint is not None:
        changes["checkpoint"] = f"{cfg.checkpoint}.member{k}"
    if threads is not None:
        changes["num_threads"] = threads
    return cfg.replace(**changes)


#: with ``ensemble_jobs=None``, workers start only for fits of at least this many event-epochs
#: (rows x epochs of the larger dataset): a worker costs about 5 CPU-s to start (imports, the
#: first fit's set-up), more than it saves on a fit of seconds (benchmarks/ensemble.py)
WORKER_MIN_WORK = 1_000_000


def ensemble_jobs(jobs: int | None, k: int, *devices: str, work: float = float("inf")) -> int:
    """How many worker processes train members while the caller trains the nominal (0: the
    members train here, one after the other).

    ``jobs=None`` (default): one per CPU core besides the caller's (at most ``k``), when the
    fit is big enough to pay for starting them (``work``, rows x epochs, at least
    :data:`WORKER_MIN_WORK`); ``jobs=1``: none (here, one after the other); ``jobs > 1``: that
    many. 0 whenever a stage trains on a GPU (the members share it one after the other).
    """
    if k == 0 or any(flows.resolve_device(d) != "cpu" for d in devices):
        return 0
    if jobs is None:
        if work < WORKER_MIN_WORK:
            return 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return min(max((cores or 1) - 1, 0), k)
    return 0 if jobs <= 1 else min(int(jobs), k)


class MemberError(RuntimeError):
    """An ensemble member's fit failed (the member and its seed are named; the cause is
    chained)."""


def _labelled(i: int, seed: int, err: BaseException) -> MemberError:
    return MemberError(
        f"ensemble member {i} (training seed {member_seed(seed, i)}) failed: "
        f"{type(err).__name__}: {err}"
    )


class _OnDisk:
    """A numpy array saved once for the worker processes (they memory-map it)."""

    def __init__(self, path: str) -> None:
        self.path = path


def _spill(tree: Any, directory: str, names: list[int]) -> Any:
    if isinstance(tree, np.ndarray):
        names.append(len(names))
        path = os.path.join(directory, f"{names[-1]}.npy")
        np.save(path, tree, allow_pickle=False)
        return _OnDisk(path)
    if isinstance(tree, tuple | list):
        return type(tree)(_spill(t, directory, names) for t in tree)
    return tree


def unspill(tree: Any) -> Any:
    """``tree`` with every array that :func:`shared_data` saved memory-mapped back."""
    if isinstance(tree, _OnDisk):
        return np.load(tree.path, mmap_mode="r", allow_pickle=False)
    if isinstance(tree, tuple | list):
        return type(tree)(unspill(t) for t in tree)
    return tree


@contextlib.contextmanager
def shared_data(data: Any, workers: int) -> Iterator[Any]:
    """``data`` (nested tuples of arrays) as the members receive it: itself when they train
    here; with worker processes, each array saved once to a temporary directory that the
    workers memory-map (instead of one pickled copy of the whole dataset per member)."""
    if workers == 0:
        yield data
        return
    with tempfile.TemporaryDirectory(prefix="coffea-f4f-ensemble-") as directory:
        yield _spill(data, directory, [])


def _call(fn: Callable[[], Any]) -> Any:  # runs in a worker process
    torch.set_num_threads(1)
    return fn()


def run_members(
    member: Callable[[int], Any],
    nominal: Callable[[], Any],
    k: int,
    workers: int,
    *,
    seed: int,
    show: bool = True,
) -> tuple[Any, list[Any]]:
    """Run ``nominal()`` and ``member(1) ... member(k)``; return ``(nominal, [members])``.

    With ``workers > 0``, ``member`` must be picklable (a module-level function or a
    ``functools.partial`` of one): the members run in that many spawned processes while
    ``nominal`` runs here. A member that fails raises :class:`MemberError` naming it and its
    seed (``seed`` is the fit's ``TrainConfig.seed``).
    """
    if k == 0:
        return nominal(), []
    if workers == 0:
        result = nominal()
        bar = progress_bar(k, desc="ensemble members", unit="member", show=show)
        try:
            members = []
            for i in range(1, k + 1):
                try:
                    members.append(member(i))
                except Exception as err:
                    raise _labelled(i, seed, err) from err
                bar.update(1)
        finally:
            bar.close()
        return result, members
    # joblib's loky processes: spawned (no fork after torch's threads started), and they do
    # not re-run the caller's __main__ (no ``if __name__`` guard needed). The executor is this
    # fit's own: stopping it on an error touches no other joblib work of the process.
    from joblib.externals.loky import ProcessPoolExecutor  # type: ignore[import-untyped]

    pool = ProcessPoolExecutor(max_workers=workers)
    futures = [pool.submit(_call, _Bound(member, i)) for i in range(1, k + 1)]
    shown: Bar | None = None
    try:
        result = nominal()
        shown = progress_bar(k, desc="ensemble members", unit="member", show=show)
        done = {}
        for i, fut in enumerate(futures, start=1):
            try:
                _, value = fut.result()
            except Exception as err:
                raise _labelled(i, seed, err) from err
            done[i] = value
            shown.update(1)
    except BaseException:  # an error or Ctrl-C: do not wait for the other members
        for fut in futures:
            fut.cancel()
        pool.shutdown(wait=False, kill_workers=True)
        raise
    finally:
        if shown is not None:
            shown.close()
    pool.shutdown(wait=True)
    return result, [done[i] for i in range(1, k + 1)]


class _Bound:
    """``member(i)`` as a picklable zero-argument callable."""

    def __init__(self, member: Callable[[int], Any], i: int) -> None:
        self.member, self.i = member, i

    def __call__(self) -> tuple[int, Any]:
        return self.i, self.member(self.i)


def with_members(
    morpher: Morpher,
    members: Sequence[tuple[torch.nn.Module, dict[str, Any]]],
    seed: int,
    density_seed: int | None = None,
) -> Morpher:
    """``morpher`` (the nominal fit) holding the trained members, their histories and seeds."""
    if not members:
        return morpher
    morpher.set_members([module for module, _ in members])
    morpher.history["members"] = [history for _, history in members]
    morpher.info["ensemble"] = {
        "size": len(members),
        "replica": "poisson",
        "seeds": [member_seed(seed, k) for k in range(1, len(members) + 1)],
        "density_seeds": [
            member_seed(seed if density_seed is None else density_seed, k)
            for k in range(1, len(members) + 1)
        ],
    }
    return morpher
