"""Targets of each label-calibration round.

Round 0: hard labels, balanced over classes by the chain's global index. Round k > 0: the teacher's
softmax (temperature T) on the round k-1 image of the same chain, as stored.
"""
from __future__ import annotations

import torch
from torch import Tensor


def balanced_labels(first_chain: int, count: int, num_classes: int) -> Tensor:
    """Class of chains first_chain .. first_chain+count-1: chain g gets class g mod num_classes."""
    return torch.arange(first_chain, first_chain + count, dtype=torch.int64) % num_classes


def calibrated_targets(previous_logits: Tensor, temperature: float) -> Tensor:
    """softmax(logits / T) of the teacher on the previous round's images."""
    return torch.softmax(previous_logits.float() / temperature, dim=1)


def target_classes(targets: Tensor) -> Tensor:
    """The class each target points at (hard label, or the argmax of a soft target)."""
    return targets if targets.dtype == torch.int64 else targets.argmax(dim=1)
