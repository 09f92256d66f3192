"""Layout and dtype conventions shared by the Triton kernels (mirroring the C++ glue).

Kernels see dense tensors only: x itself when it is NCHW- or channels-last-contiguous (NCHW wins
when both hold), else an NCHW copy; outputs shaped like x take that layout.
"""
from __future__ import annotations

import torch
from torch import Tensor

from dfnas.ops._fake import dense_memory_format


def dense(x: Tensor) -> tuple[Tensor, bool]:
    """(x in a kernel layout, whether that layout is channels-last)."""
    memory_format = dense_memory_format(x)
    return x.contiguous(memory_format=memory_format), memory_format == torch.channels_last


def check_image_batch(op: str, x: Tensor) -> None:
    torch._check(x.dim() == 4 and x.numel() > 0, lambda: f"{op}: x must be a non-empty (N, C, H, W) tensor")
    torch._check(x.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16),
                 lambda: f"{op}: unsupported dtype {x.dtype}")


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
