"""Numbers of a trained network: accuracy on a labelled set, MACs, parameters, CPU latency.

`accuracy` is top-1 against `Batch.reference_labels`: the label on real data (the held-out MNIST
digits), the teacher's argmax on synthetic data (then it is the *agreement* with the teacher).
Evaluation uses the center window, in eval mode (BatchNorm running statistics).
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Callable, Sequence

import torch
from torch import nn

from dfnas.data.images import ImageSet
from dfnas.device import Precision
from dfnas.nas.profile import count_macs, count_params

EVAL_BATCH = 500


@torch.no_grad()
def accuracy(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], data: ImageSet,
             precision: Precision | None = None) -> float:
    """Top-1 of `model` (a module, put in eval mode for the pass, or any function of a batch)."""
    module = model if isinstance(model, nn.Module) else None
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    correct = 0
    try:
        for batch in data.fixed_batches(EVAL_BATCH):
            images = batch.images if precision is None else precision.prepare_input(batch.images)
            if precision is None:
                logits = model(images)
            else:
                with precision.autocast():
                    logits = model(images)
            correct += int((logits.float().argmax(dim=1) == batch.reference_labels).sum())
    finally:
        if was_training:
            module.train()
    return correct / len(data)


def size_of(model: nn.Module, input_shape: Sequence[int]) -> dict:
    """MACs of one sample (conv + linear multiplies, eval mode) and inference parameters."""
    return {"macs": count_macs(model, input_shape), "params": count_params(model)}


@torch.no_grad()
def cpu_latency(model: nn.Module, input_shape: Sequence[int], runs: int = 20, warmup: int = 5) -> dict:
    """Median wall time of `runs` batch-1 forwards of an fp32 copy of `model` on the CPU."""
    copy_ = copy.deepcopy(model).to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format).eval()
    x = torch.zeros(1, *input_shape)
    for _ in range(warmup):
        copy_(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        copy_(x)
        times.append(time.perf_counter() - start)
    return {"median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times), "runs": runs,
            "batch_size": 1, "device": "cpu", "threads": torch.get_num_threads()}
