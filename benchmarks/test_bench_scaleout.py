"""SPOS supernet training steps under torchrun-style data parallelism: 1 vs 2 processes, side by side.

Configurations, each timing `STEPS` steps of the tiny SPOS supernet at batch 64 on 32x32 crops
(`Trainer.step` on a sampled path, as `dfnas-search spos` trains):
- 1 process x 1 thread;
- 1 process x 2 threads (torch's intra-op parallelism);
- 2 processes x 1 thread (gloo, each process on 32 rows of every batch, BN over the global
  batch and gradients averaged: what `torchrun --nproc-per-node 2 -m dfnas.cli.search` runs);
- the same with per-rank BN (`whole_batch` switched off: only the gradient all-reduce, as plain
  DistributedDataParallel would run): not what the search runs, it prices the BN all-gathers.
Rounds interleave the configurations (the machine is shared and noisy); the report is the median
seconds per step and the speed-up over 1 x 1. Under `--benchmark-disable` the first three run 2
steps once: the point there is that they run.
"""
from __future__ import annotations

import contextlib
import os
import socket
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dfnas.config import apply
from dfnas.device import Precision
from dfnas.distributed import current_world
from dfnas.nas import trainer
from dfnas.nas.search_data import load_search_data
from dfnas.nas.search_run import strategy_config
from dfnas.nas.strategies import SposSearch

from test_bench_search_step import write_dataset

BATCH = 64
STEPS = 20
ROUNDS = 3
WARMUP = 3


def _timed_steps(data_dir: str, steps: int) -> float:
    """Seconds per SPOS supernet step in this process (all ranks start and stop together)."""
    config = apply(strategy_config("spos", "tiny"), {"batch_size": BATCH}, "benchmark")
    data = load_search_data(data_dir, torch.device("cpu"))
    search = SposSearch(config, data, Precision(torch.device("cpu")))
    search.model.train()
    world = current_world()

    def step() -> None:
        batch, path = search.stream.next(), search.sample_path()
        search.trainer.step(search.optimizer, lambda x: search.model(x, path), batch,
                            list(search.model.parameters()))

    for _ in range(WARMUP):
        step()
    world.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    world.barrier()
    return (time.perf_counter() - start) / steps


def _rank(rank: int, data_dir: str, port: int, steps: int, result: str, global_bn: bool) -> None:
    if not global_bn:
        trainer.whole_batch = lambda world: contextlib.nullcontext()
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        seconds = _timed_steps(data_dir, steps)
        if rank == 0:
            Path(result).write_text(str(seconds))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_processes(data_dir: Path, steps: int, folder: Path, global_bn: bool = True) -> float:
    result = folder / "two-processes.txt"
    mp.spawn(_rank, args=(str(data_dir), _free_port(), steps, str(result), global_bn), nprocs=2, join=True)
    return float(result.read_text())


def _one_process(data_dir: Path, steps: int, threads: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _timed_steps(str(data_dir), steps)
    finally:
        torch.set_num_threads(before)


def test_scaleout_spos_steps(request, tmp_path):
    quick = request.config.getoption("benchmark_disable", False)
    steps, rounds = (2, 1) if quick else (STEPS, ROUNDS)
    data_dir = write_dataset(tmp_path / "data", 32)
    runs = {"1 process x 1 thread": lambda: _one_process(data_dir, steps, 1),
            "1 process x 2 threads": lambda: _one_process(data_dir, steps, 2),
            "2 processes x 1 thread": lambda: _two_processes(data_dir, steps, tmp_path),
            "2 processes x 1 thread, per-rank BN": lambda: _two_processes(data_dir, steps, tmp_path, False)}
    if quick:  # the same code as the row before, with one switch: not worth another 2 processes in CI
        del runs["2 processes x 1 thread, per-rank BN"]
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            seconds[name].append(run())
    base = statistics.median(seconds["1 process x 1 thread"])
    lines = [f"{name}: {1000 * statistics.median(times):.1f} ms/step, {base / statistics.median(times):.2f}x"
             for name, times in seconds.items()]
    print("\nSPOS tiny, batch 64, 32x32: " + "; ".join(lines))
    assert all(t > 0 for times in seconds.values() for t in times)
