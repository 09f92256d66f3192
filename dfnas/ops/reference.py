"""Eager definitions of the dfnas ops. They are the specification: valid in float64, written for
clarity, and the thing every kernel (CPU, CUDA, Triton) is tested against.

Semantics are the ones decided in docs/ops.md (after DeepInversion and Data-Free NAS):
- BN-statistics loss uses the *biased* variance over (N, H, W) and plain (unsquared) L2 norms.
- TV prior uses four neighbour differences: right, down and both diagonals.
- Region Adam is "lazy" Adam restricted to a window per sample: pixels and moments outside the
  window are never touched; bias correction uses the global step count.
"""
from __future__ import annotations

import torch
from torch import Tensor

TV_KINDS = ("l2", "l1")


def bn_stat_loss(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Tensor:
    """||mean_c(x) - running_mean||_2 + ||var_c(x) - running_var||_2 over (N, H, W) of x (N, C, H, W)."""
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    return torch.linalg.vector_norm(mean - running_mean) + torch.linalg.vector_norm(var - running_var)


def tv_differences(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four neighbour differences of x (N, C, H, W): right, down, and the two diagonals."""
    right = x[:, :, :, :-1] - x[:, :, :, 1:]
    down = x[:, :, :-1, :] - x[:, :, 1:, :]
    diag_up = x[:, :, 1:, :-1] - x[:, :, :-1, 1:]
    diag_down = x[:, :, :-1, :-1] - x[:, :, 1:, 1:]
    return right, down, diag_up, diag_down


def tv_loss(x: Tensor, kind: str = "l2") -> Tensor:
    """`l2`: sum of the four differences' Frobenius norms; `l1`: sum of their mean absolute values."""
    diffs = tv_differences(x)
    if kind == "l2":
        return sum(torch.linalg.vector_norm(d) for d in diffs)
    if kind == "l1":
        return sum(d.abs().mean() for d in diffs)
    raise ValueError(f"tv_loss: kind must be one of {TV_KINDS}, got {kind!r}")


def window_index(offsets: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Index tensors (n, y, x), broadcastable to (N, height, width), of each sample's window."""
    offsets = offsets.long()
    n = torch.arange(offsets.shape[0], device=offsets.device)[:, None, None]
    y = offsets[:, 0, None, None] + torch.arange(height, device=offsets.device)[None, :, None]
    x = offsets[:, 1, None, None] + torch.arange(width, device=offsets.device)[None, None, :]
    return n, y, x


def crop_windows(canvas: Tensor, offsets: Tensor, height: int, width: int) -> Tensor:
    """Window (height, width) of each sample of canvas (N, C, H, W), top-left at offsets[n] = (y, x)."""
    n, y, x = window_index(offsets, height, width)
    return canvas.permute(0, 2, 3, 1)[n, y, x].permute(0, 3, 1, 2)


def region_adam_(
    canvas: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    offsets: Tensor,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    clamp_min: Tensor | None = None,
    clamp_max: Tensor | None = None,
) -> None:
    """Adam (torch.optim.Adam's update, no weight decay) on the windows only; grad is (N, C, h, w)."""
    h, w = grad.shape[-2:]
    n, y, x = window_index(offsets, h, w)
    # Channels last so that advanced indexing over (n, y, x) yields (N, h, w, C) views to scatter into.
    p_nhwc, m_nhwc, v_nhwc = (t.permute(0, 2, 3, 1) for t in (canvas, exp_avg, exp_avg_sq))
    g = grad.permute(0, 2, 3, 1)
    m = m_nhwc[n, y, x] * beta1 + g * (1 - beta1)
    v = v_nhwc[n, y, x] * beta2 + g * g * (1 - beta2)
    bias1 = 1 - beta1**step
    bias2 = 1 - beta2**step
    denom = v.sqrt() / (bias2**0.5) + eps
    p = p_nhwc[n, y, x] - (lr / bias1) * m / denom
    if clamp_min is not None:
        p = torch.maximum(p, clamp_min.to(p))
    if clamp_max is not None:
        p = torch.minimum(p, clamp_max.to(p))
    m_nhwc[n, y, x] = m
    v_nhwc[n, y, x] = v
    p_nhwc[n, y, x] = p
