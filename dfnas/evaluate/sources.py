"""What a retraining learns from and is measured against.

`load_sources(config, arch, device)` turns `--data DIR|mnist` and `--teacher` into:

- `train`: the training images (`dfnas.nas.search_data`: the synthetic train split with its
  soft labels, or the real MNIST "train" split with hard labels);
- `val`: synthetic data only, its held-out split, labelled by the online teacher if there is one;
- `test`: the real held-out digits (`dfnas.data.mnist` "test", 1,000 images), normalized as the
  training data is, whenever the data is digit-shaped (10 classes named 0..9, 1x28x28);
- `teacher`: the online teacher (`--teacher`), which labels every augmented training batch, and
  `reference_teacher`: the teacher whose held-out accuracy the student is compared with (the
  online one, or the one named in the synthetic dataset's manifest, if it can be loaded and its
  weights still hash as recorded).

Everything that does not fit the architecture (classes, channels, input size) is a `UsageError`.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from dfnas.config import UsageError
from dfnas.data import mnist
from dfnas.data.images import Batch, ImageSet
from dfnas.evaluate.config import TrainConfig
from dfnas.files import sha256_file
from dfnas.nas.arch import Architecture
from dfnas.nas.search_data import MNIST, SearchData, load_search_data

DIGIT_NAMES = mnist.CLASS_NAMES


class TeacherLabels:
    """A frozen teacher applied to images normalized for another pixel contract.

    Data normalized with (mean_d, std_d) holds x_d = (p - mean_d) / std_d; the teacher wants
    x_t = (p - mean_t) / std_t = x_d * std_d / std_t + (mean_d - mean_t) / std_t.
    """

    def __init__(self, model: nn.Module, teacher_mean, teacher_std, data_mean, data_std, device: torch.device):
        self.model = model.to(device).eval()
        t_mean, t_std, d_mean, d_std = (torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)
                                        for v in (teacher_mean, teacher_std, data_mean, data_std))
        self.scale = d_std / t_std
        self.shift = (d_mean - t_mean) / t_std

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images * self.scale + self.shift).float()

    def label(self, batch: Batch) -> Batch:
        """The batch with the teacher's logits as its soft labels."""
        return Batch(batch.images, self(batch.images), batch.targets)

    def relabel(self, data: ImageSet, batch_size: int = 500) -> ImageSet:
        """`data` with the teacher's logits on its center windows as soft labels."""
        logits = torch.cat([self(b.images) for b in data.fixed_batches(batch_size)])
        return dataclasses.replace(data, soft_labels=logits)


@dataclass(frozen=True)
class TeacherRecord:
    """A teacher as result.json reports it; `labels` is None when it could not be loaded."""

    spec: str | None
    weights: str | None
    origin: str  # "--teacher" or "dataset manifest"
    name: str | None = None
    sha256: str | None = None
    note: str | None = None
    labels: TeacherLabels | None = None

    def to_dict(self) -> dict:
        return {"spec": self.spec, "weights": self.weights, "from": self.origin, "name": self.name,
                "sha256": self.sha256, "note": self.note}


@dataclass(frozen=True)
class Sources:
    train: ImageSet
    val: ImageSet | None
    test: ImageSet | None
    test_note: str | None  # why there is no real test set
    num_classes: int
    in_channels: int
    input_size: int
    kind: str  # "mnist" or "synthetic"
    description: dict  # spec, path, sha256, sizes: result.json's "data"
    teacher: TeacherLabels | None  # online labels
    reference_teacher: TeacherRecord | None

    @property
    def loss_name(self) -> str:
        if self.teacher is not None:
            return "kl_online_teacher"
        return "kl_soft_labels" if self.train.soft_labels is not None else "cross_entropy"


