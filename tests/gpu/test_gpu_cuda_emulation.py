"""The CUDA C++ kernels executed on the CPU: each csrc/cuda/kernels/*.cu is compiled by g++
against a small emulation of the CUDA runtime (cuda_emulation/emulation.h: real threads and
barriers per block, warp shuffles, half/bfloat16), its launches rewritten to emulated ones, and
cuda_emulation/kernels_check.cpp compares every launcher with double-precision loops. This runs
the kernels' own code (indexing, reductions, packs, layouts, dtypes) without a GPU; it cannot
show GPU-only behaviour (memory model, timing)."""
import pathlib
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EMULATION = pathlib.Path(__file__).with_name("cuda_emulation")
KERNELS = ROOT / "csrc" / "cuda" / "kernels"
# kernel<<<grid, block, smem, stream>>>(args)  ->  ::emu::Launch(grid, block, smem, stream)(kernel, args)
LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^;()]*?>)?)<<<(.*?)>>>\(")


def host_source(cuda_source: str) -> str:
    return LAUNCH.sub(r"::emu::Launch(\2)(\1, ", cuda_source)


def test_launch_rewrite():
    assert host_source("tv_finalize<opmath_t<T>><<<1, kThreads, 0, stream>>>(p, n);") == \
        "::emu::Launch(1, kThreads, 0, stream)(tv_finalize<opmath_t<T>>, p, n);"


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found: the CUDA kernels were not emulated")
def test_cuda_kernels_match_double_precision_loops(tmp_path):
    sources = []
    for cu in sorted(KERNELS.glob("*.cu")):
        host = tmp_path / f"{cu.stem}.cpp"
        host.write_text(host_source(cu.read_text()))
        sources.append(host)
    sources.append(EMULATION / "kernels_check.cpp")
    flags = ["-std=c++20", "-O1", "-pthread", "-Wall", "-Wno-unknown-pragmas", "-Werror",
             f"-I{EMULATION}", f"-I{ROOT / 'csrc' / 'include'}", f"-I{KERNELS}"]

    def compile_one(source: pathlib.Path) -> pathlib.Path:
        obj = tmp_path / f"{source.stem}.o"
        subprocess.run(["g++", *flags, "-c", str(source), "-o", str(obj)], check=True)
        return obj

    with ThreadPoolExecutor(max_workers=2) as pool:
        objects = list(pool.map(compile_one, sources))
    program = tmp_path / "kernels_check"
    subprocess.run(["g++", "-pthread", *map(str, objects), "-o", str(program)], check=True)
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr
