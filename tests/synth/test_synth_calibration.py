"""Recursive label calibration: round k targets are the teacher's outputs on round k-1 images."""
from __future__ import annotations

import torch

from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import Synthesizer
from dfnas.data.pixels import center_crop, from_uint8


def test_round_k_targets_equal_teacher_outputs_on_round_k_minus_1_images(tiny_teacher):
    config = SynthConfig(num_images=12, batch_size=4, rounds=3, iterations=3, calibration_temperature=2.0, canvas=32)
    synth = Synthesizer(tiny_teacher, config)
    shard = synth.synthesize_shard(0)
    assert shard.images.shape == (12, 1, 32, 32) and shard.soft_labels.shape == (12, 10)
    assert torch.equal(shard.round_targets[0], torch.tensor([0, 1, 2, 3]))
    assert torch.equal(shard.targets, torch.tensor([0, 1, 2, 3] * 3))
    model = tiny_teacher.model
    for k in (1, 2):
        previous = shard.images[4 * (k - 1) : 4 * k]
        with torch.no_grad():
            logits = model(center_crop(from_uint8(previous, (0.1307,), (0.3081,)), 28, 28))
        assert torch.allclose(shard.soft_labels[4 * (k - 1) : 4 * k], logits, atol=1e-5)
        assert torch.allclose(shard.round_targets[k], torch.softmax(logits / 2.0, dim=1), atol=1e-5)
    # Each round starts from fresh noise: the rounds' images differ.
    assert not torch.equal(shard.images[:4], shard.images[4:8])


def test_short_last_shard_and_balanced_labels(tiny_teacher):
    config = SynthConfig(num_images=11, batch_size=4, rounds=2, iterations=1)
    assert config.shard_counts() == [8, 3]
    synth = Synthesizer(tiny_teacher, config)
    last = synth.synthesize_shard(1)
    assert last.images.shape[0] == 3
    # Chain g gets class g mod 10: shard 1 holds chains 4 and 5 (2 chains x 2 rounds, 3 kept).
    assert torch.equal(last.targets, torch.tensor([4, 5, 4]))


def test_calibrated_targets_are_the_tempered_softmax_and_classes_their_argmax():
    from dfnas.synth.calibration import balanced_labels, calibrated_targets, target_classes

    logits = torch.tensor([[1.0, 3.0, 0.0], [2.0, -1.0, 0.5]], dtype=torch.float64)
    soft = calibrated_targets(logits, 2.0)
    assert soft.dtype == torch.float32
    torch.testing.assert_close(soft, torch.softmax(logits.float() / 2.0, dim=1))
    assert torch.equal(target_classes(soft), torch.tensor([1, 0]))
    hard = torch.tensor([2, 0, 1])
    assert target_classes(hard) is hard
    assert torch.equal(balanced_labels(8, 5, 3), torch.tensor([2, 0, 1, 2, 0]))
    assert balanced_labels(0, 4, 10).dtype == torch.int64
