"""The CUDA code compiles without a GPU: every kernel for sm_80 and sm_90 with warnings as errors
and no register spills (tools/cuda_check.py, through CMakeLists.txt), the ATen glue against the
installed torch's headers; and setup.py and CMake build the same kernel files."""
import contextlib
import io
import json
import pathlib
import runpy
import sys
from unittest import mock

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import cuda_check  # noqa: E402

KERNELS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "csrc" / "cuda" / "kernels").glob("*.cu"))
GLUE = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "csrc" / "cuda").glob("*.cpp"))


@pytest.fixture(scope="module")
def cuda_check_run(tmp_path_factory):
    if reason := cuda_check.missing_tools():
        pytest.skip(f"{reason}: the CUDA kernels were not compile-checked")
    build_dir = tmp_path_factory.mktemp("cuda-check")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = cuda_check.main(["--build-dir", str(build_dir), "--glue"])
    return status, output.getvalue(), build_dir


def test_kernels_compile_for_sm80_and_sm90_without_spills(cuda_check_run):
    status, output, _ = cuda_check_run
    print(output)
    assert status == 0, output
    assert "cuda_check: OK" in output


def test_aten_glue_compiles(cuda_check_run):
    _, output, _ = cuda_check_run
    for source in GLUE:
        assert f"glue: {source} OK" in output, output


def test_cmake_target_compiles_every_kernel_file(cuda_check_run):
    _, _, build_dir = cuda_check_run
    commands = json.loads((build_dir / "compile_commands.json").read_text())
    compiled = sorted(pathlib.Path(c["file"]).resolve().relative_to(ROOT).as_posix() for c in commands)
    assert compiled == KERNELS
    for arch in ("compute_80,code=[compute_80,sm_80]", "compute_90,code=[compute_90,sm_90]"):
        assert all(arch in c["command"] for c in commands), arch


def test_setup_py_builds_every_kernel_and_glue_file_with_a_cuda_torch():
    """Runs setup.py as a CUDA torch would see it (torch.version.cuda set, nvcc found) and
    records the CUDAExtension it declares instead of building."""
    import torch
    from torch.utils import cpp_extension

    declared = []

    def record_extension(name, sources, **kwargs):
        declared.append((name, sources, kwargs))
        return mock.sentinel.extension

    with mock.patch.object(torch.version, "cuda", "13.0"), \
            mock.patch.object(cpp_extension, "CUDA_HOME", "/usr/local/cuda"), \
            mock.patch.object(cpp_extension, "CUDAExtension", record_extension), \
            mock.patch("setuptools.setup") as setup, \
            mock.patch.dict("os.environ", {"DFNAS_CUDA": "1"}), \
            contextlib.redirect_stderr(io.StringIO()):
        runpy.run_path(str(ROOT / "setup.py"))
    assert setup.call_args.kwargs["ext_modules"] == [mock.sentinel.extension]
    (name, sources, kwargs), = declared
    assert name == "dfnas._C"
    assert sorted(s for s in sources if s.endswith(".cu")) == KERNELS
    assert set(GLUE) <= set(sources)
    assert ("DFNAS_WITH_CUDA", "1") in kwargs["define_macros"]


def test_cmake_and_setup_py_glob_the_same_folder():
    """Holds even where nvcc is missing and the CMake build cannot run."""
    assert '"${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/kernels/*.cu"' in (ROOT / "CMakeLists.txt").read_text()
    assert 'sources("csrc/cuda/kernels/*.cu")' in (ROOT / "setup.py").read_text()


def test_spills_and_missing_architectures_are_reported():
    log = "\n".join([
        "[1/1] Building CUDA object CMakeFiles/x.dir/csrc/cuda/kernels/demo.cu.o",
        "ptxas info    : Compiling entry function '_Z4demoPf' for 'sm_80'",
        "ptxas info    : Function properties for _Z4demoPf",
        "    8 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads",
        "ptxas info    : Used 255 registers, used 0 barriers, 16 bytes smem, 360 bytes cmem[0]",
    ])
    (report,) = cuda_check.parse_ptxas(log)
    assert (report.source, report.arch, report.registers, report.smem_bytes) == ("demo.cu", "sm_80", 255, 16)
    assert report.spills
    found = cuda_check.problems([report], ["demo.cu"])
    assert any("spills on sm_80" in p for p in found)
    assert any("no kernel compiled for sm_90" in p for p in found)
