"""A non-finite loss stops the run with a message naming the batch, round and iteration."""
from __future__ import annotations

import re

import pytest

from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import NonFiniteLossError, Synthesizer
from dfnas.teachers import Teacher

from synth_helpers import TurnsNaN, make_tiny_teacher


def test_nan_loss_names_the_iteration():
    """Also guards against (issue 15, mutation testing) a message without the loss terms' values
    (`values = None`) or with them joined wrongly: they say which term went non-finite."""
    tiny = make_tiny_teacher()
    teacher = Teacher(model=TurnsNaN(tiny.model, after=3), info=tiny.info)
    synth = Synthesizer(teacher, SynthConfig(num_images=4, batch_size=2, iterations=10, rounds=2))
    with pytest.raises(NonFiniteLossError, match=r"shard \(batch\) 0, round 0, iteration 4/10\b") as error:
        synth.synthesize_shard(0)
    # NaN logits: the class term and the total are NaN; the BN term and the priors stay finite.
    number = r"-?\d[\d.e+-]*"
    assert re.search(rf": total=nan, class_=nan, bn={number}, tv_l2={number}, tv_l1={number}, l2={number}$",
                     str(error.value)), str(error.value)
