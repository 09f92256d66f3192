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
from dfnas.distributed import World
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
                   batches: Sequence[Batch], precision: Precision, world: World = World()) -> None:
    """Reset every BN's running statistics and re-estimate them from `batches` (cumulative
    average). Only BN layers run in training mode, so dropout draws no random numbers.
    Under torchrun every rank runs its share of `batches` and the per-rank averages are combined,
    weighted by their batch counts: every rank ends with the statistics of all `batches`."""
    norms = batch_norms(model)
    momenta = [bn.momentum for bn in norms]
    was_training = model.training
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    mine = world.my_share(list(batches))
    try:
        for batch in mine:
            with precision.autocast():
                forward(precision.prepare_input(batch.images))
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.train(was_training)
    if world.distributed:
        _combine_running_stats(norms, len(mine), len(batches), world)


def _combine_running_stats(norms: Sequence[nn.modules.batchnorm._BatchNorm], mine: int, total: int,
                           world: World) -> None:
    """Running mean and variance of all `total` batches from each rank's average of `mine`."""
    stats = [s for bn in norms for s in (bn.running_mean, bn.running_var)]
    counts = [bn.num_batches_tracked for bn in norms]  # 0 for layers off the path, as in one process
    combined = world.summed([s * mine for s in stats] + counts)
    for stat, total_of_stat in zip(stats, combined):
        stat.copy_(total_of_stat / total)
    for count, total_count in zip(counts, combined[len(stats):]):
        count.copy_(total_count)


class PathEvaluator:
    """Fitness of one path: recalibrate BN on `calibration`, evaluate on `val`.

    `metric` "agreement" is top-1 agreement with the teacher's argmax (accuracy on real data);
    "kl" is minus the mean KL(teacher || student) at T = 1, so higher is better for both.
    Under torchrun (the trainer's world) a call is collective: the ranks share out the
    calibration and val batches of the one path. `score_each` instead shares out whole paths.
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
        return self._score(forward, self.trainer.world)

    def score_each(self, forwards: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> list[dict[str, float]]:
        """The scores of several paths, in order. Under torchrun each rank scores every size-th
        path alone (exactly as one process would) and every rank receives all scores; the BN
        statistics left in the model are the last path's, as after a single process's loop."""
        world = self.trainer.world
        indices = world.my_share(list(range(len(forwards))))
        mine = [(i, self._score(forwards[i], World())) for i in indices]
        scores = dict(pair for part in world.gather(mine) for pair in part)
        if forwards and world.distributed:
            last = len(forwards) - 1
            world.broadcast_([b for bn in batch_norms(self.model) for b in bn.buffers()], src=last % world.size)
        return [scores[i] for i in range(len(forwards))]

    def _score(self, forward: Callable[[torch.Tensor], torch.Tensor], world: World) -> dict[str, float]:
        recalibrate_bn(self.model, forward, self.calibration, self.trainer.precision, world)
        was_training = self.model.training
        self.model.eval()
        try:
            sums = self.trainer.evaluation_sums(forward, world.my_share(list(self.val)))
        finally:
            self.model.train(was_training)
        correct, divergence, count = (sum(column) for column in zip(*world.gather(sums)))
        metrics = {"agreement": correct / count, "kl": divergence / count}
        fitness = metrics["agreement"] if self.metric == "agreement" else -metrics["kl"]
        return {"fitness": fitness, **metrics}
