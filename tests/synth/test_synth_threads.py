"""`threads`: a fixed number is applied; 'auto' times the teacher's forward + backward on a
synthesis-sized batch and applies the faster choice; nonsense is refused in one line."""
from __future__ import annotations

import pytest
import torch

from dfnas.config import UsageError
from dfnas.synth import run as synth_run
from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import Synthesizer
from dfnas.teachers import load_teacher


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _synthesizer(**settings):
    teacher = load_teacher("default")
    return Synthesizer(teacher, SynthConfig(device="cpu", batch_size=6, **settings)), teacher


def test_a_fixed_thread_count_is_applied(restore_threads):
    synthesizer, teacher = _synthesizer(threads="1")
    torch.set_num_threads(2)
    synth_run.choose_threads(synthesizer, teacher)
    assert torch.get_num_threads() == 1


def test_auto_applies_what_the_timing_of_a_synthesis_batch_chose(restore_threads, monkeypatch):
    seen = {}

    def fake_select(model, forward, images, precision):
        seen.update(shape=tuple(images.shape), grad=images.requires_grad, precision=precision,
                    output=tuple(forward(model, images).shape))
        return 1, {"2": 0.5, "1": 0.1}

    monkeypatch.setattr(synth_run, "select_threads", fake_select)
    synthesizer, teacher = _synthesizer()
    torch.set_num_threads(2)
    synth_run.choose_threads(synthesizer, teacher)
    assert torch.get_num_threads() == 1
    assert seen["shape"] == (6, 1, 28, 28) and seen["grad"]  # a batch the size the teacher sees, input gradients
    assert seen["precision"] == synthesizer.precision and seen["output"] == (6, 10)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_thread_counts_are_refused(value):
    with pytest.raises(UsageError, match="threads must be a positive number or auto"):
        SynthConfig(threads=value).validate()
