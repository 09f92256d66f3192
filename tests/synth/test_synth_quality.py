"""A short run on the bundled default teacher produces images the teacher classifies as intended."""
from __future__ import annotations

from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import Synthesizer


def test_short_run_reaches_targets_and_lowers_bn_loss(default_teacher_spec):
    from dfnas.teachers import load_teacher

    synth = Synthesizer(load_teacher(default_teacher_spec), SynthConfig(num_images=20, batch_size=20, rounds=1, iterations=200))
    shard = synth.synthesize_shard(0)
    # The stored soft labels are the teacher's logits on the stored (uint8) images' center crops.
    correct = int((shard.soft_labels.argmax(dim=1) == shard.targets).sum())
    assert correct >= 0.9 * len(shard.targets), f"{correct}/{len(shard.targets)} classified as their target"
    for stats in shard.round_stats:
        assert stats.bn_end < 0.5 * stats.bn_start, stats