def load_sources(config: TrainConfig, arch: Architecture, device: torch.device) -> Sources:
    data = load_search_data(config.data, device, config.val_fraction)
    kind = "mnist" if config.data == MNIST else "synthetic"
    manifest = None
    if kind == "synthetic":
        from dfnas.data.synthetic import read_manifest

        manifest = read_manifest(config.data)
    class_names = DIGIT_NAMES if manifest is None else manifest.teacher.class_names
    _check_fits(arch, data.num_classes, data.in_channels, data.input_size, f"--data {config.data}")

    online = None
    if config.teacher is not None:
        online = _load_teacher(config.teacher, config.weights, "--teacher", device)
        info = online.info
        if info.num_classes != arch.config.num_classes or info.num_classes != data.num_classes:
            raise UsageError(f"teacher {config.teacher!r} has {info.num_classes} classes, the architecture "
                             f"{arch.config.num_classes} and the data {data.num_classes}")
        if info.in_channels != data.in_channels or tuple(info.input_size) != (data.input_size,) * 2:
            raise UsageError(f"teacher {config.teacher!r} takes {info.in_channels}x{info.input_size[0]}x"
                             f"{info.input_size[1]} inputs, the data is {data.in_channels}x{data.input_size}x"
                             f"{data.input_size}")
    train = data.train
    labels = None if online is None else TeacherLabels(online.model, online.info.mean, online.info.std,
                                                       train.mean, train.std, device)
    val = None if kind == "mnist" else data.val
    if val is not None and labels is not None:
        val = labels.relabel(val)

    test, test_note = (data.val, None) if kind == "mnist" else real_test_set(data, class_names, device)

    if online is not None:
        reference = TeacherRecord(config.teacher, config.weights, "--teacher", online.info.name, online.info.sha256,
                                  labels=labels)
    elif manifest is not None:
        reference = _manifest_teacher(manifest, train, device)
    else:
        reference = None
    description = _describe(config.data, kind, manifest, data, val)
    return Sources(train, val, test, test_note, data.num_classes, data.in_channels, data.input_size, kind,
                   description, labels, reference)


def real_test_set(data: SearchData, class_names: Sequence[str], device: torch.device) -> tuple[ImageSet | None, str | None]:
    """The real held-out digits, normalized as `data` is, when `data` is digit-shaped (10 classes
    named 0..9, 1x28x28); otherwise None and the reason."""
    if (data.num_classes == len(DIGIT_NAMES) and tuple(class_names) == DIGIT_NAMES
            and data.in_channels == mnist.IN_CHANNELS and data.input_size == mnist.IMAGE_SIZE[0]):
        real = load_search_data(MNIST, device).val
        return dataclasses.replace(real, mean=tuple(data.train.mean), std=tuple(data.train.std)), None
    return None, (f"no real test set: the data has {data.num_classes} classes of {data.in_channels}x"
                  f"{data.input_size}x{data.input_size} images, not the 10 MNIST digits; only the synthetic "
                  f"val agreement is reported")


def _check_fits(arch: Architecture, num_classes: int, channels: int, size: int, what: str) -> None:
    config = arch.config
    if config.num_classes != num_classes:
        raise UsageError(f"{what} has {num_classes} classes but the architecture is built for {config.num_classes}")
    if config.in_channels != channels or config.input_size != size:
        raise UsageError(f"{what} holds {channels}x{size}x{size} images but the architecture takes "
                         f"{config.in_channels}x{config.input_size}x{config.input_size}")


def _load_teacher(spec: str, weights: str | None, origin: str, device: torch.device):
    from dfnas.teachers import load_teacher

    try:
        return load_teacher(spec, weights, device=device)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"{origin} {spec!r}: {error}") from None


def _manifest_teacher(manifest: Any, train: ImageSet, device: torch.device) -> TeacherRecord:
    """The dataset's teacher, loaded from the spec its manifest records, if it still can be."""
    spec, weights = manifest.config.get("teacher"), manifest.config.get("weights")
    record = dict(spec=spec, weights=weights, origin="dataset manifest", name=manifest.teacher.name,
                  sha256=manifest.teacher.sha256)
    if not isinstance(spec, str):
        return TeacherRecord(**record, note="the manifest names no loadable teacher spec")
    try:
        teacher = _load_teacher(spec, weights, "the dataset's teacher", device)
    except UsageError as error:
        return TeacherRecord(**record, note=f"cannot load it: {error}")
    if teacher.info.sha256 != manifest.teacher.sha256:
        return TeacherRecord(**record, note=f"its weights now hash to {teacher.info.sha256}, not the recorded one")
    labels = TeacherLabels(teacher.model, teacher.info.mean, teacher.info.std, train.mean, train.std, device)
    return TeacherRecord(**record, labels=labels)


def _describe(spec: str, kind: str, manifest: Any, data: Any, val: ImageSet | None) -> dict:
    if kind == "synthetic":
        path = Path(spec).resolve()
        return {"spec": spec, "kind": kind, "path": str(path), "sha256": sha256_file(path / "manifest.json"),
                "sha256_of": "manifest.json", "train_images": len(data.train),
                "val_images": 0 if val is None else len(val)}
    digest = hashlib.sha256()
    for tensor in (data.train.images, data.train.targets):
        digest.update(tensor.cpu().contiguous().numpy().tobytes())
    return {"spec": spec, "kind": kind, "path": None, "sha256": digest.hexdigest(),
            "sha256_of": "the uint8 pixels and int64 labels of the MNIST train split",
            "train_images": len(data.train), "val_images": 0}
