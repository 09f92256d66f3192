"""Every argument check of the public ops, each with its whole one-line message, and the values
on each side of every bound (the `bad_arguments` tests of each op match a phrase only). Guards
against (mutation testing, docs/testing.md, ops group): a check dropped, a bound moved by one, a
message that no longer names the argument or the problem. A second device is the `meta` device,
which the checks must refuse to mix with CPU tensors as they refuse CUDA with CPU."""
from __future__ import annotations

import re

import pytest
import torch

from dfnas import ops


def _raises(message: str):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def _adam_args(**change):
    canvas = torch.randn(2, 3, 10, 10)
    args = dict(canvas=canvas, grad=torch.randn(2, 3, 8, 8), exp_avg=torch.zeros_like(canvas),
                exp_avg_sq=torch.zeros_like(canvas), offsets=torch.zeros(2, 2, dtype=torch.int64), step=1, lr=0.1)
    args.update(change)
    return args


def _adam(**change):
    args = _adam_args(**change)
    ops.region_adam_(args.pop("canvas"), args.pop("grad"), args.pop("exp_avg"), args.pop("exp_avg_sq"),
                     args.pop("offsets"), **args)


def test_image_batch_checks():
    with _raises("bn_stat_loss: x must be a torch.Tensor, got list"):
        ops.bn_stat_loss([1.0], torch.zeros(3), torch.ones(3))
    with _raises("tv_loss: x must be 4-D (N, C, H, W), got shape (3, 8, 8)"):
        ops.tv_loss(torch.randn(3, 8, 8))
    with _raises("tv_loss: x must be 4-D (N, C, H, W), got shape (1, 1, 3, 8, 8)"):
        ops.tv_loss(torch.randn(1, 1, 3, 8, 8))
    with _raises("crop_windows: canvas must not be empty, got shape (0, 3, 8, 8)"):
        ops.crop_windows(torch.randn(0, 3, 8, 8), torch.zeros(0, 2, dtype=torch.int64), 2, 2)
    with _raises("tv_loss: x must have dtype float32, float64, bfloat16, float16; got int32"):
        ops.tv_loss(torch.zeros(1, 3, 8, 8, dtype=torch.int32))
    with _raises("region_adam_: canvas must have dtype float32, float64; got float16"):
        _adam(canvas=torch.zeros(2, 3, 10, 10, dtype=torch.float16))
    with _raises("region_adam_: grad must have dtype float32, float64; got bfloat16"):
        _adam(grad=torch.zeros(2, 3, 8, 8, dtype=torch.bfloat16))
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):  # every float dtype passes
        assert ops.tv_loss(torch.randn(1, 1, 2, 2).to(dtype)).dim() == 0


def test_channel_vector_checks():
    x = torch.randn(2, 3, 4, 4)
    with _raises("bn_stat_loss: running_mean must be a torch.Tensor, got float"):
        ops.bn_stat_loss(x, 0.0, torch.ones(3))
    with _raises("bn_stat_loss: running_var must have shape (3,) to match the channels of x, got (3, 1)"):
        ops.bn_stat_loss(x, torch.zeros(3), torch.ones(3, 1))
    with _raises("bn_stat_loss: running_mean is on meta but x is on cpu"):
        ops.bn_stat_loss(x, torch.zeros(3, device="meta"), torch.ones(3))
    with _raises("region_adam_: clamp_max must have shape (3,) to match the channels of x, got (2,)"):
        _adam(clamp_max=torch.ones(2))
    with _raises("region_adam_: clamp_min is on meta but x is on cpu"):
        _adam(clamp_min=torch.zeros(3, device="meta"))


def test_window_offset_checks():
    canvas = torch.randn(2, 3, 10, 10)
    with _raises("crop_windows: offsets must be an integer torch.Tensor of shape (N, 2), got list"):
        ops.crop_windows(canvas, [[0, 0], [0, 0]], 4, 4)
    for dtype in (torch.float32, torch.complex64, torch.bool):
        with _raises(f"crop_windows: offsets must be an integer tensor, got {dtype}"):
            ops.crop_windows(canvas, torch.zeros(2, 2, dtype=dtype), 4, 4)
    with _raises("crop_windows: offsets must have shape (2, 2), one (y, x) per sample, got (2, 3)"):
        ops.crop_windows(canvas, torch.zeros(2, 3, dtype=torch.int64), 4, 4)
    with _raises("crop_windows: offsets is on meta but canvas is on cpu"):
        ops.crop_windows(canvas, torch.zeros(2, 2, dtype=torch.int64, device="meta"), 4, 4)
    for dtype in (torch.int32, torch.int64, torch.uint8):
        assert ops.crop_windows(canvas, torch.zeros(2, 2, dtype=dtype), 4, 4).shape == (2, 3, 4, 4)


def test_window_size_bounds():
    canvas = torch.randn(2, 3, 10, 12)
    offsets = torch.zeros(2, 2, dtype=torch.int64)
    for height, width in ((0, 4), (4, 0)):
        with _raises(f"crop_windows: window must be at least 1x1, got {height}x{width}"):
            ops.crop_windows(canvas, offsets, height, width)
    for height, width in ((11, 12), (10, 13)):
        with _raises(f"crop_windows: window {height}x{width} is larger than the 10x12 canvas"):
            ops.crop_windows(canvas, offsets, height, width)
    assert ops.crop_windows(canvas, offsets, 10, 12).shape == (2, 3, 10, 12)  # the whole canvas fits
    assert ops.crop_windows(canvas, offsets, 1, 1).shape == (2, 3, 1, 1)


