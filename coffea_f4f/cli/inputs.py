"""Reading inputs: ``"file.root:tree"`` (uproot) or ``"file.parquet"``, one or several files.

Only the named branches (columns) are read; a missing file, tree or branch is a one-line
:class:`~coffea_f4f.cli.errors.CLIError` that names close matches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak

from ..columns import MissingColumnError, get_field
from .errors import CLIError, one_line

__all__ = [
    "DEFAULT_TREE",
    "InputSpec",
    "check_branches",
    "import_uproot",
    "iterate_tree",
    "open_tree",
    "parse_input",
    "read_columns",
    "unreadable",
]

DEFAULT_TREE = "Events"
_TREE_CLASSES = ("TTree", "TNtuple", "TNtupleD")


@dataclass(frozen=True)
class InputSpec:
    """One input file: a ROOT file and the name of its tree, or a parquet file.

    Attributes:
        path: the file path (or a URL uproot can open).
        tree: the tree name inside a ROOT file; None for parquet.
    """

    path: str
    tree: str | None

    def __str__(self) -> str:
        return self.path if self.tree is None else f"{self.path}:{self.tree}"


def parse_input(
    spec: str, *, default_tree: str = DEFAULT_TREE, base: Path | None = None
) -> InputSpec:
    """Parse ``"file.root:tree"``, ``"file.root"`` (tree ``default_tree``) or ``"x.parquet"``.

    Args:
        spec: the input as written by the user.
        default_tree: the tree used when ``spec`` names none.
        base: directory that relative local paths are relative to (None: the working dir).

    Returns:
        The parsed :class:`InputSpec`.

    Raises:
        CLIError: ``spec`` is empty or not a string.

    Example:
        >>> parse_input("sim.root:Events"), parse_input("data.parquet")
        (InputSpec(path='sim.root', tree='Events'), InputSpec(path='data.parquet', tree=None))
    """
    if not isinstance(spec, str) or not spec.strip():
        raise CLIError(f"an input must be a non-empty string like 'file.root:Events', got {spec!r}")
    spec = spec.strip()
    tree: str | None
    if spec.lower().endswith(".parquet"):
        path, tree = spec, None
    elif ".root:" in spec:
        head, tree = spec.rsplit(".root:", 1)
        path = head + ".root"
    else:
        scheme_end = spec.find("://") + 3 if "://" in spec else 0
        colon = spec.rfind(":")
        if colon >= scheme_end and colon > 0 and not spec[colon + 1 :].startswith("/"):
            path, tree = spec[:colon], spec[colon + 1 :]
        else:
            path, tree = spec, default_tree
    if tree is not None and not tree:
        tree = default_tree
    if base is not None and "://" not in path and not Path(path).is_absolute():
        path = str(base / path)
    return InputSpec(path, tree)


def import_uproot() -> Any:
    """The uproot module, or a one-line :class:`CLIError` naming the extra to install."""
    try:
        import uproot  # optional dependency (the [coffea] extra), needed for ROOT files only
    except ImportError as err:  # pragma: no cover - uproot is in the [coffea] extra
        raise CLIError("reading ROOT files needs uproot: pip install 'coffea-f4f[coffea]'") from err
    return uproot


def unreadable(spec: InputSpec | str, err: Exception) -> CLIError:
    """The one-line error for an input whose data cannot be read (damaged baskets, a
    truncated file, an unreadable page), naming the input and the underlying error.

    Example:
        >>> print(unreadable("a.root:T", OSError("8 bytes")))
        cannot read the data of a.root:T: the file is damaged or truncated (OSError: 8 bytes)
    """
    return CLIError(
        f"cannot read the data of {spec}: the file is damaged or truncated "
        f"({type(err).__name__}: {one_line(err)})"
    )


def iterate_tree(tree: Any, spec: InputSpec, **options: Any) -> Iterator[Any]:
    """``tree.iterate(**options)``, with an error while reading a chunk turned into the
    one-line :func:`unreadable` error (errors raised by the caller's loop body stay theirs).

    Raises:
        CLIError: a chunk cannot be read or decompressed.
    """
    chunks = tree.iterate(**options)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except MemoryError:
            raise
        except Exception as err:  # uproot, zlib, lz4, ... raise their own types
            raise unreadable(spec, err) from err
        yield chunk


def _check_local_file(path: str) -> None:
    if "://" in path:
        return
    p = Path(path)
    if not p.exists():
        raise CLIError(f"no such file: {path}")
    if not p.is_file():
        raise CLIError(f"{path} is not a file")


def open_tree(spec: InputSpec) -> Any:
    """Open the TTree of a ROOT input, with one-line errors for missing files and trees.

    Raises:
        CLIError: the file does not exist or is not a ROOT file, or it has no such tree (close
            matches are named).
    """
    if spec.tree is None:
        raise CLIError(f"{spec.path}: a parquet file has no tree; give a ROOT file")
    uproot = import_uproot()
    _check_local_file(spec.path)
    try:
        file = uproot.open(spec.path)
    except Exception as err:  # uproot raises many types for files it cannot read
        raise CLIError(f"cannot read {spec.path} as a ROOT file: {one_line(err)}") from err
    try:
        classes = dict(file.classnames(cycle=False).items())
    except Exception as err:  # a damaged directory of keys
        raise unreadable(spec.path, err) from err
    trees = [k for k, v in classes.items() if v in _TREE_CLASSES]
    if spec.tree not in classes:
        raise CLIError(f"{spec.path}: {MissingColumnError(spec.tree, trees, what='tree')}")
    if spec.tree not in trees:
        raise CLIError(f"{spec}: is a {classes[spec.tree]}, not a TTree; coffea-f4f reads TTrees")
    try:
        return file[spec.tree]
    except Exception as err:  # a damaged TTree header
        raise unreadable(spec, err) from err


def check_branches(tree: Any, spec: InputSpec, names: Sequence[str]) -> None:
    """Raise a one-line :class:`CLIError` (naming close matches) for a branch not in ``tree``."""
    keys = tree.keys()
    for name in names:
        if name not in keys:
            raise CLIError(f"{spec}: {MissingColumnError(name, keys, what='branch')}")


def _read_one(spec: InputSpec, names: Sequence[str], entry_stop: int | None) -> dict[str, Any]:
    if spec.tree is None:
        _check_local_file(spec.path)
        try:
            columns = ak.metadata_from_parquet(spec.path)["form"].columns()
        except Exception as err:  # pyarrow raises its own types for unreadable files
            raise CLIError(f"cannot read {spec.path} as parquet: {one_line(err)}") from err
        for name in names:
            if name not in columns:
                raise CLIError(f"{spec}: {MissingColumnError(name, columns, what='column')}")
        try:
            data = ak.from_parquet(spec.path, columns=list(names))
        except MemoryError:
            raise
        except Exception as err:  # pyarrow raises its own types for damaged pages
            raise unreadable(spec, err) from err
        if entry_stop is not None:
            data = data[:entry_stop]
        return {name: get_field(data, name) for name in names}
    tree = open_tree(spec)
    check_branches(tree, spec, names)
    wanted = set(names)
    stop = None if entry_stop is None else min(entry_stop, tree.num_entries)
    try:
        arrays = tree.arrays(
            filter_name=lambda n: n in wanted, entry_stop=stop, library="ak", how=dict
        )
    except MemoryError:
        raise
    except Exception as err:  # uproot, zlib, lz4, ... raise their own types
        raise unreadable(spec, err) from err
    return {name: arrays[name] for name in names}


def read_columns(
    specs: str | Sequence[str],
    names: Sequence[str],
    *,
    max_events: int | None = None,
    base: Path | None = None,
) -> dict[str, Any]:
    """Read branches (columns) ``names`` from one or several inputs, concatenated.

    Only the named branches are read. ``max_events`` caps the total number of events (the first
    ones, file after file).

    Args:
        specs: one input string or a list of them (see :func:`parse_input`).
        names: branch names (ROOT) or field paths (parquet) to read.
        max_events: read at most this many events in total (None: all).
        base: directory that relative paths are relative to.

    Returns:
        ``{name: awkward array}``, one entry per name, in order.

    Raises:
        CLIError: a file, tree or branch is missing or unreadable.
    """
    if isinstance(specs, str):
        specs = [specs]
    parts: list[dict[str, Any]] = []
    remaining = max_events
    for text in specs:
        if remaining is not None and remaining <= 0:
            break
        part = _read_one(parse_input(text, base=base), names, remaining)
        parts.append(part)
        if remaining is not None and names:
            remaining -= len(part[names[0]])
    if len(parts) == 1:
        return parts[0]
    return {name: ak.concatenate([p[name] for p in parts]) for name in names}
