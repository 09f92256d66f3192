"""Loads the compiled extension (which registers the dfnas:: ops) with a clear error if missing."""
from __future__ import annotations

import torch  # noqa: F401  (must load before dfnas._C: the extension links against it)

try:
    from dfnas import _C  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "dfnas: the compiled extension dfnas._C is missing or does not match this torch "
        f"({torch.__version__}). Reinstall from the source tree with `pip install .` "
        f"(see README.md). Original error: {error}"
    ) from error


def build_info() -> dict:
    """Capabilities built, capability in use, SIMD width, OpenMP and CUDA, torch version."""
    fields = dict(item.split("=", 1) for item in torch.ops.dfnas.build_info().split(";"))
    return {
        "cpu_capabilities_built": fields["capabilities_built"].split(","),
        "cpu_capability": fields["capability"],
        "float_lanes": int(fields["float_lanes"]),
        "openmp": fields["openmp"] == "1",
        "cuda_built": fields["cuda"] == "1",
        "torch_version": torch.__version__,
    }
