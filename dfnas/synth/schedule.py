"""Learning-rate schedule of the reference: linear warm-up, then cosine decay to zero."""
from __future__ import annotations

import math


def warmup_cosine_lr(base_lr: float, iteration: int, iterations: int, warmup: int) -> float:
    """LR at 0-based `iteration`: base*(i+1)/warmup during warm-up, then a half cosine to 0."""
    if iteration < warmup:
        return base_lr * (iteration + 1) / warmup
    decay_steps = iterations - warmup
    progress = (iteration - warmup) / decay_steps
    return 0.5 * (1.0 + math.cos(math.pi * progress)) * base_lr


def warmup_iterations(iterations: int, warmup_fraction: float) -> int:
    return int(round(iterations * warmup_fraction))
