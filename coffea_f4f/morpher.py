""":class:`Morpher`: the trained artefact that moves events, and its file format.

A :class:`Morpher` holds the feature (and condition) scalings and a torch map between the two
scaled spaces (:mod:`coffea_f4f.maps`). It applies in batches under ``torch.no_grad`` in float64
by default, and persists as a directory with ``config.json`` and ``weights.safetensors``
(:meth:`Morpher.save`, :func:`load`; loading never unpickles; the bytes are
:mod:`coffea_f4f.fileformat`). :meth:`Morpher.payload` is the
compact in-memory form that :class:`~coffea_f4f.MorphTransform` pickles to workers. Directions,
precision and the file format are explained in DESIGN-NOTES.md.
"""

from __future__ import annotations

import copy
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from . import fileformat, flows
from .columns import Layout, condition_matrix, replace_fields, to_matrix
from .density import DensityModel, condition_field, condition_names
from .fileformat import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE
from .scaling import Scaler

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_BATCH_SIZE",
    "FAR_OUTSIDE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "ConditionClampWarning",
    "FarOutsideWarning",
    "Morpher",
    "load",
]

#: rows per torch call when ``batch_size`` is not given
DEFAULT_BATCH_SIZE = 65536

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: One clamped condition of a :class:`ConditionClampWarning`: ``(what, name, count, total,
#: low, high)``.
_Clamped = tuple[str, str, int, int, float, float]


class ConditionClampWarning(UserWarning):
    """Conditions outside the training range were clamped to its edges
    (``condition_policy="clamp"``, the default).

    Warned once per :meth:`Morpher.morph`, :meth:`~Morpher.inverse` or
    :meth:`~Morpher.variations` call (not per batch), naming every clamped condition with its
    count and range. :class:`~coffea_f4f.MorphTransform` morphs chunk by chunk and warns once
    per chunk (partition) that has clamped values; ``coffea-f4f apply`` adds the chunks up into
    one warning at the end. Filter it like any warning, e.g.
    ``warnings.simplefilter("ignore", ConditionClampWarning)``, or refuse such conditions with
    ``morpher.condition_policy = "error"``.

    Attributes:
        clamped: one ``(what, name, count, total, low, high)`` tuple per clamped condition:
            ``what`` is ``"condition"`` or ``"target_condition"``, ``count`` of ``total`` rows
            were outside ``[low, high]``.

    Example:
        >>> w = ConditionClampWarning.of([("condition", "mjj", 94, 537, 1500.0, 6000.0)])
        >>> print(w)  # doctest: +NORMALIZE_WHITESPACE
        condition 'mjj': 94 of 537 values outside the training range [1500, 6000] were
        clamped to it (condition_policy='clamp'; set 'error' to refuse)
    """

    def __init__(self, message: str, clamped: Sequence[_Clamped] = ()) -> None:
        super().__init__(message)
        self.clamped: list[_Clamped] = [cast(_Clamped, tuple(entry)) for entry in clamped]

    @classmethod
    def of(cls, clamped: Sequence[_Clamped]) -> ConditionClampWarning:
        """The warning for ``clamped`` (:attr:`clamped` entries), its message naming each."""
        parts = [
            f"{what} {name!r}: {count} of {total} values outside the training range "
            f"[{lo:.6g}, {hi:.6g}] were clamped to it"
            for what, name, count, total, lo, hi in clamped
        ]
        return cls("; ".join(parts) + " (condition_policy='clamp'; set 'error' to refuse)", clamped)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of :func:`warnings.warn`, called by the caller of this function,
    that names the first frame outside this package (the user's call)."""
    level = 1
    frame = sys._getframe(1)  # the function that warns (stacklevel 1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


#: rows with a feature further than this from the training data, in scaled units (standard
#: deviations for ``standard``), are flagged with a :class:`FarOutsideWarning`
FAR_OUTSIDE = 1e3


class FarOutsideWarning(UserWarning):
    """Rows with a feature more than :data:`FAR_OUTSIDE` scaled units outside the training
    data. Beyond the spline tails the morph is the identity in that feature, but the other
    features' conditioners see the far value: measured, morph then inverse returns them to
    ~1e-8 relative at 1e3 units, ~5e-5 at 1e6 and ~3e-2 at 1e9 (DESIGN-NOTES.md, "Spaces and
    scalings"). Warned once per call; select or clip such rows."""


def _flag_far(z: np.ndarray, features: Sequence[str]) -> None:
    far = np.abs(z) > FAR_OUTSIDE
    if not far.any():
        return
    per = ", ".join(f"{n!r}: {int(c)}" for n, c in zip(features, far.sum(0), strict=True) if c)
    warnings.warn(
        FarOutsideWarning(
            f"{int(far.any(1).sum())} of {len(z)} rows lie more than {FAR_OUTSIDE:g} scaled units "
            f"outside the training data ({per}); the morph there is not reliable (morph and "
            "inverse agree only to ~5e-5 relative at 1e6 units): select or clip these rows"
        ),
        stacklevel=_caller_stacklevel(),
    )


class Morpher:
    """A trained morph from a source to a target distribution (the package's artefact).

    Use :meth:`morph` to move source events onto the target distribution and :meth:`inverse`
    for the reverse map; :meth:`save` / :func:`load` to persist it.

    Attributes:
        features: feature names, in the model's order.
        conditions: condition field names, in order (empty when unconditional).
        condition: the one condition name, the list when there are several, or None.
        variant: how it was trained (``bidirectional``, ``unidirectional``, ``base_transfer``,
            ``condition``).
        module: the torch map (:mod:`coffea_f4f.maps`), frozen.
        map_spec: the JSON description the map is rebuilt from.
        history: training history.
        source_density / target_density: the :class:`DensityModel` s used in training (or None).
        precision: ``"float64"`` (default) or ``"float32"`` for applying.
        num_threads: torch intra-op threads while applying (default 1; None leaves torch's).
        condition_ranges: ``{condition: (min, max)}`` over the training rows.
        condition_range: ``(min, max)`` of the one condition (None when unconditional; with
            several conditions, :attr:`condition_ranges`).
        condition_policy: what to do with conditions outside ``condition_range``:
            ``"clamp"`` (default) or ``"error"``.
    """

    def __init__(
        self,
        *,
        features: Sequence[str],
        condition: str | Sequence[str] | None,
        module: nn.Module,
        map_spec: Mapping[str, Any],
        scaler: Scaler,
        target_scaler: Scaler | None = None,
        condition_scaler: Scaler | None = None,
        variant: str = "bidirectional",
        history: Mapping[str, Any] | None = None,
        source_density: DensityModel | None = None,
        target_density: DensityModel | None = None,
        info: Mapping[str, Any] | None = None,
        members: Sequence[nn.Module] = (),
    ) -> None:
        self.features = list(features)
        self.conditions = condition_names(condition)
        self.module = module
        self.map_spec = dict(map_spec)
        self.scaler = scaler
        self.target_scaler = target_scaler if target_scaler is not None else scaler
        self.condition_scaler = condition_scaler
        self.variant = variant
        self.history = dict(history or {})
        self.source_density = source_density
        self.target_density = target_density
        self.info = dict(info or {})
        self.precision = "float64"
        self.num_threads: int | None = 1
        self.device = "cpu"
        rng = self.info.get("condition_range")
        if rng is not None and len(rng) == 2 and not isinstance(rng[0], list | tuple):
            rng = [rng]  # saved by one-condition models before several were possible
        self.condition_ranges: dict[str, tuple[float, float]] = (
            {}
            if rng is None
            else {
                n: (float(lo), float(hi)) for n, (lo, hi) in zip(self.conditions, rng, strict=True)
            }
        )
        self.condition_policy = self.info.get("condition_policy", "clamp")
        self._applied_cache: dict[tuple[int, torch.dtype, str], nn.Module] = {}
        self.module.requires_grad_(False)
        self.module.eval()
        self.members: list[nn.Module] = []
        self.set_members(members)

    def set_members(self, members: Sequence[nn.Module]) -> None:
        """Hold ``members`` (maps of the same architecture as :attr:`module`, trained on
        bootstrap replicas) as the ensemble behind :meth:`variations`; frozen."""
        for m in members:
            if type(m) is not type(self.module):
                raise TypeError(
                    f"ensemble members must be {type(self.module).__name__} maps like the "
                    f"nominal, got {type(m).__name__}"
                )
            m.requires_grad_(False)
            m.eval()
        self.members = list(members)
        self._applied_cache.clear()

    @property
    def ensemble_size(self) -> int:
        """K, the number of bootstrap members (0: no ensemble, no :meth:`variations`)."""
        return len(self.members)

    def __repr__(self) -> str:
        cond = f", condition={self.condition!r}" if self.conditions else ""
        ens = f", ensemble={self.ensemble_size}" if self.members else ""
        return f"Morpher(features={self.features}{cond}, variant={self.variant!r}{ens})"

    @property
    def condition(self) -> str | list[str] | None:
        """The one condition name, the list of names when there are several, or None."""
        return condition_field(self.conditions)

    @property
    def condition_range(self) -> tuple[float, float] | dict[str, tuple[float, float]] | None:
        """``(min, max)`` of the training conditions for one condition; the
        :attr:`condition_ranges` dict for several; None when unconditional."""
        if not self.condition_ranges:
            return None
        if len(self.conditions) == 1:
            return self.condition_ranges[self.conditions[0]]
        return dict(self.condition_ranges)

    @property
    def between_conditions(self) -> bool:
        """True for a morph between condition values (``fit_condition_morpher``)."""
        return self.map_spec["kind"] == "condition"

    def to(self, device: str | None = None, *, precision: str | None = None) -> Morpher:
        """Move applying to ``device`` (``"auto"``/``"cpu"``/``"cuda"``) and/or set precision."""
        if precision is not None:
            if precision not in ("float32", "float64"):
                raise ValueError("precision must be 'float32' or 'float64'")
            self.precision = precision
        if device is not None:
            self.device = flows.resolve_device(device)
        return self

    # ------------------------------------------------------------------ conditions
    @property
    def condition_policy(self) -> str:
        """``"clamp"`` or ``"error"``: conditions outside :attr:`condition_range` (saved)."""
        return self._condition_policy

    @condition_policy.setter
    def condition_policy(self, value: str) -> None:
        if value not in ("clamp", "error"):
            raise ValueError(f"condition_policy must be 'clamp' or 'error', got {value!r}")
        self._condition_policy = value
        self.info["condition_policy"] = value

    def _in_range(
        self,
        c: np.ndarray,
        what: str,
        clamped: list[_Clamped] | None = None,
    ) -> np.ndarray:
        """Apply :attr:`condition_policy` to conditions outside the training range, per
        condition (column of ``c``).

        ``"clamp"`` (default): values below/above the range of the training conditions are
        set to its edge (the morph learned at the edge is used; nothing is extrapolated), and
        each clamped condition is recorded in ``clamped`` (as a
        :attr:`ConditionClampWarning.clamped` entry) for the caller to warn once per call;
        without ``clamped`` a :class:`ConditionClampWarning` is warned here.
        ``"error"``: raise ``ValueError`` naming the condition, the count and the range.
        """
        if not self.condition_ranges:
            return c
        out = c
        kinds = [] if self.condition_scaler is None else self.condition_scaler.kinds
        found: list[_Clamped] = []
        for j, name in enumerate(self.conditions):
            if kinds and kinds[j] == "categorical":  # codes are checked, never clamped
                continue
            lo, hi = self.condition_ranges[name]
            col = c[:, j]
            outside = (col < lo) | (col > hi)
            if not outside.any():
                continue
            if self.condition_policy == "error":
                raise ValueError(
                    f"{what} {name!r}: {int(outside.sum())} of {len(c)} values are outside the "
                    f"training range [{lo:.6g}, {hi:.6g}]; select events inside it, or set "
                    "morpher.condition_policy = 'clamp'"
                )
            if out is c:
                out = c.copy()
            out[:, j] = np.clip(col, lo, hi)
            found.append((what, name, int(outside.sum()), len(c), lo, hi))
        if clamped is not None:
            clamped.extend(found)
        elif found:
            warnings.warn(ConditionClampWarning.of(found), stacklevel=_caller_stacklevel())
        return out

    def _contexts(
        self, data: Any, condition: Any, target_condition: Any, layout: Layout
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self.condition_scaler is None:
            if condition is not None or target_condition is not None:
                raise ValueError(
                    "this morpher is not conditional; do not pass condition= or target_condition="
                )
            return None, None
        src = condition_matrix(data, condition, self.conditions, layout)
        clamped: list[_Clamped] = []
        ctx = self.condition_scaler.forward(self._in_range(src, "condition", clamped))
        if self.between_conditions:
            if target_condition is None:
                raise ValueError(
                    "this morpher maps between condition values: pass target_condition= "
                    "(a scalar or one value per event)"
                )
            tgt = condition_matrix(
                data, target_condition, self.conditions, layout, what="target_condition"
            )
            tgt = self._in_range(tgt, "target_condition", clamped)
            if clamped:  # one warning per call, naming both
                warnings.warn(ConditionClampWarning.of(clamped), stacklevel=_caller_stacklevel())
            return ctx, self.condition_scaler.forward(tgt)
        if target_condition is not None:
            raise ValueError(
                "this morpher maps at a fixed condition (source and target at the same "
                f"{self.condition!r}); target_condition= is only for fit_condition_morpher models"
            )
        if clamped:
            warnings.warn(ConditionClampWarning.of(clamped), stacklevel=_caller_stacklevel())
        return ctx, None

    # ------------------------------------------------------------------ applying
    def _applied(self, dtype: torch.dtype, member: int = 0) -> nn.Module:
        """The map (``member`` 0) or ensemble member ``member`` (1-based) in ``dtype`` on
        :attr:`device`: the module itself when it already is (one copy in memory), else a
        cached copy, so that what is saved keeps the trained float32 weights."""
        module = self.module if member == 0 else self.members[member - 1]
        ref = next(iter(module.parameters()), None)
        if ref is None or (ref.dtype == dtype and str(ref.device) == str(self.device)):
            return module
        key = (member, dtype, str(self.device))
        if key not in self._applied_cache:
            if any(k[1:] != key[1:] for k in self._applied_cache):  # one precision at a time
                self._applied_cache.clear()
            self._applied_cache[key] = (
                copy.deepcopy(module).to(dtype=dtype, device=self.device).eval()
            )
        return self._applied_cache[key]

    def _run(
        self,
        z: np.ndarray,
        ctx: np.ndarray | None,
        ctx_to: np.ndarray | None,
        *,
        inverse: bool,
        batch_size: int | None,
        member: int = 0,
    ) -> np.ndarray:
        bs = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        module = self._applied(dtype, member)
        fn = cast(
            Callable[..., tuple[torch.Tensor, torch.Tensor]],
            module.inverse if inverse else module.forward,
        )
        out = np.empty_like(z)

        def tensor(a: np.ndarray | None, i: int) -> torch.Tensor | None:
            if a is None:
                return None
            return torch.as_tensor(a[i : i + bs], dtype=dtype, device=self.device)

        with flows.torch_threads(self.num_threads), torch.no_grad():
            for i in range(0, len(z), bs):
                y, _ = fn(tensor(z, i), tensor(ctx, i), tensor(ctx_to, i))
                out[i : i + bs] = y.double().cpu().numpy()
        return out

    def _apply(
        self,
        data: Any,
        condition: Any,
        target_condition: Any,
        batch_size: int | None,
        *,
        inverse: bool,
    ) -> Any:
        x, layout = to_matrix(data, self.features)
        ctx, ctx_to = self._contexts(data, condition, target_condition, layout)
        if len(x) == 0:
            y = np.zeros((0, len(self.features)))
        else:
            scale_in, scale_out = (
                (self.target_scaler, self.scaler) if inverse else (self.scaler, self.target_scaler)
            )
            zin = scale_in.forward(x)
            _flag_far(zin, self.features)
            z = self._run(zin, ctx, ctx_to, inverse=inverse, batch_size=batch_size)
            y = scale_out.inverse(z)
            if ctx is not None and ctx_to is not None:  # a -> a: exactly the identity
                same = (ctx == ctx_to).all(1)
                y[same] = x[same]
        return replace_fields(data, self.features, y, layout)

    def morph(
        self,
        x: Any,
        *,
        condition: Any = None,
        target_condition: Any = None,
        batch_size: int | None = None,
    ) -> Any:
        """Move source events onto the target distribution.

        Args:
            x: an ``(N, D)`` array (columns in :attr:`features` order), awkward records (flat
                or jagged: jagged fields are morphed per object), a mapping of field -> array,
                or a pandas DataFrame (read by column name).
            condition: for conditional models: default the :attr:`condition` field of ``x``;
                or a field name, a scalar, or values: ``(N,)`` one per row, and with jagged
                features a flat array is one value per event, a jagged one per object.
            target_condition: for between-condition models only: the condition to move to
                (same forms).
            batch_size: rows per torch call (memory is bounded by it).

        Returns:
            The same type as ``x``: an array, or records / mapping / DataFrame with the feature
            fields replaced by morphed values and all other fields kept.

        Raises:
            MissingColumnError, ValueError, TypeError: bad input (named field, shape, count).
        """
        return self._apply(x, condition, target_condition, batch_size, inverse=False)

    def inverse(
        self,
        y: Any,
        *,
        condition: Any = None,
        target_condition: Any = None,
        batch_size: int | None = None,
    ) -> Any:
        """The reverse map of :meth:`morph` (same conventions): ``inverse(morph(x)) == x``."""
        return self._apply(y, condition, target_condition, batch_size, inverse=True)

    def variations(
        self,
        x: Any,
        *,
        condition: Any = None,
        target_condition: Any = None,
        members: bool = False,
        batch_size: int | None = None,
        with_nominal: bool = False,
    ) -> Any:
        """The uncertainty band of :meth:`morph` from the bootstrap ensemble.

        Each event is morphed by the nominal map and by every member. In the target's scaled
        space the band is the nominal +- the standard deviation over the members (per event
        and feature, ``ddof=1``), mapped back through the scaling, so zero-inflated and
        discrete features stay valid (exact zeros, integers) in both variations.

        Args:
            x, condition, target_condition, batch_size: as for :meth:`morph`.
            members: return each member's morph (a list of K results) instead of the band.
            with_nominal: also return ``"nominal"`` (equal to :meth:`morph`), from the same
                pass.

        Returns:
            ``{"up": ..., "down": ...}`` (plus ``"nominal"``), each the type of ``x`` as
            :meth:`morph` returns it; with ``members=True`` a list of K such results.

        Raises:
            ValueError: the model has no ensemble (train with ``fit_morpher(...,
                ensemble=K)``; a band needs K >= 2), or bad input as for :meth:`morph`.
        """
        need = 1 if members else 2
        if self.ensemble_size < need:
            raise ValueError(
                f"this morpher has {self.ensemble_size} ensemble members; "
                + ("member morphs need" if members else "a band (std over members) needs")
                + f" at least {need}: train it with fit_morpher(..., ensemble=K), K >= 2 "
                "(or fit_condition_morpher(..., ensemble=K))"
            )
        xm, layout = to_matrix(x, self.features)
        ctx, ctx_to = self._contexts(x, condition, target_condition, layout)
        same = None if ctx is None or ctx_to is None else (ctx == ctx_to).all(1)

        def back(z: np.ndarray) -> Any:
            y = self.target_scaler.inverse(z) if len(z) else np.zeros_like(z)
            if same is not None:  # a -> a: exactly the identity in every variation
                y[same] = xm[same]
            return replace_fields(x, self.features, y, layout)

        zin = self.scaler.forward(xm) if len(xm) else np.zeros((0, len(self.features)))
        _flag_far(zin, self.features)

        def run(member: int) -> np.ndarray:
            if len(zin) == 0:
                return zin.copy()
            return self._run(zin, ctx, ctx_to, inverse=False, batch_size=batch_size, member=member)

        if members:
            return [back(run(k)) for k in range(1, self.ensemble_size + 1)]
        nominal = run(0)
        mean = np.zeros_like(nominal)
        m2 = np.zeros_like(nominal)
        for k in range(1, self.ensemble_size + 1):  # Welford: one member in memory at a time
            z = run(k)
            delta = z - mean
            mean += delta / k
            m2 += delta * (z - mean)
        spread = np.sqrt(m2 / (self.ensemble_size - 1))
        out = {"up": back(nominal + spread), "down": back(nominal - spread)}
        if with_nominal:
            out["nominal"] = back(nominal)
        return out

    # ------------------------------------------------------------------ file format
    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable description written to ``config.json``."""
        return fileformat.describe(self)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """All weights, prefixed ``map.``, ``source_density.``, ``target_density.`` (as
        trained; CPU, contiguous)."""
        return fileformat.weights(self)

    @classmethod
    def from_dict(
        cls, config: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, partial: bool = False
    ) -> Morpher:
        """Rebuild from :meth:`to_dict` and a flat state dict (as :meth:`save` writes).

        ``partial=True`` accepts a state without the buffers that the architecture determines
        (the compact :meth:`payload`); they come from the rebuilt map.

        Raises:
            ValueError: not a morpher description, an unsupported format version, or weights
                that do not fit the architecture.
        """
        return cls(**fileformat.parts(config, state, partial=partial))

    def payload(self, *, members: bool = True) -> tuple[bytes, bytes]:
        """What applying needs, compact: ``(config JSON bytes, safetensors bytes)``, without
        the training densities, the history and the buffers the architecture determines
        (``members=False``: without the ensemble members either, for applying the nominal
        only). Rebuild with :meth:`from_payload`."""
        return fileformat.compact(self, members=members)

    @classmethod
    def from_payload(
        cls, config: bytes, weights: bytes, *, precision: str = "float64", device: str = "cpu"
    ) -> Morpher:
        """Rebuild a :meth:`payload`, with the map already in ``precision`` on ``device``
        (one copy of the weights in memory)."""
        model = cls.from_dict(*fileformat.read_compact(config, weights), partial=True)
        model.to(device, precision=precision)
        dtype = torch.float64 if precision == "float64" else torch.float32
        for module in (model.module, *model.members):
            module.to(dtype=dtype, device=model.device)
        return model

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model to directory ``path`` (``config.json``, ``weights.safetensors``).

        The files are written into a new directory beside ``path`` and renamed into place;
        a model already at ``path`` is replaced only once the new one is complete, so an error
        while saving (disk full, an interrupt) leaves the previous model loadable.

        Args:
            path: the model directory (created, with its parents).
            overwrite: also replace a file, or a directory holding anything besides a
                coffea-f4f model's two files (it is deleted with everything in it).

        Returns:
            ``path``.

        Raises:
            FileExistsError: ``path`` is not a coffea-f4f model directory (the error names
                the unexpected files) and ``overwrite`` is False.
            ModelFileError: the model is beyond what :func:`load` accepts (see
                ``fileformat.LIMITS``) or has non-finite weights; nothing is written.
        """
        return fileformat.write_dir(path, self, overwrite=overwrite)


def load(path: str | os.PathLike[str]) -> Morpher:
    """Load a :class:`Morpher` written by :meth:`Morpher.save` (never unpickles).

    Everything is checked before it is used: the SHA-256 hashes that bind the two files
    (models saved before them: not checked), the structure and sizes of ``config.json``
    against the loader's limits, and the weights against the architecture it describes
    (DESIGN-NOTES.md, "Saved models").

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelFileError: (a ``ValueError``) ``path`` is not a coffea-f4f model, its format
            version is unsupported, or a file is damaged, changed after saving, inconsistent
            or beyond the limits; the message names the file and what is wrong.
    """
    path = Path(path)
    args = fileformat.read_model(path)
    try:
        return Morpher(**args)
    except (TypeError, ValueError, KeyError, IndexError) as err:
        if isinstance(err, fileformat.ModelFileError):
            raise
        raise fileformat.ModelFileError(
            path / fileformat.CONFIG_FILE, f"cannot be rebuilt: {type(err).__name__}: {err}"
        ) from err
