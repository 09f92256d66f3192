"""Region Adam in Triton: `dfnas::region_adam_` for CUDA tensors.

For every element of sample n's window (canvas rows y0_n .. y0_n + h, columns x0_n .. x0_n + w,
(y0_n, x0_n) = offsets[n]) with window gradient g, at global step t:

    m <- b1 m + (1 - b1) g           v <- b2 v + (1 - b2) g^2
    p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    p <- min(max(p, clamp_min_c), clamp_max_c)          (bounds optional, per channel)

Canvas pixels and moments outside the windows are never read or written (bit-identical). The
constants are computed in float64 on the host as torch.optim.Adam does, and enter the kernel in
the canvas dtype (float32 or float64) through a small tensor, since Triton types Python float
arguments as float32.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from dfnas.ops._common import check_windows
from dfnas.ops.triton import _window_index

TILE = 1024  # values per program


@triton.jit
def _region_adam_kernel(p_ptr, g_ptr, m_ptr, v_ptr, offsets_ptr, consts_ptr, lo_ptr, hi_ptr,
                        N, C, H, W, h, w,
                        HAS_MIN: tl.constexpr, HAS_MAX: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                        FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr):
    e, at, channel, mask = _window_index.window_tile(tl.program_id(0), tl.program_id(1), offsets_ptr, N, C, H, W,
                                                     h, w, CHANNELS_LAST, BLOCK_R, BLOCK_T)
    beta1 = tl.load(consts_ptr)
    beta2 = tl.load(consts_ptr + 1)
    one_minus_beta1 = tl.load(consts_ptr + 2)
    one_minus_beta2 = tl.load(consts_ptr + 3)
    step_size = tl.load(consts_ptr + 4)
    bias2_sqrt = tl.load(consts_ptr + 5)
    eps = tl.load(consts_ptr + 6)
    g = tl.load(g_ptr + e, mask=mask, other=0.0)
    p = tl.load(p_ptr + at, mask=mask, other=0.0)
    m = beta1 * tl.load(m_ptr + at, mask=mask, other=0.0) + one_minus_beta1 * g
    v = beta2 * tl.load(v_ptr + at, mask=mask, other=0.0) + one_minus_beta2 * g * g
    if FP64:
        p = p - step_size * m / (tl.sqrt(v) / bias2_sqrt + eps)
    else:  # IEEE-rounded, as the C++ kernels compute it (float32 tl.sqrt and / are approximate)
        p = p - tl.div_rn(step_size * m, tl.div_rn(tl.sqrt_rn(v), bias2_sqrt) + eps)
    # max/min written as compares so that a NaN parameter propagates (as in region_adam_math.h).
    if HAS_MIN:
        lo = tl.load(lo_ptr + channel, mask=mask, other=0.0)
        p = tl.where(p < lo, lo, p)
    if HAS_MAX:
        hi = tl.load(hi_ptr + channel, mask=mask, other=0.0)
        p = tl.where(hi < p, hi, p)
    tl.store(p_ptr + at, p, mask=mask)
    tl.store(m_ptr + at, m, mask=mask)
    tl.store(v_ptr + at, v, mask=mask)


def _constants(step: int, lr: float, beta1: float, beta2: float, eps: float, dtype: torch.dtype,
               device: torch.device) -> Tensor:
    bias1 = 1.0 - beta1**step
    bias2 = 1.0 - beta2**step
    values = [beta1, beta2, 1.0 - beta1, 1.0 - beta2, lr / bias1, math.sqrt(bias2), eps]
    if device.type == "cuda":  # pinned + non_blocking: no host synchronization per step
        return torch.tensor(values, dtype=dtype, pin_memory=True).to(device, non_blocking=True)
    return torch.tensor(values, dtype=dtype, device=device)


def region_adam_(canvas: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, offsets: Tensor, *,
                 step: int, lr: float, beta1: float, beta2: float, eps: float,
                 clamp_min: Tensor | None = None, clamp_max: Tensor | None = None) -> None:
    op = "region_adam_"
    torch._check(canvas.dtype in (torch.float32, torch.float64), lambda: f"{op}: canvas must be float32 or float64")
    torch._check(canvas.dim() == 4 and grad.dim() == 4 and grad.shape[:2] == canvas.shape[:2],
                 lambda: f"{op}: canvas (N, C, H, W) and grad (N, C, h, w) expected")
    torch._check(step >= 1, lambda: f"{op}: step must be >= 1, got {step}")
    for t in (grad, exp_avg, exp_avg_sq):
        torch._check(t.dtype == canvas.dtype and t.device == canvas.device,
                     lambda: f"{op}: grad and moments must match the canvas dtype and device")
    for t in (exp_avg, exp_avg_sq):
        torch._check(t.shape == canvas.shape and t.stride() == canvas.stride(),
                     lambda: f"{op}: moments must have the canvas shape and memory layout")
    if canvas.is_contiguous():
        channels_last = False
    else:
        torch._check(canvas.is_contiguous(memory_format=torch.channels_last),
                     lambda: f"{op}: canvas must be contiguous or channels_last")
        channels_last = True
    n, c, height, width = canvas.shape
    h, w = grad.shape[2], grad.shape[3]
    offsets = check_windows(op, offsets, n, height, width, h, w)
    grad = grad.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    bounds = [b.to(canvas.dtype).contiguous() if b is not None else None for b in (clamp_min, clamp_max)]
    consts = _constants(step, lr, beta1, beta2, eps, canvas.dtype, canvas.device)
    block_r, block_t = _window_index.tile_shape(w * c if channels_last else w, TILE)
    _region_adam_kernel[_window_index.grid(n, c, h, w, channels_last, block_r, block_t)](
        canvas, grad, exp_avg, exp_avg_sq, offsets, consts,
        bounds[0] if bounds[0] is not None else consts, bounds[1] if bounds[1] is not None else consts,
        n, c, height, width, h, w,
        HAS_MIN=bounds[0] is not None, HAS_MAX=bounds[1] is not None, CHANNELS_LAST=channels_last,
        FP64=canvas.dtype == torch.float64, BLOCK_R=block_r, BLOCK_T=block_t,
    )
