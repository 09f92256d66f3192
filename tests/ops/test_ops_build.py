"""The extension is built the way the issue asks: capability variants, OpenMP, runtime choice."""
import os
import subprocess
import sys
import tempfile

import pytest
import torch

import dfnas
import dfnas._C


def test_build_info_reports_capabilities_openmp_and_vector_width():
    info = dfnas.build_info()
    assert info["cpu_capabilities_built"] == ["DEFAULT", "AVX2", "AVX512"]
    assert info["openmp"] is True
    assert info["torch_version"] == torch.__version__
    assert info["cuda_built"] is False or torch.version.cuda is not None
    # The capability in use agrees with ATen's view of this CPU, and its SIMD width with the ISA.
    expected = {"AVX512": "AVX512", "AVX2": "AVX2"}.get(torch.backends.cpu.get_cpu_capability(), "DEFAULT")
    assert info["cpu_capability"] == expected
    assert info["float_lanes"] == {"AVX512": 16, "AVX2": 8, "DEFAULT": 8}[expected]


# Subprocesses run outside the source tree so that they import the installed package.
def run_with_capability(value: str) -> str:
    code = "import dfnas, json; print(json.dumps(dfnas.build_info()))"
    env = {**os.environ, "DFNAS_CPU_CAPABILITY": value}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir())
    return out.stdout.strip().splitlines()[-1]


def test_environment_variable_selects_a_lower_capability_with_identical_results():
    import json

    assert json.loads(run_with_capability("default"))["cpu_capability"] == "DEFAULT"
    assert json.loads(run_with_capability("avx2"))["float_lanes"] in (8,)
    code = (
        "import torch, dfnas.ops as o; torch.manual_seed(0); x = torch.randn(4, 16, 9, 9, dtype=torch.float64);"
        "print(repr(o.tv_loss(x).item()), repr(o.bn_stat_loss(x, torch.zeros(16, dtype=torch.float64), torch.ones(16, dtype=torch.float64)).item()))"
    )
    outputs = []
    for value in ("default", "avx2", "avx512"):
        env = {**os.environ, "DFNAS_CPU_CAPABILITY": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir()).stdout
        outputs.append([float(v) for v in out.split()])
    # Same float64 scalar code; only FMA contraction may differ between the variants.
    for other in outputs[1:]:
        assert other == pytest.approx(outputs[0], rel=1e-13)


def test_extension_is_linked_with_openmp():
    # at::parallel_for compiles to an OpenMP parallel region only with -fopenmp: the library
    # then imports GOMP_parallel (without it, parallel_for silently runs serially).
    library = dfnas._C.__file__
    symbols = subprocess.run(["nm", "-D", "--undefined-only", library], capture_output=True, text=True, check=True)
    assert "GOMP_parallel" in symbols.stdout


def test_results_do_not_depend_on_the_thread_count():
    from dfnas import ops

    x = torch.randn(8, 64, 32, 32).requires_grad_()
    running_mean, running_var = torch.randn(64), torch.rand(64)
    results = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x.grad = None
            loss = ops.bn_stat_loss(x, running_mean, running_var) + ops.tv_loss(x)
            loss.backward()
            results.append((loss.detach().clone(), x.grad.clone()))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


OPS = ("bn_stat_loss", "tv_loss", "crop_windows", "region_adam")


def test_every_op_has_its_files_named_after_it():
    """Each op's spec math, kernels, glue, Triton kernel, tests and benchmark are found by its
    name (docs/ops.md lists them), and no backend file is named after anything else."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    for op in OPS:
        for path in (f"csrc/include/dfnas/{op}_math.h", f"csrc/cpu/kernels/{op}.cpp", f"csrc/cpu/{op}.cpp",
                     f"csrc/cuda/kernels/{op}.cu", f"csrc/cuda/{op}.cpp", f"dfnas/ops/triton/{op}.py",
                     f"tests/ops/test_ops_{op}.py", f"benchmarks/test_bench_{op}.py"):
            if op == "crop_windows" and path.endswith("_math.h"):
                continue  # a copy: no element math
            assert (root / path).is_file(), path
    shared = {"table", "capability", "register"}
    for pattern in ("csrc/cpu/kernels/*.cpp", "csrc/cpu/*.cpp", "csrc/cuda/kernels/*.cu", "csrc/cuda/*.cpp",
                    "dfnas/ops/triton/[!_]*.py"):
        for path in root.glob(pattern):
            assert path.stem in OPS or path.stem in shared, f"{path.relative_to(root)} is not named after an op"
