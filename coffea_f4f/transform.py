"""MorphTransform: apply a trained :class:`~coffea_f4f.morpher.Morpher` inside coffea processors.

``events = morph(events)`` adds a morphed copy of each input field beside the original
(``FatJet.msoftdrop`` -> ``FatJet.msoftdrop_morphed``) with ``ak.with_field``, so NanoEvents
behaviours and cross-references keep working (``replace=True``: into the input field itself;
``variations=True``: also the ensemble's band and a coffea systematic,
:mod:`~coffea_f4f.systematics`). The same object works on eager and virtual NanoEvents and on
``dask_awkward.Array`` (one ``dak.map_partitions`` task per partition whose
``necessary_columns`` are exactly the inputs and the condition). Each chunk goes through the
three stages of ``coffea.ml_tools``: :meth:`MorphTransform.prepare` (columns -> rows),
:meth:`MorphTransform.numpy_call` (the morph) and :meth:`MorphTransform.postprocess` (rows ->
columns). Rows whose inputs are NaN, inf, None or outside the scaling's domain come out NaN
instead of failing the chunk.

Pickling carries :meth:`Morpher.payload <coffea_f4f.morpher.Morpher.payload>` (JSON and
safetensors bytes; no file path, no pickled module); the model is built once per process in a
bounded cache (:func:`cache_info`, :func:`clear_model_cache`). The typetracer (graph-building)
pass never runs torch. Details and measurements: DESIGN-NOTES.md, "coffea transform".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from .columns import (
    ColumnSpec,
    Layout,
    as_path,
    broadcast_to_objects,
    check_spec,
    flatten,
    is_dask,
    resolve_column,
    to_float,
)
from .density import condition_field
from .modelcache import CACHE_SIZE, ModelCache, cache_info, clear_model_cache
from .morpher import Morpher, load
from .systematics import check_options, write_outputs

if TYPE_CHECKING:  # pragma: no cover
    import torch  # noqa: F401

__all__ = ["CACHE_SIZE", "DEFAULT_BATCH_SIZE", "MorphTransform", "cache_info", "clear_model_cache"]

#: rows per torch call when ``batch_size`` is not given
DEFAULT_BATCH_SIZE = 16384
#: the results of one chunk with ``variations=True``
_VARIATIONS = ("nominal", "up", "down")


def _maybe_map_partitions(fn: Callable[..., ak.Array], *arrays: Any) -> Any:
    """``fn(*arrays)`` on concrete arrays; one ``dak.map_partitions`` task on dask arrays."""
    if any(is_dask(a) for a in arrays):
        import dask_awkward as dak

        return dak.map_partitions(fn, *arrays, label="f4f-morph")
    return fn(*arrays)


# ----------------------------------------------------------------------------- the task
class _MorphPartition:
    """The per-chunk (eager) or per-partition (dask) function: columns in, record out, in
    the transform's three stages (``prepare``, ``numpy_call``, ``postprocess``)."""

    def __init__(
        self,
        transform: MorphTransform,
        depths: tuple[int, ...],
        n_inputs: int,
        target_values: tuple[float | None, ...],
    ) -> None:
        self.transform = transform
        self.depths = depths
        self.n_inputs = n_inputs
        self.target_values = target_values

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        t = self.transform
        options = (t.precision, t.device, t.num_threads, t.batch_size, t.variations, t.replace)
        chunk = (self.depths, self.n_inputs, self.target_values)
        head = ("coffea-f4f-morph", type(t).__qualname__, t.model_hash)
        return (*head, *options, t.systematic, *chunk)

    @property
    def jagged(self) -> bool:
        return bool(self.depths[0])

    def __call__(self, *arrays: Any) -> ak.Array:
        if ak.backend(*arrays) == "typetracer":  # dask's graph building: no torch here
            for a in arrays:  # the result depends on every buffer of every input
                ak.typetracer.touch_data(a)
            t = self.transform
            zero = np.zeros((0, len(t.features)))
            empty = t.postprocess(
                dict.fromkeys(_VARIATIONS, zero) if t.variations else zero,
                Layout(0, np.zeros(0, np.int64) if self.jagged else None),
            )
            return ak.Array(empty.layout.to_typetracer(forget_length=True))
        t = self.transform
        x, cond, target, layout = t.prepare(arrays, self.depths, self.n_inputs, self.target_values)
        return t.postprocess(t.numpy_call(x, cond, target), layout)


