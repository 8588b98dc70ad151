"""docs/architecture.md's layer table is the import rule: every import inside spikediff points to a
row below the importer's, so the table cannot drift from the code."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "spikediff"


def layers() -> dict[str, int]:
    """Row number (0 = top) of every module or package the table names."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    rows: dict[str, int] = {}
    for line in block.splitlines():
        names = [w.rstrip("/").removesuffix(".py") for w in line.split()[:3] if w.endswith(("/", ".py"))]
        row = len(set(rows.values()))
        rows.update(dict.fromkeys(names, row))
    return rows


def unit(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spikediff."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("spikediff.")}
    return found


def test_every_module_is_in_the_table_and_imports_only_rows_below_its_own():
    rows = layers()
    units = {unit(f) for f in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    assert units <= set(rows), f"not in docs/architecture.md's layer table: {sorted(units - set(rows))}"
    upward = [(unit(f), name) for f in PACKAGE.rglob("*.py") if unit(f) in rows
              for name in imports(f) - {unit(f)} if rows[name] <= rows[unit(f)]]
    assert not upward, f"imports that do not point downwards: {upward}"
