"""The compiled extension, loaded on first use rather than at `import dfnas.ops`.

`load()` imports dfnas._C, which defines every dfnas:: op schema and registers the C++ CPU (and
CUDA) kernels, then the Python registrations on those schemas: the fake kernels (`_fake`) and
autograd (`_autograd`). Until then nothing in dfnas.ops needs the build, so the pure-Python parts
(`dfnas.ops.reference`, the argument checks, the backend rule) import without it.
"""
from __future__ import annotations

import threading

import torch

_lock = threading.RLock()
_loaded = False


def load():
    """torch.ops.dfnas with the extension and its Python registrations loaded (once). Raises
    ImportError, saying how to fix it, when dfnas._C is missing or does not match this torch."""
    global _loaded
    if not _loaded:
        with _lock:
            if not _loaded:
                try:
                    from dfnas import _C  # noqa: F401  (needs torch loaded first: it links against it)
                except ImportError as error:
                    raise ImportError(
                        "dfnas: the compiled extension dfnas._C is missing or does not match this torch "
                        f"({torch.__version__}). Reinstall from the source tree with `pip install .` "
                        f"(see README.md). Original error: {error}"
                    ) from error
                # Both register on the schemas dfnas._C defined.
                from dfnas.ops import _autograd, _fake  # noqa: F401

                _loaded = True
    return torch.ops.dfnas


def build_info() -> dict:
    """Capabilities built, capability in use, SIMD width, OpenMP and CUDA, torch version."""
    fields = dict(item.split("=", 1) for item in load().build_info().split(";"))
    return {
        "cpu_capabilities_built": fields["capabilities_built"].split(","),
        "cpu_capability": fields["capability"],
        "float_lanes": int(fields["float_lanes"]),
        "openmp": fields["openmp"] == "1",
        "cuda_built": fields["cuda"] == "1",
        "torch_version": torch.__version__,
    }
