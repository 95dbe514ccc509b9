"""Where ``MorphTransform``'s outputs go: columns into their collections, and up/down coffea
systematics registered on them without touching unrelated columns.

:func:`add_updown_systematic` gives a collection (``events.FatJet``, or ``events`` itself) the
structure that coffea's ``Systematic.add_systematic`` builds (the same forms and values), so
that ``collection.systematics.<name>.up.<field>`` holds the up values (``.down`` the down
values) of the varied fields, with the collection's behaviours (four-vectors, ``delta_r``)::

    fatjets = add_updown_systematic(fatjets, "f4f", {"msoftdrop_morphed": (
        "msoftdrop_morphed_up", "msoftdrop_morphed_down")})
    fatjets.systematics.f4f.up.msoftdrop_morphed   # == fatjets.msoftdrop_morphed_up

The up and down values are fields of the collection already. One varied field gives coffea's
kind ``"UpDownSystematic"``, several ``"UpDownMultiSystematic"``; the variations are built by
coffea's own mixin methods (``_build_variations``, ``up``, ``down``) on the flattened
collection. Only collections whose records are coffea ``Systematic`` s (NanoEvents, FatJet,
Jet, Photon, ...; :func:`supports_systematics`) take one; :func:`write_columns` skips the
others (a plain awkward record array gets the columns only).

Why not ``collection.add_systematic``: on a ``dask_awkward.Array`` coffea builds the result's
meta on a length-zero copy of the typetracer (``length_zero_if_typetracer``), which touches
every buffer, so every column of the collection becomes necessary for every column read
downstream. Here the same operations run on the typetracer itself, in one
``dak.map_partitions`` task over the collection, and touch only the collection's offsets and
the up and down fields (which the transform computes from its inputs anyway), so
``dak.necessary_columns`` stays what it was. DESIGN-NOTES.md, "coffea transform".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from .columns import is_dask

__all__ = [
    "SYSTEMATICS_FIELD",
    "add_updown_systematic",
    "check_options",
    "has_systematic",
    "supports_systematics",
    "write_columns",
    "write_outputs",
]

#: the field of a coffea collection that holds its systematics
SYSTEMATICS_FIELD = "__systematics__"


def _concrete(array: Any) -> Any:
    """The awkward array itself, or the typetracer meta of a dask-awkward array."""
    return array._meta if is_dask(array) else array


def _record_layout(layout: ak.contents.Content) -> ak.contents.Content:
    """The first record layout inside lists, options and indexed layers."""
    while not isinstance(layout, ak.contents.RecordArray) and hasattr(layout, "content"):
        layout = layout.content
    return layout


def supports_systematics(collection: Any) -> bool:
    """True when the records of ``collection`` (eager, virtual or dask) have a coffea
    behaviour derived from ``coffea.nanoevents.methods.base.Systematic`` (NanoEvents
    themselves, FatJet, Jet, Photon, ...): the ones with a ``.systematics`` attribute."""
    try:
        from coffea.nanoevents.methods.base import Systematic
    except ImportError:  # pragma: no cover - without coffea there is no such behaviour
        return False
    array = _concrete(collection)
    if not isinstance(array, ak.Array):
        return False
    name = _record_layout(array.layout).parameter("__record__")
    behavior = {**ak.behavior, **(array.behavior or {})}
    cls = behavior.get(name) if isinstance(name, str) else None
    return isinstance(cls, type) and issubclass(cls, Systematic)


def has_systematic(collection: Any, name: str) -> bool:
    """True when ``collection`` already has a systematic called ``name``."""
    array = _concrete(collection)
    if SYSTEMATICS_FIELD not in ak.fields(array):
        return False
    return name in ak.fields(array[SYSTEMATICS_FIELD])


def check_options(
    inputs: Mapping[str, Any], ensemble_size: int, variations: Any, systematic: Any, replace: Any
) -> None:
    """``MorphTransform``'s ``variations``, ``systematic`` and ``replace``: an ensemble of at
    least two members for a band, an identifier (not ``__dunder__``, coffea hides those) as
    the systematic's name, and field paths only as inputs to replace."""
    if not isinstance(variations, bool) or not isinstance(replace, bool):
        raise TypeError(
            f"variations and replace are True or False, got {variations!r}, {replace!r}"
        )
    if variations and ensemble_size < 2:
        raise ValueError(
            f"variations=True needs a model with an ensemble of at least 2 members (the band "
            f"is the std over them); this one has {ensemble_size}: train it with "
            "fit_morpher(..., ensemble=K), K >= 2"
        )
    if not (isinstance(systematic, str) and systematic.isidentifier()) or (
        systematic.startswith("__") and systematic.endswith("__")
    ):
        raise ValueError(
            f"systematic must be an identifier such as 'f4f' (not __dunder__), got {systematic!r}"
        )
    for feature, spec in inputs.items() if replace else ():
        if callable(spec):
            raise ValueError(
                f"replace=True writes the morph into the input fields, but input {feature!r} is "
                "a callable (no field to write to): give a field path, or replace=False"
            )


