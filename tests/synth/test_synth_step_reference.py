"""`Synthesizer.step` against an eager float64 reference, step by step.

The reference is written here from the definitions, sharing nothing with the engine but the
float64 spec ops (`dfnas/ops/reference.py`): each sample's window sliced out of the canvas, the
selected samples mirrored, the teacher run in float64 with forward hooks measuring each BatchNorm
input (first layer in `modules()` order weighted by `first_bn_multiplier`), the class term (hard
labels, or soft targets as in rounds k > 0) plus the TV-l2/TV-l1/L2 priors, autograd for the
window gradient, then a plain Adam on each sample's window (moments outside it untouched, bias
correction with the global step count) and the per-channel clamp of the valid pixel range.

Every step is checked in three parts: the loss terms and the window gradient against float64
autograd, and the updated canvas/moments against the eager Adam applied to the state before the
step with the gradient the engine used (recorded on its way into `region_adam_`; so Adam's
sign-like response to near-zero gradients cannot turn a bf16 rounding into a mismatch). Five
steps with a changing learning rate: bias correction differs at every step (it guards against
`Adam` bias correction frozen at step 1, which passed every other synthesis test).

Teachers: the tiny random digit CNN (1 channel, hard labels), a tiny residual net (3 channels,
BatchNorm on a strided shortcut, flips, soft targets) and the bundled default teacher (trained
weights). Two modes: fp32 NCHW, and bf16 autocast + channels-last (the default synthesis mode on
CPUs with native bf16). This replaces the synthesis benchmark's former loss-equality test.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dfnas.synth.engine as engine
from dfnas.ops import reference
from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import Synthesizer
from dfnas.synth.region import RegionState
from dfnas.teachers import Teacher, TeacherInfo

from synth_helpers import make_tiny_teacher
from tolerances import assert_close, assert_norm_close

STEPS = 5
SEED = 3
BATCH = 4
CANVAS = 32
CROP = 28
# Non-default weights so that every term moves the gradient (tv_l1 is 0 by default).
WEIGHTS = dict(r_feature=0.05, first_bn_multiplier=10.0, tv_l2=1e-3, tv_l1=1e-2, l2=1e-3)
ADAM = dict(beta1=0.5, beta2=0.9, eps=1e-8)
MODES = {"fp32": dict(amp="off", channels_last="off"), "bf16": dict(amp="bf16", channels_last="on")}
# fp32 mode: the rule of tests/tolerances.py as it is. bf16 mode, derived from bf16's eps: the
# loss terms are float32 sums of bf16-rounded activations (within 1 ulp of bf16, relative; measured
# 0.03 ulps); the window gradient comes back through every layer in bf16, so it is compared
# norm-wise, within this many ulps of bf16 per teacher (measured maxima over 12 seeds: 0.7, 3.1 and,
# for the trained bundled teacher, 8.4 ulps = 6.6 %).
BF16_GRADIENT_ULPS = {"digit": 8, "residual": 8, "default": 16}


class TinyResidual(nn.Module):
    """Stem conv-BN-ReLU, one strided residual block with a conv-BN shortcut, pool, linear."""

    def __init__(self, width: int = 6, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.conv1 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * width)
        self.conv2 = nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.shortcut = nn.Sequential(nn.Conv2d(width, 2 * width, 1, stride=2, bias=False), nn.BatchNorm2d(2 * width))
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out = F.relu(out + self.shortcut(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def residual_teacher() -> Teacher:
    torch.manual_seed(1)
    model = TinyResidual()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    info = TeacherInfo(name="tiny-residual", sha256="0" * 64, num_classes=5, class_names=tuple("abcde"),
                       input_size=(CROP, CROP), in_channels=3, mean=(0.5, 0.45, 0.4), std=(0.25, 0.2, 0.3),
                       flip_ok=True)
    return Teacher(model=model.eval(), info=info)


def bundled_teacher() -> Teacher:
    from dfnas.teachers import load_teacher

    return load_teacher("default")


TEACHERS = {"digit": make_tiny_teacher, "residual": residual_teacher, "default": bundled_teacher}


# ------------------------------------------------------------------------------------------------
# The eager float64 reference
def reference_terms(model64: nn.Module, crop64: torch.Tensor, flips, targets, info) -> dict[str, torch.Tensor]:
    """The synthesis objective of docs/synthesis.md on a float64 crop (mirrored where `flips`)."""
    x = torch.stack([c.flip(-1) if bool(f) else c for c, f in zip(crop64, flips)]) if flips is not None else crop64
    layers = [m for m in model64.modules() if isinstance(m, nn.BatchNorm2d)]
    measured = {}

    def hook(module, inputs, output):
        measured[module] = reference.bn_stat_loss(inputs[0], module.running_mean, module.running_var)

    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        logits = model64(x)
    finally:
        for handle in handles:
            handle.remove()
    assert len(measured) == len(layers)
    bn = WEIGHTS["first_bn_multiplier"] * measured[layers[0]] + sum(measured[layer] for layer in layers[1:])
    if targets.dtype == torch.int64:
        class_ = F.cross_entropy(logits, targets)
    else:
        class_ = -(targets.double() * F.log_softmax(logits, dim=1)).sum(1).mean()
    tv_l2, tv_l1 = reference.tv_loss(x, "l2"), reference.tv_loss(x, "l1")
    l2 = torch.linalg.vector_norm(x.flatten(1), dim=1).mean()
    total = class_ + WEIGHTS["r_feature"] * bn + WEIGHTS["tv_l2"] * tv_l2 + WEIGHTS["tv_l1"] * tv_l1 + WEIGHTS["l2"] * l2
    return dict(total=total, class_=class_, bn=bn, tv_l2=tv_l2, tv_l1=tv_l1, l2=l2)


def windows(canvas: torch.Tensor, offsets: torch.Tensor, size: int) -> list[tuple]:
    return [(n, slice(None), slice(y, y + size), slice(x, x + size)) for n, (y, x) in enumerate(offsets.tolist())]


def eager_window_adam(canvas, exp_avg, exp_avg_sq, grad, offsets, step: int, lr: float, low, high) -> None:
    """Adam (torch.optim.Adam's formula) on each sample's window only, then the channel clamp."""
    beta1, beta2, eps = ADAM["beta1"], ADAM["beta2"], ADAM["eps"]
    for n, window in enumerate(windows(canvas, offsets, grad.shape[-1])):
        exp_avg[window] = beta1 * exp_avg[window] + (1 - beta1) * grad[n]
        exp_avg_sq[window] = beta2 * exp_avg_sq[window] + (1 - beta2) * grad[n] ** 2
        m_hat = exp_avg[window] / (1 - beta1**step)
        v_hat = exp_avg_sq[window] / (1 - beta2**step)
        updated = canvas[window] - lr * m_hat / (v_hat.sqrt() + eps)
        canvas[window] = torch.minimum(torch.maximum(updated, low.view(-1, 1, 1)), high.view(-1, 1, 1))


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("teacher_name", list(TEACHERS))
def test_step_matches_eager_float64_reference(teacher_name, mode, monkeypatch):
    teacher = TEACHERS[teacher_name]()
    info = teacher.info
    model64 = copy.deepcopy(teacher.model).double().eval()  # before the engine converts its layout
    config = SynthConfig(batch_size=BATCH, canvas=CANVAS, crop=CROP, device="cpu", lr=0.2, **ADAM, **WEIGHTS,
                         **MODES[mode])
    synth = Synthesizer(teacher, config)
    assert synth.precision.amp_dtype == (torch.bfloat16 if mode == "bf16" else None)

    grads = []  # the window gradient the engine hands to region_adam_
    region_adam_ = engine.region_adam_

    def recording_region_adam_(canvas, grad, *args, **kwargs):
        grads.append(grad.detach().clone())
        region_adam_(canvas, grad, *args, **kwargs)

    monkeypatch.setattr(engine, "region_adam_", recording_region_adam_)

    generator = torch.Generator().manual_seed(SEED)
    state = RegionState.from_noise((BATCH, info.in_channels, CANVAS, CANVAS), generator, torch.device("cpu"),
                                   synth.clamp_min, synth.clamp_max)
    mean, std = torch.tensor(info.mean, dtype=torch.float64), torch.tensor(info.std, dtype=torch.float64)
    low, high = -mean / std, (1 - mean) / std
    if teacher_name != "residual":
        targets = torch.tensor([0, 3, 7, 9])
    else:  # soft targets, as calibrated rounds k > 0 use
        targets = torch.softmax(torch.randn(BATCH, info.num_classes, generator=generator) * 2, dim=1)
    bf16 = mode == "bf16"

    limit = CANVAS - CROP
    for step in range(1, STEPS + 1):
        offsets = torch.randint(0, limit + 1, (BATCH, 2), generator=generator)
        offsets[0], offsets[-1] = torch.tensor([0, 0]), torch.tensor([limit, limit])  # canvas corners
        flips = torch.tensor([True, False, True, False]) if synth.flip else None
        lr = 0.2 * (1 - 0.1 * step)
        before = [t.double() for t in (state.canvas, state.exp_avg, state.exp_avg_sq)]

        crop64 = torch.stack([before[0][w] for w in windows(before[0], offsets, CROP)]).requires_grad_()
        expected = reference_terms(model64, crop64, flips, targets, info)
        (expected_grad,) = torch.autograd.grad(expected["total"], crop64)

        terms, _ = synth.step(state, targets, offsets, flips, lr)

        assert state.step == step
        for name, value in expected.items():
            assert_close(getattr(terms, name), value.detach(), **(dict(computed_in=torch.bfloat16, ulps=1) if bf16 else {}),
                         msg=lambda m, n=name: f"step {step}, {n}: {m}")
        assert len(grads) == step
        if bf16:
            assert_norm_close(grads[-1], expected_grad, computed_in=torch.bfloat16, ulps=BF16_GRADIENT_ULPS[teacher_name],
                              msg=f"step {step}, window gradient")
        else:
            assert_close(grads[-1], expected_grad, msg=lambda m: f"step {step}, window gradient: {m}")

        eager_window_adam(*before, grads[-1].double(), offsets, step, lr, low, high)
        for name, got, want in zip(("canvas", "exp_avg", "exp_avg_sq"),
                                   (state.canvas, state.exp_avg, state.exp_avg_sq), before):
            assert_close(got, want, msg=lambda m, n=name: f"step {step}, {n} after Adam: {m}")
