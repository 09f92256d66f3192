"""Index map shared by the window kernels (crop_windows, region_adam).

The window tensor (N, C, h, w), dense in the canvas's layout, is a matrix of window rows of
contiguous values: NCHW has N*C*h rows of w values (row r = (n, c, i)), channels-last N*h rows
of w*C values (row r = (n, i), column = j*C + c). Row r of sample n lies on the canvas
(N, C, H, W) at row y0 + i from column x0, with (y0, x0) = offsets[n]. Programs take 2-D tiles
of (rows x columns), so the index arithmetic is per row, not per value.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def window_tile(pid_r, pid_t, offsets_ptr, N, C, H, W, h, w,
                CHANNELS_LAST: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr):
    """(window offsets, canvas offsets, channels, mask) of a (BLOCK_R x BLOCK_T) tile."""
    rows = pid_r.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_t.to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    if CHANNELS_LAST:
        n = rows // h
        i = rows % h
        row_len = w * C
        n_rows = N * h
    else:
        n = rows // (C * h)
        i = rows % h
        row_len = w
        n_rows = N * C * h
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < row_len)[None, :]
    y0 = tl.load(offsets_ptr + 2 * n, mask=row_ok, other=0)
    x0 = tl.load(offsets_ptr + 2 * n + 1, mask=row_ok, other=0)
    if CHANNELS_LAST:
        canvas_row = ((n * H + y0 + i) * W + x0) * C
        channels = (cols % C)[None, :] + tl.zeros((BLOCK_R, BLOCK_T), tl.int64)
    else:
        c = (rows // h) % C
        canvas_row = ((n * C + c) * H + y0 + i) * W + x0
        channels = c[:, None] + tl.zeros((BLOCK_R, BLOCK_T), tl.int64)
    window = rows[:, None] * row_len + cols[None, :]
    canvas = canvas_row[:, None] + cols[None, :]
    return window, canvas, channels, mask


def tile_shape(row_len: int, values: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_T) of a tile of about `values` values over rows of `row_len`."""
    block_t = min(triton.next_power_of_2(row_len), values)
    return values // block_t, block_t


def grid(n: int, c: int, h: int, w: int, channels_last: bool, block_r: int, block_t: int) -> tuple[int, int]:
    rows, row_len = (n * h, w * c) if channels_last else (n * c * h, w)
    return triton.cdiv(rows, block_r), triton.cdiv(row_len, block_t)