def _pair(up: ak.Array, down: ak.Array) -> ak.Array:
    """``(n, 2)`` values, up then down (coffea's ``UpDownSystematic`` order)."""
    return ak.concatenate([up[:, np.newaxis], down[:, np.newaxis]], axis=1)


class _Constant:
    """The "varying function" handed to coffea's ``_build_variations``: the variations are
    computed already, so it returns them (and ignores the nominal values it is given)."""

    def __init__(self, varied: ak.Array) -> None:
        self.varied = varied

    def __call__(self, _nominal: Any) -> ak.Array:
        return self.varied


class UpDownRegistration:
    """The per-chunk (eager) or per-partition (dask) function of :func:`add_updown_systematic`:
    a collection in, the same collection with the systematic registered out.

    It works on typetracers as on concrete arrays and touches only the collection's offsets
    (flatten, unflatten) and the up and down fields (paired into coffea's ``(n, 2)``
    values); the records of the variations refer to the existing fields.
    """

    def __init__(self, name: str, varied: Mapping[str, tuple[str, str]]) -> None:
        self.name = name
        self.varied = dict(varied)

    @property
    def kind(self) -> str:
        """coffea's kind: ``"UpDownSystematic"`` for one field, ``"UpDownMultiSystematic"``
        (its subclass for several fields) otherwise."""
        return "UpDownSystematic" if len(self.varied) == 1 else "UpDownMultiSystematic"

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("coffea-f4f-updown", self.name, tuple(sorted(self.varied.items())))

    def __call__(self, collection: ak.Array) -> ak.Array:
        name, kind = self.name, self.kind
        jagged = collection.ndim > 1
        counts = ak.num(collection, axis=1) if jagged else None
        flat = ak.flatten(collection, axis=1) if jagged else collection
        rendered = _record_layout(flat.layout).parameter("__record__")
        if SYSTEMATICS_FIELD in ak.fields(flat):
            previous = flat[SYSTEMATICS_FIELD]
            view = flat
        else:  # coffea's mixins expect the field: an empty record per object
            previous = None
            first = next(iter(self.varied))
            empty = ak.without_field(ak.zip({"_": flat[first]}, depth_limit=1), "_")
            view = ak.with_field(flat, empty, SYSTEMATICS_FIELD)
        view = ak.with_parameter(view, "__record__", kind)

        pairs = {w: _pair(flat[u], flat[d]) for w, (u, d) in self.varied.items()}
        what: str | list[str]
        if len(pairs) == 1:
            (what, varied) = next(iter(pairs.items()))
        else:
            what, varied = list(pairs), ak.zip(pairs, depth_limit=1)
        view._build_variations(name, what, _Constant(varied))

        systematics = {} if previous is None else {f: previous[f] for f in ak.fields(previous)}
        systematics[name] = ak.zip(
            {v: getattr(view, v)(name, what, rendered) for v in view.describe_variations()},
            depth_limit=1,
            with_name=f"{name}Systematics",
        )
        record = ak.zip(systematics, depth_limit=1)
        if counts is not None:
            record = ak.unflatten(record, counts)
        out = ak.with_field(collection, record, SYSTEMATICS_FIELD)
        if out.behavior is not None:  # what coffea does: the type name of the record
            out.behavior[("__typestr__", f"{name}Systematics")] = kind
        return out


def add_updown_systematic(
    collection: Any, name: str, varied: Mapping[str, tuple[str, str]], *, label: str = ""
) -> Any:
    """Register an up/down systematic ``name`` on a coffea collection.

    Args:
        collection: a NanoEvents collection (eager or virtual ``ak.Array``, or
            ``dask_awkward.Array``) whose records are coffea ``Systematic`` s: a jagged
            collection such as ``events.FatJet`` or the events themselves.
        name: the systematic's name (``collection.systematics.<name>``).
        varied: ``{field: (up field, down field)}``: the fields that vary and the fields of the
            same collection that hold their up and down values.
        label: how to name the collection in error messages (e.g. ``"FatJet"``).

    Returns:
        The collection with the systematic; on dask, one ``dak.map_partitions`` task whose
        necessary columns are those of ``collection`` plus its offsets.

    Raises:
        ValueError: the collection has a systematic ``name`` already, or no coffea
            ``Systematic`` behaviour (see :func:`supports_systematics`), or ``varied`` is empty.
    """
    where = f"{label!r}" if label else "the collection"
    if not varied:
        raise ValueError("varied must name at least one field")
    if not supports_systematics(collection):
        raise ValueError(
            f"{where} has no coffea Systematic behaviour; systematics can be registered on "
            "NanoEvents and their collections only"
        )
    if has_systematic(collection, name):
        raise ValueError(
            f"{where} already has a systematic named {name!r}; pass another name (systematic='...')"
        )
    fn = UpDownRegistration(name, varied)
    if is_dask(collection):
        import dask_awkward as dak

        return dak.map_partitions(fn, collection, label="f4f-systematic")
    return fn(collection)


