"""Reading synthetic datasets (docs/synthetic-format.md, version 1).

Held-out split: per class (by `targets`, the class each image was synthesized for), the images of
that class are ranked r = 0, 1, 2, ... in dataset index order (shard order, then position in the
shard), and image r is "val" iff floor((r + 1) * f) > floor(r * f), with f = `val_fraction` taken
as its exact decimal value. That holds out floor(n_c * f) images of every class, spread evenly over
the class (f = 0.1: its 10th, 20th, 30th, ... image), so the split does not depend on any seed and
every shard and label-calibration round contributes to val. The rest is "train".
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from torch.utils.data import Dataset

from dfnas.data.pixels import center_crop, from_uint8
from dfnas.files import sha256_file
from dfnas.data.teacher_record import TeacherInfo

FORMAT = "dfnas-synthetic"
VERSION = 1
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val", "all")


@dataclass(frozen=True)
class ShardEntry:
    file: str
    index: int
    count: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest.json."""

    root: Path
    complete: bool
    num_images: int
    canvas: tuple[int, int, int]  # (C, H, W)
    crop: tuple[int, int]  # (h, w): the window the teacher saw
    config: dict[str, Any]
    teacher: TeacherInfo
    shards: tuple[ShardEntry, ...]

    @property
    def images_written(self) -> int:
        return sum(entry.count for entry in self.shards)


@dataclass(frozen=True)
class SyntheticTensors:
    """One split of a dataset, in dataset index order."""

    images: torch.Tensor  # uint8 (N, C, H, W): the whole canvas
    soft_labels: torch.Tensor  # float32 (N, K): the teacher's logits
    targets: torch.Tensor  # int64 (N,): the class each image was synthesized for
    indices: torch.Tensor  # int64 (N,): positions in the whole dataset
    teacher: TeacherInfo
    manifest: Manifest


def read_manifest(root: str | Path) -> Manifest:
    """Parse and validate `root/manifest.json`; FileNotFoundError / ValueError naming the problem."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"synthetic dataset directory {root} does not exist")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{root} has no {MANIFEST_NAME}: not a synthetic dataset, or its synthesis never started")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is corrupt (not readable JSON): {error}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} is corrupt: it must hold a JSON object")
    if raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise ValueError(
            f"{path} has format {raw.get('format')!r} version {raw.get('version')!r}; "
            f"this dfnas reads only {FORMAT!r} version {VERSION}"
        )
    try:
        manifest = Manifest(
            root=root,
            complete=_typed(raw, "complete", bool),
            num_images=_typed(raw, "num_images", int),
            canvas=_int_tuple(raw, "canvas", 3),
            crop=_int_tuple(raw, "crop", 2),
            config=_typed(raw, "config", dict),
            teacher=TeacherInfo.from_manifest(_typed(raw, "teacher", dict)),
            shards=tuple(_shard_entry(item) for item in _typed(raw, "shards", list)),
        )
    except (KeyError, TypeError, ValueError, IndexError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise ValueError(f"{path} is corrupt: {detail}") from None
    _check_consistency(manifest, path)
    return manifest


def verify_shard(root: str | Path, entry: ShardEntry) -> bool:
    """True iff the shard file exists and its bytes match the manifest's sha256."""
    path = Path(root) / entry.file
    return path.is_file() and sha256_file(path) == entry.sha256


def load_synthetic(
    root: str | Path, split: str = "all", *, verify: bool = True, val_fraction: float = 0.1
) -> SyntheticTensors:
    """All images of a complete dataset, or its "train"/"val" part (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    manifest = read_manifest(root)
    if not manifest.complete or manifest.images_written != manifest.num_images:
        raise ValueError(
            f"synthetic dataset {manifest.root} is incomplete ({manifest.images_written} of {manifest.num_images} "
            f"images written); finish it with `dfnas-synth --out {manifest.root} --resume` and the same settings"
        )
    if not manifest.shards:
        raise ValueError(f"synthetic dataset {manifest.root} holds no images")
    shards = [_read_shard(manifest, entry, verify) for entry in manifest.shards]
    images, soft_labels, targets = (torch.cat([shard[name] for shard in shards]) for name in ("images", "soft_labels", "targets"))
    indices = torch.arange(len(targets))
    if split != "all":
        held_out = val_mask(targets, manifest.teacher.num_classes, val_fraction)
        indices = indices[held_out if split == "val" else ~held_out]
    return SyntheticTensors(
        images=images[indices],
        soft_labels=soft_labels[indices],
        targets=targets[indices],
        indices=indices,
        teacher=manifest.teacher,
        manifest=manifest,
    )


def val_mask(targets: torch.Tensor, num_classes: int, val_fraction: float) -> torch.Tensor:
    """Boolean mask of the held-out images (rule in the module docstring)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    # Integer arithmetic on the exact decimal value: 0.1 is 1/10, not 0.1000000000000000055...
    fraction = Fraction(repr(float(val_fraction)))
    numerator, denominator = fraction.numerator, fraction.denominator
    mask = torch.zeros(len(targets), dtype=torch.bool)
    for label in range(num_classes):
        positions = torch.nonzero(targets == label).flatten()
        rank = torch.arange(len(positions), dtype=torch.int64)
        mask[positions] = (rank + 1) * numerator // denominator > rank * numerator // denominator
    return mask


