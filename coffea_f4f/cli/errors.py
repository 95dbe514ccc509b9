"""User-facing errors of the command line: printed as one line, exit code 2."""

from __future__ import annotations

__all__ = ["CLIError", "one_line"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def one_line(err: object) -> str:
    """``str(err)`` with its whitespace (newlines too) collapsed to single spaces.

    Example:
        >>> one_line(ValueError("bad\\n  value"))
        'bad value'
    """
    return " ".join(str(err).split())
