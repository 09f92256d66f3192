"""Which implementation runs the dfnas ops.

CPU tensors always run the C++ CPU kernels. For CUDA tensors the rule is

    CUDA C++ kernels (if dfnas._C was built with CUDA) > Triton (if importable) > eager reference,

unless a backend is requested with `set_backend("cuda" | "triton" | "reference" | "auto")` or
the DFNAS_BACKEND environment variable. The choice is applied lazily: on the first op call (or
`set_backend` / `get_backend`), never at import, and an explicit `set_backend` wins over the
environment.

Mechanism: the C++ CUDA kernels register themselves for the CUDA dispatch key. Any other
choice is installed as Python kernels for that key in a `torch.library.Library` fragment, which
takes precedence over the C++ registration; destroying the fragment restores it. So "cuda"
means "no Python fragment", and switching backends never re-imports anything.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Callable, Mapping

import torch

from dfnas.ops import _extension

BACKENDS = ("auto", "cuda", "triton", "reference")
ENVIRONMENT_VARIABLE = "DFNAS_BACKEND"


def choose(device_type: str, requested: str, *, cuda_built: bool, triton_available: bool) -> str:
    """The implementation for tensors on `device_type`: "cpu" (C++ CPU kernels), "cuda" (C++
    CUDA kernels), "triton" or "reference". Raises ValueError for an unknown request and
    RuntimeError when the requested backend is not available."""
    if requested not in BACKENDS:
        raise ValueError(f"dfnas backend must be one of {BACKENDS}, got {requested!r}")
    if device_type == "cpu":
        return "cpu"
    if device_type != "cuda":
        raise ValueError(f"dfnas ops have no kernels for {device_type!r} tensors (cpu and cuda only)")
    if requested == "auto":
        return "cuda" if cuda_built else "triton" if triton_available else "reference"
    if requested == "cuda" and not cuda_built:
        raise RuntimeError("dfnas backend 'cuda': the C++ CUDA kernels were not built (dfnas was installed "
                           "with a CPU build of torch or without nvcc); use 'triton' or 'reference'")
    if requested == "triton" and not triton_available:
        raise RuntimeError("dfnas backend 'triton': triton is not installed (pip install 'dfnas[triton]')")
    return requested


def requested_from_environment(environ: Mapping[str, str]) -> str:
    """The backend DFNAS_BACKEND asks for ("auto" when unset or empty)."""
    requested = environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() or "auto"
    if requested not in BACKENDS:
        raise ValueError(f"{ENVIRONMENT_VARIABLE} must be one of {BACKENDS}, got {requested!r}")
    return requested


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def cuda_built() -> bool:
    return _extension.build_info()["cuda_built"]


def python_kernels(backend: str) -> dict[str, Callable]:
    """Schema name -> implementation, for the backends implemented in Python."""
    if backend == "triton":
        from dfnas.ops import triton as triton_kernels

        return triton_kernels.kernels()
    if backend == "reference":
        from dfnas.ops import _reference_kernels

        return _reference_kernels.kernels()
    raise ValueError(f"backend {backend!r} has no Python kernels")


class KernelOverride:
    """Python kernels registered for one dispatch key of the dfnas ops, until `remove()`. They
    take precedence over C++ kernels of the same key, which come back on removal."""

    def __init__(self, kernels: Mapping[str, Callable], dispatch_key: str):
        self._library = torch.library.Library("dfnas", "IMPL")
        with warnings.catch_warnings():
            # Overriding the C++ kernels is the point; torch warns about it.
            warnings.filterwarnings("ignore", message="(?s).*Overriding a previously registered kernel")
            for name, kernel in kernels.items():
                self._library.impl(name, kernel, dispatch_key)

    def remove(self) -> None:
        self._library._destroy()


_requested: str | None = None  # None: nothing chosen yet (DFNAS_BACKEND applies at first use)
_override: KernelOverride | None = None


def set_backend(name: str) -> None:
    """Chooses the implementation for CUDA tensors: "auto" (CUDA C++ > Triton > reference),
    "cuda", "triton" or "reference". CPU tensors always use the C++ CPU kernels."""
    global _requested, _override
    backend = choose("cuda", name, cuda_built=cuda_built(), triton_available=triton_available())
    if _override is not None:
        _override.remove()
        _override = None
    # Without a CUDA device nothing can reach the CUDA key: record the choice, import nothing.
    if backend != "cuda" and torch.cuda.is_available():
        _override = KernelOverride(python_kernels(backend), "CUDA")
    _requested = name


def get_backend() -> str:
    """The implementation CUDA tensors use now: "cuda", "triton" or "reference"."""
    ensure_selected()
    return choose("cuda", _requested, cuda_built=cuda_built(), triton_available=triton_available())


def ensure_selected() -> None:
    """Applies DFNAS_BACKEND unless a backend was chosen already (called on every op call)."""
    if _requested is None:
        set_backend(requested_from_environment(os.environ))
