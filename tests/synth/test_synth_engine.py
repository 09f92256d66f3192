"""`Synthesizer` details the end-to-end synthesis tests do not reach (issue 15, mutation testing):
the fp16 loss scale and the Adam settings handed to `region_adam_`."""
from __future__ import annotations

from contextlib import nullcontext

import torch

import dfnas.synth.engine as engine
from dfnas.device import Precision
from dfnas.ops import reference
from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import Synthesizer
from dfnas.synth.region import RegionState

from synth_helpers import make_tiny_teacher


class Fp16StandIn(Precision):
    """Takes the engine's fp16 branch (static loss scale) on the CPU: fp16 autocast itself needs
    CUDA, so the forward runs in fp32 and only the scaling around the backward differs."""

    def __post_init__(self) -> None:  # Precision refuses fp16 off CUDA
        pass

    def autocast(self, allow_fp16: bool = True):
        return nullcontext()


OFFSETS = torch.tensor([[0, 0], [2, 3], [4, 4]])


def start(synth: Synthesizer) -> RegionState:
    generator = torch.Generator().manual_seed(0)
    return RegionState.from_noise((3, 1, 32, 32), generator, torch.device("cpu"), synth.clamp_min, synth.clamp_max)


def one_step(synth: Synthesizer, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The window gradient handed to region_adam_ and the canvas after one step from fixed noise."""
    grads = []
    region_adam_ = engine.region_adam_

    def recording(canvas, grad, *args, **kwargs):
        grads.append(grad.clone())
        region_adam_(canvas, grad, *args, **kwargs)

    monkeypatch.setattr(engine, "region_adam_", recording)
    state = start(synth)
    synth.step(state, torch.tensor([1, 4, 7]), OFFSETS, None, lr=0.1)
    monkeypatch.undo()
    return grads[0], state.canvas


def test_fp16_loss_scale_is_undone_before_the_adam_step(monkeypatch):
    """Guards against the fp16 branch of `step` dividing the loss by the scale instead of
    multiplying (the window gradient 2^24 times too small), or handing region_adam_ no gradient.
    Scaling by a power of two is exact, so the fp16 branch (run in fp32 here) must give the same
    gradient and canvas bit for bit."""
    config = SynthConfig(batch_size=3, canvas=32, crop=28, device="cpu", amp="off", channels_last="off")
    synth = Synthesizer(make_tiny_teacher(), config)
    grad32, canvas32 = one_step(synth, monkeypatch)
    synth.precision = Fp16StandIn(torch.device("cpu"), False, torch.float16)
    grad16, canvas16 = one_step(synth, monkeypatch)
    assert grad32.abs().max() > 0
    assert torch.equal(grad16, grad32)
    assert torch.equal(canvas16, canvas32)
    synth.close()



def test_step_uses_the_configured_adam_settings(monkeypatch):
    """Guards against `step` leaving an Adam setting out of its `region_adam_` call (it would run
    with the op's default: eps 1e-8 is also the config's default, so only a non-default eps shows
    it). The canvas after one step equals the spec's region Adam with the configured settings."""
    config = SynthConfig(batch_size=3, canvas=32, crop=28, device="cpu", amp="off", channels_last="off",
                         beta1=0.5, beta2=0.8, eps=0.05)
    synth = Synthesizer(make_tiny_teacher(), config)
    grad, canvas = one_step(synth, monkeypatch)
    expected = start(synth)
    reference.region_adam_(expected.canvas, grad, expected.exp_avg, expected.exp_avg_sq, OFFSETS, step=1, lr=0.1,
                           beta1=0.5, beta2=0.8, eps=0.05, clamp_min=synth.clamp_min, clamp_max=synth.clamp_max)
    torch.testing.assert_close(canvas, expected.canvas)
    synth.close()


def test_the_teacher_is_frozen_and_collects_no_parameter_gradients(monkeypatch):
    """Guards against `prepare_teacher` leaving the teacher's parameters trainable: every step's
    backward would then also accumulate (never used, never zeroed) weight gradients."""
    synth = Synthesizer(make_tiny_teacher(), SynthConfig(batch_size=3, canvas=32, crop=28, device="cpu"))
    one_step(synth, monkeypatch)
    assert not synth.model.training
    assert all(not p.requires_grad and p.grad is None for p in synth.model.parameters())
    synth.close()
