"""The dfnas:: op schemas implemented eagerly from `dfnas.ops.reference` (computed in float64),
with the kernels' output dtypes and layouts. The last-resort backend for CUDA tensors: when
neither the C++ CUDA kernels nor triton are available, or when chosen for comparison with
`dfnas.ops.set_backend("reference")`. Layout, dtype and host-side loss math come from
`dfnas.ops._common`, as for the Triton backend. Importing it does not load the extension.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from dfnas.ops import reference
from dfnas.ops._common import bn_affine_coefficients, dense_memory_format, opmath


def _like_x(values: Tensor, x: Tensor) -> Tensor:
    """values in x's dtype and dense layout (the kernels' rule for x-shaped outputs)."""
    return values.to(x.dtype).contiguous(memory_format=dense_memory_format(x))


def bn_stat_loss_forward(x: Tensor, running_mean: Tensor, running_var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    x64 = x.double()
    mean = x64.mean(dim=(0, 2, 3))
    var = x64.var(dim=(0, 2, 3), unbiased=False)
    loss = reference.bn_stat_loss(x64, running_mean.double(), running_var.double())
    out = opmath(x.dtype)
    return loss.to(out), mean.to(out), var.to(out)


def bn_stat_loss_backward(grad_loss: Tensor, x: Tensor, mean: Tensor, var: Tensor, running_mean: Tensor,
                          running_var: Tensor) -> Tensor:
    count = x.shape[0] * x.shape[2] * x.shape[3]
    shift, scale = bn_affine_coefficients(grad_loss, mean, var, running_mean, running_var, count)
    return _like_x(shift[None, :, None, None] + scale[None, :, None, None] * x.double(), x)


def _direction_terms(x64: Tensor, kind: str) -> list[Tensor]:
    return [d * d if kind == "l2" else d.abs() for d in reference.tv_differences(x64)]


def tv_loss_forward(x: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    x64 = x.double()
    sums = torch.stack([t.sum() for t in _direction_terms(x64, kind)])
    return reference.tv_loss(x64, kind).to(opmath(x.dtype)), sums


def tv_loss_backward(grad_loss: Tensor, x: Tensor, sums: Tensor, kind: str) -> Tensor:
    # The specification's own gradient (autograd of reference.tv_loss); `sums` is implied by x.
    with torch.enable_grad():
        x64 = x.detach().double().requires_grad_()
        (grad,) = torch.autograd.grad(reference.tv_loss(x64, kind), x64, grad_loss.double())
    return _like_x(grad, x)


def crop_windows(canvas: Tensor, offsets: Tensor, height: int, width: int) -> Tensor:
    return reference.crop_windows(canvas, offsets, height, width).contiguous(
        memory_format=dense_memory_format(canvas))


def crop_windows_backward(grad: Tensor, offsets: Tensor, canvas_height: int, canvas_width: int) -> Tensor:
    n, c = grad.shape[:2]
    canvas_grad = grad.new_zeros((n, c, canvas_height, canvas_width))
    index_n, y, x = reference.window_index(offsets, grad.shape[2], grad.shape[3])
    canvas_grad.permute(0, 2, 3, 1)[index_n, y, x] = grad.permute(0, 2, 3, 1)
    return canvas_grad.contiguous(memory_format=dense_memory_format(grad))


def region_adam_(canvas: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, offsets: Tensor, *,
                 step: int, lr: float, beta1: float, beta2: float, eps: float,
                 clamp_min: Tensor | None = None, clamp_max: Tensor | None = None) -> None:
    reference.region_adam_(canvas, grad, exp_avg, exp_avg_sq, offsets, step=step, lr=lr, beta1=beta1,
                           beta2=beta2, eps=eps, clamp_min=clamp_min, clamp_max=clamp_max)


def kernels() -> dict[str, Callable]:
    """Implementation of each dfnas:: op schema."""
    return {
        "bn_stat_loss_forward": bn_stat_loss_forward,
        "bn_stat_loss_backward": bn_stat_loss_backward,
        "tv_loss_forward": tv_loss_forward,
        "tv_loss_backward": tv_loss_backward,
        "crop_windows": crop_windows,
        "crop_windows_backward": crop_windows_backward,
        "region_adam_": region_adam_,
    }
