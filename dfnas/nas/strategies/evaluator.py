"""Evaluating one fixed path of a weight-sharing supernet: exact BN recalibration, then fitness.

Supernet BN statistics are a blend over every path trained; before a path is evaluated its
statistics are recomputed (SPOS; OFA `set_running_statistics`). We use the *cumulative* average
(`momentum=None`) over a fixed list of batches instead of the momentum EMA, so the result is the
mean of the per-batch statistics, independent of batch order, and identical for every candidate's
fixed batches (pytorch-BigNAS#3, mmrazor#298). With equal batch sizes the running mean is exactly
the mean over all calibration inputs; the running variance is the mean of the per-batch
(unbiased) variances.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from dfnas.data.images import Batch, ImageSet
from dfnas.device import Precision
from dfnas.nas.trainer import Trainer

FITNESS_METRICS = ("agreement", "kl")
# Evaluation runs without gradients and BN in eval mode, so its batch size does not change the
# result; large batches are much faster than training-size ones on a CPU (the per-op overhead of
# a supernet's many small convolutions dominates): a tiny DARTS val pass took 7.0 s in batches of
# 16 and 3.0 s in batches of 250.
EVAL_BATCH_SIZE = 256


def eval_batch_size(train_batch_size: int) -> int:
    return max(train_batch_size, EVAL_BATCH_SIZE)


def calibration_batches(images: ImageSet, batch_size: int, count: int, seed: int) -> list[Batch]:
    """`count` full center-window batches of `images` in a seeded random order.

    Never the split's own order: the MNIST split is sorted by class, and statistics re-estimated
    from its first batches (all zeros) left a tiny DARTS search at ~0.5 val accuracy with a train
    loss of 0.5, and ProxylessNAS at chance. A split smaller than `batch_size` gives one batch.
    """
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images.subset(order).fixed_batches(min(batch_size, len(images)), count, drop_last=True)


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                   batches: Sequence[Batch], precision: Precision) -> None:
    """Reset every BN's running statistics and re-estimate them from `batches` (cumulative
    average). Only BN layers run in training mode, so dropout draws no random numbers."""
    norms = batch_norms(model)
    momenta = [bn.momentum for bn in norms]
    was_training = model.training
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for batch in batches:
            with precision.autocast():
                forward(precision.prepare_input(batch.images))
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.train(was_training)


class PathEvaluator:
    """Fitness of one path: recalibrate BN on `calibration`, evaluate on `val`.

    `metric` "agreement" is top-1 agreement with the teacher's argmax (accuracy on real data);
    "kl" is minus the mean KL(teacher || student) at T = 1, so higher is better for both.
    """

    def __init__(self, model: nn.Module, trainer: Trainer, calibration: Sequence[Batch],
                 val: Sequence[Batch], metric: str = "agreement"):
        if metric not in FITNESS_METRICS:
            raise ValueError(f"fitness metric must be one of {FITNESS_METRICS}, got {metric!r}")
        self.model = model
        self.trainer = trainer
        self.calibration = calibration
        self.val = val
        self.metric = metric

    def __call__(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        recalibrate_bn(self.model, forward, self.calibration, self.trainer.precision)
        was_training = self.model.training
        self.model.eval()
        try:
            metrics = self.trainer.evaluate(forward, self.val)
        finally:
            self.model.train(was_training)
        fitness = metrics["agreement"] if self.metric == "agreement" else -metrics["kl"]
        return {"fitness": fitness, **metrics}
