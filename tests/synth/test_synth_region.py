"""Regional update: only the windows move; offsets and flips behave as configured."""
from __future__ import annotations

import pytest
import torch

from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import Synthesizer
from dfnas.synth.region import RegionState, draw_flips, draw_offsets, flip_where

from synth_helpers import make_tiny_teacher


def window_mask(shape, offsets, size):
    mask = torch.zeros(shape, dtype=torch.bool)
    for n, (y, x) in enumerate(offsets.tolist()):
        mask[n, :, y : y + size, x : x + size] = True
    return mask


def test_outside_window_pixels_and_moments_are_untouched_within_an_iteration(tiny_teacher):
    synth = Synthesizer(tiny_teacher, SynthConfig(batch_size=4, canvas=36, crop=28))
    generator = torch.Generator().manual_seed(1)
    state = RegionState.from_noise((4, 1, 36, 36), generator, torch.device("cpu"), synth.clamp_min, synth.clamp_max)
    targets = torch.tensor([0, 1, 2, 3])
    for _ in range(3):  # moments become non-zero in many places first
        synth.step(state, targets, draw_offsets(generator, 4, 8, 8, "per_sample"), None, 0.1)
    before = [t.clone() for t in (state.canvas, state.exp_avg, state.exp_avg_sq)]
    offsets = torch.tensor([[0, 0], [8, 8], [3, 5], [8, 0]])
    synth.step(state, targets, offsets, None, 0.1)
    outside = ~window_mask(state.canvas.shape, offsets, 28)
    for old, new in zip(before, (state.canvas, state.exp_avg, state.exp_avg_sq)):
        assert torch.equal(old[outside], new[outside])
        assert not torch.equal(old[~outside], new[~outside])
    assert state.step == 4
    # The pixel clamp holds everywhere.
    assert float(state.canvas.min()) >= float(synth.clamp_min) - 1e-6
    assert float(state.canvas.max()) <= float(synth.clamp_max) + 1e-6


def test_offsets_are_per_sample_or_shared_and_within_range():
    generator = torch.Generator().manual_seed(0)
    per_sample = draw_offsets(generator, 64, 4, 8, "per_sample")
    assert per_sample.shape == (64, 2) and per_sample.dtype == torch.int64
    assert per_sample[:, 0].max() <= 4 and per_sample[:, 1].max() <= 8 and per_sample.min() >= 0
    assert len({tuple(row) for row in per_sample.tolist()}) > 1
    shared = draw_offsets(generator, 16, 4, 4, "shared")
    assert (shared == shared[0]).all()


def test_flip_gradient_lands_in_canvas_orientation():
    crop = torch.randn(4, 2, 5, 6, requires_grad=True)
    flips = torch.tensor([True, False, True, False])
    weights = torch.randn(4, 2, 5, 6)
    (flip_where(crop, flips) * weights).sum().backward()
    expected = torch.where(flips.view(-1, 1, 1, 1), weights.flip(3), weights)
    assert torch.equal(crop.grad, expected)
    assert draw_flips(torch.Generator().manual_seed(0), 1000).float().mean().item() == pytest.approx(0.5, abs=0.06)


def test_flip_only_when_the_teacher_allows_it():
    assert not Synthesizer(make_tiny_teacher(flip_ok=False), SynthConfig()).flip
    assert Synthesizer(make_tiny_teacher(flip_ok=True), SynthConfig()).flip
    assert not Synthesizer(make_tiny_teacher(flip_ok=True), SynthConfig(flip=False)).flip


def test_noise_canvas_is_clamped_per_channel_with_zero_moments():
    low, high = torch.tensor([-0.5, 0.0, -2.0]), torch.tensor([0.5, 1.0, 2.0])
    state = RegionState.from_noise((8, 3, 6, 6), torch.Generator().manual_seed(3), torch.device("cpu"), low, high)
    noise = torch.randn((8, 3, 6, 6), generator=torch.Generator().manual_seed(3))
    expected = torch.maximum(torch.minimum(noise, high.view(1, -1, 1, 1)), low.view(1, -1, 1, 1))
    assert torch.equal(state.canvas, expected)
    assert (state.canvas[:, 0] == 0.5).any() and (state.canvas[:, 0] == -0.5).any()
    assert torch.equal(state.exp_avg, torch.zeros_like(expected)) and torch.equal(state.exp_avg_sq, state.exp_avg)
    assert state.step == 0


def test_offsets_reach_both_ends_of_their_range_and_shared_offsets_vary_between_draws():
    generator = torch.Generator().manual_seed(1)
    offsets = draw_offsets(generator, 400, 3, 5, "per_sample")
    assert set(offsets[:, 0].tolist()) == {0, 1, 2, 3} and set(offsets[:, 1].tolist()) == set(range(6))
    shared = [tuple(draw_offsets(generator, 4, 3, 5, "shared")[0].tolist()) for _ in range(20)]
    assert len(set(shared)) > 1
    assert draw_offsets(generator, 4, 3, 5, "shared").shape == (4, 2)


def test_flip_where_mirrors_exactly_the_selected_samples():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    out = flip_where(x, torch.tensor([True, False]))
    assert torch.equal(out[0], x[0].flip(2)) and torch.equal(out[1], x[1])
    flips = draw_flips(torch.Generator().manual_seed(2), 64)
    assert flips.dtype == torch.bool and flips.shape == (64,) and 0 < int(flips.sum()) < 64


def test_offsets_and_flips_come_from_the_given_generator_only():
    """A resumed synthesis repeats its windows: the draws use the run's generator, not torch's global one."""
    results = []
    for global_seed in range(3):
        torch.manual_seed(global_seed)
        generator = torch.Generator().manual_seed(9)
        results.append((draw_offsets(generator, 16, 5, 7, "per_sample"), draw_offsets(generator, 4, 5, 7, "shared"),
                        draw_flips(generator, 32)))
    for offsets, shared, flips in results[1:]:
        assert torch.equal(offsets, results[0][0]) and torch.equal(shared, results[0][1])
        assert torch.equal(flips, results[0][2])


def test_the_noise_canvas_and_its_moments_live_on_the_requested_device():
    """Drawn on the CPU, then moved: checked with the meta device, which needs no accelerator."""
    low, high = torch.tensor([-1.0]), torch.tensor([1.0])
    state = RegionState.from_noise((2, 1, 4, 4), torch.Generator().manual_seed(0), torch.device("meta"), low, high)
    assert state.canvas.device.type == state.exp_avg.device.type == state.exp_avg_sq.device.type == "meta"
