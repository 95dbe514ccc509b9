"""User-facing errors of the command line, and how every exception becomes one line.

:class:`CLIError` is the command line's own error. :func:`error_report` maps any exception to
the exit status and the one-line message that :func:`~coffea_f4f.cli.parser.main` prints as
``coffea-f4f COMMAND: error: MESSAGE``: exit 2 for the errors of arguments and inputs
(:data:`USER_ERRORS`, messages written for the user, shown as they are), exit 1 for anything
else (unexpected: the message names the type).
"""

from __future__ import annotations

__all__ = ["USER_ERRORS", "CLIError", "error_report", "one_line"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


#: Errors of arguments and inputs: :class:`CLIError`, and the types the package raises with
#: messages written for the user (bad columns, shapes, values, files). Exit code 2.
USER_ERRORS: tuple[type[Exception], ...] = (
    CLIError,
    ValueError,
    KeyError,
    OSError,
    TypeError,
    ArithmeticError,
)


def one_line(err: object) -> str:
    """``str(err)`` with its whitespace (newlines too) collapsed to single spaces.

    Example:
        >>> one_line(ValueError("bad\\n  value"))
        'bad value'
    """
    return " ".join(str(err).split())


def error_report(err: Exception, command: str) -> tuple[int, str]:
    """The exit status and the one-line message of an exception raised by ``command``.

    A ``KeyError``'s key is shown as it is (no quotes added); an empty message is the type's
    name.

    Example:
        >>> error_report(CLIError("no such file: a.root"), "apply")
        (2, 'no such file: a.root')
        >>> error_report(RuntimeError("boom"), "apply")  # doctest: +NORMALIZE_WHITESPACE
        (1, 'RuntimeError: boom (unexpected; run coffea-f4f --debug apply ... for the
        traceback)')
    """
    msg = err.args[0] if isinstance(err, KeyError) and err.args else err
    text = one_line(msg) or type(err).__name__
    if isinstance(err, USER_ERRORS):
        return 2, text
    return 1, (
        f"{type(err).__name__}: {text} (unexpected; run coffea-f4f --debug {command} ... "
        "for the traceback)"
    )
