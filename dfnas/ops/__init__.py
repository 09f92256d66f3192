"""The fused dfnas ops. Public API:

- `bn_stat_loss(x, running_mean, running_var)`: BatchNorm-statistics matching loss
- `tv_loss(x, kind="l2")`: four-direction total-variation prior
- `crop_windows(canvas, offsets, height, width)`: per-sample windows of a canvas
- `region_adam_(canvas, grad, exp_avg, exp_avg_sq, offsets, *, step, lr, ...)`: Adam on windows only
- `set_backend(name)` / `get_backend()`: the implementation CUDA tensors use (see `_backend`)
- `load()`: `torch.ops.dfnas`, for calling the op schemas directly

The eager specification of each op is in `dfnas.ops.reference`; docs/ops.md states the math and
lists every op's files. Importing dfnas.ops loads nothing compiled: the extension (with the fake
and autograd registrations) is loaded, and DFNAS_BACKEND applied, on the first op call.
"""
from __future__ import annotations

import torch
from torch import Tensor

from dfnas.ops import _backend, _checks, _extension
from dfnas.ops._backend import get_backend, set_backend
from dfnas.ops.reference import TV_KINDS

__all__ = ["bn_stat_loss", "tv_loss", "crop_windows", "region_adam_", "set_backend", "get_backend", "load"]


def load():
    """`torch.ops.dfnas`, ready to call: the extension and the fake / autograd registrations
    loaded, the backend for CUDA tensors chosen (DFNAS_BACKEND unless `set_backend` came first)."""
    ops = _extension.load()
    _backend.ensure_selected()
    return ops


def bn_stat_loss(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Tensor:
    """||mean_c(x) - running_mean||_2 + ||var_c(x) - running_var||_2, mean and biased variance
    over (N, H, W) of x (N, C, H, W). Returns a 0-dim float32 tensor (float64 for float64 x),
    differentiable in x."""
    op = "bn_stat_loss"
    _checks.image_batch(op, "x", x)
    _checks.channel_vector(op, "running_mean", running_mean, x)
    _checks.channel_vector(op, "running_var", running_var, x)
    loss, _mean, _var = load().bn_stat_loss_forward(x, running_mean, running_var)
    return loss


def tv_loss(x: Tensor, kind: str = "l2") -> Tensor:
    """Total variation over right, down and both diagonal neighbour differences of x (N, C, H, W):
    `l2` sums the four differences' Frobenius norms, `l1` their mean absolute values."""
    op = "tv_loss"
    _checks.image_batch(op, "x", x)
    if kind not in TV_KINDS:
        raise ValueError(f"{op}: kind must be one of {TV_KINDS}, got {kind!r}")
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"{op}: x must be at least 2x2 pixels, got {x.shape[2]}x{x.shape[3]}")
    loss, _sums = load().tv_loss_forward(x, kind)
    return loss


def crop_windows(canvas: Tensor, offsets: Tensor, height: int, width: int) -> Tensor:
    """The (height, width) window of each sample of canvas (N, C, H, W) whose top-left corner is
    offsets[n] = (y, x). The result has the canvas's memory layout; differentiable in canvas."""
    op = "crop_windows"
    _checks.image_batch(op, "canvas", canvas)
    _checks.window_offsets(op, offsets, canvas)
    _checks.window_size(op, height, width, canvas)
    return load().crop_windows(canvas, offsets, height, width)


def region_adam_(
    canvas: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    offsets: Tensor,
    *,
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    clamp_min: Tensor | None = None,
    clamp_max: Tensor | None = None,
) -> None:
    """In-place Adam on each sample's window of `canvas` (N, C, H, W). `grad` (N, C, h, w) is the
    gradient of the windows at `offsets` (N, 2) = (y, x). Pixels and moments outside the windows
    stay bit-identical; bias correction uses `step`, the step count including this update.
    Optional per-channel bounds (C,) clamp the updated pixels."""
    op = "region_adam_"
    dtypes = (torch.float32, torch.float64)
    _checks.image_batch(op, "canvas", canvas, dtypes)
    _checks.image_batch(op, "grad", grad, dtypes)
    for name, t in (("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if not isinstance(t, Tensor) or t.dtype != canvas.dtype:
            raise ValueError(f"{op}: {name} must be a {canvas.dtype} tensor like the canvas")
        _checks.same_device(op, name, t, canvas, "canvas")
    for name, t in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if t.shape != canvas.shape or t.stride() != canvas.stride():
            raise ValueError(f"{op}: {name} must have the canvas's shape and memory layout {tuple(canvas.shape)}")
    if grad.shape[:2] != canvas.shape[:2]:
        raise ValueError(f"{op}: grad must be ({canvas.shape[0]}, {canvas.shape[1]}, h, w), got {tuple(grad.shape)}")
    if not (canvas.is_contiguous() or canvas.is_contiguous(memory_format=torch.channels_last)):
        raise ValueError(f"{op}: canvas must be contiguous or channels_last (it is updated in place)")
    _checks.window_offsets(op, offsets, canvas)
    _checks.window_size(op, grad.shape[2], grad.shape[3], canvas)
    if step < 1:
        raise ValueError(f"{op}: step must be >= 1 (the step count including this update), got {step}")
    if not (lr >= 0.0 and eps >= 0.0 and 0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"{op}: need lr >= 0, eps >= 0 and betas in [0, 1); got lr={lr}, eps={eps}, betas=({beta1}, {beta2})")
    for name, bound in (("clamp_min", clamp_min), ("clamp_max", clamp_max)):
        if bound is not None:
            _checks.channel_vector(op, name, bound, canvas)
    load().region_adam_(
        canvas, grad, exp_avg, exp_avg_sq, offsets,
        step=int(step), lr=float(lr), beta1=float(beta1), beta2=float(beta2), eps=float(eps),
        clamp_min=clamp_min, clamp_max=clamp_max,
    )