def test_tv_loss_kind_and_size():
    with _raises("tv_loss: kind must be one of ('l2', 'l1'), got 'L2'"):
        ops.tv_loss(torch.randn(1, 3, 8, 8), "L2")
    for shape in ((1, 3, 1, 8), (1, 3, 8, 1)):
        with _raises(f"tv_loss: x must be at least 2x2 pixels, got {shape[2]}x{shape[3]}"):
            ops.tv_loss(torch.randn(shape))
    for kind in ("l2", "l1"):
        assert ops.tv_loss(torch.randn(1, 3, 2, 2), kind).dim() == 0


def test_region_adam_state_checks():
    with _raises("region_adam_: grad must be a torch.float32 tensor like the canvas"):
        _adam(grad=torch.randn(2, 3, 8, 8, dtype=torch.float64))
    with _raises("region_adam_: exp_avg must be a torch.float32 tensor like the canvas"):
        _adam(exp_avg="moments")
    with _raises("region_adam_: exp_avg_sq must be a torch.float32 tensor like the canvas"):
        _adam(exp_avg_sq=torch.zeros(2, 3, 10, 10, dtype=torch.float64))
    with _raises("region_adam_: exp_avg_sq is on meta but canvas is on cpu"):
        _adam(exp_avg_sq=torch.zeros(2, 3, 10, 10, device="meta"))
    with _raises("region_adam_: exp_avg must have the canvas's shape and memory layout (2, 3, 10, 10)"):
        _adam(exp_avg=torch.zeros(2, 3, 10, 10).contiguous(memory_format=torch.channels_last))
    with _raises("region_adam_: exp_avg_sq must have the canvas's shape and memory layout (2, 3, 10, 10)"):
        _adam(exp_avg_sq=torch.zeros(2, 3, 10, 9))
    with _raises("region_adam_: grad must be (2, 3, h, w), got (2, 4, 8, 8)"):
        _adam(grad=torch.randn(2, 4, 8, 8))
    with _raises("region_adam_: grad must be (2, 3, h, w), got (1, 3, 8, 8)"):
        _adam(grad=torch.randn(1, 3, 8, 8))
    with _raises("region_adam_: window 8x11 is larger than the 10x10 canvas"):
        _adam(grad=torch.randn(2, 3, 8, 11))
    non_dense = torch.randn(2, 3, 10, 10).transpose(2, 3)
    with _raises("region_adam_: canvas must be contiguous or channels_last (it is updated in place)"):
        _adam(canvas=non_dense, exp_avg=torch.zeros_like(non_dense), exp_avg_sq=torch.zeros_like(non_dense))
    with _raises("region_adam_: offsets must have shape (2, 2), one (y, x) per sample, got (1, 2)"):
        _adam(offsets=torch.zeros(1, 2, dtype=torch.int64))
    last = torch.randn(2, 3, 10, 10).contiguous(memory_format=torch.channels_last)
    _adam(canvas=last, exp_avg=torch.zeros_like(last), exp_avg_sq=torch.zeros_like(last))  # channels-last is fine


@pytest.mark.parametrize("change", [dict(step=0), dict(step=-3)])
def test_region_adam_step_must_count_this_update(change):
    with _raises(f"region_adam_: step must be >= 1 (the step count including this update), got {change['step']}"):
        _adam(**change)


@pytest.mark.parametrize("change", [dict(lr=-1e-9), dict(eps=-1e-12), dict(beta1=-0.1), dict(beta1=1.0),
                                    dict(beta2=-0.1), dict(beta2=1.0), dict(lr=float("nan"))])
def test_region_adam_hyperparameter_bounds(change):
    args = {**dict(lr=0.1, eps=1e-8, beta1=0.9, beta2=0.999), **change}
    with _raises(f"region_adam_: need lr >= 0, eps >= 0 and betas in [0, 1); got lr={args['lr']}, "
                 f"eps={args['eps']}, betas=({args['beta1']}, {args['beta2']})"):
        _adam(**change)


def test_region_adam_accepts_the_bounds_and_passes_its_hyperparameters_on():
    """The inclusive ends pass (step 1, lr 0, eps 0, betas 0) and the values the kernel gets are
    the ones given: one step from zero moments equals Adam's closed form on the window."""
    _adam(step=1, lr=0.0, eps=0.0, beta1=0.0, beta2=0.0)
    canvas = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    grad = torch.full((1, 1, 2, 2), 2.0, dtype=torch.float64)
    exp_avg, exp_avg_sq = torch.zeros_like(canvas), torch.zeros_like(canvas)
    lr, beta1, beta2, eps, step = 0.5, 0.8, 0.9, 0.25, 3
    ops.region_adam_(canvas, grad, exp_avg, exp_avg_sq, torch.tensor([[1, 2]]), step=step, lr=lr, beta1=beta1,
                     beta2=beta2, eps=eps, clamp_min=torch.tensor([-0.3], dtype=torch.float64),
                     clamp_max=torch.tensor([1.0], dtype=torch.float64))
    m, v = (1 - beta1) * 2.0, (1 - beta2) * 4.0
    update = lr * (m / (1 - beta1 ** step)) / ((v / (1 - beta2 ** step)) ** 0.5 + eps)
    want = torch.zeros_like(canvas)
    want[..., 1:3, 2:4] = max(-update, -0.3)
    torch.testing.assert_close(canvas, want, rtol=1e-12, atol=0)
    assert exp_avg[..., 1:3, 2:4].unique().tolist() == pytest.approx([m])
    assert exp_avg_sq[..., 1:3, 2:4].unique().tolist() == pytest.approx([v])