def write_columns(
    events: Any,
    columns: Mapping[tuple[str, ...], Any],
    *,
    systematic: str = "f4f",
    varied: Mapping[tuple[str, ...], Mapping[str, tuple[str, str]]] | None = None,
) -> Any:
    """Add ``columns`` to ``events`` collection by collection, and register an up/down
    systematic on the collections named in ``varied``.

    Args:
        events: NanoEvents or any awkward record array (eager, virtual or dask).
        columns: ``{field path: column}``; a path of one name is a top-level field.
        systematic: the name of the systematic.
        varied: ``{collection path (() for the events): {field: (up field, down field)}}``;
            a collection without coffea's ``Systematic`` behaviour is left without it.

    Returns:
        ``events`` with the columns; the events record is written last, so its variations
        hold the updated collections.

    Raises:
        ValueError: a collection has a systematic named ``systematic`` already.
    """
    with_field = ak.with_field
    if is_dask(events):
        import dask_awkward as dak

        with_field = dak.with_field
    varied = varied or {}
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for path, column in columns.items():
        groups.setdefault(tuple(path[:-1]), {})[path[-1]] = column
    for where in sorted({*groups, *varied}, key=lambda w: not w):  # stable, events last
        coll = events
        for part in where:
            coll = coll[part]
        for name, column in groups.get(where, {}).items():
            coll = with_field(coll, column, where=name)
        label = ".".join(where) or "events"
        if varied.get(where) and supports_systematics(coll):
            if has_systematic(coll, systematic):
                raise ValueError(
                    f"{label} already has a systematic named {systematic!r} (another transform "
                    "with variations?); give this one another name: "
                    "MorphTransform(..., systematic='...')"
                )
            coll = add_updown_systematic(coll, systematic, varied[where], label=label)
        events = (
            with_field(events, coll, where=where if len(where) > 1 else where[0]) if where else coll
        )
    return events


def write_outputs(
    events: Any,
    morphed: Any,
    paths: Mapping[str, tuple[str, ...]],
    originals: Mapping[str, Any] | None,
    systematic: str,
    variations: bool,
    band_suffix: str = "",
) -> Any:
    """``MorphTransform``'s outputs into ``events`` (:func:`write_columns`).

    Args:
        events: the events the transform was called on.
        morphed: its partition function's record of one field per feature; with
            ``variations`` a record ``{"nominal", "up", "down"}`` of those.
        paths: ``{feature: field path of its nominal output}``.
        originals: with ``replace=True`` ``{feature: input column}``, kept as
            ``<field>_unmorphed`` (a field that must not exist yet); else None.
        systematic: the systematic's name.
        variations: write ``<path><band_suffix>_up`` / ``_down`` and register the systematic
            on them.
        band_suffix: appended to the nominal field's name before ``_up`` / ``_down`` (with
            ``replace=True`` the transform's suffix, so the band is ``mass_morphed_up`` beside
            the replaced ``mass``).

    Raises:
        ValueError: a ``<field>_unmorphed`` or the systematic exists already.
    """
    nominal = morphed["nominal"] if variations else morphed
    columns: dict[tuple[str, ...], Any] = {}
    varied: dict[tuple[str, ...], dict[str, tuple[str, str]]] = {}
    for feature, path in paths.items():
        *where, name = path
        if originals is not None:
            coll = events
            for part in where:
                coll = coll[part]
            if f"{name}_unmorphed" in ak.fields(_concrete(coll)):
                raise ValueError(
                    f"{'.'.join(where) or 'events'} already has a field {name + '_unmorphed'!r} "
                    "(replace=True applied twice?); replace=True keeps the original values "
                    "there and does not overwrite them"
                )
            columns[(*where, f"{name}_unmorphed")] = originals[feature]
        columns[path] = nominal[feature]
        if variations:
            band = f"{name}{band_suffix}"
            for v in ("up", "down"):
                columns[(*where, f"{band}_{v}")] = morphed[v][feature]
            varied.setdefault(tuple(where), {})[name] = (f"{band}_up", f"{band}_down")
    return write_columns(events, columns, systematic=systematic, varied=varied)
