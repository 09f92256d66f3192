"""What a loaded teacher is: the frozen model plus the facts synthesis and evaluation need."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dfnas.data.teacher_record import TeacherInfo


@dataclass
class Teacher:
    """A classifier in eval mode with every parameter frozen (`requires_grad=False`)."""

    model: nn.Module
    info: TeacherInfo
