"""The layers of dfnas.ops import in order without the build: the float64 spec
(`dfnas.ops.reference`) and `import dfnas.ops` itself load nothing compiled; the extension is
loaded, and DFNAS_BACKEND applied, on the first op call; the Triton kernels share helpers with
the other backends through `dfnas.ops._common`, never through the reference backend."""
import ast
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

import dfnas.ops

OPS = pathlib.Path(dfnas.ops.__file__).parent

# Makes `import dfnas._C` fail, as on a machine where the extension was never built.
BLOCK_EXTENSION = """
import importlib.abc, sys

class NoExtension(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "dfnas._C":
            raise ImportError("dfnas._C hidden by the test")
        return None

sys.meta_path.insert(0, NoExtension())
"""


def run_python(code: str, **environ: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DFNAS_BACKEND"}
    env.update(environ)
    # Outside the source tree, like test_ops_build: the installed package is imported.
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=300)


def test_reference_imports_and_runs_without_the_extension():
    result = run_python(BLOCK_EXTENSION + """
import torch
import dfnas.ops.reference as reference
x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5).sin()
print(float(reference.tv_loss(x)), float(reference.bn_stat_loss(x, torch.zeros(3), torch.ones(3))))
assert "dfnas._C" not in sys.modules, "dfnas._C was imported"
""")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 2


def test_import_loads_nothing_compiled_and_the_first_call_says_how_to_build():
    result = run_python(BLOCK_EXTENSION + """
import torch
import dfnas.ops
assert "dfnas._C" not in sys.modules
try:
    dfnas.ops.tv_loss(torch.randn(1, 1, 4, 4))
except ImportError as error:
    print(error)
else:
    raise SystemExit("an op ran without the extension")
""")
    assert result.returncode == 0, result.stderr
    assert "pip install ." in result.stdout


def test_extension_and_backend_selection_wait_for_the_first_call():
    # An invalid DFNAS_BACKEND does not break the import; the first op call reports it.
    result = run_python("""
import sys, torch
import dfnas.ops
assert "dfnas._C" not in sys.modules, "imported at import time"
try:
    dfnas.ops.tv_loss(torch.randn(1, 1, 4, 4))
except ValueError as error:
    print(error)
assert "dfnas._C" in sys.modules
""", DFNAS_BACKEND="fastest")
    assert result.returncode == 0, result.stderr
    assert "DFNAS_BACKEND must be one of" in result.stdout


def test_set_backend_before_the_first_call_wins_over_the_environment():
    result = run_python("""
import torch
import dfnas.ops
dfnas.ops.set_backend("reference")
print(dfnas.ops.get_backend(), float(dfnas.ops.tv_loss(torch.ones(1, 1, 3, 3))))
""", DFNAS_BACKEND="fastest")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["reference", "0.0"]


def imported_modules(path: pathlib.Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


@pytest.mark.parametrize("path", sorted((OPS / "triton").glob("*.py")), ids=lambda p: p.name)
def test_triton_kernels_import_only_the_common_helpers(path):
    forbidden = {"dfnas._C", "dfnas.ops._extension", "dfnas.ops._fake", "dfnas.ops._reference_kernels",
                 "dfnas.ops.reference", "dfnas.ops._backend"}
    assert not imported_modules(path) & forbidden


@pytest.mark.parametrize("name", ["reference.py", "_common.py", "_reference_kernels.py", "_checks.py"])
def test_pure_python_layers_do_not_import_the_extension(name):
    assert not {"dfnas._C", "dfnas.ops._extension", "dfnas.ops._backend"} & imported_modules(OPS / name)
