"""Per-sample windows in Triton: `dfnas::crop_windows` / `crop_windows_backward` for CUDA tensors.

    crop:      out[n, c, i, j] = canvas[n, c, y0_n + i, x0_n + j],   (y0_n, x0_n) = offsets[n]
    backward:  grad_canvas = 0 outside the windows, grad_canvas[n, c, y0_n + i, x0_n + j] = grad[n, c, i, j]

Programs copy 2-D tiles of (window rows x columns): contiguous on the window side, runs of a
window row on the canvas side. The window tensor has the canvas's dense layout (NCHW or
channels-last). The backward zero-fills the canvas gradient, then scatters the windows.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from dfnas.ops._common import check_windows, dense
from dfnas.ops.triton import _window_index

TILE = 2048  # values per program


@triton.jit
def _copy_kernel(canvas_ptr, windows_ptr, offsets_ptr, N, C, H, W, h, w,
                 TO_WINDOWS: tl.constexpr, CHANNELS_LAST: tl.constexpr, BLOCK_R: tl.constexpr,
                 BLOCK_T: tl.constexpr):
    window, canvas, _, mask = _window_index.window_tile(tl.program_id(0), tl.program_id(1), offsets_ptr, N, C, H, W,
                                                        h, w, CHANNELS_LAST, BLOCK_R, BLOCK_T)
    if TO_WINDOWS:
        tl.store(windows_ptr + window, tl.load(canvas_ptr + canvas, mask=mask), mask=mask)
    else:
        tl.store(canvas_ptr + canvas, tl.load(windows_ptr + window, mask=mask), mask=mask)


def _copy(canvas: Tensor, windows: Tensor, offsets: Tensor, channels_last: bool, to_windows: bool) -> None:
    n, c, height, width = canvas.shape
    h, w = windows.shape[2], windows.shape[3]
    block_r, block_t = _window_index.tile_shape(w * c if channels_last else w, TILE)
    _copy_kernel[_window_index.grid(n, c, h, w, channels_last, block_r, block_t)](
        canvas, windows, offsets, n, c, height, width, h, w,
        TO_WINDOWS=to_windows, CHANNELS_LAST=channels_last, BLOCK_R=block_r, BLOCK_T=block_t,
    )


def crop(canvas: Tensor, offsets: Tensor, height: int, width: int) -> Tensor:
    torch._check(canvas.dim() == 4 and canvas.numel() > 0, lambda: "crop_windows: canvas must be (N, C, H, W)")
    n, c, canvas_h, canvas_w = canvas.shape
    offsets = check_windows("crop_windows", offsets, n, canvas_h, canvas_w, height, width)
    dense_canvas, channels_last = dense(canvas)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((n, c, height, width), dtype=canvas.dtype, device=canvas.device, memory_format=memory_format)
    _copy(dense_canvas, out, offsets, channels_last, to_windows=True)
    return out


def crop_backward(grad: Tensor, offsets: Tensor, canvas_height: int, canvas_width: int) -> Tensor:
    torch._check(grad.dim() == 4 and grad.numel() > 0, lambda: "crop_windows_backward: grad must be (N, C, h, w)")
    n, c, h, w = grad.shape
    offsets = check_windows("crop_windows_backward", offsets, n, canvas_height, canvas_width, h, w)
    dense_grad, channels_last = dense(grad)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    canvas_grad = torch.empty((n, c, canvas_height, canvas_width), dtype=grad.dtype, device=grad.device,
                              memory_format=memory_format).zero_()
    _copy(canvas_grad, dense_grad, offsets, channels_last, to_windows=False)
    return canvas_grad