class SyntheticDataset(Dataset):
    """(normalized float32 image (C, h, w), soft-label logits (K,)) pairs of a synthetic dataset.

    "train" with `augment`: a uniformly random `crop` window of the canvas, mirrored with
    probability 1/2 when the manifest's teacher has `flip_ok`; randomness from torch's global RNG
    (so DataLoader workers get their own streams). "val", or `augment=False`: the center crop
    (top = (H - h) // 2, left = (W - w) // 2), the window the stored soft labels were computed on.
    `crop` defaults to the manifest's crop (the teacher's input size).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        crop: int | tuple[int, int] | None = None,
        augment: bool = True,
        *,
        val_fraction: float = 0.1,
        verify: bool = True,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"SyntheticDataset split must be 'train' or 'val', got {split!r}")
        data = load_synthetic(root, split, verify=verify, val_fraction=val_fraction)
        _, height, width = data.manifest.canvas
        crop_h, crop_w = data.manifest.crop if crop is None else ((crop, crop) if isinstance(crop, int) else crop)
        if not (0 < crop_h <= height and 0 < crop_w <= width):
            raise ValueError(f"crop {crop_h}x{crop_w} does not fit the {height}x{width} canvas of {root}")
        self.images = data.images
        self.soft_labels = data.soft_labels
        self.targets = data.targets
        self.teacher = data.teacher
        self.crop = (crop_h, crop_w)
        self.random_crop = augment and split == "train"
        self.flip = self.random_crop and data.teacher.flip_ok

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        (crop_h, crop_w), (height, width) = self.crop, image.shape[-2:]
        if self.random_crop:
            top = int(torch.randint(height - crop_h + 1, ()))
            left = int(torch.randint(width - crop_w + 1, ()))
            window = image[:, top : top + crop_h, left : left + crop_w]
        else:
            window = center_crop(image, crop_h, crop_w)
        if self.flip and bool(torch.rand(()) < 0.5):
            window = window.flip(-1)
        return from_uint8(window[None], self.teacher.mean, self.teacher.std)[0], self.soft_labels[index]


def _read_shard(manifest: Manifest, entry: ShardEntry, verify: bool) -> dict[str, torch.Tensor]:
    path = manifest.root / entry.file
    resume_hint = f"regenerate it with `dfnas-synth --out {manifest.root} --resume` and the same settings"
    if not path.is_file():
        raise FileNotFoundError(f"shard {path} listed in the manifest is missing; {resume_hint}")
    data = path.read_bytes()
    if verify and hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ValueError(f"shard {path} is corrupt (sha256 differs from the manifest); {resume_hint}")
    try:
        tensors = load_safetensors_bytes(data)
    except Exception as error:  # safetensors raises its own error types for malformed bytes
        raise ValueError(f"shard {path} is not a readable safetensors file ({error}); {resume_hint}") from None
    _check_shard(tensors, manifest, entry, path)
    return {
        "images": tensors["images"],
        "soft_labels": tensors["soft_labels"].to(torch.float32),
        "targets": tensors["targets"],
    }


def _check_shard(tensors: dict[str, torch.Tensor], manifest: Manifest, entry: ShardEntry, path: Path) -> None:
    num_classes = manifest.teacher.num_classes
    expected = {
        "images": ((torch.uint8,), (entry.count, *manifest.canvas)),
        "soft_labels": ((torch.float32, torch.float16), (entry.count, num_classes)),
        "targets": ((torch.int64,), (entry.count,)),
    }
    for name, (dtypes, shape) in expected.items():
        tensor = tensors.get(name)
        if tensor is None or tensor.dtype not in dtypes or tuple(tensor.shape) != shape:
            found = "missing" if tensor is None else f"{tensor.dtype} {tuple(tensor.shape)}"
            raise ValueError(f"shard {path}: tensor {name!r} is {found}, expected {dtypes[0]} {shape}")
    targets = tensors["targets"]
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ValueError(f"shard {path}: targets outside [0, {num_classes})")
    if not bool(torch.isfinite(tensors["soft_labels"]).all()):
        raise ValueError(f"shard {path}: soft labels contain NaN or infinite values; the dataset cannot teach")


def _check_consistency(manifest: Manifest, path: Path) -> None:
    channels, height, width = manifest.canvas
    crop_h, crop_w = manifest.crop
    if channels != manifest.teacher.in_channels:
        raise ValueError(f"{path} is corrupt: canvas has {channels} channels, teacher {manifest.teacher.in_channels}")
    if not (0 < crop_h <= height and 0 < crop_w <= width):
        raise ValueError(f"{path} is corrupt: crop {manifest.crop} does not fit canvas {manifest.canvas}")
    indices = [entry.index for entry in manifest.shards]
    if len(set(indices)) != len(indices):
        raise ValueError(f"{path} is corrupt: shard indices repeat")
    if indices != sorted(indices):
        raise ValueError(f"{path} is corrupt: shards are not listed in index order")


def _typed(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{key!r} must be a {kind.__name__}, got {value!r}")
    return value


def _int_tuple(raw: dict[str, Any], key: str, length: int) -> tuple[int, ...]:
    value = _typed(raw, key, list)
    if len(value) != length or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"{key!r} must be {length} positive integers, got {value!r}")
    return tuple(value)


def _shard_entry(item: Any) -> ShardEntry:
    if not isinstance(item, dict):
        raise ValueError(f"a shard entry must be an object, got {item!r}")
    entry = ShardEntry(
        file=_typed(item, "file", str),
        index=_typed(item, "index", int),
        count=_typed(item, "count", int),
        sha256=_typed(item, "sha256", str),
    )
    # The file name comes from a file we did not write; never let it point outside the dataset.
    if Path(entry.file).name != entry.file or entry.file in ("", ".", ".."):
        raise ValueError(f"shard file {entry.file!r} must be a plain file name")
    if entry.count < 0:
        raise ValueError(f"shard {entry.file!r} has a negative count")
    return entry
