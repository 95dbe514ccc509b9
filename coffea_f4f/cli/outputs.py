"""Writing outputs: never over an input file, never half-written.

:func:`check_output` refuses an output that is one of the inputs by file identity (the same
file through a symbolic link, a hard link or another spelling of the path), or a directory.
:func:`replacing` writes to a temporary name in the output's directory and renames it over
the output (:func:`os.replace`) only when everything was written, so a failure leaves no
partial file and an existing output as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import CLIError

__all__ = ["check_output", "replacing", "same_file"]


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` are the same file: both exist and :func:`os.path.samefile`
    says so (links of any kind), or they resolve to the same path.

    Example:
        >>> same_file("/no/such/a.root", "/no/such/../such/a.root")
        True
    """
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return Path(a).resolve() == Path(b).resolve()
    except OSError:  # unreadable: not provably the same file
        return False


def check_output(
    output: str | os.PathLike[str], inputs: Iterable[str], what: str = "OUTPUT"
) -> None:
    """Refuse an output file that is a directory or one of ``inputs`` (local paths; URLs are
    skipped).

    Raises:
        CLIError: naming the output and the input it is.
    """
    out = Path(output)
    if out.is_dir():
        raise CLIError(f"{what} {out} is a directory; give the name of a file to write")
    for path in inputs:
        if "://" in path:
            continue
        if same_file(out, path):
            link = ""
            if out.is_symlink():
                link = " (a symbolic link to it)"
            elif out.exists() and out.resolve() != Path(path).resolve():
                link = " (a hard link to it)"
            raise CLIError(
                f"{what} {out} is the input file {path}{link}; writing it would destroy the "
                "input: write to a new file"
            )


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path in the directory of ``path`` to write to, renamed over ``path`` when
    the block ends without an error, removed when it raises (``KeyboardInterrupt`` too).

    The temporary name is ``.<stem>.<random>.part<suffix>`` (``.out.1f2e3d4c.part.root``):
    hidden, and with the output's suffix for writers that infer the format from it
    (``savefig``). The directory is created. The rename is atomic on one file system: readers
    of ``path`` see the old file or the whole new one, and a link at ``path`` is replaced, not
    written through.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with replacing(out) as tmp:
        ...     _ = tmp.write_text("done")
        >>> out.read_text(), sorted(p.name for p in out.parent.iterdir())
        ('done', ['a.txt'])
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    while True:
        # hidden, and ending like the output (savefig and friends infer the format from it)
        tmp = final.with_name(f".{final.stem}.{secrets.token_hex(4)}.part{final.suffix}")
        try:  # reserve the name (mode 0o666 less the umask, like any new file)
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:  # pragma: no cover - 2**32 names
            continue
        break
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
