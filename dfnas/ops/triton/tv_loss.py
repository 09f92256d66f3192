"""Total-variation prior in Triton: `dfnas::tv_loss_forward` / `_backward` for CUDA tensors.

Four neighbour differences of x (N, C, H, W):

    d0 = x[i, j] - x[i, j+1]        d1 = x[i, j] - x[i+1, j]
    d2 = x[i+1, j] - x[i, j+1]      d3 = x[i, j] - x[i+1, j+1]

    l2:  L = sum_k ||d_k||_F         dL/dd_k = (g / ||d_k||) d_k    (0 where ||d_k|| = 0)
    l1:  L = sum_k mean |d_k|        dL/dd_k = (g / count_k) sign(d_k)

The forward returns L and the four sums S_k = sum d_k^2 (l2) or sum |d_k| (l1) in float64, which
the backward turns into weights w_k (g / sqrt(S_k), or g / count_k). A pixel's gradient is
sum_k w_k (term(first-operand differences) - term(second-operand differences)) over its 3x3
neighbourhood, term = d (l2) or sign(d) (l1).

Both layouts are walked as planes of `rows` rows of `length` contiguous values whose right
neighbour is `step` values away: NCHW = N*C planes (length W, step 1), channels-last = N planes
(length W*C, step C). Each program owns a fixed 2-D tile of (plane rows x columns) shaped to
the row length; forward tile sums are combined with torch in float64 (deterministic, no atomics).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from dfnas.ops._common import check_image_batch, dense, opmath, tv_loss_from_sums, tv_weights

# Values per program: the backward keeps nine neighbour tiles live, the forward four.
FORWARD_TILE, BACKWARD_TILE = 2048, 1024


@triton.jit
def _term(d, L2: tl.constexpr):
    if L2:
        out = d * d
    else:
        out = tl.abs(d)
    return out


@triton.jit
def _grad_term(d, L2: tl.constexpr):
    if L2:
        out = d
    else:
        out = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0)).to(d.dtype)
    return out


@triton.jit
def _neighbour(x_ptr, offsets, shift, mask, ACC: tl.constexpr):
    return tl.load(x_ptr + offsets + shift, mask=mask, other=0.0).to(ACC)


@triton.jit
def _tile(pid_r, pid_t, total_rows, ROWS, LENGTH, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr):
    rows = pid_r.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R).to(tl.int64)
    cols = pid_t.to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    inside = (rows < total_rows)[:, None] & (cols < LENGTH)[None, :]
    offsets = rows[:, None] * LENGTH + cols[None, :]
    return rows % ROWS, cols, inside, offsets


@triton.jit
def _forward_kernel(x_ptr, part_ptr, total_rows, ROWS, LENGTH, STEP,
                    L2: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr):
    pid_r, pid_t = tl.program_id(0), tl.program_id(1)
    row, col, inside, offsets = _tile(pid_r, pid_t, total_rows, ROWS, LENGTH, BLOCK_R, BLOCK_T)
    has_right = inside & (col + STEP < LENGTH)[None, :]
    has_down = inside & (row + 1 < ROWS)[:, None]
    both = has_right & has_down
    x = tl.load(x_ptr + offsets, mask=inside, other=0.0).to(ACC)
    right = tl.load(x_ptr + offsets + STEP, mask=has_right, other=0.0).to(ACC)
    below = tl.load(x_ptr + offsets + LENGTH, mask=has_down, other=0.0).to(ACC)
    below_right = tl.load(x_ptr + offsets + LENGTH + STEP, mask=both, other=0.0).to(ACC)
    s0 = tl.sum(tl.sum(tl.where(has_right, _term(x - right, L2), 0.0), axis=1), axis=0)
    s1 = tl.sum(tl.sum(tl.where(has_down, _term(x - below, L2), 0.0), axis=1), axis=0)
    s2 = tl.sum(tl.sum(tl.where(both, _term(below - right, L2), 0.0), axis=1), axis=0)
    s3 = tl.sum(tl.sum(tl.where(both, _term(x - below_right, L2), 0.0), axis=1), axis=0)
    out = part_ptr + (pid_r * tl.num_programs(1) + pid_t).to(tl.int64) * 4
    tl.store(out, s0.to(tl.float64))
    tl.store(out + 1, s1.to(tl.float64))
    tl.store(out + 2, s2.to(tl.float64))
    tl.store(out + 3, s3.to(tl.float64))


@triton.jit
def _backward_kernel(x_ptr, y_ptr, weight_ptr, total_rows, ROWS, LENGTH, STEP,
                     L2: tl.constexpr, ACC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr):
    pid_r, pid_t = tl.program_id(0), tl.program_id(1)
    row, col, inside, offsets = _tile(pid_r, pid_t, total_rows, ROWS, LENGTH, BLOCK_R, BLOCK_T)
    has_left = inside & (col >= STEP)[None, :]
    has_right = inside & (col + STEP < LENGTH)[None, :]
    has_up = inside & (row > 0)[:, None]
    has_down = inside & (row + 1 < ROWS)[:, None]
    w0 = tl.load(weight_ptr)
    w1 = tl.load(weight_ptr + 1)
    w2 = tl.load(weight_ptr + 2)
    w3 = tl.load(weight_ptr + 3)
    x = tl.load(x_ptr + offsets, mask=inside, other=0.0).to(ACC)
    up_right, down_left = has_up & has_right, has_down & has_left
    down_right, up_left = has_down & has_right, has_up & has_left
    right = _neighbour(x_ptr, offsets, STEP, has_right, ACC)
    left = _neighbour(x_ptr, offsets, -STEP, has_left, ACC)
    below = _neighbour(x_ptr, offsets, LENGTH, has_down, ACC)
    above = _neighbour(x_ptr, offsets, -LENGTH, has_up, ACC)
    above_right = _neighbour(x_ptr, offsets, STEP - LENGTH, up_right, ACC)
    below_left = _neighbour(x_ptr, offsets, LENGTH - STEP, down_left, ACC)
    below_right = _neighbour(x_ptr, offsets, LENGTH + STEP, down_right, ACC)
    above_left = _neighbour(x_ptr, offsets, -LENGTH - STEP, up_left, ACC)
    # First operand of the differences starting at the pixel, second of those ending at it.
    g = tl.where(has_right, w0 * _grad_term(x - right, L2), 0.0)
    g -= tl.where(has_left, w0 * _grad_term(left - x, L2), 0.0)
    g += tl.where(has_down, w1 * _grad_term(x - below, L2), 0.0)
    g -= tl.where(has_up, w1 * _grad_term(above - x, L2), 0.0)
    g += tl.where(up_right, w2 * _grad_term(x - above_right, L2), 0.0)
    g -= tl.where(down_left, w2 * _grad_term(below_left - x, L2), 0.0)
    g += tl.where(down_right, w3 * _grad_term(x - below_right, L2), 0.0)
    g -= tl.where(up_left, w3 * _grad_term(above_left - x, L2), 0.0)
    tl.store(y_ptr + offsets, g.to(y_ptr.dtype.element_ty), mask=inside)


def _planes(x: Tensor, channels_last: bool) -> tuple[int, int, int, int]:
    """(planes, rows, length, step) of the dense layout."""
    n, c, h, w = x.shape
    return (n, h, w * c, c) if channels_last else (n * c, h, w, 1)


def _check(x: Tensor, kind: str) -> None:
    check_image_batch("tv_loss", x)
    torch._check(x.shape[2] >= 2 and x.shape[3] >= 2, lambda: "tv_loss: x must be at least 2x2 pixels")
    torch._check(kind in ("l2", "l1"), lambda: f"tv_loss: kind must be 'l2' or 'l1', got {kind!r}")


def _launch(x: Tensor, channels_last: bool, values: int) -> tuple[tuple[int, int], tuple[int, int, int, int], dict]:
    """Grid, size arguments and tile constants of a (rows x columns) tiling of `values` values."""
    planes, rows, length, step = _planes(x, channels_last)
    block_t = min(triton.next_power_of_2(length), values)
    block_r = values // block_t
    grid = (triton.cdiv(planes * rows, block_r), triton.cdiv(length, block_t))
    return grid, (planes * rows, rows, length, step), {"BLOCK_R": block_r, "BLOCK_T": block_t}


def forward(x: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    _check(x, kind)
    xd, channels_last = dense(x)
    grid, sizes, tile = _launch(xd, channels_last, FORWARD_TILE)
    partials = torch.empty((grid[0] * grid[1], 4), dtype=torch.float64, device=x.device)
    acc = tl.float64 if x.dtype == torch.float64 else tl.float32
    _forward_kernel[grid](xd, partials, *sizes, L2=kind == "l2", ACC=acc, **tile)
    sums = partials.sum(dim=0)
    return tv_loss_from_sums(kind, sums, x.shape).to(opmath(x.dtype)), sums


def backward(grad_loss: Tensor, x: Tensor, sums: Tensor, kind: str) -> Tensor:
    _check(x, kind)
    torch._check(sums.numel() == 4 and sums.dtype == torch.float64, lambda: "tv_loss: sums must be 4 float64 values")
    xd, channels_last = dense(x)
    weights = tv_weights(kind, grad_loss, sums, x.shape)
    grid, sizes, tile = _launch(xd, channels_last, BACKWARD_TILE)
    grad_x = torch.empty_like(xd)
    acc = tl.float64 if x.dtype == torch.float64 else tl.float32
    _backward_kernel[grid](xd, grad_x, weights.to(opmath(x.dtype)), *sizes, L2=kind == "l2", ACC=acc, **tile)
    return grad_x
