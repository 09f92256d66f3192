"""SPOS and ProxylessNAS supernet training steps (tiny preset, batch 64, 1x28x28 as the digit
teacher's synthetic data): today's step against each alternative of issue 12, side by side.

- `today`: channels-last fp32 (what the search's precision measurement picks here), SGD's
  per-parameter loop, and for ProxylessNAS `nn.ReLU6(inplace=True)` and the eager
  straight-through gate sum `gate_reference` (the supernet and architecture step before issue 12).
- the alternatives, each alone on top of `today`: `nchw`, `bf16` (channels-last + bf16
  autocast), `foreach` (SGD's multi-tensor path; `fused=True` fails on a supernet: parameters off
  the first paths have no momentum buffer yet); for ProxylessNAS `fast`, what the search runs
  now: `InplaceReLU6` (no autograd copy per activation) and `gate_probe` (no products and sums
  for the gates).

Every variant is its own search object built from the same seed (same weights, batches and
paths); the variants alternate round by round in one process, one thread, and `extra_info`
holds each median, its ratio to `today`, GFLOP/s (forward MACs x 2 x 3 for a weight step; for
the architecture step x 2 for the forward of every candidate plus x 2 x 2 for the path's
data-gradient backward) and the fraction of the memory-traffic floor (`_floor_bytes`) at the
machine's copy bandwidth. pytest-benchmark's own figure is the step the search runs now (SPOS
`today`, ProxylessNAS `fast`). Under `--benchmark-disable` (CI's quick run) the batch drops to 4
and each variant runs once.
"""
from __future__ import annotations

import copy
import random
import statistics

import pytest
import torch

from dfnas.config import apply
from dfnas.data.images import ImageSet
from dfnas.device import Precision
from dfnas.nas.search_data import SearchData
from dfnas.nas.spaces.proxyless_reference import torch_modules
from dfnas.nas.search_run import strategy_config
from dfnas.nas.strategies import STRATEGIES
from dfnas.nas.strategies.proxyless_gates import GateForward, gate_reference, sample_gates

from interleaved import interleaved_medians

