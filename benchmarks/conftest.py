"""Shared benchmark fixtures: the machine's measured copy bandwidth (the roofline for
bandwidth-bound kernels) and a helper that records achieved GB/s in pytest-benchmark's extra_info."""
import statistics
import time

import pytest
import torch


@pytest.fixture(scope="session")
def copy_bandwidth_gbps() -> float:
    """GB/s of `dst.copy_(src)` on 256 MiB float32 tensors (bytes read + bytes written)."""
    src = torch.randn(64 * 1024 * 1024)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / statistics.median(times) / 1e9


@pytest.fixture
def record_bandwidth(benchmark, copy_bandwidth_gbps):
    """Call after the benchmark with the minimal bytes the implementation must move."""

    def record(bytes_moved: int) -> None:
        benchmark.extra_info["bytes_moved"] = bytes_moved
        benchmark.extra_info["copy_bandwidth_gbps"] = round(copy_bandwidth_gbps, 2)
        benchmark.extra_info["threads"] = torch.get_num_threads()
        if benchmark.stats is None:  # --benchmark-disable: ran once, no timings
            return
        gbps = bytes_moved / benchmark.stats.stats.median / 1e9
        benchmark.extra_info["gbps"] = round(gbps, 2)
        benchmark.extra_info["fraction_of_copy"] = round(gbps / copy_bandwidth_gbps, 3)

    return record
