"""The loss that runs is the one the data calls for: CE on real digits, KL to the stored soft labels,
KL to the online teacher's labels of each augmented batch (and the DARTS auxiliary term)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from dfnas.device import Precision
from dfnas.evaluate.config import TrainConfig
from dfnas.evaluate.retrain import Retrainer
from dfnas.evaluate.run import train_architecture
from dfnas.evaluate.sources import load_sources
from dfnas.nas.arch import from_genotype
from dfnas.nas.spaces.darts import DARTS_V2, DartsConfig
from dfnas.teachers import load_teacher

from train_helpers import (DATA_MEAN, DATA_STD, TEACHER_MEAN, TEACHER_SPEC, TEACHER_STD, save_architecture,
                           tiny_architecture, write_dataset, write_teacher)

CPU = torch.device("cpu")
T = 3.0


def shifted_soft_labels(targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Soft labels whose argmax is the *next* class: a KL that used the targets would learn otherwise."""
    logits = 0.3 * torch.randn(len(targets), 4, generator=generator)
    logits[torch.arange(len(targets)), (targets + 1) % 4] += 4.0
    return logits


def kl_t2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    p = F.softmax(teacher / T, dim=1)
    return T * T * (p * (F.log_softmax(teacher / T, dim=1) - F.log_softmax(student / T, dim=1))).sum(1).mean()


def same_dropout(function, *args):
    """`function(*args)` from a fixed RNG state (the SPOS network has dropout before its classifier)."""
    torch.manual_seed(1)
    return function(*args)


def retrainer(config: TrainConfig, arch) -> Retrainer:
    sources = load_sources(config, arch, CPU)
    torch.manual_seed(0)
    return Retrainer(arch.build(), sources, config, Precision(CPU))


def test_mnist_trains_with_cross_entropy_on_the_real_labels():
    arch = tiny_architecture("spos", size=28, classes=10)
    trainer = retrainer(TrainConfig(data="mnist", batch_size=16), arch)
    assert trainer.sources.loss_name == "cross_entropy" and trainer.sources.val is None
    assert len(trainer.sources.train) == 4000 and len(trainer.sources.test) == 1000
    batch = trainer.batch()
    assert batch.soft_labels is None
    loss = same_dropout(trainer.loss, batch)
    logits = same_dropout(trainer.model, batch.images)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.targets))


def test_synthetic_data_trains_with_the_kl_to_its_stored_soft_labels(tmp_path):
    data = write_dataset(tmp_path / "data", soft=shifted_soft_labels)
    arch = tiny_architecture("spos")
    trainer = retrainer(TrainConfig(data=str(data), batch_size=16, temperature=T), arch)
    assert trainer.sources.loss_name == "kl_soft_labels"
    batch = trainer.batch()
    assert torch.equal(batch.soft_labels.argmax(1), (batch.targets + 1) % 4)  # the stored labels, not targets
    logits = same_dropout(trainer.model, batch.images)
    loss = same_dropout(trainer.loss, batch)
    torch.testing.assert_close(loss, kl_t2(logits, batch.soft_labels))
    assert not torch.allclose(loss, F.cross_entropy(logits, batch.targets))


def test_a_student_distilled_from_stored_labels_follows_them_not_the_targets(tmp_path):
    data = write_dataset(tmp_path / "data", soft=shifted_soft_labels)
    arch_path = save_architecture(tmp_path / "arch.json", "spos")
    config = TrainConfig(data=str(data), steps=60, batch_size=16, export="none", latency_runs=1)
    train_architecture(arch_path, config, tmp_path / "out", echo=lambda _: None)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    # val agreement is measured against the stored labels, which name the next class
    assert result["synthetic_val_agreement"] >= 0.75


def test_online_teacher_labels_each_augmented_batch_in_its_own_normalization(tmp_path):
    weights = write_teacher(tmp_path / "teacher")
    data = write_dataset(tmp_path / "data")
    arch = tiny_architecture("spos")
    trainer = retrainer(TrainConfig(data=str(data), teacher=TEACHER_SPEC, weights=str(weights), batch_size=16,
                                    temperature=T), arch)
    assert trainer.sources.loss_name == "kl_online_teacher"
    teacher = load_teacher(TEACHER_SPEC, weights).model

    def teacher_logits(images: torch.Tensor) -> torch.Tensor:  # from the data's normalization to the teacher's
        pixels = images * DATA_STD + DATA_MEAN
        return teacher((pixels - TEACHER_MEAN) / TEACHER_STD)

    stream_state = trainer.stream.state_dict()
    raw = trainer.stream.next()  # the same augmented batch as trainer.batch() draws next
    trainer.stream.load_state_dict(stream_state)
    batch = trainer.batch()
    assert torch.equal(batch.images, raw.images)
    with torch.no_grad():
        expected = teacher_logits(batch.images)
    torch.testing.assert_close(batch.soft_labels, expected)
    assert not torch.allclose(batch.soft_labels, raw.soft_labels, atol=1e-2)  # not the stored labels
    torch.testing.assert_close(same_dropout(trainer.loss, batch),
                               kl_t2(same_dropout(trainer.model, batch.images), expected))
    # val agreement is measured against the same teacher (on the center windows)
    val = trainer.sources.val
    with torch.no_grad():
        center = val.fixed_batches(len(val))[0].images
        torch.testing.assert_close(val.soft_labels, teacher_logits(center))


def test_online_teacher_on_mnist_reports_the_teachers_accuracy(tmp_path):
    arch_path = save_architecture(tmp_path / "arch.json", "spos", size=28, classes=10)
    config = TrainConfig(data="mnist", teacher="default", steps=3, batch_size=16, export="none", latency_runs=1)
    outcome = train_architecture(arch_path, config, tmp_path / "out", echo=lambda _: None)
    result = outcome.result
    assert result["loss"]["kind"] == "kl_online_teacher"
    assert result["teacher_accuracy"] == pytest.approx(0.987)  # the bundled teacher's recorded held-out accuracy
    assert result["fraction_of_teacher"] == pytest.approx(result["test_accuracy"] / 0.987)
    assert result["teacher"]["from"] == "--teacher" and result["teacher"]["role"] == "online labels"
    assert "of the teacher's 0.987" in outcome.summary()


def test_darts_auxiliary_head_adds_its_weighted_loss(tmp_path):
    data = write_dataset(tmp_path / "data")
    arch = from_genotype(DARTS_V2, dataclasses.replace(DartsConfig.tiny(1, 8, 4), auxiliary=True))
    trainer = retrainer(TrainConfig(data=str(data), batch_size=16, aux_weight=0.4), arch)
    batch = trainer.batch()
    loss = same_dropout(trainer.loss, batch)
    logits, aux = same_dropout(trainer.model, batch.images)
    torch.testing.assert_close(loss, kl_t2(logits, batch.soft_labels) + 0.4 * kl_t2(aux, batch.soft_labels))
