"""Field paths: naming a column of an input, finding it, and saying what is there instead.

A path is a dotted string (``"FatJet.msoftdrop"``) or an awkward tuple path
(``("FatJet", "msoftdrop")``); both mean the same column. Lookups read the input's *form*
(its type), so asking for fields of virtual or dask NanoEvents loads no data.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import awkward as ak

__all__ = [
    "FieldPath",
    "MissingColumnError",
    "as_path",
    "available_fields",
    "form_of",
    "get_field",
    "is_awkward",
    "is_dask",
    "path_name",
]

#: A column name: ``"mjj"``, ``"FatJet.msoftdrop"`` or ``("FatJet", "msoftdrop")``.
FieldPath: TypeAlias = str | tuple[str, ...]

_SHOWN = 20  # fields listed in an error message
_WRAPPERS = (
    ak.forms.IndexedOptionForm,
    ak.forms.ByteMaskedForm,
    ak.forms.BitMaskedForm,
    ak.forms.UnmaskedForm,
    ak.forms.IndexedForm,
)
_LISTS = (ak.forms.ListOffsetForm, ak.forms.ListForm, ak.forms.RegularForm)


class MissingColumnError(KeyError):
    """A requested field is not in the input; the message names close matches.

    Args:
        name: the path that was asked for (dotted).
        available: the names that exist where the lookup failed, in the input's order.
        what: the word for a column in the message ("field", "branch", "tree").
        suggestions: close matches to name; computed from ``available`` when not given.
    """

    def __init__(
        self,
        name: str,
        available: Sequence[str],
        *,
        what: str = "field",
        suggestions: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.available = list(available)
        if suggestions is None:
            suggestions = _close(name, self.available)
        self.suggestions = list(suggestions)[:3]
        hint = (
            f" Did you mean {', '.join(repr(c) for c in self.suggestions)}?"
            if self.suggestions
            else ""
        )
        shown = ", ".join(repr(a) for a in self.available[:_SHOWN])
        more = len(self.available) - _SHOWN
        tail = f", ... ({more} more)" if more > 0 else ""
        self.message = f"{what} {name!r} not found.{hint} Available: [{shown}{tail}]"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return self.message


def _close(name: str, candidates: Sequence[str]) -> list[str]:
    """Close matches, best first and deterministic: same leaf name, then difflib, then case."""
    leaf = name.rsplit(".", 1)[-1]
    out = [c for c in candidates if c != name and c.rsplit(".", 1)[-1] == leaf]
    out += difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    out += [c for c in candidates if c.lower() == name.lower()]
    return list(dict.fromkeys(out))


def as_path(path: Any) -> tuple[str, ...]:
    """``"FatJet.msoftdrop"`` or ``("FatJet", "msoftdrop")`` -> ``("FatJet", "msoftdrop")``.

    Raises:
        TypeError: not a non-empty string or tuple of non-empty strings.
    """
    parts = tuple(path.split(".")) if isinstance(path, str) else path
    if (
        not isinstance(parts, tuple)
        or not parts
        or not all(isinstance(p, str) and p for p in parts)
    ):
        raise TypeError(
            f"a field path is a string such as 'FatJet.msoftdrop' or a tuple such as "
            f"('FatJet', 'msoftdrop'), got {path!r}"
        )
    return parts


def path_name(path: Any) -> str:
    """The dotted name of a path (how it appears in messages and model files)."""
    return ".".join(as_path(path))


def is_dask(obj: Any) -> bool:
    """True for a ``dask_awkward.Array`` (without importing dask-awkward)."""
    dak = sys.modules.get("dask_awkward")
    return dak is not None and isinstance(obj, dak.Array)


def is_awkward(obj: Any) -> bool:
    """True for an eager or virtual ``ak.Array`` / ``ak.Record``."""
    return isinstance(obj, ak.Array | ak.Record)


def form_of(obj: Any) -> Any:
    """The awkward form of an ``ak`` or ``dask_awkward`` array (no data is read)."""
    return obj.form if is_dask(obj) else obj.layout.form


def _record_form(form: Any) -> Any:
    """The record form under lists and options, or None when the leaf is not a record."""
    while isinstance(form, _WRAPPERS + _LISTS):
        form = form.content
    return form if isinstance(form, ak.forms.RecordForm) else None


def _fields(obj: Any) -> list[str]:
    if isinstance(obj, Mapping):
        return [str(k) for k in obj]
    if is_awkward(obj) or is_dask(obj):
        record = _record_form(form_of(obj))
        return [] if record is None else list(record.fields)
    return []


def available_fields(data: Any, *, depth: int = 2) -> list[str]:
    """Dotted paths of the fields of ``data``, in its order: top level, then (``depth=2``) the
    fields of each collection. Read from the form: nothing is loaded."""
    if isinstance(data, Mapping):
        return [str(k) for k in data]
    if not (is_awkward(data) or is_dask(data)):
        return []
    out: list[str] = []

    def walk(form: Any, prefix: str, level: int) -> None:
        record = _record_form(form)
        if record is None:
            return
        for name, content in zip(record.fields, record.contents, strict=True):
            out.append(prefix + name)
            if level + 1 < depth:
                walk(content, f"{prefix}{name}.", level + 1)

    walk(form_of(data), "", 0)
    return out


def _missing(data: Any, parts: tuple[str, ...], level: int, what: str) -> MissingColumnError:
    """The error for ``parts[level]`` missing below ``parts[:level]``, with suggestions that
    repair the path (``Jets.pt`` -> ``Jet.pt``)."""
    name = ".".join(parts)
    here = data
    for part in parts[:level]:
        here = here[part]
    fields = _fields(here)
    prefix = "".join(f"{p}." for p in parts[:level])
    rest = parts[level + 1 :]
    suggestions = []
    wanted = parts[level]
    for cand in _close(wanted, fields):
        if not rest:
            suggestions.append(prefix + cand)
        elif all_exist(here[cand], rest):
            suggestions.append(prefix + cand + "." + ".".join(rest))
    if level == 0 and len(parts) == 1:  # a leaf asked for at the top: the collections' fields
        nested = [f for f in available_fields(data) if f.rsplit(".", 1)[-1] == wanted]
        suggestions += nested
    listed = [prefix + f for f in fields]
    return MissingColumnError(name, listed, what=what, suggestions=list(dict.fromkeys(suggestions)))


def all_exist(data: Any, parts: Sequence[str]) -> bool:
    """True when every part of the path exists below ``data``."""
    here = data
    for part in parts:
        if part not in _fields(here):
            return False
        here = here[part]
    return True


def get_field(data: Any, path: Any, *, what: str = "field") -> Any:
    """The column at ``path`` of an awkward/dask-awkward record array or a mapping.

    A mapping is looked up by the whole dotted name first (``{"FatJet.pt": ...}``), then by its
    first part and into that value.

    Raises:
        MissingColumnError: the path does not exist (close matches are named).
        TypeError: ``data`` has no named fields.
    """
    parts = as_path(path)
    if isinstance(data, Mapping):
        name = ".".join(parts)
        if name in data:
            return data[name]
        if parts[0] not in data:
            raise (
                _missing(data, parts, 0, what)
                if len(parts) == 1
                else MissingColumnError(name, [str(k) for k in data], what=what)
            )
        if len(parts) == 1:
            return data[parts[0]]
        inner = data[parts[0]]
        if not (is_awkward(inner) or is_dask(inner)):
            raise MissingColumnError(name, [str(k) for k in data], what=what)
        return _walk(inner, parts[1:], what, name)
    if is_awkward(data) or is_dask(data):
        return _walk(data, parts, what, ".".join(parts), root=data)
    raise TypeError(
        f"cannot look up field {'.'.join(parts)!r} in a {type(data).__name__}; pass an awkward "
        "record array, a mapping of field name -> array (or a pandas DataFrame), or an (N, D) "
        "numpy array"
    )


def _walk(data: Any, parts: tuple[str, ...], what: str, name: str, root: Any = None) -> Any:
    here = data
    for level, part in enumerate(parts):
        if part not in _fields(here):
            if root is not None:
                raise _missing(root, parts, level, what)
            raise MissingColumnError(name, _fields(here), what=what)
        here = here[part]
    return here
