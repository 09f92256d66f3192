"""The teacher record of a synthetic dataset: the identity and input contract of the teacher that
made it, stored in the manifest (docs/synthetic-format.md) and read back by every consumer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TeacherInfo:
    """Identity and input contract of a teacher.

    `sha256` is the hash of the file the weights came from (the TorchScript file for TorchScript
    teachers). `mean`/`std` are per input channel and map pixels in [0, 1] to the teacher's input
    space: `x = (pixel - mean) / std`. `flip_ok` says whether a horizontal flip is a valid
    augmentation for the teacher's data (False for digits).
    """

    name: str
    sha256: str
    num_classes: int
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip_ok: bool = False

    def to_manifest(self) -> dict[str, Any]:
        """The `teacher` object of a synthetic dataset's manifest.json (docs/synthetic-format.md)."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "input_size": list(self.input_size),
            "in_channels": self.in_channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "flip_ok": self.flip_ok,
        }

    @classmethod
    def from_manifest(cls, teacher: dict[str, Any]) -> TeacherInfo:
        """Inverse of `to_manifest`; `flip_ok` defaults to False when a manifest lacks it."""
        return cls(
            name=str(teacher["name"]),
            sha256=str(teacher["sha256"]),
            num_classes=int(teacher["num_classes"]),
            class_names=tuple(str(name) for name in teacher["class_names"]),
            input_size=(int(teacher["input_size"][0]), int(teacher["input_size"][1])),
            in_channels=int(teacher["in_channels"]),
            mean=tuple(float(value) for value in teacher["mean"]),
            std=tuple(float(value) for value in teacher["std"]),
            flip_ok=bool(teacher.get("flip_ok", False)),
        )
