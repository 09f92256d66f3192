"""DARTS supernet training step (forward + backward, tiny preset, batch 64, 16x16): the edge-by-edge
reference cell (`darts_reference`, what the supernet was before issue 12) vs the fused one
(`FusedEdges`), same weights and input, per layout.

The two steps alternate round by round in one process (the machine is shared: only the ratio is
robust); `extra_info` holds both medians, the ratio and GFLOP/s (forward MACs x 2 x 3 for forward
plus backward, counted on the reference's convolutions). pytest-benchmark's own figure is the fused
step. Under `--benchmark-disable` (CI's quick run) the batch drops to 4, one round, one thread.
"""
from __future__ import annotations

import statistics
import time

import pytest
import torch

from dfnas.nas.profile import count_macs
from dfnas.nas.spaces.darts import DartsConfig
from dfnas.nas.spaces.darts_reference import reference_of
from dfnas.nas.spaces.darts_search import DartsSearchNetwork

BATCH = 64
QUICK_BATCH = 4
ROUNDS = 7
CONFIG = DartsConfig.tiny(input_size=16)
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def _step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor):
    def step() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        return loss.detach()
    return step


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_darts_step_reference_vs_fused(benchmark, layout):
    batch = BATCH if benchmark.enabled else QUICK_BATCH
    threads = torch.get_num_threads()
    if not benchmark.enabled:
        torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        fused = DartsSearchNetwork(CONFIG).train()
        reference = reference_of(fused).train().to(memory_format=LAYOUTS[layout])
        fused = fused.to(memory_format=LAYOUTS[layout])
        x = torch.randn(batch, 3, CONFIG.input_size, CONFIG.input_size).contiguous(memory_format=LAYOUTS[layout])
        target = torch.randint(0, CONFIG.num_classes, (batch,))
        steps = {"reference": _step(reference, x, target), "fused": _step(fused, x, target)}
        losses = {name: float(step()) for name, step in steps.items()}  # warm-up (oneDNN primitives)
        assert abs(losses["fused"] - losses["reference"]) <= 1e-4 * abs(losses["reference"])
        seconds: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(ROUNDS if benchmark.enabled else 1):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                seconds[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        flops = 6 * batch * count_macs(reference, (3, CONFIG.input_size, CONFIG.input_size))
        benchmark.group = f"DARTS supernet fwd+bwd batch {batch} 16x16"
        benchmark.extra_info.update({
            "threads": torch.get_num_threads(), "reference_ms": round(1e3 * medians["reference"], 1),
            "fused_ms": round(1e3 * medians["fused"], 1),
            "ratio": round(medians["reference"] / medians["fused"], 2),
            "gflop": round(flops / 1e9, 3),
            "reference_gflops": round(flops / medians["reference"] / 1e9, 2),
            "fused_gflops": round(flops / medians["fused"] / 1e9, 2)})
        loss = benchmark.pedantic(steps["fused"], rounds=3 if benchmark.enabled else 1, iterations=1)
        assert torch.isfinite(loss)
    finally:
        torch.set_num_threads(threads)
