"""Build of the dfnas._C extension (the only build `pip install .` runs).

CPU kernels (csrc/cpu/kernels/*.cpp) are compiled once per CPU capability into static libraries,
each with ATen's `CPU_CAPABILITY*` macros and its own `-m` flags, and chosen at run time
(csrc/cpu/capability.cpp). The ATen glue, op schemas and capability choice are the extension's
own sources. CUDA sources join only when torch is a CUDA build and nvcc is found.
"""
import glob
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from setuptools import setup
from setuptools.command.build_clib import build_clib

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:
    sys.exit(
        "dfnas: building needs PyTorch installed first:\n"
        "    pip install torch==2.13.0   (CPU; or the CUDA build for your GPU machine)\n"
        "then run `pip install .` again."
    )

ROOT = os.path.dirname(os.path.abspath(__file__))

# Capability name -> compiler flags. The same kernel sources are built once per entry; the order
# is also the link order, and DEFAULT must come first: inline functions shared by all variants
# (c10 half/bfloat16 helpers, ...) are then taken from the generic objects, never from an AVX-512
# object that would fault on an older CPU.
CPU_CAPABILITIES = {
    "DEFAULT": [],
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-mbmi", "-mbmi2", "-mlzcnt"],
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
}
OPENMP = ["-fopenmp"]
# gcc 12 warns about its own AVX-512 intrinsics headers (maybe-uninitialized) and ATen's pragmas.
CXX_FLAGS = ["-O3", "-std=c++20", *OPENMP, "-Wall", "-Wno-unknown-pragmas", "-Wno-maybe-uninitialized"]
ABI = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"


def sources(pattern: str) -> list[str]:
    # Relative paths: setuptools refuses absolute source paths.
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


CPU_KERNEL_SOURCES = sources("csrc/cpu/kernels/*.cpp")
CPU_GLUE_SOURCES = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
CUDA_KERNEL_SOURCES = sources("csrc/cuda/kernels/*.cu")
CUDA_GLUE_SOURCES = sources("csrc/cuda/*.cpp")
INCLUDE_DIRS = [os.path.join(ROOT, "csrc", "include"), os.path.join(ROOT, "csrc")]


def cpu_kernel_library(capability: str) -> tuple[str, dict]:
    flags = [
        *CXX_FLAGS, "-fPIC", ABI, *CPU_CAPABILITIES[capability],
        f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}",
    ]
    return (
        f"dfnas_cpu_{capability.lower()}",
        {
            "sources": CPU_KERNEL_SOURCES,
            "include_dirs": INCLUDE_DIRS + cpp_extension.include_paths(),
            "cflags": flags,
        },
    )


class ParallelBuildClib(build_clib):
    """Compiles every (capability, source) pair in parallel, each capability into its own object
    folder (the variants share source names), then archives one static library per capability."""

    def build_libraries(self, libraries):
        jobs = []
        for name, info in libraries:
            output_dir = os.path.join(self.build_temp, name)
            for obj in self.compiler.object_filenames(info["sources"], output_dir=output_dir):
                os.makedirs(os.path.dirname(obj), exist_ok=True)
            jobs += [(name, info, source, output_dir) for source in info["sources"]]

        def compile_one(job):
            name, info, source, output_dir = job
            return name, self.compiler.compile(
                [source], output_dir=output_dir, include_dirs=info["include_dirs"], extra_postargs=info["cflags"]
            )

        workers = int(os.environ.get("MAX_JOBS", os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            compiled = list(pool.map(compile_one, jobs))
        for name, _info in libraries:
            objects = [obj for lib, objs in compiled if lib == name for obj in objs]
            self.compiler.create_static_lib(objects, name, output_dir=self.build_clib)


def want_cuda() -> bool:
    if os.environ.get("DFNAS_CUDA", "1") == "0":
        return False
    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def extension(cuda: bool):
    macros = []
    cxx = [*CXX_FLAGS]
    link = [*OPENMP]
    if cuda:
        macros.append(("DFNAS_WITH_CUDA", "1"))
        # Without a visible GPU cpp_extension cannot pick architectures (it fails with IndexError):
        # default to Ampere and Hopper, the ones tools/cuda_check.py compile-checks, plus PTX
        # that newer GPUs can JIT-compile. With a GPU, cpp_extension targets it.
        if not torch.cuda.is_available():
            os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        nvcc = ["-O3", "--expt-relaxed-constexpr", "-std=c++20", "--threads", "2"]
        return cpp_extension.CUDAExtension(
            "dfnas._C",
            CPU_GLUE_SOURCES + CUDA_GLUE_SOURCES + CUDA_KERNEL_SOURCES,
            include_dirs=INCLUDE_DIRS,
            define_macros=macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=link,
        )
    return cpp_extension.CppExtension(
        "dfnas._C",
        CPU_GLUE_SOURCES,
        include_dirs=INCLUDE_DIRS,
        define_macros=macros,
        extra_compile_args={"cxx": cxx},
        extra_link_args=link,
    )


BUILD_CUDA = want_cuda() and bool(CUDA_KERNEL_SOURCES)
print(
    f"dfnas build: torch {torch.__version__}, CPU capabilities {', '.join(CPU_CAPABILITIES)}, OpenMP on, "
    f"CUDA {'on' if BUILD_CUDA else 'off (CPU torch or no nvcc)'}",
    file=sys.stderr,
)

setup(
    libraries=[cpu_kernel_library(c) for c in CPU_CAPABILITIES],
    ext_modules=[extension(BUILD_CUDA)],
    cmdclass={"build_clib": ParallelBuildClib, "build_ext": cpp_extension.BuildExtension},
)
