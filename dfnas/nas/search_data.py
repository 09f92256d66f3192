"""`--data DIR|mnist` -> the train and val `ImageSet`s a search runs on.

- A synthetic dataset directory (docs/synthetic-format.md): images with the teacher's logits as
  soft labels; its deterministic train/val split (`val_fraction`); random windows of the canvas
  (and flips when the teacher allows them) as augmentation.
- `mnist`: the real digits of `dfnas.data.mnist` with hard labels, "train" to search on and
  "test" as val; augmentation is a random shift of up to 2 pixels (zero padding).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dfnas.data.images import ImageSet

MNIST = "mnist"
MNIST_SHIFT = 2


class DataError(ValueError):
    """The dataset cannot be used for this search (missing, corrupt, mismatched)."""


@dataclass(frozen=True)
class SearchData:
    train: ImageSet
    val: ImageSet
    num_classes: int
    in_channels: int
    input_size: int
    source: str

    @property
    def soft_labels(self) -> bool:
        return self.train.soft_labels is not None


def load_search_data(spec: str, device: torch.device, val_fraction: float = 0.1,
                     num_classes: int | None = None) -> SearchData:
    """Load `spec` onto `device`. `num_classes`, when given, must match the dataset's."""
    data = _load_mnist() if spec == MNIST else _load_synthetic(Path(spec), val_fraction)
    if num_classes is not None and num_classes != data.num_classes:
        raise DataError(f"{spec}: the dataset has {data.num_classes} classes but the search was "
                        f"configured for {num_classes}")
    if len(data.train) == 0 or len(data.val) == 0:
        raise DataError(f"{spec}: the train split has {len(data.train)} images and the val split "
                        f"{len(data.val)}; both need some (raise the dataset size or val_fraction)")
    return SearchData(data.train.to(device), data.val.to(device), data.num_classes,
                      data.in_channels, data.input_size, data.source)


def check_data_spec(spec: str) -> None:
    """The cheap part of loading: `spec` names a dataset that exists (checked before any output)."""
    if spec != MNIST and not Path(spec).exists():
        raise DataError(f"dataset {spec} does not exist (give a synthetic dataset directory or 'mnist')")


def _load_synthetic(root: Path, val_fraction: float) -> SearchData:
    from dfnas.data.synthetic import load_synthetic

    check_data_spec(str(root))
    try:
        train = load_synthetic(root, "train", val_fraction=val_fraction)
        val = load_synthetic(root, "val", val_fraction=val_fraction)
    except (FileNotFoundError, ValueError) as error:
        raise DataError(str(error)) from None
    teacher = train.teacher
    if train.soft_labels.shape[1] != teacher.num_classes:
        raise DataError(f"{root}: soft labels have {train.soft_labels.shape[1]} classes, the "
                        f"teacher {teacher.num_classes}")
    crop_h, crop_w = train.manifest.crop
    if crop_h != crop_w:
        raise DataError(f"{root}: the search spaces take square inputs, the crop is {crop_h}x{crop_w}")

    def image_set(split, flip: bool) -> ImageSet:
        return ImageSet(split.images, split.soft_labels.float(), split.targets, (crop_h, crop_w),
                        teacher.mean, teacher.std, flip=flip)

    return SearchData(image_set(train, teacher.flip_ok), image_set(val, False), teacher.num_classes,
                      teacher.in_channels, crop_h, str(root.resolve()))


def _load_mnist() -> SearchData:
    from dfnas.data import mnist

    def image_set(split: str, pad: int) -> ImageSet:
        images, labels = mnist.load_mnist(split)
        mean = torch.tensor(mnist.MEAN).view(1, -1, 1, 1)
        std = torch.tensor(mnist.STD).view(1, -1, 1, 1)
        # Back to the package's 8-bit pixels, so real and synthetic data share one pipeline.
        pixels = torch.round((images * std + mean) * 255).clamp(0, 255).to(torch.uint8)
        return ImageSet(pixels, None, labels, mnist.IMAGE_SIZE, mnist.MEAN, mnist.STD, pad=pad)

    return SearchData(image_set("train", MNIST_SHIFT), image_set("test", 0), len(mnist.CLASS_NAMES),
                      mnist.IN_CHANNELS, mnist.IMAGE_SIZE[0], MNIST)
