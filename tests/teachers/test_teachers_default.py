"""The bundled default teacher: present, small, frozen, BatchNorm, and accurate on held-out digits."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from torch import nn

from dfnas.data.mnist import load_mnist
from dfnas.teachers import Teacher, TeacherInfo, load_teacher
from dfnas.teachers import loader
from training_tool import load_training_tool

PACKAGE_DIR = loader.BUNDLED_DIR

_tool = load_training_tool()
accuracy = _tool.accuracy


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    return load_teacher()


def test_bundled_files_are_small_and_consistent():
    metadata = json.loads((PACKAGE_DIR / "default.json").read_text())
    weights = PACKAGE_DIR / metadata["weights_file"]
    assert weights.stat().st_size < 2 * 1024 * 1024
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == metadata["sha256"]
    assert metadata["held_out_accuracy"] >= 0.97
    assert metadata["training"]["seed"] == 0


def test_default_teacher_info(teacher):
    assert teacher.info == TeacherInfo(
        name="default",
        sha256=json.loads((PACKAGE_DIR / "default.json").read_text())["sha256"],
        num_classes=10,
        class_names=tuple(str(digit) for digit in range(10)),
        input_size=(28, 28),
        in_channels=1,
        mean=(0.1307,),
        std=(0.3081,),
        flip_ok=False,
    )
    assert TeacherInfo.from_manifest(teacher.info.to_manifest()) == teacher.info


def test_default_teacher_is_frozen_in_eval_mode_with_batchnorm(teacher):
    assert not teacher.model.training
    assert all(not module.training for module in teacher.model.modules())
    assert all(not parameter.requires_grad for parameter in teacher.model.parameters())
    assert sum(isinstance(module, nn.BatchNorm2d) for module in teacher.model.modules()) == 4
    x = torch.zeros(2, 1, 28, 28, requires_grad=True)
    teacher.model(x).sum().backward()
    assert x.grad is not None and all(parameter.grad is None for parameter in teacher.model.parameters())


def test_default_teacher_reaches_97_percent_on_held_out_digits(teacher):
    # Counted here rather than only by the training tool's accuracy(), which a bug would let vouch
    # for itself; the accuracy recorded in the metadata must be the one measured.
    test = load_mnist("test")
    with torch.no_grad():
        correct = int((teacher.model(test.images).argmax(dim=1) == test.labels).sum())
    assert correct >= 0.97 * len(test.labels)
    recorded = json.loads((PACKAGE_DIR / "default.json").read_text())["held_out_accuracy"]
    assert correct / len(test.labels) == pytest.approx(recorded, abs=1e-9)
    assert accuracy(teacher.model, test.images, test.labels) == correct / len(test.labels)


def test_default_teacher_metadata_overrides(teacher):
    assert load_teacher("default", flip_ok=True).info.flip_ok is True
    with pytest.raises(ValueError, match="unknown teacher metadata keyword"):
        load_teacher("default", colour=True)


def test_default_architecture_with_other_weights(tmp_path, teacher):
    copy = tmp_path / "mine.safetensors"
    shutil.copy(PACKAGE_DIR / "default.safetensors", copy)
    other = load_teacher("default", copy)
    assert other.info.sha256 == teacher.info.sha256  # same bytes, same hash
    assert torch.equal(other.model(torch.ones(1, 1, 28, 28)), teacher.model(torch.ones(1, 1, 28, 28)))


def test_damaged_bundled_weights_are_refused(tmp_path, monkeypatch):
    for name in ("default.json", "default.safetensors"):
        shutil.copy(PACKAGE_DIR / name, tmp_path / name)
    with open(tmp_path / "default.safetensors", "r+b") as stream:
        stream.seek(-1, 2)
        stream.write(b"\x01")
    monkeypatch.setattr(loader, "BUNDLED_DIR", tmp_path)
    monkeypatch.setattr(loader, "BUNDLED_METADATA", tmp_path / "default.json")
    with pytest.raises(ValueError, match="do not match the sha256.*train_default"):
        load_teacher()
