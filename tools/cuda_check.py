#!/usr/bin/env python3
"""Compile-check of the CUDA code without a GPU: configures and builds CMakeLists.txt (every
csrc/cuda/kernels/*.cu for sm_80 and sm_90, warnings as errors, `-Xptxas -v`), then reads the
ptxas report and fails on any register spill. Prints registers, spills and shared memory per
kernel and architecture.

With --glue it also syntax-checks the ATen glue (csrc/cuda/*.cpp) with g++ against the installed
torch's headers. A CPU torch lacks one generated header of c10/cuda, which a one-line stub
replaces; the glue cannot be linked without a CUDA torch, so this checks compilation only.

    python tools/cuda_check.py [--build-dir build-cuda-check] [--jobs 2] [--glue]

Exit status: 0 when every kernel compiled without spills (or the check was skipped because
nvcc or cmake is missing, said on stdout), 1 otherwise. `--require` turns a skip into a failure.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ("sm_80", "sm_90")

_BUILDING = re.compile(r"Building CUDA object .*?([\w.-]+\.cu)\.o")
_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+a?)'")
_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USAGE = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


@dataclasses.dataclass
class KernelReport:
    source: str
    mangled: str
    arch: str
    registers: int = -1
    smem_bytes: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    name: str = ""

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


def parse_ptxas(log: str) -> list[KernelReport]:
    """Kernel reports from a build log with `-Xptxas -v` output, in log order."""
    reports: list[KernelReport] = []
    source = "?"
    for line in log.splitlines():
        if match := _BUILDING.search(line):
            source = match.group(1)
        elif match := _ENTRY.search(line):
            reports.append(KernelReport(source, match.group(1), match.group(2)))
        elif reports and (match := _SPILLS.search(line)):
            reports[-1].spill_stores, reports[-1].spill_loads = int(match.group(2)), int(match.group(3))
        elif reports and (match := _USAGE.search(line)):
            reports[-1].registers = int(match.group(1))
            reports[-1].smem_bytes = int(match.group(2) or 0)
    _demangle(reports)
    return reports


def _demangle(reports: list[KernelReport]) -> None:
    names = [r.mangled for r in reports]
    if names and shutil.which("c++filt"):
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
        names = out[: len(names)] if len(out) >= len(names) else names
    for report, name in zip(reports, names):
        # Drop the return type, namespaces and parameter list: "bn_partial_nchw<float, 4>".
        name = name.replace("(anonymous namespace)::", "").replace("dfnas::cuda::", "").removeprefix("void ")
        report.name = name.split("(", 1)[0]


def problems(reports: list[KernelReport], sources: list[str]) -> list[str]:
    """Spills, and sources or architectures without any compiled kernel."""
    found = [f"{r.source}: {r.name} spills on {r.arch} ({r.spill_stores} B stores, {r.spill_loads} B loads)"
             for r in reports if r.spills]
    for source in sources:
        for arch in ARCHS:
            if not any(r.source == source and r.arch == arch for r in reports):
                found.append(f"{source}: no kernel compiled for {arch}")
    return found


def table(reports: list[KernelReport]) -> str:
    rows = [f"{'source':<16} {'arch':<6} {'regs':>4} {'smem':>6} {'spill st/ld':>11}  kernel"]
    for r in sorted(reports, key=lambda r: (r.source, r.name, r.arch)):
        rows.append(f"{r.source:<16} {r.arch:<6} {r.registers:>4} {r.smem_bytes:>6} "
                    f"{f'{r.spill_stores}/{r.spill_loads}':>11}  {r.name}")
    return "\n".join(rows)


def kernel_sources() -> list[str]:
    folder = os.path.join(ROOT, "csrc", "cuda", "kernels")
    return sorted(f for f in os.listdir(folder) if f.endswith(".cu"))


def missing_tools() -> str | None:
    for tool in ("nvcc", "cmake"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


def run(build_dir: str, jobs: int) -> tuple[int, str]:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, *generator],
                               capture_output=True, text=True)
    if configure.returncode != 0:
        return configure.returncode, configure.stdout + configure.stderr
    # A clean build: ptxas reports only what it compiles.
    build = subprocess.run(["cmake", "--build", build_dir, "--clean-first", "-j", str(jobs)],
                           capture_output=True, text=True)
    return build.returncode, build.stdout + build.stderr


# The generated header a CPU build of torch does not ship (c10/cuda/CUDAMacros.h includes it).
_CUDA_MACROS_STUB = "#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n"


def cuda_include_dir() -> str | None:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.isfile(os.path.join(root, "include", "cuda_runtime_api.h")):
            return os.path.join(root, "include")
    return None


def check_glue(build_dir: str, jobs: int) -> tuple[bool, str]:
    """g++ -fsyntax-only of every csrc/cuda/*.cpp; (all compiled, messages)."""
    from torch.utils import cpp_extension

    cuda_include = cuda_include_dir()
    if cuda_include is None or shutil.which("g++") is None:
        return True, "glue: SKIPPED, no CUDA include directory or g++"
    stub_dir = os.path.join(build_dir, "glue-stub")
    os.makedirs(os.path.join(stub_dir, "c10", "cuda", "impl"), exist_ok=True)
    with open(os.path.join(stub_dir, "c10", "cuda", "impl", "cuda_cmake_macros.h"), "w") as f:
        f.write(_CUDA_MACROS_STUB)
    # Torch's own directories first: a CUDA torch's real header wins over the stub.
    system = [*cpp_extension.include_paths(), cuda_include, stub_dir]
    flags = ["-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-DDFNAS_WITH_CUDA",
             *[f"-isystem{d}" for d in system], f"-I{os.path.join(ROOT, 'csrc', 'include')}",
             f"-I{os.path.join(ROOT, 'csrc')}"]
    folder = os.path.join(ROOT, "csrc", "cuda")
    sources = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".cpp"))

    def compile_one(source: str) -> tuple[str, subprocess.CompletedProcess]:
        return source, subprocess.run(["g++", *flags, source], capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(compile_one, sources))
    lines = []
    for source, result in results:
        name = os.path.relpath(source, ROOT)
        lines.append(f"glue: {name} {'OK' if result.returncode == 0 else 'FAILED'}")
        if result.returncode != 0:
            lines.append(result.stdout + result.stderr)
    return all(r.returncode == 0 for _, r in results), "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build-cuda-check"))
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MAX_JOBS", "2")))
    parser.add_argument("--require", action="store_true", help="fail instead of skipping without nvcc/cmake")
    parser.add_argument("--glue", action="store_true", help="also syntax-check the ATen glue csrc/cuda/*.cpp")
    args = parser.parse_args(argv)

    if reason := missing_tools():
        print(f"cuda_check: SKIPPED, {reason}: the CUDA kernels were not compile-checked")
        return 1 if args.require else 0
    status, log = run(args.build_dir, args.jobs)
    reports = parse_ptxas(log)
    if reports:
        print(table(reports))
    if status != 0:
        print(log)
        print(f"cuda_check: FAILED, the build exited with {status}")
        return 1
    if found := problems(reports, kernel_sources()):
        print("\n".join(found))
        print("cuda_check: FAILED")
        return 1
    if args.glue:
        glue_ok, messages = check_glue(args.build_dir, args.jobs)
        print(messages)
        if not glue_ok:
            print("cuda_check: FAILED, the ATen glue does not compile")
            return 1
    print(f"cuda_check: OK, {len(reports)} kernels for {', '.join(ARCHS)}, no spills; "
          f"compile_commands.json in {args.build_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
