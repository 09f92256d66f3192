"""Fake (meta) implementations of every dfnas:: op: output shapes, dtypes and strides only.

The C++ schema names this module (`set_python_module`), so torch imports it whenever a fake is
needed. Memory-format and dtype rules are `dfnas.ops._common`'s (the C++ glue's `dense_images`,
csrc/tensor_checks.h): outputs shaped like an input follow its layout when it is NCHW- or
channels-last-contiguous (NCHW wins), else NCHW.
"""
from __future__ import annotations

import torch
from torch import Tensor

from dfnas.ops._common import dense_memory_format, opmath


def _check_4d(x: Tensor, op: str) -> None:
    torch._check(x.dim() == 4, lambda: f"{op}: expected a 4-D (N, C, H, W) tensor, got {x.dim()}-D")


@torch.library.register_fake("dfnas::bn_stat_loss_forward")
def _bn_stat_loss_forward(x, running_mean, running_var):
    _check_4d(x, "bn_stat_loss")
    channels = x.shape[1]
    dtype = opmath(x.dtype)
    return x.new_empty((), dtype=dtype), x.new_empty((channels,), dtype=dtype), x.new_empty((channels,), dtype=dtype)


@torch.library.register_fake("dfnas::bn_stat_loss_backward")
def _bn_stat_loss_backward(grad_loss, x, mean, var, running_mean, running_var):
    return torch.empty_like(x, memory_format=dense_memory_format(x))


@torch.library.register_fake("dfnas::tv_loss_forward")
def _tv_loss_forward(x, kind):
    _check_4d(x, "tv_loss")
    return x.new_empty((), dtype=opmath(x.dtype)), x.new_empty((4,), dtype=torch.float64)


@torch.library.register_fake("dfnas::tv_loss_backward")
def _tv_loss_backward(grad_loss, x, sums, kind):
    return torch.empty_like(x, memory_format=dense_memory_format(x))


@torch.library.register_fake("dfnas::crop_windows")
def _crop_windows(canvas, offsets, height, width):
    _check_4d(canvas, "crop_windows")
    shape = (canvas.shape[0], canvas.shape[1], height, width)
    return canvas.new_empty(shape).contiguous(memory_format=dense_memory_format(canvas))


@torch.library.register_fake("dfnas::crop_windows_backward")
def _crop_windows_backward(grad, offsets, canvas_height, canvas_width):
    shape = (grad.shape[0], grad.shape[1], canvas_height, canvas_width)
    return grad.new_empty(shape).contiguous(memory_format=dense_memory_format(grad))


@torch.library.register_fake("dfnas::region_adam_")
def _region_adam_(canvas, grad, exp_avg, exp_avg_sq, offsets, *, step, lr, beta1, beta2, eps,
                  clamp_min=None, clamp_max=None):
    return None
