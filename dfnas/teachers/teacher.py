"""What a loaded teacher is: the frozen model plus the facts synthesis and evaluation need."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from dfnas.data.teacher_record import TeacherInfo


@dataclass
class Teacher:
    """A classifier in eval mode with every parameter frozen (`requires_grad=False`)."""

    model: nn.Module
    info: TeacherInfo
    # How the model was built, for code that rebuilds it at another shape (dfnas.prune): the
    # 'pkg.module:factory' and its keyword arguments; None for TorchScript and timm teachers.
    factory: str | None = None
    factory_kwargs: dict = field(default_factory=dict)
