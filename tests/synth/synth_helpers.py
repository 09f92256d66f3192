"""Helpers for the synthesis tests: a tiny random BatchNorm teacher (fast, no files)."""
from __future__ import annotations

import torch
from torch import nn

from dfnas.teachers import Teacher, TeacherInfo
from dfnas.teachers.digit_cnn import DigitCNN

TINY_MEAN = (0.1307,)
TINY_STD = (0.3081,)


def make_tiny_teacher(seed: int = 0, width: int = 4, flip_ok: bool = False) -> Teacher:
    """A DigitCNN with random weights and non-trivial BN running statistics, plus teacher info."""
    torch.manual_seed(seed)
    model = DigitCNN(width=width)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    info = TeacherInfo(
        name="tiny", sha256="0" * 64, num_classes=10, class_names=tuple(str(i) for i in range(10)),
        input_size=(28, 28), in_channels=1, mean=TINY_MEAN, std=TINY_STD, flip_ok=flip_ok,
    )
    return Teacher(model=model.eval(), info=info)


class TurnsNaN(nn.Module):
    """Wraps a teacher; its logits become NaN from the `after`-th call on."""

    def __init__(self, model: nn.Module, after: int) -> None:
        super().__init__()
        self.model, self.after, self.calls = model, after, 0

    def forward(self, x):
        self.calls += 1
        logits = self.model(x)
        return logits * float("nan") if self.calls > self.after else logits
