"""The dfnas:: op schemas implemented eagerly from `dfnas.ops.reference` (computed in float64),
with the kernels' output dtypes and layouts. The last-resort backend for CUDA tensors: when
neither the C++ CUDA kernels nor triton are available, or when chosen for comparison with
`dfnas.ops.set_backend("reference")`.

The float64 scalar and per-channel math of the losses (`bn_affine_coefficients`, `tv_counts`,
`tv_loss_from_sums`, `tv_weights`) is shared with the Triton backend, whose kernels do only the
per-element work; each is the torch form of its csrc/include/dfnas header.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from dfnas.ops import reference
from dfnas.ops._fake import dense_memory_format, opmath


def bn_affine_coefficients(grad_loss: Tensor, mean: Tensor, var: Tensor, running_mean: Tensor,
                           running_var: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """(shift, scale) in float64 with dL/dx = shift_c + scale_c x (dfnas/bn_stats_math.h)."""
    mu = mean.double()
    mean_diff = mu - running_mean.double()
    var_diff = var.double() - running_var.double()
    mean_norm, var_norm = torch.linalg.vector_norm(mean_diff), torch.linalg.vector_norm(var_diff)
    a = torch.where(mean_norm == 0, 0.0, mean_diff / (count * mean_norm))
    b = torch.where(var_norm == 0, 0.0, 2.0 * var_diff / (count * var_norm))
    g = grad_loss.double()
    return g * (a - b * mu), g * b


def tv_counts(shape: torch.Size) -> tuple[float, float, float, float]:
    """Elements of each difference tensor (right, down, both diagonals)."""
    n, c, h, w = shape
    planes = float(n * c)
    return planes * h * (w - 1), planes * (h - 1) * w, planes * (h - 1) * (w - 1), planes * (h - 1) * (w - 1)


def tv_loss_from_sums(kind: str, sums: Tensor, shape: torch.Size) -> Tensor:
    """L from the per-direction sums of d^2 (l2) or |d| (l1) (dfnas/tv_math.h)."""
    if kind == "l2":
        return sums.sqrt().sum()
    return sum(sums[k] / count for k, count in enumerate(tv_counts(shape)))


def tv_weights(kind: str, grad_loss: Tensor, sums: Tensor, shape: torch.Size) -> Tensor:
    """Per-direction weights w_k of the backward, dL/dd_k = w_k term(d_k) (dfnas/tv_math.h)."""
    g = grad_loss.double()
    if kind == "l2":
        norms = sums.double().sqrt()
        return torch.where(norms == 0, 0.0, g / norms)
    return torch.stack([g / count for count in tv_counts(shape)])


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
