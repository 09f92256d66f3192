"""`iterations = 0`: unoptimized noise labelled by the teacher (the consistency study's `noise` source)."""
from __future__ import annotations

import json

import pytest
import torch

from dfnas.config import UsageError
from dfnas.data.pixels import center_crop, from_uint8, to_uint8, valid_range
from dfnas.synth.calibration import target_classes
from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import Synthesizer
from dfnas.synth.region import RegionState
from dfnas.synth.run import synthesize_dataset
from dfnas.synth.seeding import shard_generator

from synth_helpers import TINY_MEAN, TINY_STD


def test_zero_iterations_is_allowed_and_negative_is_not():
    SynthConfig(iterations=0).validate()
    with pytest.raises(UsageError, match="iterations must be >= 0"):
        SynthConfig(iterations=-1).validate()


def test_zero_iterations_stores_the_initial_noise_with_the_teachers_labels(tiny_teacher):
    """Guards against (among others): a wrong per-round teacher agreement in the round stats."""
    config = SynthConfig(num_images=6, batch_size=3, rounds=2, iterations=0, canvas=30, device="cpu")
    shard = Synthesizer(tiny_teacher, config).synthesize_shard(0)
    assert shard.images.shape == (6, 1, 30, 30) and torch.equal(shard.targets, torch.tensor([0, 1, 2] * 2))

    # The images are exactly the (clamped) starting noise of each round, untouched.
    generator = shard_generator(config.seed, 0)
    low, high = valid_range(TINY_MEAN, TINY_STD)
    agreements = []
    for k in range(2):
        noise = RegionState.from_noise((3, 1, 30, 30), generator, torch.device("cpu"), low, high).canvas
        assert torch.equal(shard.images[3 * k: 3 * k + 3], to_uint8(noise, TINY_MEAN, TINY_STD))
        with torch.no_grad():  # each round's agreement: the teacher's argmax on the noise's center crop, vs its targets
            predicted = tiny_teacher.model(center_crop(noise, 28, 28)).argmax(1)
        classes = target_classes(shard.round_targets[k])  # round 2 aims at round 1's calibrated labels
        agreements.append(float((predicted == classes).float().mean()))

    # The soft labels are the teacher's logits on the stored images' center crops.
    with torch.no_grad():
        logits = tiny_teacher.model(center_crop(from_uint8(shard.images, TINY_MEAN, TINY_STD), 28, 28))
    assert torch.allclose(shard.soft_labels, logits, atol=1e-5)
    for stats in shard.round_stats:
        assert stats.bn_start == stats.bn_end and stats.bn_end > 0
    # (Formerly `0 <= agreement_end <= 1`, which cannot fail.)
    assert [stats.agreement_end for stats in shard.round_stats] == agreements


def test_zero_iterations_dataset_is_complete_and_resumable(tiny_teacher, tmp_path):
    config = SynthConfig(num_images=8, batch_size=4, rounds=1, iterations=0, canvas=28, device="cpu")
    result = synthesize_dataset(config, tmp_path / "noise", teacher=tiny_teacher)
    manifest = json.loads((tmp_path / "noise" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_images"] == 8 and manifest["config"]["iterations"] == 0
    assert result.summary["num_images"] == 8
    again = synthesize_dataset(config, tmp_path / "noise", resume=True, teacher=tiny_teacher)
    assert again.shards_written == []
