"""oneDNN's depthwise convolution on the fused DARTS supernet's shapes (tiny preset, batch 64,
stride 1 as on the polyphase sub-images) against its floor, per pass: forward, input gradient,
weight gradient, channels-last and NCHW.

Memory-traffic floor of a pass: its least bytes (one read of the input, one read or write of the
output or its gradient; the weights are negligible) at the copy rate of a tensor of the same size
(`Tensor.copy_`, so in cache where the tensors fit). Every pass does the same FLOPs (2 x MACs), so
GFLOP/s compares the passes directly: a pass far below its own forward's rate is what a
hand-written kernel could still gain. `extra_info` holds GFLOP/s, the floor and the fraction of
it reached. One thread; under `--benchmark-disable` (CI's quick run) batch 2.
"""
from __future__ import annotations

import statistics
import time

import pytest
import torch
import torch.nn.functional as F

BATCH = 64
QUICK_BATCH = 2
# (channels, size, kernel): the fused DARTS step's depthwise convolutions with the most time.
SHAPES = [(32, 16, 5), (16, 16, 5), (32, 8, 5), (64, 8, 5), (16, 16, 3), (32, 16, 3), (32, 8, 3)]
LAYOUTS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
PASSES = {"forward": None, "input_grad": [True, False, False], "weight_grad": [False, True, False]}


def _seconds(fn, rounds: int = 15) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.mark.parametrize("pass_name", list(PASSES))
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("channels,size,kernel", SHAPES)
def test_depthwise_against_floor(benchmark, channels, size, kernel, layout, pass_name):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    batch = BATCH if benchmark.enabled else QUICK_BATCH
    fmt, pad = LAYOUTS[layout], kernel // 2
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=fmt)
    weight = torch.randn(channels, 1, kernel, kernel).contiguous(memory_format=fmt)
    y = F.conv2d(x, weight, None, 1, pad, 1, channels)
    grad = torch.randn_like(y)
    if PASSES[pass_name] is None:
        run = lambda: F.conv2d(x, weight, None, 1, pad, 1, channels)  # noqa: E731
    else:
        run = lambda: torch.ops.aten.convolution_backward(  # noqa: E731
            grad, x, weight, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], channels, PASSES[pass_name])
    benchmark.group = f"depthwise {kernel}x{kernel} {batch}x{channels}x{size}x{size} {layout}"
    benchmark.pedantic(run, rounds=15 if benchmark.enabled else 1, iterations=1, warmup_rounds=1)
    flops = 2 * y.numel() * kernel * kernel
    tensor_bytes = x.numel() * x.element_size() + y.numel() * y.element_size()
    src, dst = torch.empty(tensor_bytes // 8), torch.empty(tensor_bytes // 8)
    copy_rate = tensor_bytes / _seconds(lambda: dst.copy_(src))
    floor = tensor_bytes / copy_rate
    torch.set_num_threads(threads)
    benchmark.extra_info.update(floor_us=round(1e6 * floor, 1), copy_gbps=round(copy_rate / 1e9, 1))
    if benchmark.stats is not None:  # --benchmark-disable: ran once, no timings
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(gflops=round(flops / median / 1e9, 1), floor_fraction=round(floor / median, 3))
