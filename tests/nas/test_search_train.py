"""The shared trainer: distillation loss, precision choice, checkpoints."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dfnas.checkpoint import Checkpointer
from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig, search_loss
from dfnas.nas.tuning import precision_candidates, select_precision, select_threads


def test_distillation_loss():
    logits, teacher = torch.randn(5, 4), torch.randn(5, 4)
    targets = torch.randint(0, 4, (5,))
    batch = Batch(torch.zeros(5), teacher, targets)
    t = 3.0
    p = torch.softmax(teacher / t, 1)
    kl = (p * (p.log() - torch.log_softmax(logits / t, 1))).sum(1).mean()
    torch.testing.assert_close(search_loss(logits, batch, LossConfig(temperature=t, t2_factor=False)), kl)
    torch.testing.assert_close(search_loss(logits, batch, LossConfig(temperature=t)), kl * 9)
    mixed = search_loss(logits, batch, LossConfig(temperature=t, hard_weight=0.25))
    torch.testing.assert_close(mixed, 0.75 * 9 * kl + 0.25 * F.cross_entropy(logits, targets))
    real = Batch(torch.zeros(5), None, targets)
    torch.testing.assert_close(search_loss(logits, real, LossConfig()), F.cross_entropy(logits, targets))
    assert torch.equal(batch.reference_labels, teacher.argmax(1)) and torch.equal(real.reference_labels, targets)


def test_precision_candidates_and_choice():
    cpu = torch.device("cpu")
    assert [p.name for p in precision_candidates(cpu, "off", "off")] == ["nchw_fp32"]
    assert len(precision_candidates(cpu, "auto", "auto")) == 4
    with pytest.raises(ValueError, match="fp16 autocast needs a CUDA device"):
        precision_candidates(cpu, "off", "fp16")
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, 6, 6))
    images = torch.randn(4, 1, 6, 6)
    before = torch.get_rng_state()
    chosen, timings = select_precision(cpu, "auto", "off", model, lambda m, x: m(x), images)
    assert set(timings) == {"nchw_fp32", "channels_last_fp32"} and chosen.amp_dtype is None
    assert torch.equal(torch.get_rng_state(), before)


def test_checkpoints_are_atomic_and_plain(tmp_path):
    checkpointer = Checkpointer(tmp_path / "c" / "checkpoint.pt")
    with pytest.raises(FileNotFoundError):
        checkpointer.load()
    state = {"next_unit": 3, "model": nn.Linear(2, 2).state_dict(), "rng": torch.get_rng_state()}
    checkpointer.save(state)
    loaded = checkpointer.load()
    assert loaded["next_unit"] == 3 and torch.equal(loaded["rng"], state["rng"])
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["checkpoint.pt"]  # no temporary left
    checkpointer.path.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="unreadable"):
        checkpointer.load()


def test_channels_last_precision_prepares_tensors():
    precision = Precision(torch.device("cpu"), channels_last=True, amp_dtype=torch.bfloat16)
    x = precision.prepare_input(torch.randn(2, 3, 4, 4))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with precision.autocast():
        assert torch.mm(torch.randn(2, 2), torch.randn(2, 2)).dtype == torch.bfloat16
    assert precision.to_dict() == {"channels_last": True, "amp": "bf16"}


def test_thread_choice_restores_the_default():
    default = torch.get_num_threads()
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(64, 3))
    threads, timings = select_threads(model, lambda m, x: m(x), torch.randn(4, 1, 6, 6), Precision(torch.device("cpu")))
    assert threads in (1, default) and torch.get_num_threads() == default
    assert set(timings) == (set() if default == 1 else {str(default), "1"})


# ----------------------------------------------------------------- found by mutation testing (issue 15)


def test_loss_config_bounds():
    LossConfig(temperature=1e-3, hard_weight=0.0)
    LossConfig(hard_weight=1.0)
    with pytest.raises(ValueError, match=r"^temperature must be > 0, got 0$"):
        LossConfig(temperature=0)
    with pytest.raises(ValueError, match=r"^hard_weight must be in \[0, 1\], got 1.5$"):
        LossConfig(hard_weight=1.5)
    with pytest.raises(ValueError, match="hard_weight"):
        LossConfig(hard_weight=-0.1)


def test_label_smoothing_and_a_pure_hard_label_loss():
    logits, teacher = torch.randn(6, 5), torch.randn(6, 5)
    targets = torch.randint(0, 5, (6,))
    smoothed = F.cross_entropy(logits, targets, label_smoothing=0.2)
    real = Batch(torch.zeros(6), None, targets)
    torch.testing.assert_close(search_loss(logits, real, LossConfig(label_smoothing=0.2)), smoothed)
    synthetic = Batch(torch.zeros(6), teacher, targets)
    torch.testing.assert_close(search_loss(logits, synthetic, LossConfig(hard_weight=1.0, label_smoothing=0.2)),
                               smoothed)
    p = torch.softmax(teacher / 2, 1)
    kl = (p * (p.log() - torch.log_softmax(logits / 2, 1))).sum(1).mean()
    torch.testing.assert_close(search_loss(logits, synthetic, LossConfig(temperature=2.0)), 4 * kl)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits_are_scored_in_float32(dtype):
    logits, teacher = torch.randn(4, 3), torch.randn(4, 3)
    batch = Batch(torch.zeros(4), teacher, torch.randint(0, 3, (4,)))
    low = logits.to(dtype)
    loss = search_loss(low, batch, LossConfig(temperature=2.0, hard_weight=0.5))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, search_loss(low.float(), batch, LossConfig(temperature=2.0, hard_weight=0.5)))


def test_the_distillation_loss_names_its_softmax_dimension():
    """No implicit-dimension deprecation warning from the softmaxes, once per step in a user's log."""
    import warnings

    batch = Batch(torch.zeros(3), torch.randn(3, 4), torch.randint(0, 4, (3,)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search_loss(torch.randn(3, 4), batch, LossConfig(hard_weight=0.5))
