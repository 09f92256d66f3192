"""Supernet training step (forward + backward, batch 64) per layout and precision, side by side.

One group per supernet, three implementations of the same step: NCHW float32, channels-last
float32, channels-last under bf16 autocast. SPOS and ProxylessNAS run one fixed path (the search
resamples it per step; fixing it keeps the rounds comparable); DARTS runs every op on every edge.
DARTS uses 16x16 inputs (its 32x32 step takes ~8 s on this CPU); the others 32x32. Under
`--benchmark-disable` (CI's quick run) the batch drops to 4 and the step runs on one thread: the
point there is that it runs, and on a busy machine two threads' barriers stall tiny ops (~10x).
"""
from __future__ import annotations

import random

import pytest
import torch

from dfnas.nas.spaces import get_space
from dfnas.nas.spaces.darts import DartsConfig
from dfnas.nas.spaces.proxyless import ProxylessConfig
from dfnas.nas.spaces.spos import SposConfig

BATCH = 64
QUICK_BATCH = 4
CONFIGS = {
    "darts": DartsConfig.tiny(input_size=16),
    "spos": SposConfig.tiny(input_size=32),
    "proxyless": ProxylessConfig.tiny(input_size=32),
}
LAYOUTS = ("nchw_fp32", "channels_last_fp32", "channels_last_bf16")


@pytest.fixture
def quick_mode_single_thread(benchmark):
    if benchmark.enabled:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _path_args(space: str, supernet: torch.nn.Module, config) -> tuple:
    rng = random.Random(0)
    if space == "spos":
        return ([rng.randrange(config.num_choices) for _ in range(config.num_layers)],)
    if space == "proxyless":
        supernet.set_active([rng.choice(names) for names in config.block_candidates()])
    return ()


def build_step(space: str, layout: str, batch: int):
    """The timed step of one (space, layout): a fresh supernet, input and targets from seed 0."""
    torch.manual_seed(0)
    config = CONFIGS[space]
    supernet = get_space(space).build_supernet(config).train()
    x = torch.randn(batch, config.in_channels, config.input_size, config.input_size)
    target = torch.randint(0, config.num_classes, (batch,))
    if layout != "nchw_fp32":
        supernet = supernet.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    path = _path_args(space, supernet, config)
    dtype = torch.bfloat16 if layout.endswith("bf16") else None

    def step() -> torch.Tensor:
        supernet.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            logits = supernet(x, *path)
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        loss.backward()
        return loss.detach()

    return step, supernet


def parameter_grads(supernet: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in supernet.parameters() if p.grad is not None])


def assert_same_step_as_nchw_fp32(space: str, layout: str, batch: int) -> None:
    """Cross-check before timing: the layout's step computes the NCHW float32 step's loss (within
    256 ulps of float32, or one ulp of bf16 under autocast; tests/tolerances.py) and, in float32,
    its parameter gradients (norm-wise, 256 ulps). bf16 gradients are not compared: train-mode
    BatchNorm over a few samples amplifies bf16 rounding to ~20-40 % of the gradient norm."""
    # Each step right after its build: both then draw the same random numbers (SPOS's forward does).
    reference_step, reference_net = build_step(space, "nchw_fp32", batch)
    want = float(reference_step())
    step, supernet = build_step(space, layout, batch)
    got = float(step())
    bf16 = layout.endswith("bf16")
    tol = torch.finfo(torch.bfloat16).eps if bf16 else 256 * torch.finfo(torch.float32).eps
    assert abs(got - want) <= tol * abs(want), f"{space} {layout}: loss {got} vs NCHW fp32 {want}"
    grads, want_grads = parameter_grads(supernet), parameter_grads(reference_net)
    assert grads.shape == want_grads.shape and torch.isfinite(grads).all()
    if not bf16:
        error = float(torch.linalg.vector_norm(grads - want_grads) / torch.linalg.vector_norm(want_grads))
        assert error <= tol, f"{space} {layout}: parameter gradients differ from NCHW fp32 by {error:.3g} (norm-wise)"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("space", list(CONFIGS))
def test_supernet_forward_backward(benchmark, quick_mode_single_thread, space, layout):
    config = CONFIGS[space]
    batch = BATCH if benchmark.enabled else QUICK_BATCH
    assert_same_step_as_nchw_fp32(space, layout, batch)
    step, supernet = build_step(space, layout, batch)
    benchmark.group = f"supernet fwd+bwd {space} batch {batch} {config.input_size}x{config.input_size}"
    benchmark.extra_info["threads"] = torch.get_num_threads()
    loss = benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    assert torch.isfinite(loss)
