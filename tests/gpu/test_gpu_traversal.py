"""The CUDA kernels' index arithmetic (csrc/cuda/kernels/traversal.h), checked on the host: a
C++ program replays every block and thread of each launch plan (traversal_check.cpp)."""
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found: the CUDA index arithmetic was not checked")
def test_every_element_is_visited_once(tmp_path):
    program = tmp_path / "traversal_check"
    subprocess.run(
        ["g++", "-std=c++20", "-O1", "-Wall", "-Wextra", "-Werror",
         "-I", str(ROOT / "csrc" / "include"), "-I", str(ROOT / "csrc" / "cuda" / "kernels"),
         str(pathlib.Path(__file__).with_name("traversal_check.cpp")), "-o", str(program)],
        check=True,
    )
    result = subprocess.run([str(program)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout
