"""Autograd wiring: each differentiable op's backward is its own dfnas:: op."""
from __future__ import annotations

import torch


def _bn_setup(ctx, inputs, output):
    x, running_mean, running_var = inputs
    _, mean, var = output
    ctx.save_for_backward(x, mean, var, running_mean, running_var)
    # The per-channel moments are saved statistics for the backward, not differentiable outputs.
    ctx.mark_non_differentiable(mean, var)


def _bn_backward(ctx, grad_loss, _grad_mean, _grad_var):
    x, mean, var, running_mean, running_var = ctx.saved_tensors
    grad_x = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.ops.dfnas.bn_stat_loss_backward(grad_loss, x, mean, var, running_mean, running_var)
    return grad_x, None, None


def _tv_setup(ctx, inputs, output):
    x, kind = inputs
    _, sums = output
    ctx.save_for_backward(x, sums)
    ctx.kind = kind
    ctx.mark_non_differentiable(sums)


def _tv_backward(ctx, grad_loss, _grad_sums):
    x, sums = ctx.saved_tensors
    return torch.ops.dfnas.tv_loss_backward(grad_loss, x, sums, ctx.kind), None


def _crop_setup(ctx, inputs, output):
    canvas, offsets, _height, _width = inputs
    ctx.save_for_backward(offsets)
    ctx.canvas_size = (canvas.shape[2], canvas.shape[3])


def _crop_backward(ctx, grad):
    (offsets,) = ctx.saved_tensors
    grad_canvas = torch.ops.dfnas.crop_windows_backward(grad, offsets, *ctx.canvas_size)
    return grad_canvas, None, None, None


torch.library.register_autograd("dfnas::bn_stat_loss_forward", _bn_backward, setup_context=_bn_setup)
torch.library.register_autograd("dfnas::tv_loss_forward", _tv_backward, setup_context=_tv_setup)
torch.library.register_autograd("dfnas::crop_windows", _crop_backward, setup_context=_crop_setup)