BATCH = 64
QUICK_BATCH = 4
ROUNDS = 15
CPU = torch.device("cpu")
PRECISIONS = {"today": Precision(CPU, True), "nchw": Precision(CPU, False),
              "bf16": Precision(CPU, True, torch.bfloat16), "foreach": Precision(CPU, True)}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _digits(count: int = 256) -> SearchData:
    """Random 1x32x32 uint8 canvases with 28x28 crops and soft labels, as a digit teacher's data."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 1, 32, 32), generator=generator, dtype=torch.uint8)
    split = ImageSet(images, torch.randn(count, 10, generator=generator), torch.arange(count) % 10, (28, 28),
                     [0.5], [0.25])
    return SearchData(split, split, 10, 1, 28, "benchmark")


def _search(name: str, variant: str, batch: int):
    config = apply(strategy_config(name, "tiny"), {"batch_size": batch}, "benchmark")
    search = STRATEGIES[name][0](config, _digits(), PRECISIONS.get(variant, PRECISIONS["today"]))
    optimizer = search.optimizer if name == "spos" else search.weight_optimizer
    for group in optimizer.param_groups:
        group["foreach"] = variant == "foreach"
    if name == "proxyless" and variant != "fast":
        torch_modules(search.model)
        search.gate_combine = gate_reference
    return search


def _spos_step(search, macs: list[float]):
    paths = random.Random(0)
    params = list(search.model.parameters())

    def step():
        path = [paths.randrange(search.space_config.num_choices) for _ in range(search.space_config.num_layers)]
        macs.append(search.mflops(tuple(path)) * 1e6)
        search.trainer.step(search.optimizer, lambda x: search.model(x, path), search.stream.next(), params)
    return step


def _proxyless_weight_step(search, macs: list[float]):
    params = list(search.model.parameters())

    def step():
        macs.append(search.path_cost(search.sample_path()) * 1e6)
        search.trainer.step(search.weight_optimizer, search.model, search.weight_stream.next(), params)
    return step


def _all_candidates_macs(search) -> float:
    return search.table.fixed_total + sum(sum(slot.values()) for slot in search.table.slots)


def _proxyless_arch_step(search, macs: list[float]):
    def step():
        search.gradient_arch_step(search.arch_stream.next())
        path = [edge.active for edge in search.edges]
        # Forward of every candidate (x 2 FLOP per MAC), backward of the path for data gradients only.
        macs.append(_all_candidates_macs(search) + 2 * search.table.cost(path))
    return step


def _floor_bytes(model: torch.nn.Module, run, weight_step: bool) -> int:
    """Least bytes a step moves: each distinct tensor a leaf module writes is written once and read
    once, and if it is in the graph its gradient too (x 4, else x 2); a weight step also reads each
    weight of the path twice, writes its gradient, and SGD reads weight, gradient and momentum and
    writes weight and momentum (x 8)."""
    kept, sizes, weights = {}, [0, 0], set()

    def hook(module, _inputs, output):
        weights.update(p for p in module.parameters(recurse=False))
        if isinstance(output, torch.Tensor) and output.data_ptr() not in kept:
            kept[output.data_ptr()] = output  # held, so that no later tensor reuses the address
            sizes[torch.is_grad_enabled()] += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    weight_bytes = sum(p.numel() * p.element_size() for p in weights)
    return 2 * sizes[False] + 4 * sizes[True] + (8 if weight_step else 2) * weight_bytes


def _first_batch(stream, precision: Precision) -> torch.Tensor:
    return precision.prepare_input(stream.data.fixed_batches(stream.batch_size, 1)[0].images)


def _weight_step_floor(name: str, search) -> int:
    """`_floor_bytes` of a weight step, on a copy of the model (its BN statistics stay), averaged
    over the paths that run one candidate in every block (ProxylessNAS: every MBConv, not `zero`)."""
    model = copy.deepcopy(search.model)
    x = _first_batch(search.stream if name == "spos" else search.weight_stream, search.trainer.precision)
    if name == "spos":
        layers, choices = search.space_config.num_layers, search.space_config.num_choices
        runs = [lambda k=k: model(x, [k] * layers) for k in range(choices)]
    else:
        ops, blocks = search.space_config.candidate_ops, search.space_config.num_blocks
        runs = [lambda op=op: (model.set_active([op] * blocks), model(x)) for op in ops]
    return sum(_floor_bytes(model, run, True) for run in runs) // len(runs)


def _arch_step_floor(search) -> int:
    """`_floor_bytes` of a `full_v2` architecture step, on a copy of the model (its BN statistics
    and the search's generator stay)."""
    model = copy.deepcopy(search.model)
    x = _first_batch(search.arch_stream, search.trainer.precision)

    def run():
        gates, involved = sample_gates(model.mixed_edges, search.alphas, "full_v2", torch.Generator().manual_seed(0))
        with GateForward(model.mixed_edges, gates, involved):
            model(x)
    return _floor_bytes(model, run, False)


def _interleaved(benchmark, steps: dict, macs: dict, flop_per_mac: int, batch: int, floor_bytes: int,
                 copy_gbps: float, rounds: int) -> None:
    """Alternate the steps round by round; record medians, ratios to `today`, GFLOP/s, floor fraction."""
    medians = interleaved_medians(steps, rounds)
    floor = floor_bytes / (copy_gbps * 1e9)
    info = {"threads": torch.get_num_threads(), "floor_ms": round(1e3 * floor, 2),
            "floor_mb": round(floor_bytes / 1e6, 1), "copy_gbps": round(copy_gbps, 1)}
    today = medians["today"]
    for name, median in medians.items():
        flops = flop_per_mac * batch * statistics.mean(macs[name])
        info[name] = {"ms": round(1e3 * median, 2), "speedup": round(today / median, 3),
                      "gflops": round(flops / median / 1e9, 2), "floor_fraction": round(floor / median, 3)}
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("name", ["spos", "proxyless"])
def test_weight_step(benchmark, one_thread, copy_bandwidth_gbps, name):
    batch = BATCH if benchmark.enabled else QUICK_BATCH
    make = _spos_step if name == "spos" else _proxyless_weight_step
    variants = [*PRECISIONS, "fast"] if name == "proxyless" else list(PRECISIONS)
    searches = {variant: _search(name, variant, batch) for variant in variants}
    macs = {variant: [] for variant in searches}
    steps = {variant: make(search, macs[variant]) for variant, search in searches.items()}
    floor = _weight_step_floor(name, searches["today"])
    benchmark.group = f"{name} weight step batch {batch} 1x28x28"
    _interleaved(benchmark, steps, macs, 6, batch, floor, copy_bandwidth_gbps, ROUNDS if benchmark.enabled else 1)
    # Same math up to rounding, which 15 steps at lr 0.1 amplify: tests/nas compares single steps.
    assert all(torch.isfinite(p).all() for search in searches.values() for p in search.model.parameters())
    benchmark.pedantic(steps[variants[-1] if name == "proxyless" else "today"],
                       rounds=3 if benchmark.enabled else 1, iterations=1)


def test_proxyless_arch_step(benchmark, one_thread, copy_bandwidth_gbps):
    """`full_v2` architecture step, today's against the fast one."""
    batch = BATCH if benchmark.enabled else QUICK_BATCH
    searches = {variant: _search("proxyless", variant, batch) for variant in ("today", "fast")}
    macs = {variant: [] for variant in searches}
    steps = {variant: _proxyless_arch_step(search, macs[variant]) for variant, search in searches.items()}
    floor = _arch_step_floor(searches["today"])
    benchmark.group = f"proxyless full_v2 architecture step batch {batch} 1x28x28"
    _interleaved(benchmark, steps, macs, 2, batch, floor, copy_bandwidth_gbps, ROUNDS if benchmark.enabled else 1)
    for today, fast in zip(searches["today"].alphas, searches["fast"].alphas):  # same steps so far
        torch.testing.assert_close(fast, today, rtol=1e-4, atol=1e-6)
    benchmark.pedantic(steps["fast"], rounds=3 if benchmark.enabled else 1, iterations=1)