# ----------------------------------------------------------------------------- transform
class MorphTransform:
    """Add morphed copies of columns to NanoEvents (eager, virtual or dask).

    Example::

        def tau21(events):  # FatJet["tau2"]: the attribute .tau2 is the four-vector's tau**2
            return events.FatJet["tau2"] / events.FatJet["tau1"]

        morph = MorphTransform("model_dir", inputs={"msoftdrop": "FatJet.msoftdrop",
                                                    "tau21": tau21})
        events = morph(events)
        events.FatJet.msoftdrop_morphed   # beside FatJet.msoftdrop, jagged like it
        events.tau21_morphed              # a callable input: a top-level field

        # an ensemble model (fit_morpher(..., ensemble=K)): the band, and as a systematic
        events = MorphTransform(model, inputs=..., variations=True)(events)
        events.FatJet.msoftdrop_morphed_up                     # nominal + std over members
        events.FatJet.systematics.f4f.up.msoftdrop_morphed     # the same values

    Outputs per feature (float64, jagged like the input): the morphed field ``<field><suffix>``
    (``replace=True``: the input field, the original moved to ``<field>_unmorphed``), and with
    ``variations=True`` the band ``<field><suffix>_up`` / ``_down`` beside it (also with
    ``replace=True``: ``FatJet.mass_morphed_up`` beside the replaced ``FatJet.mass``). The up/down
    systematic goes on each collection holding outputs (``events.FatJet``; the events for
    top-level fields and callable inputs), varying the morphed fields, as coffea's kind
    ``"UpDownSystematic"`` (one field of the collection) or ``"UpDownMultiSystematic"``
    (several); a collection without coffea's ``Systematic`` behaviour (a plain awkward record
    array) gets the ``_up`` / ``_down`` columns only. On dask one ``dak.map_partitions`` task
    per partition computes every output (one torch pass for the nominal and the band), plus
    one per collection for the systematic, and the ``necessary_columns`` of every output,
    variations included, are the inputs and the condition (:mod:`~coffea_f4f.systematics`).

    Args:
        model: a :class:`~coffea_f4f.morpher.Morpher`, or the directory of a saved one.
        inputs: ``{model feature: source}`` for every feature of the model, where a source is a
            field path (``"FatJet.msoftdrop"`` or a top-level ``"mjj"``) or a callable
            ``events -> array``. All inputs must be event-level, or all jagged with the same
            object counts (e.g. fields of one collection), and are morphed per object.
            Default: each feature's own name as its path (a model trained on NanoEvents
            fields such as ``"FatJet.mass"``).
        condition: required iff the model is conditional: a field path or a callable
            ``events -> array`` giving one value per event (broadcast to the objects of jagged
            inputs) or one value per object.
        suffix: appended to each input field's name to name its morphed copy (non-empty). A
            field-path input gets its copy beside it (``FatJet.msoftdrop_morphed``), a callable
            input a top-level field ``<feature><suffix>``.
        target_condition: only for between-condition models
            (:func:`~coffea_f4f.train.fit_condition_morpher`): the condition value to morph to;
            a field path, a callable or a number.
        batch_size: rows per torch call (bounds the memory of the flow evaluation).
        num_threads: torch intra-op threads while morphing (None: leave torch's setting).
        precision: ``"float64"`` or ``"float32"``; default: the model's precision.
        device: torch device for morphing (``"cpu"``, ``"cuda"``, ``"auto"``).
        variations: also write the ensemble's band and register the systematic (a model with
            an ensemble of K >= 2 members).
        systematic: the systematic's name (``.systematics.<systematic>``), an identifier.
        replace: write the morph into the input fields, so behaviours (four-vectors, sorting)
            see it, and keep the originals as ``<field>_unmorphed`` (as coffea's jet
            corrections keep ``pt_orig``); field-path inputs only. Cross-references from other
            collections still reach the original values.

    Raises:
        TypeError: ``model`` or a source is of an unsupported type.
        ValueError: ``inputs`` do not match the model's features, the condition is missing or
            not wanted, an option is out of range (``variations=True`` without an ensemble,
            ``replace=True`` with a callable input).
        FileNotFoundError: ``model`` is a path that does not exist.

    Calling the transform raises :class:`~coffea_f4f.columns.MissingColumnError` (naming close
    matches) for a missing field, and ``ValueError`` for inputs that do not fit together
    (jagged next to event-level inputs, a jagged condition for event-level inputs, different
    object counts, a systematic ``systematic`` or a field ``<field>_unmorphed`` that exists,
    a callable input or condition that returns the wrong number of values), ``TypeError`` for a
    callable that returns strings or objects, and warns
    (:class:`~coffea_f4f.morpher.ConditionClampWarning`, once per chunk) when conditions are
    clamped to the training range. Non-finite inputs do not raise: see the module docstring
    (NaN policy).
    """

    def __init__(
        self,
        model: Morpher | str | os.PathLike[str],
        *,
        inputs: Mapping[str, ColumnSpec] | None = None,
        condition: ColumnSpec | None = None,
        suffix: str = "_morphed",
        target_condition: ColumnSpec | float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        num_threads: int | None = 1,
        precision: str | None = None,
        device: str = "cpu",
        variations: bool = False,
        systematic: str = "f4f",
        replace: bool = False,
    ) -> None:
        if isinstance(model, str | os.PathLike):
            model = load(model)
        if not isinstance(model, Morpher):
            raise TypeError(
                f"model must be a Morpher or the path of a saved model, got {type(model).__name__}"
            )
        self.features: list[str] = list(model.features)
        self.condition_names: list[str] = list(model.conditions)
        self._between = bool(model.between_conditions)

        if inputs is None:  # a model trained on field paths (e.g. "FatJet.mass") reads them
            inputs = {f: f for f in self.features}
        if not isinstance(inputs, Mapping):
            raise TypeError("inputs must be a mapping {model feature: field path or callable}")
        missing = [f for f in self.features if f not in inputs]
        extra = [k for k in inputs if k not in self.features]
        if missing or extra:
            raise ValueError(
                f"inputs must name each model feature exactly once; model features: "
                f"{self.features}"
                + (f"; missing: {missing}" if missing else "")
                + (f"; not features of the model: {extra}" if extra else "")
            )
        for f in self.features:
            check_spec(inputs[f], f"inputs[{f!r}]")
        self.inputs: dict[str, ColumnSpec] = {f: inputs[f] for f in self.features}

        self.condition = condition
        self.conditions = self._condition_specs(condition, "condition")
        if self._between and target_condition is None:
            raise ValueError(
                "the model maps between condition values: pass target_condition= (a number, a "
                "field path or a callable; a mapping {condition: ...} for several conditions)"
            )
        if not self._between and target_condition is not None:
            raise ValueError(
                "target_condition= is only for between-condition models (fit_condition_morpher)"
            )
        self.target_condition = target_condition
        self.target_conditions = (
            {}
            if target_condition is None
            else self._condition_specs(target_condition, "target_condition", numbers=True)
        )

        if not isinstance(suffix, str) or not suffix:
            raise ValueError(
                "suffix must be a non-empty string (the morphed copies are added "
                "beside the inputs, never over them)"
            )
        self.suffix = suffix
        check_options(self.inputs, model.ensemble_size, variations, systematic, replace)
        self.variations, self.systematic, self.replace = variations, systematic, replace
        outputs = [p for f in self.features for p in self._written_paths(f)]
        if len(set(outputs)) != len(outputs):
            raise ValueError(f"two inputs would write the same output field: {outputs}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be an integer >= 1 or None, got {num_threads!r}")
        self.num_threads = num_threads
        precision = model.precision if precision is None else precision
        if precision not in ("float32", "float64"):
            raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
        self.precision = precision
        self.device = device

        # the members travel only when the band is wanted (K + 1 maps to ship and build)
        self._config_bytes, self._weights = model.payload(members=self.variations)
        self.model_hash = hashlib.sha256(self._config_bytes + b"\0" + self._weights).hexdigest()

    def _condition_specs(self, given: Any, what: str, *, numbers: bool = False) -> dict[str, Any]:
        """``condition=`` / ``target_condition=`` as ``{condition name: source}`` in the
        model's order: a mapping, or one source (a path, a callable; a number for targets)
        when the model has one condition."""
        names = self.condition_names
        if not names:
            if given is not None:
                raise ValueError(f"the model is not conditional; do not pass {what}=")
            return {}
        if given is None:
            raise ValueError(
                f"the model is conditional on {condition_field(names)!r}: pass {what}= (a field "
                "path such as 'mjj', or a callable events -> one value per event or object"
                + (
                    "; a mapping {name: path or callable} for several conditions)"
                    if len(names) > 1
                    else ")"
                )
            )
        if isinstance(given, Mapping):
            missing = [n for n in names if n not in given]
            extra = [k for k in given if k not in names]
            if missing or extra:
                raise ValueError(
                    f"{what} must name each condition of the model exactly once: {names}"
                    + (f"; missing: {missing}" if missing else "")
                    + (f"; not conditions of the model: {extra}" if extra else "")
                )
            specs = {n: given[n] for n in names}
        elif len(names) == 1:
            specs = {names[0]: given}
        else:
            raise ValueError(
                f"the model has conditions {names}: pass {what}= as a mapping "
                "{condition: field path or callable}"
            )
        for name, spec in specs.items():
            if not (numbers and isinstance(spec, int | float) and not isinstance(spec, bool)):
                check_spec(spec, f"{what}[{name!r}]" if len(names) > 1 else what)
        return specs

    def __repr__(self) -> str:
        cond = f", condition={self.condition!r}" if self.condition is not None else ""
        return (
            f"MorphTransform(features={self.features}, inputs={self.inputs}{cond}, "
            f"suffix={self.suffix!r}, variations={self.variations}, replace={self.replace}, "
            f"model={self.model_hash[:12]})"
        )

    # ------------------------------------------------------------------ model
    @property
    def morpher(self) -> Morpher:
        """The process-wide cached :class:`~coffea_f4f.morpher.Morpher` (built on first use)."""
        key = (self.model_hash, self.precision, self.device, self.num_threads)
        return ModelCache.shared.get(key, self._build)

    def _build(self) -> Morpher:
        model = Morpher.from_payload(
            self._config_bytes, self._weights, precision=self.precision, device=self.device
        )
        model.num_threads = self.num_threads
        return model

    # ------------------------------------------------------------------ naming
    def _output_path(self, feature: str) -> tuple[str, ...]:
        spec = self.inputs[feature]
        if callable(spec):
            return (f"{feature}{self.suffix}",)
        parts = as_path(spec)
        return parts if self.replace else (*parts[:-1], parts[-1] + self.suffix)

    def _written_paths(self, feature: str) -> list[tuple[str, ...]]:
        """The morphed field, its band and (replace=True) the kept original."""
        *where, name = self._output_path(feature)
        band = name + (self.suffix if self.replace else "")  # mass_morphed_up beside mass
        paths = [(*where, name)]
        if self.variations:
            paths += [(*where, band + "_up"), (*where, band + "_down")]
        if self.replace:
            paths.append((*where, name + "_unmorphed"))
        return paths

    @property
    def outputs(self) -> dict[str, str]:
        """``{feature: dotted path of its morphed field}`` (its band: ``<field><suffix>_up`` /
        ``_down``)."""
        return {f: ".".join(self._output_path(f)) for f in self.features}

    # ------------------------------------------------------------------ applying
    def __call__(self, events: Any) -> Any:
        """Return ``events`` with the morphed fields added (see the class docstring).

        Args:
            events: NanoEvents (eager or virtual ``ak.Array``, or ``dask_awkward.Array``) or any
                awkward record array holding the inputs.

        Returns:
            The same kind of array with the outputs of the class docstring.
        """
        if not (isinstance(events, ak.Array) or is_dask(events)):
            raise TypeError(
                f"events must be an awkward or dask-awkward array, got {type(events).__name__}"
            )
        cols = [resolve_column(events, self.inputs[f], f, "input") for f in self.features]
        conds = []
        for name, spec in self.conditions.items():
            conds.append(resolve_column(events, spec, name, "condition"))
        target_values: list[float | None] = []
        for name, spec in self.target_conditions.items():
            if isinstance(spec, int | float):
                target_values.append(float(spec))
            else:
                target_values.append(None)
                conds.append(resolve_column(events, spec, name, "target condition"))
        depth = cols[0].depth
        mixed = [c.name for c in cols if c.depth != depth]
        if mixed:
            jag = [c.name for c in cols if c.depth]
            flat = [c.name for c in cols if not c.depth]
            raise ValueError(
                f"inputs mix jagged (per-object) fields {jag} with event-level fields {flat}; "
                "morph the fields of one collection together, or broadcast the event-level "
                "value to the objects yourself (e.g. with a callable input)"
            )
        for c in conds:
            if c.depth > depth:
                raise ValueError(
                    f"{c.name} is jagged (one value per object) but the inputs are event-level; "
                    "give one condition value per event"
                )
        arrays = [c.array for c in (*cols, *conds)]
        depths = tuple(c.depth for c in (*cols, *conds))
        fn = _MorphPartition(self, depths, len(cols), tuple(target_values))
        morphed = _maybe_map_partitions(fn, *arrays)
        paths = {f: self._output_path(f) for f in self.features}
        kept = (
            {f: c.array for f, c in zip(self.features, cols, strict=True)} if self.replace else None
        )
        return write_outputs(
            events,
            morphed,
            paths,
            kept,
            self.systematic,
            self.variations,
            band_suffix=self.suffix if self.replace else "",
        )

    transform = __call__

    # ------------------------------------------------------------------ the three stages
    def prepare(
        self,
        arrays: tuple[Any, ...],
        depths: tuple[int, ...],
        n_inputs: int,
        target_values: tuple[float | None, ...],
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, Layout]:
        """Stage 1: concrete columns (inputs, conditions, target-condition columns) -> rows,
        their ``(N, k)`` conditions and targets (None when the model has none). None becomes
        NaN (the NaN policy); event-level conditions are broadcast to the objects of jagged
        inputs; constant targets (``target_values``) fill their columns."""
        t = self
        jagged = bool(depths[0])
        names = t.features
        counts: np.ndarray | None = None
        cols = []
        for j, (arr, name) in enumerate(zip(arrays[:n_inputs], names, strict=True)):
            if jagged:
                arr, n_obj = flatten(arr)
                if counts is None:
                    counts = n_obj
                elif len(n_obj) != len(counts) or not np.array_equal(n_obj, counts):
                    raise ValueError(
                        f"jagged inputs {names[0]!r} ({t.inputs[names[0]]!r}) and {name!r} "
                        f"({t.inputs[names[j]]!r}) have different numbers of objects per "
                        "event; morph fields of one collection together"
                    )
            cols.append(to_float(arr, name, what="input", none_as_nan=True))
        x = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
        layout = Layout(len(x), counts)
        columns = []
        for arr, depth in zip(arrays[n_inputs:], depths[n_inputs:], strict=True):
            if depth:
                arr, n_obj = flatten(arr)
                if counts is None or not np.array_equal(n_obj, counts):
                    raise ValueError(
                        "the per-object condition has different numbers of objects per event "
                        "than the inputs; give one value per event or per input object"
                    )
            values = to_float(arr, "condition", what="condition", none_as_nan=True)
            if jagged and not depth:
                values = broadcast_to_objects(values, layout)
            columns.append(values)
        k = len(self.condition_names)
        cond = np.stack(columns[:k], axis=1) if k else None
        target = None
        if target_values:
            given = iter(columns[k:])
            target = np.stack(
                [next(given) if v is None else np.full(len(x), v) for v in target_values], axis=1
            )
        return x, cond, target, layout

    def numpy_call(
        self, x: np.ndarray, condition: np.ndarray | None = None, target: np.ndarray | None = None
    ) -> Any:
        """Stage 2: morph the rows that can be morphed; the others are NaN (the NaN policy).
        Returns the ``(N, D)`` morphed rows, with ``variations=True`` a dict of them
        ``{"nominal", "up", "down"}`` from one pass (:meth:`Morpher.variations`)."""
        names = _VARIATIONS if self.variations else _VARIATIONS[:1]
        out = {k: np.full(x.shape, np.nan) for k in names}
        y = out if self.variations else out["nominal"]
        if len(x) == 0:
            return y
        good = np.isfinite(x).all(axis=1)
        morpher = self.morpher
        good &= morpher.scaler.in_domain(x)
        for c in (condition, target):
            if c is not None:
                finite = np.isfinite(c).all(axis=1)
                good &= finite
                if morpher.condition_scaler is not None:
                    # an unseen category is an error for the whole job, not a NaN row
                    morpher.condition_scaler.check_codes(c[finite])
                    good &= morpher.condition_scaler.in_domain(c)
        if not good.any():
            return y
        kwargs: dict[str, Any] = {"batch_size": self.batch_size}
        if condition is not None:
            kwargs["condition"] = condition[good]
        if target is not None:
            kwargs["target_condition"] = target[good]
        if self.variations:
            res = morpher.variations(x[good], with_nominal=True, **kwargs)
        else:
            res = {"nominal": morpher.morph(x[good], **kwargs)}
        for k in names:
            out[k][good] = res[k]
        return y

    def postprocess(self, y: Any, layout: Layout) -> ak.Array:
        """Stage 3: morphed rows -> a record array with one float64 column per feature
        (jagged on the inputs' counts when the inputs are); for a dict of results (variations)
        a record ``{"nominal", "up", "down"}`` of such records."""
        if isinstance(y, Mapping):
            return ak.zip({k: self.postprocess(v, layout) for k, v in y.items()}, depth_limit=1)
        columns = {}
        for j, f in enumerate(self.features):
            col = np.ascontiguousarray(y[:, j])
            columns[f] = ak.unflatten(col, layout.counts) if layout.jagged else ak.Array(col)
        if not columns:
            return ak.Array([{}] * layout.n_events)  # pragma: no cover - a model has features
        return ak.zip(columns, depth_limit=1)
