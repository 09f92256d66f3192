"""The real MNIST digits: fixed per-class split, shapes, dtypes, normalization."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dfnas.data import mnist


def test_split_sizes_and_per_class_counts():
    train, test = mnist.load_mnist("train"), mnist.load_mnist("test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10


def test_split_is_disjoint_and_holds_out_the_last_digits_of_each_class():
    labels = np.repeat(np.arange(10), 500)
    train, test = mnist.split_indices(labels, "train"), mnist.split_indices(labels, "test")
    assert set(train).isdisjoint(test) and len(train) + len(test) == 5000
    assert list(test[:100]) == list(range(400, 500))
    with pytest.raises(ValueError, match="unknown MNIST split"):
        mnist.split_indices(labels, "val")


def test_normalization_matches_the_declared_constants():
    test = mnist.load_mnist("test")
    pixels = test.images * mnist.STD[0] + mnist.MEAN[0]
    assert float(pixels.min()) == pytest.approx(0.0, abs=1e-6) and float(pixels.max()) == pytest.approx(1.0, abs=1e-6)
    assert float(test.images.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(mnist.normalize(torch.zeros(1, 1, 1, 1))) == pytest.approx(-mnist.MEAN[0] / mnist.STD[0])


def test_loading_is_deterministic():
    first, second = mnist.load_mnist("test"), mnist.load_mnist("test")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
