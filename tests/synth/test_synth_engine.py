"""`Synthesizer` details the end-to-end synthesis tests do not reach (issue 15, mutation testing):
the fp16 loss scale and the Adam settings handed to `region_adam_`, and a round's flips, offsets,
progress reports and non-finite check."""
from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

import dfnas.synth.engine as engine
from dfnas.device import Precision
from dfnas.ops import reference
from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import NonFiniteLossError, Synthesizer
from dfnas.synth.region import RegionState
from dfnas.teachers import Teacher

from synth_helpers import TurnsNaN, make_tiny_teacher


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


def recorded_round(synth: Synthesizer, monkeypatch, seed: int = 5):
    """Runs one round of 3 chains from a fixed generator; returns the images, the (offsets, flips,
    logits) of each step, the progress reports and the round's stats."""
    steps, reports = [], []
    step = synth.step

    def recording(state, targets, offsets, flips, lr):
        terms, logits = step(state, targets, offsets, flips, lr)
        steps.append((offsets.clone(), None if flips is None else flips.clone(), logits))
        return terms, logits

    monkeypatch.setattr(synth, "step", recording)
    generator = torch.Generator().manual_seed(seed)
    images, stats = synth.run_round(torch.tensor([1, 4, 7]), generator, 0, 0, reports.append)
    monkeypatch.undo()
    return images, steps, reports, stats


def test_a_round_draws_flips_and_offsets_from_its_generator(monkeypatch):
    """Guards against (issue 15, mutation testing) `run_round` never mirroring the crop for a
    teacher that allows it (flips dropped or not handed to `step`: no test teacher had `flip_ok`),
    drawing flips or offsets from the global RNG instead of the shard's generator (a resumed shard
    would differ), and ignoring the `offsets` mode (one offset per batch, as the reference)."""
    config = SynthConfig(batch_size=3, canvas=32, crop=28, iterations=6, device="cpu", amp="off",
                         channels_last="off", offsets="shared")
    synth = Synthesizer(make_tiny_teacher(flip_ok=True), config)
    images, steps, _, _ = recorded_round(synth, monkeypatch)
    flips = torch.stack([f for _, f, _ in steps])
    assert flips.dtype == torch.bool and flips.shape == (6, 3) and flips.any() and not flips.all()
    assert all(bool((offsets == offsets[0]).all()) for offsets, _, _ in steps)  # shared by the batch
    torch.manual_seed(123)  # the global RNG moves on; the round must not depend on it
    again, steps_again, _, _ = recorded_round(synth, monkeypatch)
    assert torch.equal(images, again)
    assert all(torch.equal(a, b) and torch.equal(f, g) for (a, f, _), (b, g, _) in zip(steps, steps_again))
    synth.close()


def test_progress_reports_the_first_every_tenth_and_the_last_iteration(monkeypatch):
    """Guards against a wrong iteration count (`done = iteration - 1`, log points), reports with
    a field missing, and a wrong agreement (the fraction of the batch whose teacher top-1 on the
    crop is the target class: `argmax` over the whole batch or `!=` kept the reports and the stats
    consistent with each other, so it is recomputed from the step's logits here)."""
    config = SynthConfig(batch_size=3, canvas=32, crop=28, iterations=12, device="cpu", amp="off",
                         channels_last="off")
    synth = Synthesizer(make_tiny_teacher(), config)
    _, steps, reports, stats = recorded_round(synth, monkeypatch)
    assert len(steps) == 12
    assert [(r.shard, r.round, r.iteration, r.iterations) for r in reports] == [(0, 0, 1, 12), (0, 0, 10, 12),
                                                                                (0, 0, 12, 12)]
    assert stats.bn_start == reports[0].losses["bn"] and stats.bn_end == reports[-1].losses["bn"]
    for report in reports:
        logits = steps[report.iteration - 1][2]
        assert report.agreement == float((logits.argmax(1) == torch.tensor([1, 4, 7])).float().mean())
    assert stats.agreement_end == reports[-1].agreement
    synth.close()


def test_on_the_cpu_a_non_finite_loss_stops_the_round_at_once():
    """Guards against the CPU checking the loss only at log points (every 10th iteration, as on a
    GPU where reading it is a sync) or every other iteration: the run would go on optimizing
    NaN canvases. The message still names the first non-finite iteration."""
    tiny = make_tiny_teacher()
    model = TurnsNaN(tiny.model, after=2)
    synth = Synthesizer(Teacher(model=model, info=tiny.info), SynthConfig(num_images=2, batch_size=2, iterations=10,
                                                                           rounds=1, device="cpu"))
    with pytest.raises(NonFiniteLossError, match=r"iteration 3/10:"):
        synth.synthesize_shard(0)
    assert model.calls == 3
    synth.close()
