"""Conventions and host-side math shared by every Python layer of the ops: the fake kernels
(`_fake`), the eager reference backend (`_reference_kernels`) and the Triton kernels (`triton/`).
Pure torch: importing it loads neither the compiled extension nor triton.

Layout rule (the C++ glue's `dense_images`, csrc/tensor_checks.h): kernels see x itself when it
is NCHW- or channels-last-contiguous (NCHW wins when both hold), else an NCHW copy; outputs
shaped like x take that layout. Losses and statistics are in `opmath(x.dtype)`.

The float64 scalar and per-channel math of the losses (`bn_affine_coefficients`, `tv_counts`,
`tv_loss_from_sums`, `tv_weights`) is the torch form of csrc/include/dfnas/<op>_math.h, used by
the backends whose kernels do only the per-element work.
"""
from __future__ import annotations

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def opmath(dtype: torch.dtype) -> torch.dtype:
    """Accumulation / loss dtype: float64 for float64 data, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dense_memory_format(x: Tensor) -> torch.memory_format:
    """The layout the kernels use for x and for outputs shaped like x."""
    if x.is_contiguous():
        return torch.contiguous_format
    if x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def dense(x: Tensor) -> tuple[Tensor, bool]:
    """(x in a kernel layout, whether that layout is channels-last)."""
    memory_format = dense_memory_format(x)
    return x.contiguous(memory_format=memory_format), memory_format == torch.channels_last


def check_image_batch(op: str, x: Tensor) -> None:
    torch._check(x.dim() == 4 and x.numel() > 0, lambda: f"{op}: x must be a non-empty (N, C, H, W) tensor")
    torch._check(x.dtype in FLOAT_DTYPES, lambda: f"{op}: unsupported dtype {x.dtype}")


def check_windows(op: str, offsets: Tensor, n: int, canvas_h: int, canvas_w: int, height: int, width: int) -> Tensor:
    """offsets (n, 2) as int64, every window inside the canvas. The bounds check runs on the
    device without synchronizing (a failure surfaces at a later synchronization)."""
    torch._check(offsets.shape == (n, 2), lambda: f"{op}: offsets must have shape ({n}, 2)")
    torch._check(1 <= height <= canvas_h and 1 <= width <= canvas_w,
                 lambda: f"{op}: window {height}x{width} does not fit the {canvas_h}x{canvas_w} canvas")
    offsets = offsets.to(torch.int64).contiguous()
    y, x = offsets[:, 0], offsets[:, 1]
    inside = (y >= 0) & (x >= 0) & (y + height <= canvas_h) & (x + width <= canvas_w)
    torch._assert_async(inside.all(), f"{op}: a window leaves the {canvas_h}x{canvas_w} canvas")
    return offsets


def bn_affine_coefficients(grad_loss: Tensor, mean: Tensor, var: Tensor, running_mean: Tensor,
                           running_var: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """(shift, scale) in float64 with dL/dx = shift_c + scale_c x (dfnas/bn_stat_loss_math.h)."""
    mu = mean.double()
    mean_diff = mu - running_mean.double()
    var_diff = var.double() - running_var.double()
    mean_norm, var_norm = torch.linalg.vector_norm(mean_diff), torch.linalg.vector_norm(var_diff)
    a = torch.where(mean_norm == 0, 0.0, mean_diff / (count * mean_norm))
    b = torch.where(var_norm == 0, 0.0, 2.0 * var_diff / (count * var_norm))
    g = grad_loss.double()
    return g * (a - b * mu), g * b


def tv_counts(shape: torch.Size) -> tuple[float, float, float, float]:
    """Elements of each difference tensor (right, down, both diagonals)."""
    n, c, h, w = shape
    planes = float(n * c)
    return planes * h * (w - 1), planes * (h - 1) * w, planes * (h - 1) * (w - 1), planes * (h - 1) * (w - 1)


def tv_loss_from_sums(kind: str, sums: Tensor, shape: torch.Size) -> Tensor:
    """L from the per-direction sums of d^2 (l2) or |d| (l1) (dfnas/tv_loss_math.h)."""
    if kind == "l2":
        return sums.sqrt().sum()
    return sum(sums[k] / count for k, count in enumerate(tv_counts(shape)))


def tv_weights(kind: str, grad_loss: Tensor, sums: Tensor, shape: torch.Size) -> Tensor:
    """Per-direction weights w_k of the backward, dL/dd_k = w_k term(d_k) (dfnas/tv_loss_math.h)."""
    g = grad_loss.double()
    if kind == "l2":
        norms = sums.double().sqrt()
        return torch.where(norms == 0, 0.0, g / norms)
    return torch.stack([g / count for count in tv_counts(shape)])
