"""Search data: synthetic and MNIST loading onto tensors, augmentation on tensors, batch streams.

`write_tiny_dataset` is shared by the other `test_search_*` files: a real (safetensors) synthetic
dataset directory small enough for strategies to finish in seconds.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from dfnas.nas.search_data import DataError, load_search_data
from dfnas.data.images import BatchStream, ImageSet


def write_tiny_dataset(root: Path, count: int = 120, num_classes: int = 10, canvas: int = 10,
                       crop: int = 8, channels: int = 1, seed: int = 0) -> Path:
    """A synthetic dataset following docs/synthetic-format.md; soft labels favour the target."""
    generator = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    targets = torch.arange(count) % num_classes
    images = torch.randint(0, 256, (count, channels, canvas, canvas), generator=generator, dtype=torch.uint8)
    # A class-dependent bright square, so there is something to learn.
    for i, t in enumerate(targets.tolist()):
        images[i, :, t % canvas, :] = 255
    soft = torch.randn(count, num_classes, generator=generator)
    soft[torch.arange(count), targets] += 3.0
    data = safetensors_bytes({"images": images, "soft_labels": soft, "targets": targets})
    (root / "shard-00000.safetensors").write_bytes(data)
    manifest = {
        "format": "dfnas-synthetic", "version": 1, "complete": True, "num_images": count,
        "canvas": [channels, canvas, canvas], "crop": [crop, crop], "config": {"test": True},
        "teacher": {"name": "test", "sha256": "0" * 64, "num_classes": num_classes,
                    "class_names": [str(i) for i in range(num_classes)], "input_size": [crop, crop],
                    "in_channels": channels, "mean": [0.5] * channels, "std": [0.25] * channels,
                    "flip_ok": True},
        "shards": [{"file": "shard-00000.safetensors", "index": 0, "count": count,
                    "sha256": hashlib.sha256(data).hexdigest()}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_synthetic_split_and_shapes(tmp_path):
    data = load_search_data(str(write_tiny_dataset(tmp_path / "ds")), torch.device("cpu"))
    assert (len(data.train), len(data.val)) == (110, 10)
    assert (data.num_classes, data.in_channels, data.input_size) == (10, 1, 8)
    batch = data.val.fixed_batches(4)[0]
    assert batch.images.shape == (4, 1, 8, 8) and batch.soft_labels.shape == (4, 10)
    center = data.val.images[:4, :, 1:9, 1:9].float() / 255
    torch.testing.assert_close(batch.images, (center - 0.5) / 0.25)


def test_random_crops_and_flips_are_windows_of_the_canvas():
    images = torch.arange(2 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    data = ImageSet(images, None, torch.zeros(2, dtype=torch.long), (4, 4), [0.0], [1.0 / 255], flip=True)
    generator = torch.Generator().manual_seed(3)
    for _ in range(10):
        batch = data.batch(torch.tensor([0, 1]), generator)
        for n in range(2):
            window = batch.images[n, 0].round().to(torch.uint8)
            found = any(torch.equal(window, images[n, 0, top:top + 4, left:left + 4]) or
                        torch.equal(window, images[n, 0, top:top + 4, left:left + 4].flip(-1))
                        for top in range(3) for left in range(3))
            assert found


def test_batch_stream_state_round_trip(tmp_path):
    data = load_search_data(str(write_tiny_dataset(tmp_path / "ds")), torch.device("cpu")).train
    stream = BatchStream(data, 16, seed=1)
    for _ in range(9):
        stream.next()
    saved = stream.state_dict()
    expected = [stream.next().images for _ in range(5)]
    other = BatchStream(data, 16, seed=99)
    other.load_state_dict(saved)
    for want in expected:
        torch.testing.assert_close(other.next().images, want)
    assert stream.batches_per_epoch == 110 // 16


def test_mnist_has_hard_labels():
    data = load_search_data("mnist", torch.device("cpu"))
    assert data.train.soft_labels is None and (len(data.train), len(data.val)) == (4000, 1000)
    assert data.input_size == 28 and data.num_classes == 10


def test_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_search_data(str(tmp_path / "missing"), torch.device("cpu"))
    root = write_tiny_dataset(tmp_path / "ds")
    with pytest.raises(DataError, match="10 classes but the search was configured for 3"):
        load_search_data(str(root), torch.device("cpu"), num_classes=3)
    (root / "shard-00000.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt"):
        load_search_data(str(root), torch.device("cpu"))
