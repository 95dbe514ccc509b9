"""MorphTransform: apply a trained :class:`~coffea_f4f.morpher.Morpher` inside coffea processors.

``events = morph(events)`` adds a morphed copy of each input field beside the original
(``FatJet.msoftdrop`` -> ``FatJet.msoftdrop_morphed``) and leaves everything else untouched:
NanoEvents behaviours (``events.FatJet`` keeps its vector methods) and cross-references
(``events.FatJet.subjets``) keep working, because the new columns are added with
``ak.with_field`` and never replace a collection.

The same object works on

- eager and virtual NanoEvents (``ak.Array``; what ``processor.Runner`` gives a processor), where
  the torch step runs at once on the chunk, and
- ``dask_awkward.Array`` (``NanoEventsFactory.from_root(..., mode="dask")``), where one
  ``dak.map_partitions`` task per partition runs the torch step. The task touches exactly the
  input and condition columns, so ``dak.necessary_columns`` of a morphed field lists only them.
  (Chaining transforms, ``t2(t1(events))``, makes every field of the result depend on the
  ``t1`` task, since dask-awkward adds fields with one ``with_field`` step after another; its
  columns are then read too, as the task really runs.)

How it runs:

- **Pickling.** A pickled transform carries its model as ``Morpher.config()`` (JSON, without the
  training densities and history, which morphing does not need) plus the map's weights
  serialised with ``safetensors`` (bytes; float32 as trained, without the buffers that the
  architecture determines, e.g. MADE masks) - never a pickled torch module and never a file
  path, so workers need neither the model file nor a shared file system. A paper-sized morph
  (8 autoregressive layers x 128 hidden, 2 features) pickles to ~2.3 MB. Callable inputs and
  conditions are pickled with the transform: coffea and dask use cloudpickle, which handles
  lambdas and functions defined in a notebook or script.
- **Caching.** The torch model is rebuilt at most once per process: a module-level cache in this
  module maps the SHA-256 of the serialised model (plus precision, device and thread count) to
  the built :class:`~coffea_f4f.morpher.Morpher`. A processor unpickled for every chunk, or
  several transforms sharing a model, reuse it. :func:`clear_model_cache` empties it.
- **Threads and memory.** Torch intra-op threads are set to ``num_threads`` (default 1: on
  small batches more threads are much slower) while morphing and restored afterwards; the flow
  sees at most ``batch_size`` rows at a time.
- **Determinism.** Rows are morphed independently in float64 (default): the same chunk gives
  bitwise the same result in eager, virtual and dask mode, and another chunking or
  ``batch_size`` changes an object's value by at most rounding (~1e-16 relative; the matrix
  products may round differently for other batch lengths).

Non-finite and unmappable values (the NaN policy):
    A row (one object of a jagged collection, or one event) whose inputs or condition hold NaN,
    +-inf or None, or lie outside the domain of the model's ``log`` / ``logit`` feature
    scaling, is **not** sent through the flow: all its morphed outputs are NaN, and every other
    row is morphed normally. One bad object therefore never fails a whole chunk, and the bad
    rows stay visible (``np.isnan``) instead of being silently left unmorphed. Missing lists
    (an option-type jagged input) count as empty lists.

This module imports numpy and awkward; torch, safetensors and dask-awkward are imported only
when a model is built or a dask array is transformed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from .columns import MissingColumnError

__all__ = ["MorphTransform", "clear_model_cache"]

#: rows per torch call when ``batch_size`` is not given
DEFAULT_BATCH_SIZE = 16384

# (content hash, precision, device, num_threads) -> Morpher; one build per process and key
_MODEL_CACHE: dict[tuple[str, str, str, int | None], Any] = {}
_CACHE_LOCK = threading.Lock()

FieldSpec = str | Callable[[Any], Any]


def clear_model_cache() -> None:
    """Forget all models built by :class:`MorphTransform` in this process."""
    with _CACHE_LOCK:
        _MODEL_CACHE.clear()


# ----------------------------------------------------------------------------- helpers
def _is_dask(obj: Any) -> bool:
    dak = sys.modules.get("dask_awkward")
    return dak is not None and isinstance(obj, dak.Array)


def _form(arr: Any) -> Any:
    return arr.form if _is_dask(arr) else arr.layout.form


def _walk(form: Any) -> tuple[int, Any]:
    """List depth and leaf form of ``form`` (option and index layers skipped)."""
    depth = 0
    while True:
        name = type(form).__name__
        if name in ("ListOffsetForm", "ListForm", "RegularForm"):
            depth += 1
            form = form.content
        elif name in ("IndexedOptionForm", "ByteMaskedForm", "BitMaskedForm", "UnmaskedForm",
                      "IndexedForm"):
            form = form.content
        elif name == "NumpyForm":
            return depth + len(form.inner_shape), form
        else:
            return depth, form


def _available(events: Any, limit: int = 5000) -> list[str]:
    """Dotted field paths of ``events`` (top level and one collection level), from its form."""
    try:
        form = _form(events)
    except Exception:  # pragma: no cover - exotic inputs: no suggestions
        return []
    out: list[str] = []

    def record_of(f: Any) -> Any:
        _, leaf = _walk(f)
        return leaf if type(leaf).__name__ == "RecordForm" else None

    top = record_of(form)
    if top is None:
        return out
    for name, content in zip(top.fields, top.contents, strict=True):
        out.append(name)
        sub = record_of(content)
        if sub is not None and len(out) < limit:
            out.extend(f"{name}.{s}" for s in sub.fields)
    return out


def _get_path(events: Any, path: str) -> Any:
    """The column at dotted ``path`` of an ak or dak record array (MissingColumnError if not)."""
    current = events
    for part in path.split("."):
        fields = getattr(current, "fields", None) or []
        if part not in fields:
            raise MissingColumnError(path, _available(events))
        current = current[part]
    return current


@dataclass(frozen=True)
class _Column:
    """A resolved input: the array, its list depth (0 event-level, 1 jagged) and its name."""

    array: Any
    depth: int
    name: str


def _resolve(events: Any, spec: FieldSpec, name: str, what: str) -> _Column:
    if callable(spec):
        arr = spec(events)
        label = f"{what} {name!r} (callable)"
    else:
        arr = _get_path(events, spec)
        label = f"{what} {spec!r}"
    if _is_dask(events) != _is_dask(arr):
        raise TypeError(
            f"{label} is a {type(arr).__name__} but the events are a {type(events).__name__}; "
            "a callable must return an array of the same kind (dask or not) as the events"
        )
    if not _is_dask(arr) and not isinstance(arr, ak.Array):
        values = np.asarray(arr)
        if values.ndim == 0:
            raise TypeError(f"{label} is a scalar ({type(arr).__name__}); return one value per "
                            "event or per object")
        arr = ak.Array(values)
    depth, leaf = _walk(_form(arr))
    kind = type(leaf).__name__
    if kind == "RecordForm":
        raise TypeError(
            f"{label} is a record with fields {list(leaf.fields)[:8]}, not a number; name one of "
            "its fields (e.g. 'FatJet.msoftdrop')"
        )
    if kind != "NumpyForm":
        raise TypeError(f"{label} has an unsupported type ({kind}); expected numbers")
    if np.dtype(leaf.primitive).kind not in "iuf":
        raise TypeError(f"{label} has dtype {leaf.primitive}, not a number")
    if depth > 1:
        raise ValueError(
            f"{label} has {depth} list dimensions; only one value per event or one list of "
            "objects per event (a jagged collection field) is supported"
        )
    return _Column(arr, depth, label)


def _flat_numpy(arr: ak.Array, jagged: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 values (None -> NaN), flattened one level when jagged; and the counts."""
    counts = None
    if jagged:
        counts = ak.to_numpy(ak.fill_none(ak.num(arr, axis=1), 0)).astype(np.int64)
        arr = ak.flatten(arr, axis=1)
    arr = ak.fill_none(ak.values_astype(arr, np.float64), np.nan)
    return np.asarray(ak.to_numpy(arr), dtype=np.float64), counts


