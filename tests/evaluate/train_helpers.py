"""Toy inputs for the dfnas-train tests: synthetic datasets, architectures and a teacher, all tiny."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save as safetensors_bytes
from safetensors.torch import save_file
from torch import nn

from dfnas.nas.arch import Architecture, from_genotype, from_spos_tuple, make_architecture
from dfnas.nas.spaces.darts import DARTS_V2, DartsConfig
from dfnas.nas.spaces.proxyless import ProxylessConfig
from dfnas.nas.spaces.spos import SposConfig

SPACES = ("darts", "spos", "proxyless")
DATA_MEAN, DATA_STD = 0.5, 0.25


def tiny_architecture(space: str, channels: int = 1, size: int = 8, classes: int = 4) -> Architecture:
    shape = (channels, size, classes)
    if space == "darts":
        return from_genotype(DARTS_V2, DartsConfig.tiny(*shape))
    if space == "spos":
        return from_spos_tuple((3, 0, 2, 1, 0), SposConfig.tiny(*shape))
    return make_architecture("proxyless", ProxylessConfig.tiny(*shape),
                             ["3x3_MBConv3", "zero", "7x7_MBConv6", "5x5_MBConv3", "5x5_MBConv6", "zero"])


def save_architecture(path: Path, space: str = "spos", **shape) -> Path:
    tiny_architecture(space, **shape).save(path)
    return path


def write_dataset(root: Path, count: int = 120, num_classes: int = 4, canvas: int = 10, crop: int = 8,
                  soft: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                  class_names: list[str] | None = None, config: dict | None = None, seed: int = 0) -> Path:
    """A complete synthetic dataset (docs/synthetic-format.md) with class-dependent images: image i
    of class t has noise plus a bright row at t. `soft(targets, generator)` gives the stored logits
    (default: noise with +3 on the target)."""
    generator = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    targets = torch.arange(count) % num_classes
    images = torch.randint(0, 96, (count, 1, canvas, canvas), generator=generator, dtype=torch.uint8)
    for i, t in enumerate(targets.tolist()):
        images[i, :, 1 + 2 * t % (canvas - 2), :] = 255
    if soft is None:
        logits = torch.randn(count, num_classes, generator=generator)
        logits[torch.arange(count), targets] += 3.0
    else:
        logits = soft(targets, generator)
    data = safetensors_bytes({"images": images, "soft_labels": logits.float(), "targets": targets})
    (root / "shard-00000.safetensors").write_bytes(data)
    manifest = {
        "format": "dfnas-synthetic", "version": 1, "complete": True, "num_images": count,
        "canvas": [1, canvas, canvas], "crop": [crop, crop], "config": config or {"teacher": None},
        "teacher": {"name": "toy", "sha256": "0" * 64, "num_classes": num_classes,
                    "class_names": class_names or [f"c{i}" for i in range(num_classes)],
                    "input_size": [crop, crop], "in_channels": 1, "mean": [DATA_MEAN], "std": [DATA_STD],
                    "flip_ok": False},
        "shards": [{"file": "shard-00000.safetensors", "index": 0, "count": count,
                    "sha256": hashlib.sha256(data).hexdigest()}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


class ToyTeacher(nn.Module):
    """A random conv + BN classifier: a loadable teacher ("train_helpers:ToyTeacher")."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


TEACHER_SPEC = "train_helpers:ToyTeacher"
TEACHER_MEAN, TEACHER_STD = 0.25, 0.5  # not the data's: the online labels must renormalize


def write_teacher(directory: Path, num_classes: int = 4, size: int = 8, seed: int = 1) -> Path:
    """Weights + sidecar of a seeded ToyTeacher; returns the weights path."""
    torch.manual_seed(seed)
    model = ToyTeacher(num_classes)
    with torch.no_grad():  # non-trivial BN statistics
        model.features[1].running_mean.uniform_(-0.5, 0.5)
        model.features[1].running_var.uniform_(0.5, 2.0)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "toy_teacher.safetensors"
    save_file(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({
        "input_size": [size, size], "in_channels": 1, "mean": [TEACHER_MEAN], "std": [TEACHER_STD],
        "factory_kwargs": {"num_classes": num_classes}}))
    return path
