"""DARTS supernet training step (tiny preset, batch 64, 16x16): the edge-by-edge reference cell
(`darts_reference`, what the supernet was before issue 12) vs the fused one (`FusedEdges`), same
weights and input: forward + backward per layout, and the whole first-order search step
(architecture step + weight step, as `DartsSearch` runs it) in channels-last, the layout the
search's measurement picks for DARTS here.

The two steps alternate round by round in one process (the machine is shared: only the ratio is
robust); `extra_info` holds both medians, the ratio and GFLOP/s (forward MACs x 2 x 3 for forward
plus backward, counted on the reference's convolutions). pytest-benchmark's own figure is the fused
step. Under `--benchmark-disable` (CI's quick run) the batch drops to 4, one round, one thread.
"""
from __future__ import annotations


import pytest
import torch

from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig
from dfnas.nas.profile import count_macs
from dfnas.nas.spaces.darts import DartsConfig
from dfnas.nas.spaces.darts_reference import reference_of
from dfnas.nas.spaces.darts_search import DartsSearchNetwork
from dfnas.nas.strategies.darts import Architect
from dfnas.nas.trainer import Trainer

from interleaved import interleaved_medians

BATCH = 64
QUICK_BATCH = 4
ROUNDS = 7
CONFIG = DartsConfig.tiny(input_size=16)
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


@pytest.fixture
def quick_mode_single_thread(benchmark):
    """Under --benchmark-disable one thread: tiny ops stall on a busy machine's thread barriers."""
    threads = torch.get_num_threads()
    if not benchmark.enabled:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor):
    def step() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        return loss.detach()
    return step


def _search_step(model: torch.nn.Module, batches: list[Batch]):
    """First-order DARTS: architecture step on one batch, weight step on the other."""
    trainer = Trainer(LossConfig(), Precision(torch.device("cpu"), channels_last=True), grad_clip=5.0)
    optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, trainer, optimizer)

    def step() -> torch.Tensor:
        architect.step(batches[0], batches[1])
        return torch.tensor(trainer.step(optimizer, model, batches[0], list(model.weight_parameters())))
    return step


def _interleaved(benchmark, steps: dict, flops: int, rounds: int) -> None:
    """Time the steps round by round, alternating; record medians, ratio and GFLOP/s."""
    medians = interleaved_medians(steps, rounds)
    benchmark.extra_info.update({
        "threads": torch.get_num_threads(), "reference_ms": round(1e3 * medians["reference"], 1),
        "fused_ms": round(1e3 * medians["fused"], 1), "ratio": round(medians["reference"] / medians["fused"], 2),
        "gflop": round(flops / 1e9, 3), "reference_gflops": round(flops / medians["reference"] / 1e9, 2),
        "fused_gflops": round(flops / medians["fused"] / 1e9, 2)})


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_darts_step_reference_vs_fused(benchmark, quick_mode_single_thread, layout):
    batch = BATCH if benchmark.enabled else QUICK_BATCH
    torch.manual_seed(0)
    fused = DartsSearchNetwork(CONFIG).train()
    reference = reference_of(fused).train().to(memory_format=LAYOUTS[layout])
    fused = fused.to(memory_format=LAYOUTS[layout])
    x = torch.randn(batch, 3, CONFIG.input_size, CONFIG.input_size).contiguous(memory_format=LAYOUTS[layout])
    target = torch.randint(0, CONFIG.num_classes, (batch,))
    steps = {"reference": _step(reference, x, target), "fused": _step(fused, x, target)}
    losses = {name: float(step()) for name, step in steps.items()}
    assert abs(losses["fused"] - losses["reference"]) <= 1e-4 * abs(losses["reference"])
    benchmark.group = f"DARTS supernet fwd+bwd batch {batch} 16x16"
    flops = 6 * batch * count_macs(reference, (3, CONFIG.input_size, CONFIG.input_size))
    _interleaved(benchmark, steps, flops, ROUNDS if benchmark.enabled else 1)
    loss = benchmark.pedantic(steps["fused"], rounds=3 if benchmark.enabled else 1, iterations=1)
    assert torch.isfinite(loss)


def test_darts_search_step_reference_vs_fused(benchmark, quick_mode_single_thread):
    batch = BATCH if benchmark.enabled else QUICK_BATCH
    torch.manual_seed(0)
    fused = DartsSearchNetwork(CONFIG).train()
    reference = reference_of(fused).train().to(memory_format=torch.channels_last)
    fused = fused.to(memory_format=torch.channels_last)
    batches = [Batch(torch.randn(batch, 3, CONFIG.input_size, CONFIG.input_size).contiguous(
                         memory_format=torch.channels_last),
                     torch.randn(batch, CONFIG.num_classes), torch.randint(0, CONFIG.num_classes, (batch,)))
               for _ in range(2)]
    steps = {"reference": _search_step(reference, batches), "fused": _search_step(fused, batches)}
    benchmark.group = f"DARTS first-order search step batch {batch} 16x16"
    # Architecture step: forward + backward; weight step: forward + backward.
    flops = 2 * 6 * batch * count_macs(reference, (3, CONFIG.input_size, CONFIG.input_size))
    _interleaved(benchmark, steps, flops, ROUNDS if benchmark.enabled else 1)
    loss = benchmark.pedantic(steps["fused"], rounds=3 if benchmark.enabled else 1, iterations=1)
    assert torch.isfinite(loss)
