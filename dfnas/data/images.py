"""Labelled image sets kept on the device as uint8, and the batches a training loop draws from them.

- `ImageSet`: uint8 canvases (N, C, H, W) on one device; batches are `crop` windows normalized by the
  pixel contract of `dfnas.data.pixels`: the center window for evaluation, random windows of the
  zero-padded canvas (and flips where allowed) for training, all drawn as whole batches there.
- `BatchStream`: shuffled, augmented mini-batches with an explicit, resumable state instead of a
  DataLoader.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from dfnas.data.pixels import from_uint8


@dataclass(frozen=True)
class Batch:
    """Normalized images, the teacher's logits (None for real, hard-labelled data) and labels."""

    images: torch.Tensor
    soft_labels: torch.Tensor | None
    targets: torch.Tensor

    @property
    def reference_labels(self) -> torch.Tensor:
        """What "correct" means: the teacher's argmax on synthetic data, the label on real data."""
        return self.targets if self.soft_labels is None else self.soft_labels.argmax(dim=1)


@dataclass
class ImageSet:
    """A labelled image set kept as uint8 tensors on one device.

    `images` (N, C, H, W) is the stored canvas; batches are `crop` windows of it, normalized with
    `mean`/`std`. Training batches take a uniformly random window of the canvas zero-padded by
    `pad` pixels, mirrored with probability 1/2 when `flip`; evaluation batches take the center
    window (where synthetic soft labels were computed).
    """

    images: torch.Tensor
    soft_labels: torch.Tensor | None
    targets: torch.Tensor
    crop: tuple[int, int]
    mean: Sequence[float]
    std: Sequence[float]
    pad: int = 0
    flip: bool = False

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, indices: torch.Tensor) -> "ImageSet":
        indices = indices.to(self.images.device)
        soft = None if self.soft_labels is None else self.soft_labels[indices]
        return ImageSet(self.images[indices], soft, self.targets[indices], self.crop, self.mean,
                        self.std, self.pad, self.flip)

    def to(self, device: torch.device) -> "ImageSet":
        soft = None if self.soft_labels is None else self.soft_labels.to(device)
        return ImageSet(self.images.to(device), soft, self.targets.to(device), self.crop,
                        self.mean, self.std, self.pad, self.flip)

    def batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        """Images `indices`; random windows/flips drawn from `generator` (CPU), center if None."""
        device = self.images.device
        indices = indices.to(device)
        images = self.images[indices]
        if self.pad:
            images = F.pad(images, (self.pad,) * 4)
        height, width = images.shape[-2:]
        crop_h, crop_w = self.crop
        n = len(indices)
        if generator is None:
            tops = torch.full((n,), (height - crop_h) // 2)
            lefts = torch.full((n,), (width - crop_w) // 2)
            flips = torch.zeros(n, dtype=torch.bool)
        else:
            tops = torch.randint(height - crop_h + 1, (n,), generator=generator)
            lefts = torch.randint(width - crop_w + 1, (n,), generator=generator)
            flips = torch.rand(n, generator=generator) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        rows = (tops[:, None] + torch.arange(crop_h)).to(device)
        cols = torch.arange(crop_w).expand(n, crop_w)
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        cols = (lefts[:, None] + cols).to(device)
        windows = images[torch.arange(n, device=device)[:, None, None, None],
                         torch.arange(images.shape[1], device=device)[None, :, None, None],
                         rows[:, None, :, None], cols[:, None, None, :]]
        pixels = from_uint8(windows, self.mean, self.std)
        soft = None if self.soft_labels is None else self.soft_labels[indices]
        return Batch(pixels, soft, self.targets[indices])

    def fixed_batches(self, batch_size: int, limit: int | None = None, drop_last: bool = False) -> list[Batch]:
        """Center-window batches in dataset order (the last one may be smaller unless `drop_last`)."""
        starts = range(0, len(self) - batch_size + 1 if drop_last else len(self), batch_size)
        if limit is not None:
            starts = list(starts)[:limit]
        return [self.batch(torch.arange(s, min(s + batch_size, len(self)))) for s in starts]


class BatchStream:
    """Shuffled, augmented mini-batches of an `ImageSet`, epoch after epoch, without a loader.

    Full batches only (the remainder of a permutation is dropped), so every step has the same
    shape. The shuffle order, the position in it and the generator are the whole state, which
    `state_dict` returns for checkpoints.
    """

    def __init__(self, data: ImageSet, batch_size: int, seed: int, augment: bool = True):
        if len(data) < batch_size:
            raise ValueError(f"batch size {batch_size} is larger than the {len(data)} images it draws from")
        self.data = data
        self.batch_size = batch_size
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(data), generator=self.generator)
        self.position = 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.data) // self.batch_size

    def next(self) -> Batch:
        if self.position + self.batch_size > len(self.data):
            self.order = torch.randperm(len(self.data), generator=self.generator)
            self.position = 0
        indices = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return self.data.batch(indices, self.generator if self.augment else None)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])


def split_indices(count: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of range(count) into (1 - fraction, fraction) parts, both sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be in (0, 1), got {fraction}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    second = max(1, min(count - 1, round(count * fraction)))
    return order[second:].sort().values, order[:second].sort().values
