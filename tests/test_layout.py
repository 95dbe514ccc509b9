"""The package layout enforces itself: imports run one way, every module declares __all__,
the column layer and the scalings import no torch (DESIGN-NOTES.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "coffea_f4f"

# lower rank = lower layer; a module may import only from a strictly lower rank (or itself,
# inside its own package). Equal ranks are independent of each other.
RANK = {
    "_version": 0,
    "columns": 0,
    "datasets": 0,
    "scaling": 1,
    "config": 1,
    "progress": 1,
    "splines": 1,
    "flows": 2,
    "maps": 3,
    "density": 4,
    "modelcheck": 4,
    "fileformat": 5,
    "morpher": 6,
    "train": 7,
    "modelcache": 7,
    "systematics": 7,
    "metrics": 7,
    "transform": 8,
    "plots": 8,
    "demo": 9,
    "cli": 10,
}
TORCH_FREE = (
    "columns",
    "scaling",
    "config",
    "progress",
    "datasets",
    "modelcache",
    "metrics",
    "systematics",
)


def _modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def _top(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _runtime_imports(tree: ast.Module) -> list[ast.ImportFrom | ast.Import]:
    """Imports outside ``if TYPE_CHECKING:`` blocks (those are for type checkers only)."""
    out: list[ast.ImportFrom | ast.Import] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    walk(orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                out.append(child)
            walk(child)

    walk(tree)
    return out


def _target(path: Path, node: ast.ImportFrom) -> str | None:
    """The top-level package module an import refers to (None for outside the package)."""
    if node.level == 0:
        parts = (node.module or "").split(".")
        return parts[1] if parts[0] == "coffea_f4f" and len(parts) > 1 else None
    here = list(path.relative_to(PACKAGE).parent.parts)
    base = here[: len(here) - (node.level - 1)]
    parts = [*base, *(node.module.split(".") if node.module else [])]
    if not parts:  # "from . import x" at the top level
        return node.names[0].name
    return parts[0]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    own = _top(path)
    assert own in RANK, f"{own} has no place in the layout table: add it to RANK and the notes"
    tree = ast.parse(path.read_text())
    for node in _runtime_imports(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        target = _target(path, node)
        if target is None or target == own:
            continue
        assert RANK[target] < RANK[own], (
            f"{path.relative_to(PACKAGE)}:{node.lineno} imports {target} (rank {RANK[target]}) "
            f"from {own} (rank {RANK[own]}): imports must run down the layout"
        )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_declares_all(path):
    tree = ast.parse(path.read_text())
    names = {
        t.id
        for n in tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    exempt = path.name in ("_version.py", "__main__.py")  # no importable names
    assert "__all__" in names or exempt, f"{path} has no __all__"


@pytest.mark.parametrize("name", TORCH_FREE)
def test_lower_layers_import_no_torch(name):
    for path in [p for p in _modules() if _top(p) == name]:
        for node in _runtime_imports(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any((m or "").split(".")[0] in ("torch", "normflows") for m in mods), (
                f"{path}:{node.lineno} imports torch"
            )


def test_the_guard_can_fail(tmp_path):
    bad = ast.parse("from ..morpher import Morpher\n")
    node = _runtime_imports(bad)[0]
    assert isinstance(node, ast.ImportFrom)
    target = _target(PACKAGE / "columns" / "table.py", node)
    assert target == "morpher"
    assert RANK[target] > RANK["columns"]
