"""Triton kernels of the dfnas ops, for CUDA tensors when the C++ CUDA kernels are not built (or
when chosen with `dfnas.ops.set_backend("triton")`). One module per op; each states its math.

Importing this package imports triton. Without a GPU the kernels run only under the Triton
interpreter (TRITON_INTERPRET=1 set before this package is imported), which the tests use.
"""
from __future__ import annotations

from typing import Callable

from dfnas.ops.triton import bn_stat_loss, crop_windows, region_adam, tv_loss


def kernels() -> dict[str, Callable]:
    """Implementation of each dfnas:: op schema."""
    return {
        "bn_stat_loss_forward": bn_stat_loss.forward,
        "bn_stat_loss_backward": bn_stat_loss.backward,
        "tv_loss_forward": tv_loss.forward,
        "tv_loss_backward": tv_loss.backward,
        "crop_windows": crop_windows.crop,
        "crop_windows_backward": crop_windows.crop_backward,
        "region_adam_": region_adam.region_adam_,
    }
