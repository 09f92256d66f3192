"""Layers import only downward: base <- ops <- data <- teachers / synth / nas <- evaluate / prune <- cli."""
from __future__ import annotations

import ast
from pathlib import Path

import dfnas

PACKAGE = Path(dfnas.__file__).resolve().parent
BASE = {"config", "device", "files", "checkpoint"}  # shared helpers: importable by every layer
LAYER = {"ops": 1, "data": 2, "teachers": 3, "synth": 3, "nas": 3, "evaluate": 4, "prune": 4, "cli": 5}


def _layer(parts: list[str]) -> int | None:
    if not parts or parts[0] == "__init__" or parts[0] == "_C":
        return None
    return 0 if parts[0] in BASE else LAYER[parts[0]]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] == "dfnas"}


def test_no_module_imports_a_layer_above_it():
    violations = []
    for path in PACKAGE.rglob("*.py"):
        own = _layer(list(path.relative_to(PACKAGE).with_suffix("").parts))
        if own is None:
            continue
        for name in _imports(path):
            target = _layer(name.split(".")[1:])
            if target is not None and target > own:
                violations.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not violations, violations


def test_the_layer_map_covers_every_subpackage():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(LAYER)
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules <= BASE