def _pack(y: np.ndarray, fields: list[str], counts: np.ndarray | None) -> ak.Array:
    """Morphed matrix -> record array of one (jagged if ``counts``) float64 column per field."""
    cols = {}
    for j, f in enumerate(fields):
        col = ak.contents.NumpyArray(np.ascontiguousarray(y[:, j]))
        if counts is not None:
            offsets = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            col = ak.contents.ListOffsetArray(ak.index.Index64(offsets), col)
        cols[f] = col
    length = len(y) if counts is None else len(counts)
    return ak.Array(ak.contents.RecordArray(list(cols.values()), list(cols), length=length))


# ----------------------------------------------------------------------------- the task
class _MorphPartition:
    """The per-chunk (eager) or per-partition (dask) function: columns in, record out."""

    def __init__(self, transform: MorphTransform, depths: tuple[int, ...], n_inputs: int,
                 target_value: float | None) -> None:
        self.transform = transform
        self.depths = depths
        self.n_inputs = n_inputs
        self.target_value = target_value

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        t = self.transform
        return ("coffea-f4f-morph", type(t).__qualname__, t.model_hash, t.precision, t.device,
                t.num_threads, t.batch_size, self.depths, self.n_inputs, self.target_value)

    def __call__(self, *arrays: Any) -> ak.Array:
        features = self.transform.features
        jagged = bool(self.depths[0])
        if ak.backend(*arrays) == "typetracer":
            for a in arrays:  # the result depends on every buffer of every input
                ak.typetracer.touch_data(a)
            empty = _pack(np.zeros((0, len(features))), features,
                          np.zeros(0, dtype=np.int64) if jagged else None)
            return ak.Array(empty.layout.to_typetracer(forget_length=True))
        return self.transform._morph_arrays(arrays, self.depths, self.n_inputs,
                                            self.target_value)


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

    Args:
        model: a :class:`~coffea_f4f.morpher.Morpher`, or the directory of a saved one.
        inputs: ``{model feature: source}`` for every feature of the model, where a source is a
            field path (``"FatJet.msoftdrop"`` or a top-level ``"mjj"``) or a callable
            ``events -> array``. All inputs must be event-level, or all jagged with the same
            object counts (e.g. fields of one collection), and are morphed per object.
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

    Raises:
        TypeError: ``model`` or a source is of an unsupported type.
        ValueError: ``inputs`` do not match the model's features, the condition is missing or
            not wanted, or an option is out of range.
        FileNotFoundError: ``model`` is a path that does not exist.

    Calling the transform raises :class:`~coffea_f4f.columns.MissingColumnError` (naming close
    matches) for a missing field, and ``ValueError`` for inputs that do not fit together
    (jagged next to event-level inputs, a jagged condition for event-level inputs, different
    object counts). Non-finite inputs do not raise: see the module docstring (NaN policy).
    """

    def __init__(
        self,
        model: Any,
        *,
        inputs: Mapping[str, FieldSpec],
        condition: FieldSpec | None = None,
        suffix: str = "_morphed",
        target_condition: FieldSpec | float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        num_threads: int | None = 1,
        precision: str | None = None,
        device: str = "cpu",
    ) -> None:
        from .morpher import Morpher, load

        if isinstance(model, (str, os.PathLike)):
            model = load(model)
        if not isinstance(model, Morpher):
            raise TypeError(
                f"model must be a Morpher or the path of a saved model, got {type(model).__name__}"
            )
        self.features: list[str] = list(model.features)
        self.condition_name: str | None = model.condition
        self._between = bool(model.between_conditions)

        if not isinstance(inputs, Mapping):
            raise TypeError("inputs must be a mapping {model feature: field path or callable}")
        missing = [f for f in self.features if f not in inputs]
        extra = [k for k in inputs if k not in self.features]
        if missing or extra:
            raise ValueError(
                f"inputs must name each model feature exactly once; model features: "
                f"{self.features}" + (f"; missing: {missing}" if missing else "")
                + (f"; not features of the model: {extra}" if extra else "")
            )
        for f in self.features:
            _check_spec(inputs[f], f"inputs[{f!r}]")
        self.inputs: dict[str, FieldSpec] = {f: inputs[f] for f in self.features}

        if self.condition_name is None and condition is not None:
            raise ValueError("the model is not conditional; do not pass condition=")
        if self.condition_name is not None and condition is None:
            raise ValueError(
                f"the model is conditional on {self.condition_name!r}: pass condition= (a field "
                "path such as 'mjj', or a callable events -> one value per event or object)"
            )
        if condition is not None:
            _check_spec(condition, "condition")
        self.condition = condition
        if self._between and target_condition is None:
            raise ValueError(
                "the model maps between condition values: pass target_condition= (a number, a "
                "field path or a callable)"
            )
        if not self._between and target_condition is not None:
            raise ValueError("target_condition= is only for between-condition models "
                             "(fit_condition_morpher)")
        if target_condition is not None and not isinstance(target_condition, (int, float)):
            _check_spec(target_condition, "target_condition")
        self.target_condition = target_condition

        if not isinstance(suffix, str) or not suffix:
            raise ValueError("suffix must be a non-empty string (the morphed copies are added "
                             "beside the inputs, never over them)")
        self.suffix = suffix
        outputs = [self._output_path(f) for f in self.features]
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

        self._config_bytes, self._weights = _serialise(model)
        self.model_hash = hashlib.sha256(
            self._config_bytes + b"\0" + self._weights).hexdigest()

    def __repr__(self) -> str:
        cond = f", condition={self.condition!r}" if self.condition is not None else ""
        return (f"MorphTransform(features={self.features}, inputs={self.inputs}{cond}, "
                f"suffix={self.suffix!r}, model={self.model_hash[:12]})")

    # ------------------------------------------------------------------ model
    @property
    def morpher(self) -> Any:
        """The process-wide cached :class:`~coffea_f4f.morpher.Morpher` (built on first use)."""
        key = (self.model_hash, self.precision, self.device, self.num_threads)
        model = _MODEL_CACHE.get(key)
        if model is None:
            with _CACHE_LOCK:
                model = _MODEL_CACHE.get(key)
                if model is None:
                    model = self._build()
                    _MODEL_CACHE[key] = model
        return model

    def _build(self) -> Any:
        import torch

        from .morpher import Morpher

        config = json.loads(self._config_bytes.decode())
        model = Morpher.from_config(config, _restore_state(config, self._weights))
        model.to(self.device, precision=self.precision)
        model.num_threads = self.num_threads
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        model.module.to(dtype=dtype, device=model.device)
        return model

    # ------------------------------------------------------------------ naming
    def _output_path(self, feature: str) -> tuple[str, ...]:
        spec = self.inputs[feature]
        if callable(spec):
            return (f"{feature}{self.suffix}",)
        parts = spec.split(".")
        return (*parts[:-1], parts[-1] + self.suffix)

    @property
    def outputs(self) -> dict[str, str]:
        """``{feature: dotted path of its morphed field}``."""
        return {f: ".".join(self._output_path(f)) for f in self.features}

    # ------------------------------------------------------------------ applying
    def __call__(self, events: Any) -> Any:
        """Return ``events`` with the morphed fields added (see the class docstring).

        Args:
            events: NanoEvents (eager or virtual ``ak.Array``, or ``dask_awkward.Array``) or any
                awkward record array holding the inputs.

        Returns:
            The same kind of array with one new float64 field per feature.
        """
        if not (isinstance(events, ak.Array) or _is_dask(events)):
            raise TypeError(
                f"events must be an awkward or dask-awkward array, got {type(events).__name__}"
            )
        cols = [_resolve(events, self.inputs[f], f, "input") for f in self.features]
        conds = []
        if self.condition is not None:
            conds.append(_resolve(events, self.condition, self.condition_name, "condition"))
        target_value = None
        if self.target_condition is not None:
            if isinstance(self.target_condition, (int, float)):
                target_value = float(self.target_condition)
            else:
                conds.append(_resolve(events, self.target_condition, self.condition_name,
                                      "target condition"))
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
        fn = _MorphPartition(self, depths, len(cols), target_value)
        if _is_dask(events):
            import dask_awkward as dak

            morphed = dak.map_partitions(fn, *arrays, label="f4f-morph")
            with_field = dak.with_field
        else:
            morphed = fn(*arrays)
            with_field = ak.with_field
        for f in self.features:
            path = self._output_path(f)
            events = with_field(events, morphed[f], where=path if len(path) > 1 else path[0])
        return events

    transform = __call__

    def _morph_arrays(self, arrays: tuple[Any, ...], depths: tuple[int, ...], n_inputs: int,
                      target_value: float | None) -> ak.Array:
        """Morph one chunk: concrete arrays in the order inputs, condition, target condition."""
        jagged = bool(depths[0])
        names = self.features
        flat, counts = [], None
        for j, (arr, name) in enumerate(zip(arrays[:n_inputs], names, strict=True)):
            values, c = _flat_numpy(arr, jagged)
            if jagged:
                if counts is None:
                    counts = c
                elif len(c) != len(counts) or not np.array_equal(c, counts):
                    raise ValueError(
                        f"jagged inputs {names[0]!r} ({self.inputs[names[0]]!r}) and {name!r} "
                        f"({self.inputs[names[j]]!r}) have different numbers of objects per "
                        "event; morph fields of one collection together"
                    )
            flat.append(values)
        x = np.stack(flat, axis=1) if flat else np.zeros((0, 0))
        ctx = []
        for arr, d in zip(arrays[n_inputs:], depths[n_inputs:], strict=True):
            values, c = _flat_numpy(arr, bool(d))
            if jagged and not d:
                if len(values) != len(counts):
                    raise ValueError(  # pragma: no cover - same events, cannot differ
                        f"condition has {len(values)} events, inputs {len(counts)}")
                values = np.repeat(values, counts)
            elif jagged and not np.array_equal(c, counts):
                raise ValueError(
                    "the per-object condition has different numbers of objects per event than "
                    "the inputs; give one value per event or per input object"
                )
            ctx.append(values)
        if target_value is not None:
            ctx.append(np.full(len(x), target_value))
        y = self._morph_matrix(x, ctx)
        return _pack(y, names, counts)

    def _morph_matrix(self, x: np.ndarray, ctx: list[np.ndarray]) -> np.ndarray:
        """Morph the rows that can be morphed; the others are NaN (the NaN policy)."""
        y = np.full(x.shape, np.nan)
        if len(x) == 0:
            return y
        good = np.isfinite(x).all(axis=1)
        for c in ctx:
            good &= np.isfinite(c)
        morpher = self.morpher
        good &= morpher.scaler.in_domain(x)
        if morpher.condition_scaler is not None:
            for c in ctx:
                good &= morpher.condition_scaler.in_domain(c[:, None])
        if not good.any():
            return y
        kwargs: dict[str, Any] = {}
        if ctx:
            kwargs["condition"] = ctx[0][good]
        if len(ctx) > 1:
            kwargs["target_condition"] = ctx[1][good]
        y[good] = morpher.morph(x[good], batch_size=self.batch_size, **kwargs)
        return y


def _check_spec(spec: Any, what: str) -> None:
    if callable(spec):
        return
    if not isinstance(spec, str) or not spec or any(not p for p in spec.split(".")):
        raise TypeError(
            f"{what} must be a field path such as 'FatJet.msoftdrop' or a callable "
            f"events -> array, got {spec!r}"
        )


def _architecture_buffers(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Buffers of the map that follow from its architecture alone (e.g. the MADE masks).

    They are found by building the map twice under different random seeds and keeping the
    buffers that come out identical, so nothing random is ever treated as derivable.
    """
    import torch

    from .morpher import build_map

    builds = []
    for seed in (1, 2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            builds.append(dict(build_map(spec).named_buffers()))
    a, b = builds
    return {k: v for k, v in a.items()
            if k in b and v.shape == b[k].shape and torch.equal(v, b[k])}


def _serialise(model: Any) -> tuple[bytes, bytes]:
    """The model as (config JSON bytes, safetensors bytes) with only what morphing needs.

    Left out: the training densities and history, and the map's buffers that the architecture
    determines (rebuilt by :func:`_restore_state`). float64 weights that are exact float32
    values (a float32-trained model after ``Morpher.morph`` moved it to float64) are stored as
    float32, so the payload is small and its hash does not depend on the model's history.
    """
    import torch
    from safetensors.torch import save as save_weights

    config = dict(model.config())
    config["source_density"] = None
    config["target_density"] = None
    config["history"] = {}
    derived = _architecture_buffers(config["map"])
    state = {}
    for k, v in model.state_dict().items():
        if not k.startswith("map."):
            continue
        fixed = derived.get(k[len("map."):])
        if fixed is not None and fixed.shape == v.shape and torch.equal(fixed.to(v.dtype), v):
            continue
        if v.dtype == torch.float64:
            f32 = v.float()
            if (f32.double() == v).all():
                v = f32
        state[k] = v
    return json.dumps(config, sort_keys=True).encode(), save_weights(state)


def _restore_state(config: Mapping[str, Any], weights: bytes) -> dict[str, Any]:
    """The full state dict for ``Morpher.from_config``: the saved tensors plus the buffers
    that :func:`_serialise` left out because the architecture determines them."""
    from safetensors.torch import load as load_weights

    state = dict(load_weights(weights))
    for k, v in _architecture_buffers(config["map"]).items():
        state.setdefault(f"map.{k}", v)
    return state
