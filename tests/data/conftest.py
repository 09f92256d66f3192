"""A tiny writer of synthetic datasets in the on-disk format (docs/synthetic-format.md), for tests.

It is deliberately independent of `dfnas.data.writer`: the reader is tested against the format
document, not against the other implementation.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save_file

MEAN, STD = (0.5, 0.25, 0.125), (0.5, 0.5, 0.25)


def teacher_block(channels: int, num_classes: int, crop: tuple[int, int], flip_ok: bool | None) -> dict:
    teacher = {
        "name": "test-teacher",
        "sha256": "0" * 64,
        "num_classes": num_classes,
        "class_names": [f"class{k}" for k in range(num_classes)],
        "input_size": list(crop),
        "in_channels": channels,
        "mean": list(MEAN[:channels]),
        "std": list(STD[:channels]),
    }
    if flip_ok is not None:
        teacher["flip_ok"] = flip_ok
    return teacher


def write_synthetic(
    root: Path,
    shard_counts: tuple[int, ...] = (40, 40, 20),
    *,
    num_classes: int = 4,
    canvas: tuple[int, int, int] = (1, 12, 12),
    crop: tuple[int, int] = (8, 8),
    flip_ok: bool | None = False,
    complete: bool = True,
    seed: int = 0,
) -> dict:
    """Write shards with random pixels/logits and targets `i % num_classes`; return the manifest."""
    generator = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    shards, start = [], 0
    for index, count in enumerate(shard_counts):
        tensors = {
            "images": torch.randint(0, 256, (count, *canvas), generator=generator, dtype=torch.uint8),
            "soft_labels": torch.randn(count, num_classes, generator=generator),
            "targets": torch.arange(start, start + count, dtype=torch.int64) % num_classes,
        }
        name = f"shard-{index:05d}.safetensors"
        save_file(tensors, root / name)
        sha256 = hashlib.sha256((root / name).read_bytes()).hexdigest()
        shards.append({"file": name, "index": index, "count": count, "sha256": sha256})
        start += count
    manifest = {
        "format": "dfnas-synthetic",
        "version": 1,
        "complete": complete,
        "num_images": sum(shard_counts),
        "canvas": list(canvas),
        "crop": list(crop),
        "config": {"seed": seed},
        "teacher": teacher_block(canvas[0], num_classes, crop, flip_ok),
        "shards": shards,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


@pytest.fixture
def make_synthetic(tmp_path: Path) -> Callable[..., Path]:
    """`make_synthetic(**options)` writes a dataset under tmp_path and returns its directory."""
    made = 0

    def make(**options) -> Path:
        nonlocal made
        made += 1
        root = tmp_path / f"synthetic{made}"
        write_synthetic(root, **options)
        return root

    return make
