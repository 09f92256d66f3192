"""BN-statistics loss in Triton: `dfnas::bn_stat_loss_forward` / `_backward` for CUDA tensors.

For x (N, C, H, W), M = N*H*W values per channel, running statistics rm, rv:

    mean_c = (1/M) sum x            var_c = (1/M) sum (x - mean_c)^2      (biased)
    L      = ||mean - rm||_2 + ||var - rv||_2

computed from shifted sums (shift s_c = x[0, c, 0, 0], which keeps the one-pass variance free of
cancellation):  S1 = sum (x - s_c),  S2 = sum (x - s_c)^2,  mean = s_c + S1/M,
var = max(S2/M - (S1/M)^2, 0).

Backward, with a_c = (mean_c - rm_c) / (M ||mean - rm||) and b_c = 2 (var_c - rv_c) / (M ||var - rv||)
(each 0 where its norm is 0, torch's subgradient):

    dL/dx = g (a_c + b_c (x - mean_c)) = shift_c + scale_c x,
    scale_c = g b_c,  shift_c = g (a_c - b_c mean_c).

The forward reduces fixed tiles of each channel in one kernel (partial sums in float32, or
float64 for float64 data, stored as float64) and combines the tiles with torch in float64: no
atomics, so the result is deterministic. The backward's per-channel coefficients are a few
float64 vector ops; the elementwise map is one kernel. Tiles are 2-D (samples x pixels for
NCHW, pixels x channels for channels-last), so no kernel divides per element.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from dfnas.ops._common import bn_affine_coefficients, check_image_batch, dense, opmath

TILE = 4096  # values per program


@triton.jit
def _partial_sums_nchw_kernel(x_ptr, part_ptr, N, C, HW, tiles_hw, n_tiles,
                              ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_HW: tl.constexpr):
    """Program (c, t): samples tn*BLOCK_N.. x pixels th*BLOCK_HW.. of channel c, t = tn*tiles_hw + th."""
    c = tl.program_id(0).to(tl.int64)
    t = tl.program_id(1)
    samples = (t // tiles_hw).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    pixels = (t % tiles_hw).to(tl.int64) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    mask = (samples < N)[:, None] & (pixels < HW)[None, :]
    shift = tl.load(x_ptr + c * HW).to(ACC)
    values = tl.load(x_ptr + (samples * C + c)[:, None] * HW + pixels[None, :], mask=mask, other=0.0).to(ACC)
    d = tl.where(mask, values - shift, 0.0)
    tl.store(part_ptr + t * C + c, tl.sum(tl.sum(d, axis=1), axis=0).to(tl.float64))
    tl.store(part_ptr + (n_tiles + t) * C + c, tl.sum(tl.sum(d * d, axis=1), axis=0).to(tl.float64))


@triton.jit
def _partial_sums_nhwc_kernel(x_ptr, part_ptr, P, C, n_tiles,
                              ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """Program (cb, t): pixels t*BLOCK_P.. x channels cb*BLOCK_C.. (contiguous)."""
    channels = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    t = tl.program_id(1).to(tl.int64)
    pixels = t * BLOCK_P + tl.arange(0, BLOCK_P)
    channel_ok = channels < C
    mask = (pixels < P)[:, None] & channel_ok[None, :]
    shift = tl.load(x_ptr + channels, mask=channel_ok, other=0.0).to(ACC)
    values = tl.load(x_ptr + pixels[:, None] * C + channels[None, :], mask=mask, other=0.0).to(ACC)
    d = tl.where(mask, values - shift[None, :], 0.0)
    tl.store(part_ptr + t * C + channels, tl.sum(d, axis=0).to(tl.float64), mask=channel_ok)
    tl.store(part_ptr + (n_tiles + t) * C + channels, tl.sum(d * d, axis=0).to(tl.float64), mask=channel_ok)


@triton.jit
def _affine_nchw_kernel(x_ptr, y_ptr, shift_ptr, scale_ptr, planes, C, HW,
                        ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_HW: tl.constexpr):
    """y = shift_c + scale_c x on a tile of (planes n*C + c) x pixels."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    pixels = tl.program_id(1).to(tl.int64) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    row_ok = rows < planes
    mask = row_ok[:, None] & (pixels < HW)[None, :]
    channels = rows % C
    shift = tl.load(shift_ptr + channels, mask=row_ok, other=0.0)
    scale = tl.load(scale_ptr + channels, mask=row_ok, other=0.0)
    offsets = rows[:, None] * HW + pixels[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(ACC)
    tl.store(y_ptr + offsets, (shift[:, None] + scale[:, None] * x).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _affine_nhwc_kernel(x_ptr, y_ptr, shift_ptr, scale_ptr, P, C,
                        ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """y = shift_c + scale_c x on a tile of pixels x channels."""
    pixels = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    channels = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    channel_ok = channels < C
    mask = (pixels < P)[:, None] & channel_ok[None, :]
    shift = tl.load(shift_ptr + channels, mask=channel_ok, other=0.0)
    scale = tl.load(scale_ptr + channels, mask=channel_ok, other=0.0)
    offsets = pixels[:, None] * C + channels[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(ACC)
    tl.store(y_ptr + offsets, (shift[None, :] + scale[None, :] * x).to(y_ptr.dtype.element_ty), mask=mask)


def _tl_acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _tile(inner: int) -> tuple[int, int]:
    """(outer, inner) block sizes of a TILE-value tile whose inner axis spans `inner` values."""
    block_inner = min(triton.next_power_of_2(inner), TILE)
    return TILE // block_inner, block_inner


def _partial_sums(xd: Tensor, channels_last: bool) -> Tensor:
    """(2, tiles, C) float64 per-tile shifted sums and sums of squares."""
    n, c, h, w = xd.shape
    acc = _tl_acc(xd.dtype)
    if channels_last:
        block_p, block_c = _tile(c)
        n_tiles = triton.cdiv(n * h * w, block_p)
        partials = torch.empty((2, n_tiles, c), dtype=torch.float64, device=xd.device)
        _partial_sums_nhwc_kernel[(triton.cdiv(c, block_c), n_tiles)](
            xd, partials, n * h * w, c, n_tiles, ACC=acc, BLOCK_P=block_p, BLOCK_C=block_c)
    else:
        block_n, block_hw = _tile(h * w)
        tiles_hw = triton.cdiv(h * w, block_hw)
        n_tiles = triton.cdiv(n, block_n) * tiles_hw
        partials = torch.empty((2, n_tiles, c), dtype=torch.float64, device=xd.device)
        _partial_sums_nchw_kernel[(c, n_tiles)](
            xd, partials, n, c, h * w, tiles_hw, n_tiles, ACC=acc, BLOCK_N=block_n, BLOCK_HW=block_hw)
    return partials


def forward(x: Tensor, running_mean: Tensor, running_var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    check_image_batch("bn_stat_loss", x)
    xd, channels_last = dense(x)
    n, _, h, w = x.shape
    m = n * h * w
    partials = _partial_sums(xd, channels_last)
    sums = partials.sum(dim=1)
    shift = (xd[0, :, 0, 0]).to(opmath(x.dtype)).double()
    shifted_mean = sums[0] / m
    mean = shift + shifted_mean
    var = (sums[1] / m - shifted_mean * shifted_mean).clamp_min(0.0)
    loss = torch.linalg.vector_norm(mean - running_mean.double()) + torch.linalg.vector_norm(var - running_var.double())
    out = opmath(x.dtype)
    return loss.to(out), mean.to(out), var.to(out)


def backward(grad_loss: Tensor, x: Tensor, mean: Tensor, var: Tensor, running_mean: Tensor,
             running_var: Tensor) -> Tensor:
    check_image_batch("bn_stat_loss", x)
    xd, channels_last = dense(x)
    n, c, h, w = x.shape
    shift, scale = bn_affine_coefficients(grad_loss, mean, var, running_mean, running_var, n * h * w)
    shift, scale = shift.to(opmath(x.dtype)), scale.to(opmath(x.dtype))
    grad_x = torch.empty_like(xd)
    acc = _tl_acc(x.dtype)
    if channels_last:
        block_p, block_c = _tile(c)
        grid = (triton.cdiv(n * h * w, block_p), triton.cdiv(c, block_c))
        _affine_nhwc_kernel[grid](xd, grad_x, shift, scale, n * h * w, c, ACC=acc, BLOCK_P=block_p, BLOCK_C=block_c)
    else:
        block_p, block_hw = _tile(h * w)
        grid = (triton.cdiv(n * c, block_p), triton.cdiv(h * w, block_hw))
        _affine_nchw_kernel[grid](xd, grad_x, shift, scale, n * c, c, h * w, ACC=acc, BLOCK_P=block_p,
                                  BLOCK_HW=block_hw)
    return grad_x
