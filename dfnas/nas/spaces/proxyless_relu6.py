"""ReLU6 in place whose backward reads its output: the supernet's ReLU6 without autograd's copy.

`nn.ReLU6(inplace=True)` is `hardtanh_`, whose derivative formula reads the op's *input*, so
autograd clones every activation before clamping it in place: an allocation plus a read and a
write of the whole tensor per activation (the ProxylessNAS weight step's largest is 64x48x28x28).
The gradient mask it needs, 0 < x < 6, equals 0 < y < 6 for y = clamp(x, 0, 6) (x <= 0 gives
y = 0 and x >= 6 gives y = 6, both outside the open interval; NaN passes in both), so saving the
output gives bit-identical gradients with nothing copied. Forward values are `clamp`, as
`hardtanh_`'s. Only the supernet uses it: the standalone network keeps `nn.ReLU6`, which
TorchScript and ONNX export understand.
"""
from __future__ import annotations

import torch
from torch import nn


class _InplaceReLU6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x.clamp_(0.0, 6.0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        output, = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, output, 0.0, 6.0)


class InplaceReLU6(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _InplaceReLU6.apply(x)

