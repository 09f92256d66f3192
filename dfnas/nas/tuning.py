"""Choosing how a supernet trains fastest here: precision (layout + autocast) and CPU threads,
by timing a few training steps of the actual model unless the user fixed them."""
from __future__ import annotations

import copy
import statistics
import time
from typing import Callable, Sequence

import torch
from torch import nn

from dfnas.device import AMP_DTYPES, Precision


def precision_candidates(device: torch.device, channels_last: str, amp: str) -> list[Precision]:
    """Every combination the user left open ("auto"); fp16 is only tried when asked for."""
    layouts = {"on": [True], "off": [False], "auto": [False, True]}[channels_last]
    if amp == "auto":
        bf16_ok = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
        dtypes = [None, torch.bfloat16] if bf16_ok else [None]
    else:
        dtypes = [AMP_DTYPES[amp]]
    return [Precision(device, layout, dtype) for layout in layouts for dtype in dtypes]


def timed_step(model: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
               images: torch.Tensor, precision: Precision) -> float:
    """Seconds of one forward + backward of `model` (already prepared for `precision`)."""
    sync = torch.cuda.synchronize if precision.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    with precision.autocast():
        logits = forward(model, images)
    logits.float().square().mean().backward()
    sync()
    return time.perf_counter() - start


def time_training_steps(model: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                        images: torch.Tensor, candidates: Sequence[Precision], steps: int = 2) -> dict[str, float]:
    """Median seconds of forward + backward of a copy of `model` under each precision.

    Each candidate runs a warm-up step and `steps` timed steps in a row (so oneDNN's primitive
    cache is warm for it), twice: in order, then in reverse order, so that a burst of load on a
    shared machine is spread over the candidates.
    """
    setups = [(p, p.prepare_model(copy.deepcopy(model)).train(), p.prepare_input(images.to(p.device)))
              for p in candidates]
    timings: dict[str, list[float]] = {p.name: [] for p in candidates}
    for order in (setups, setups[::-1]):
        for precision, model_copy, x in order:
            timed_step(model_copy, forward, x, precision)  # warm-up: caches, allocator, primitives
            timings[precision.name] += [timed_step(model_copy, forward, x, precision) for _ in range(steps)]
    return {name: statistics.median(values) for name, values in timings.items()}


def select_precision(device: torch.device, channels_last: str, amp: str, model: nn.Module,
                     forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                     images: torch.Tensor, min_gain: float = 1.1) -> tuple[Precision, dict[str, float]]:
    """The fastest configuration among `precision_candidates`, by measured step time.

    The first candidate (NCHW, fp32 unless fixed otherwise) stays unless another is at least
    `min_gain` times faster: a lower precision or a layout change must pay for itself. RNG states
    are restored, so measuring does not change the search's random stream.
    """
    candidates = precision_candidates(device, channels_last, amp)
    if len(candidates) == 1:
        return candidates[0], {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        timings = time_training_steps(model, forward, images, candidates)
    best = min(candidates, key=lambda p: timings[p.name])
    if timings[candidates[0].name] < min_gain * timings[best.name]:
        best = candidates[0]
    return best, timings


def select_threads(model: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                   images: torch.Tensor, precision: Precision, rounds: int = 3,
                   min_gain: float = 1.1) -> tuple[int, dict[str, float]]:
    """CPU intra-op threads: torch's default or 1, whichever steps faster (by `min_gain`).

    On a machine shared with other jobs, OpenMP workers spin-waiting for a busy core make small
    convolutions many times slower; one thread then wins. Returns (threads, median seconds).
    """
    default = torch.get_num_threads()
    if precision.device.type != "cpu" or default == 1:
        return default, {}
    model_copy = precision.prepare_model(copy.deepcopy(model)).train()
    x = precision.prepare_input(images)
    timings: dict[str, list[float]] = {str(default): [], "1": []}
    with torch.random.fork_rng(devices=[]):
        try:
            for round_ in range(rounds + 1):
                for threads in (default, 1):
                    torch.set_num_threads(threads)
                    seconds = timed_step(model_copy, forward, x, precision)
                    if round_:
                        timings[str(threads)].append(seconds)
        finally:
            torch.set_num_threads(default)
    medians = {k: statistics.median(v) for k, v in timings.items()}
    return (1 if medians[str(default)] >= min_gain * medians["1"] else default), medians
