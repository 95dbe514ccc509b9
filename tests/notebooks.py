"""Run a tutorial notebook with overridden parameters (nbclient) and read its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbclient
import nbformat

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def parameters_cell(nb: Any) -> Any:
    """The one cell tagged ``parameters`` (it must be the second cell, after the title)."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1 or cells[0] is not nb.cells[1]:
        raise AssertionError("the notebook needs one 'parameters' cell, second in the notebook")
    return cells[0]


def run(name: str, workdir: Path, *, source: str, replace: bool = False, timeout: int = 240) -> Any:
    """Execute ``tutorials/<name>`` in ``workdir`` after changing its parameters cell.

    ``source`` is appended to the parameters cell (or replaces it with ``replace=True``).
    Raises ``nbclient.exceptions.CellExecutionError`` when a cell (or its own checks) fails.
    """
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    cell = parameters_cell(nb)
    cell.source = source if replace else cell.source + "\n" + source
    nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    return nb


def outputs_text(nb: Any) -> str:
    """All printed text and plain-text results of the executed notebook."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def image_count(nb: Any) -> int:
    """Number of PNG images the executed notebook displayed."""
    return sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )


def has_no_outputs(name: str) -> bool:
    """True when the committed notebook carries no outputs or execution counts."""
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    return all(
        not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code"
    )
