"""The default teacher's training script: augmentation, determinism, and files load_teacher accepts."""
from __future__ import annotations

import json

import pytest
import torch

from dfnas.data import mnist
from dfnas.teachers import load_teacher
from training_tool import load_training_tool

TINY = {"epochs": 1, "batch_size": 100, "lr": 0.1, "weight_decay": 5e-4, "width": 4, "max_shift": 2, "seed": 3}

_tool = load_training_tool()
main = _tool.main
random_shift = _tool.random_shift
train = _tool.train


def _subset(split: str) -> mnist.MnistTensors:
    """Every tenth digit of the split: enough to exercise the script in a second."""
    full = mnist.load_mnist(split)
    return mnist.MnistTensors(full.images[::10], full.labels[::10])


@pytest.fixture
def small_mnist(monkeypatch):
    subsets = {split: _subset(split) for split in mnist.SPLITS}
    monkeypatch.setattr(mnist, "load_mnist", subsets.__getitem__)
    return subsets


def test_random_shift_translates_each_image_within_bounds():
    images = torch.zeros(64, 1, 9, 9)
    images[:, 0, 4, 4] = 1.0  # a single bright pixel in the middle
    shifted = random_shift(images, 2, background=0.0, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    rows, cols = torch.nonzero(shifted[:, 0], as_tuple=True)[1:]
    assert len(rows) == 64 and rows.sub(4).abs().max() <= 2 and cols.sub(4).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10
    assert torch.equal(random_shift(images, 0, 0.0, torch.Generator()), images)


def test_training_is_deterministic_on_cpu(small_mnist):
    torch.use_deterministic_algorithms(True)
    try:
        first, accuracy_first = train(TINY, small_mnist["train"], small_mnist["test"])
        second, accuracy_second = train(TINY, small_mnist["train"], small_mnist["test"])
    finally:
        torch.use_deterministic_algorithms(False)
    assert accuracy_first == accuracy_second
    # the returned accuracy is the trained model's, counted here on the same held-out digits
    test = small_mnist["test"]
    with torch.no_grad():
        counted = (first.eval()(test.images).argmax(1) == test.labels).double().mean().item()
    assert accuracy_first == pytest.approx(counted, abs=1e-9)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_script_writes_files_that_load_as_the_default_architecture(tmp_path, capsys, small_mnist):
    argv = ["--out-dir", str(tmp_path), *(f"--{k.replace('_', '-')}={v}" for k, v in TINY.items())]
    assert main(argv) == 0
    assert not torch.are_deterministic_algorithms_enabled(), "the script must restore the global setting"
    assert "held-out accuracy" in capsys.readouterr().out
    metadata = json.loads((tmp_path / "default.json").read_text())
    assert metadata["training"]["width"] == 4 and metadata["factory_kwargs"]["width"] == 4
    teacher = load_teacher("dfnas.teachers.digit_cnn:DigitCNN", tmp_path / "default.safetensors")
    assert teacher.info.sha256 == metadata["sha256"] and teacher.info.class_names == tuple("0123456789")
