"""Layers import only downward: base <- ops <- data <- teachers / synth / nas <- evaluate / prune <- cli;
search spaces do not import each other."""
from __future__ import annotations

import ast
from pathlib import Path

import dfnas

PACKAGE = Path(dfnas.__file__).resolve().parent
BASE = {"config", "device", "distributed", "files", "checkpoint"}  # shared helpers: importable by every layer
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



def _space_family(module: str) -> str:
    """`darts_search` -> `darts`: a space's own files share its name up to the first underscore."""
    return module.split("_")[0]


def _imported_spaces(path: Path) -> set[str]:
    """The `dfnas/nas/spaces` modules `path` imports, written either way
    (`from dfnas.nas.spaces.spos import x` or `from dfnas.nas.spaces import spos`)."""
    prefix = "dfnas.nas.spaces."
    names = _imports(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == prefix[:-1]:
            names.update(prefix + alias.name for alias in node.names)
    return {name.removeprefix(prefix).split(".")[0] for name in names if name.startswith(prefix)}


def test_no_space_imports_another_space():
    """Spaces meet only in `spaces/base.py` and the registry (`spaces/__init__.py`); a space's
    files (`darts_ops`, `spos_blocks`, `proxyless_blocks`, ...) import only each other and base."""
    spaces = PACKAGE / "nas" / "spaces"
    modules = {p.stem for p in spaces.glob("*.py")} - {"__init__"}
    violations = []
    for own in modules - {"base"}:
        for imported in _imported_spaces(spaces / f"{own}.py") & modules:
            if imported != "base" and _space_family(imported) != _space_family(own):
                violations.append(f"spaces/{own}.py imports spaces/{imported}.py")
    assert not violations, violations
