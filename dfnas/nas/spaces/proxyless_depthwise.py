"""Depthwise convolution whose weight gradient, on small maps, runs as a depthwise forward.

oneDNN's depthwise weight gradient for kernels above 3x3 runs 10-25x below the same
convolution's forward (BENCHMARKS.md, "SPOS and ProxylessNAS supernet steps"). At stride 1,
dL/dw[c, i, j] = sum_n sum_{h,w} x_pad[n, c, h + i, w + j] * g[n, c, h, w]: each channel of each
image correlated with its output gradient, which is a depthwise *forward* over N*C channels (input
x, kernel g, the same padding) summed over n. On gradient maps of at most 7x7 oneDNN runs that
forward 1.4-16x faster than its own weight gradient (tiny and reference ProxylessNAS shapes); on
8x8 maps it can already lose (0.5x) and on 14x14 maps (then the kernel) it does: hence `MAX_MAP`. Values and input gradients are oneDNN's own; the weight gradient sums in
another order (equal within float32 rounding). The standalone network keeps `nn.Conv2d`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_MAP = 7


class _Depthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, None, 1, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        channels, pad = weight.shape[0], ctx.padding
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [pad, pad], [1, 1], False,
                                                         [0, 0], channels, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            n, _, h, w = x.shape
            maps = F.conv2d(x.contiguous().view(1, n * channels, h, w),
                            grad.contiguous().view(n * channels, 1, *grad.shape[2:]), None, 1, pad, 1, n * channels)
            grad_w = maps.view(n, channels, *weight.shape[2:]).sum(0).unsqueeze(1)
        return grad_x, grad_w, None


class Depthwise(nn.Conv2d):
    """`nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False)` (same parameters and state
    dict) whose stride-1 weight gradient for kernels above 3x3 on maps up to `MAX_MAP` is
    `_Depthwise`'s."""

    def __init__(self, channels: int, kernel: int, stride: int):
        super().__init__(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = (self.stride == (1, 1) and self.kernel_size[0] > 3 and max(x.shape[-2:]) <= MAX_MAP
                and torch.is_grad_enabled())
        return _Depthwise.apply(x, self.weight, self.padding[0]) if fast else super().forward(x)
