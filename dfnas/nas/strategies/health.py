"""Is a search set up to learn, and did it? Checks before and after a run.

- `metric_name(data)`: the one name every strategy's log records use for the quality of the
  supernet or winner: "accuracy" on real, hard-labelled data (top-1 vs the labels), "agreement"
  on synthetic data (top-1 vs the teacher's argmax). Records carry it as `val_<name>`;
  `final_metrics()` as `<name>` and, whatever the data, as "agreement" (`Trainer.evaluate`'s key).
- `fit_batch_to_split`: settings made for epochs of thousands of steps (the reference presets:
  SPOS batch 1024, ProxylessNAS 256) give one or two steps per epoch on a small dataset, and the
  published learning rates then diverge (SPOS at lr 0.5 on 1,800 MNIST digits: train loss 2.3,
  3.6, 7.3, 12.7, ... 27 over its first eight one-step epochs). When an epoch is a pass over a
  split of fewer than `MIN_STEPS_PER_EPOCH` batches, the batch shrinks to give that many and the
  learning rate scales with it (linear scaling rule, Goyal et al. 2017), with a notice.
- `search_health(strategy)`: warnings after a run: the supernet / winner ended near chance, or
  the architecture weights never left uniform (DARTS, ProxylessNAS), or ProxylessNAS removed every
  block it could (`zero` everywhere).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

import torch

MIN_STEPS_PER_EPOCH = 10
MIN_FITTED_BATCH = 16  # never shrink below this (BN statistics of tiny batches are too noisy)
NEAR_CHANCE_FACTOR = 2.0  # agreement below this times chance is "near chance"
UNIFORM_FRACTION = 0.99  # entropy above this fraction of the uniform entropy is "never left uniform"


def metric_name(soft_labels: bool) -> str:
    """"agreement" (synthetic data, teacher soft labels) or "accuracy" (real, hard labels)."""
    return "agreement" if soft_labels else "accuracy"


def fit_batch_to_split(config: Any, images: int, lr_fields: tuple[str, ...] = ("lr",)) -> tuple[Any, str | None]:
    """`config` with a batch that gives `MIN_STEPS_PER_EPOCH` steps per pass over `images`, and
    its `lr_fields` scaled by the same factor, plus a notice; unchanged (and None) when the batch
    already fits, when `steps_per_epoch` fixes the steps (the stream wraps around the split) or
    when the batch is already small."""
    batch = config.batch_size
    if config.steps_per_epoch or images // batch >= MIN_STEPS_PER_EPOCH or batch <= MIN_FITTED_BATCH:
        return config, None
    fitted = min(batch, images, max(MIN_FITTED_BATCH, images // MIN_STEPS_PER_EPOCH))
    if fitted < 1 or fitted == batch:
        return config, None
    scale = fitted / batch
    changes = {"batch_size": fitted, **{name: getattr(config, name) * scale for name in lr_fields}}
    rates = ", ".join(f"{name} {getattr(config, name):.4g} -> {changes[name]:.4g}" for name in lr_fields)
    notice = (f"the training split has {images} images, {images // batch} batch(es) of {batch} per epoch, but "
              f"these settings assume thousands of steps per epoch: using batch {fitted} "
              f"({images // fitted} steps per epoch) and {rates} (scaled with the batch); "
              f"set steps_per_epoch to keep the batch as given")
    return dataclasses.replace(config, **changes), notice


class Reporting(Protocol):
    def final_metrics(self) -> dict: ...


def search_health(strategy: Reporting) -> list[str]:
    """Warnings about a finished (or stopped) search, from `strategy.final_metrics()`; empty
    when it learned. Keys read: "metric", "agreement", "num_classes"; "arch_entropy" and
    "uniform_entropy" (architecture weights); "zero_blocks" and "zero_capable_blocks"
    (ProxylessNAS)."""
    metrics = strategy.final_metrics()
    if "agreement" not in metrics:
        return ["no unit of the search has finished: nothing to judge"]
    warnings = []
    name, classes = metrics.get("metric", "agreement"), metrics["num_classes"]
    chance = 1.0 / classes
    if metrics["agreement"] < NEAR_CHANCE_FACTOR * chance:
        what = metrics.get("measured_on", "the supernet")
        warnings.append(f"the search ended near chance: val {name} {metrics['agreement']:.3f} of {what} "
                        f"(chance {chance:.3f} with {classes} classes); the supernet did not learn, so the "
                        f"architecture it chose means little (train longer or check the learning rate)")
    entropy, uniform = metrics.get("arch_entropy"), metrics.get("uniform_entropy")
    if entropy is not None and uniform and entropy >= UNIFORM_FRACTION * uniform:
        warnings.append(f"the architecture weights never left uniform: mean entropy {entropy:.4f} nats, uniform "
                        f"{uniform:.4f}; the chosen ops are close to arbitrary (raise arch_lr or the number of "
                        f"architecture steps)")
    capable = metrics.get("zero_capable_blocks", 0)
    if capable and metrics.get("zero_blocks") == capable:
        warnings.append(f"every block that can be removed ({capable}) chose 'zero': the cost term outweighed the "
                        f"loss, or the supernet had not learned when the architecture was updated (lower "
                        f"reg_lambda, or more warmup_epochs)")
    return warnings


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the op distributions along the last dimension (0 log 0 counts as 0)."""
    return -(probabilities * probabilities.clamp_min(1e-12).log()).sum(-1)


def mean_entropy(probabilities: list[torch.Tensor]) -> float:
    """Mean entropy (nats) of a list of probability vectors of any lengths."""
    values = [float(entropy(p)) for p in probabilities]
    return sum(values) / len(values)


def mean_uniform_entropy(sizes: list[int]) -> float:
    return sum(math.log(n) for n in sizes) / len(sizes)
