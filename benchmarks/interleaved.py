"""Side-by-side timing on a shared, noisy machine: the steps alternate round by round, so load
changes hit every step alike, and each step's median is kept."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved_medians(steps: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each step over `rounds` alternating rounds, after one warm-up call each
    (oneDNN primitives, the allocator)."""
    for step in steps.values():
        step()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}
