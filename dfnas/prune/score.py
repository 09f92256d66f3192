"""How a pruning candidate is judged without training it: recalibrate BatchNorm, then compare with
the teacher on held-out synthetic images.

Cutting channels shifts every later layer's activation statistics, so the teacher's running BN
statistics no longer fit; MetaPruning re-estimates them on training batches before measuring a
candidate. Here the estimate is exact over the batches given (momentum None: the cumulative
average), so a candidate's score does not depend on the order it was scored in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dfnas.data.images import ImageSet


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Replace every BatchNorm's running statistics by their average over `batches` (train-mode
    forwards, no gradient), then leave the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    for images in batches:
        model(images)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


@dataclass(frozen=True)
class Score:
    """Agreement with the teacher's top-1 on the held-out images, and the mean KL(teacher || model)."""

    agreement: float
    kl: float

    @property
    def fitness(self) -> tuple[float, float]:
        """Higher is better: agreement first (MetaPruning's top-1), the KL breaks its ties."""
        return (self.agreement, -self.kl)


class CandidateScorer:
    """Scores a pruned network: BN recalibrated on fixed training batches, judged on `val`.

    The recalibration images are a seeded random sample, not the first ones: datasets are often
    stored sorted by class, and statistics of a few classes misjudge every candidate.
    """

    def __init__(self, calibration: ImageSet, val: ImageSet, batches: int, batch_size: int, seed: int):
        order = torch.randperm(len(calibration), generator=torch.Generator().manual_seed(seed))
        sample = calibration.subset(order[:batches * batch_size])
        self.calibration = [b.images for b in sample.fixed_batches(batch_size)]
        self.val = val.fixed_batches(500)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> Score:
        recalibrate_batchnorm(model, self.calibration)
        agree, kl, count = 0, 0.0, 0
        for batch in self.val:
            logits = model(batch.images).float()
            agree += int((logits.argmax(1) == batch.reference_labels).sum())
            if batch.soft_labels is not None:
                kl += float(F.kl_div(F.log_softmax(logits, 1), F.log_softmax(batch.soft_labels.float(), 1),
                                     log_target=True, reduction="sum"))
            count += len(batch.images)
        return Score(agree / count, kl / count)
