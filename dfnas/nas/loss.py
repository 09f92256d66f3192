"""The training loss of every search and retraining: distillation from the teacher's soft labels.

KL(teacher soft labels || student) at temperature T (times T^2 by default), optionally mixed with
hard-label cross-entropy; plain cross-entropy for real data (batches without soft labels).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dfnas.data.images import Batch


@dataclass(frozen=True)
class LossConfig:
    """`temperature` and `t2_factor` as in Hinton et al.; `hard_weight` w mixes
    (1 - w) * KL + w * CE(targets). `label_smoothing` applies to the cross-entropy terms."""

    temperature: float = 3.0
    t2_factor: bool = True
    hard_weight: float = 0.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.hard_weight <= 1.0:
            raise ValueError(f"hard_weight must be in [0, 1], got {self.hard_weight}")


def distillation_kl(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), mean over the batch."""
    return F.kl_div(F.log_softmax(logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1),
                    log_target=True, reduction="batchmean")


def search_loss(logits: torch.Tensor, batch: Batch, config: LossConfig) -> torch.Tensor:
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # the softmaxes in float32 whatever the autocast dtype
    hard = F.cross_entropy(logits, batch.targets, label_smoothing=config.label_smoothing)
    if batch.soft_labels is None:
        return hard
    kl = distillation_kl(logits, batch.soft_labels, config.temperature)
    if config.t2_factor:
        kl = kl * config.temperature ** 2
    if config.hard_weight == 0.0:
        return kl
    return (1.0 - config.hard_weight) * kl + config.hard_weight * hard
