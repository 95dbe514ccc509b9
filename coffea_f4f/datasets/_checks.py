"""Argument checks shared by the samplers of :mod:`coffea_f4f.datasets`."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Sequence

__all__ = ["_check_n", "_unknown_choice"]


def _check_n(n: object) -> int:
    """Return ``n`` as an int, or raise ``ValueError`` if it is not a non-negative integer."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"n must be a non-negative integer, got {n!r} ({type(n).__name__})")
    if n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n}")
    return int(n)


def _unknown_choice(what: str, value: object, valid: Sequence[str]) -> ValueError:
    """Build a ``ValueError`` for an unknown choice, with close matches and the valid values."""
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value.lower(), valid, n=3, cutoff=0.5)
        if close:
            hint = " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    return ValueError(f"unknown {what} {value!r}.{hint} Valid {what}s: {', '.join(valid)}.")
