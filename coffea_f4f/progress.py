"""Progress bars of coffea-f4f, in one style: training steps and ``coffea-f4f apply`` chunks.

With ``rich`` installed (it comes with coffea) the bars are rich progress bars with the
columns of coffea's own (``coffea.util.rich_bar``): description, percent, bar, done/total, a
status such as the epoch and loss, ``[elapsed < remaining | speed unit/s]``. Without rich they
are tqdm bars. They write to stderr. On a terminal they redraw in place, at most 10 times a
second; where the output is not a terminal (CI logs, files, captured output) each bar is
printed once, as one line without colour codes, when it closes (tqdm: a line every 5 s); in
Jupyter they are widgets (with ipywidgets; a one-off line without).

Switches:

- per run: ``TrainConfig(progress=False)``, ``--no-progress`` of the ``coffea-f4f`` commands;
- everywhere: the environment variable ``COFFEA_F4F_PROGRESS=0`` (also ``false``, ``no``,
  ``off``) hides every bar of the package, the coffea executor's in the dijet demo included.

Example:
    >>> with progress_bar(3, desc="steps", unit="step", show=False) as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    >>> show_progress(False)
    False
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["ENV_VAR", "Bar", "progress_bar", "show_progress"]

#: The environment variable that switches every bar off: ``0``, ``false``, ``no`` or ``off``.
ENV_VAR = "COFFEA_F4F_PROGRESS"
_OFF_WORDS = ("0", "false", "no", "off")
_REFRESH_SECONDS = 0.1  # redraws at most this often: a training step can take microseconds
_LOG_WIDTH = 1000  # off a terminal: lines are not cut to a console width


def show_progress(requested: bool = True) -> bool:
    """Whether to show a bar: ``requested`` (the run's own switch) and not switched off by
    ``COFFEA_F4F_PROGRESS``."""
    return requested and os.environ.get(ENV_VAR, "").strip().lower() not in _OFF_WORDS


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # e.g. a module set to None in sys.modules
        return False


class Bar:
    """A progress bar that shows nothing; the base of the visible ones.

    The method names are tqdm's, so a bar is used like one: ``update(n)``,
    ``set_postfix_str(text)`` and ``close()`` (or a ``with`` block, which closes it).
    """

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` (steps, events)."""

    def set_postfix_str(self, text: str) -> None:
        """Show ``text`` after the bar (e.g. the epoch and the loss)."""

    def close(self) -> None:
        """Finish the bar (where the output is not a terminal: print it once)."""

    def __enter__(self) -> Bar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@functools.cache
def _line_progress() -> type:
    """A rich ``Progress`` that draws each task as one line with coffea's columns,
    ``desc pct% bar done/total status [elapsed < remaining | speed unit/s]``, whose bar takes
    the width the text leaves (rich's table would cut the text columns short instead); on a
    narrow terminal the end of the line is cut."""
    from rich.console import Group
    from rich.progress import Progress, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    elapsed, remaining = TimeElapsedColumn(), TimeRemainingColumn()

    class LineProgress(Progress):
        bar_width: int | None = None  # None: what the console width leaves, at least 10

        def get_renderables(self) -> Any:
            yield Group(*(self._line(task) for task in self.tasks if task.visible))

        def _line(self, task: Any) -> Table:
            done = task.completed - task.fields["initial"]
            speed = f"{done / task.elapsed:.1f}" if done and task.elapsed else "?"
            head = Text.assemble(
                (task.description, "bold blue"),
                " ",
                (f"{task.percentage:>3.0f}%", "progress.percentage"),
            )
            tail = Text.assemble(
                (f"{task.completed:.0f}/{task.total:.0f}", "bold blue"),
                f" {task.fields['status']}" if task.fields["status"] else "",
                " [",
                elapsed.render(task),
                " < ",
                remaining.render(task),
                " | ",
                (f"{speed} {task.fields['unit']}/s", "progress.data.speed"),
                "]",
            )
            width = self.bar_width
            if width is None:  # the text first; the bar takes what is left
                room = self.console.width - head.cell_len - 2
                width = max(room - tail.cell_len, 10)
                tail.truncate(max(room - width, 0), overflow="ellipsis")
            line = Table.grid(padding=(0, 1))
            for _ in range(3):
                line.add_column(no_wrap=True)
            line.add_row(
                head,
                ProgressBar(total=task.total or 1, completed=task.completed, width=width),
                tail,
            )
            return line

    return LineProgress


class _RichBar(Bar):
    """A rich progress bar with coffea's columns (``coffea.util.rich_bar``), on stderr."""

    def __init__(self, total: int, desc: str, unit: str, initial: int) -> None:
        from rich.console import Console  # optional dependency (with coffea); tqdm otherwise

        console = Console(stderr=True)
        if console.is_jupyter and not _importable("ipywidgets"):
            # rich would show nothing but a warning there: print the bar once instead
            console = Console(stderr=True, force_jupyter=False)
        self._live = console.is_interactive or console.is_jupyter
        if not self._live:  # printed once, at the end: the whole line, a short bar
            console = Console(stderr=True, force_jupyter=False, width=_LOG_WIDTH)
        self._progress = _line_progress()(
            console=console,
            auto_refresh=False,  # no refresh thread: redrawn from update(), throttled
        )
        if not self._live:
            self._progress.bar_width = 20
        self._task = self._progress.add_task(
            desc, total=total, completed=initial, unit=unit, initial=initial, status=""
        )
        self._last = 0.0
        self._progress.start()

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._live and (force or now - self._last >= _REFRESH_SECONDS):
            self._last = now
            self._progress.refresh()

    def update(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)
        self._refresh()

    def set_postfix_str(self, text: str) -> None:
        self._progress.update(self._task, status=text)
        self._refresh(force=True)

    def close(self) -> None:
        if self._live:
            self._progress.refresh()  # rich's stop() does not redraw a Jupyter widget
        self._progress.stop()


class _TqdmBar(Bar):
    """A tqdm bar (when rich is not installed); a line every few seconds off a terminal."""

    def __init__(self, total: int, desc: str, unit: str, initial: int) -> None:
        from tqdm.auto import tqdm

        tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self._bar: Any = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            dynamic_ncols=True,
            leave=True,
            mininterval=0.1 if tty else 5.0,
        )

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def set_postfix_str(self, text: str) -> None:
        self._bar.set_postfix_str(text)

    def close(self) -> None:
        self._bar.close()


def progress_bar(
    total: int, *, desc: str, unit: str = "it", initial: int = 0, show: bool = True
) -> Bar:
    """A progress bar of ``total`` ``unit`` s, the same style wherever the package shows one.

    Args:
        total: the count at which the bar is full.
        desc: the label in front of the bar.
        unit: what is counted (``"step"``, ``"ev"``).
        initial: the count the bar starts at (a resumed training run).
        show: the caller's switch; :func:`show_progress` decides with ``COFFEA_F4F_PROGRESS``.

    Returns:
        A :class:`Bar`: rich when rich is importable, tqdm otherwise, a silent one when off.
    """
    if not show_progress(show):
        return Bar()
    try:
        return _RichBar(total, desc, unit, initial)
    except ImportError:  # rich is not installed (it comes with coffea)
        return _TqdmBar(total, desc, unit, initial)
