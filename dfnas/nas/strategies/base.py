"""What a search strategy is, the settings all of them share, and the loop that runs one.

A strategy works in *units* (an epoch of supernet training, a generation of evolution) and is
checkpointed after each: `run_search` saves `strategy.state_dict()` plus the global RNG atomically,
then appends the unit's record to `log.jsonl`. `--resume` loads the checkpoint and continues from
the next unit, so a killed run ends with the same architecture as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from dfnas.config import RunFailed, option
from dfnas.files import atomic_write_bytes
from dfnas.nas.arch import Architecture
from dfnas.nas.search_data import SearchData
from dfnas.nas.spaces.darts import DartsConfig
from dfnas.nas.spaces.proxyless import ProxylessConfig
from dfnas.nas.spaces.spos import SposConfig
from dfnas.checkpoint import Checkpointer, check_same_settings, rng_state, set_rng_state, state_digest
from dfnas.distributed import World
from dfnas.nas.loss import LossConfig

SPACE_PRESETS = ("tiny", "reference")


@dataclass
class SearchConfig:
    """Settings shared by every strategy (each strategy's config extends this)."""

    seed: int = option(2, "random seed of everything (weights, splits, sampling)", min=0)
    space_preset: str = option("tiny", "size of the search space: tiny or reference (the published one)",
                               choices=SPACE_PRESETS)
    epochs: int = option(50, "supernet training epochs", min=1, max=100000)
    batch_size: int = option(64, "training batch size", min=1, max=65536)
    temperature: float = option(3.0, "distillation temperature T of the KL to the teacher's soft labels", above=0)
    t2_factor: bool = option(True, "multiply the KL by T^2 (Hinton et al.)")
    hard_weight: float = option(0.0, "weight w of hard-label CE: (1-w) KL + w CE", min=0, max=1)
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy terms", min=0, max=0.999)
    grad_clip: float = option(5.0, "clip the weights' gradient norm to this (0 = off)", min=0)
    steps_per_epoch: int = option(0, "steps of one epoch; the batch streams wrap around a smaller split, so a preset "
                                     "does the same work on 900 images as on 4,000 (0 = one pass)", min=0)

    def loss(self) -> LossConfig:
        return LossConfig(self.temperature, self.t2_factor, self.hard_weight, self.label_smoothing)

    def check(self) -> None:
        """Rules between fields (each field's range is checked by dfnas.config.check); subclasses add theirs."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def epoch_steps(self, batches: int) -> int:
        """`steps_per_epoch` when set (the streams wrap around), else one pass over `batches`."""
        return self.steps_per_epoch or batches


def space_config(space: str, preset: str, data: SearchData) -> Any:
    """The space's config at `preset` size for the data's channels, input size and classes."""
    shape = (data.in_channels, data.input_size, data.num_classes)
    small_input = data.input_size <= 64
    if space == "darts":
        if preset == "tiny":
            return DartsConfig.tiny(*shape)
        return DartsConfig(*shape, channels=16, layers=8)
    if space == "spos":
        if preset == "tiny":
            return SposConfig.tiny(*shape)
        return SposConfig(*shape, stem_stride=1 if small_input else 2)
    if space == "proxyless":
        if preset == "tiny":
            return ProxylessConfig.tiny(*shape)
        return ProxylessConfig(*shape, stem_stride=1 if small_input else 2)
    raise ValueError(f"unknown space {space!r}")


class Strategy(Protocol):
    """A resumable search. `run_unit(u)` does unit u (0-based) and returns its log record."""

    name: str
    unit_name: str
    num_units: int
    model: nn.Module

    def probe_forward(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """One supernet forward as the search's training steps run it (for precision timing)."""

    def run_unit(self, unit: int, progress: Callable[[int], None]) -> dict: ...

    def unit_steps(self, unit: int) -> int:
        """How many progress ticks unit `unit` makes."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def architecture(self) -> Architecture: ...

    def plot(self, directory: Path) -> list[Path]: ...


@dataclass(frozen=True)
class SearchOutcome:
    finished: bool
    next_unit: int
    architecture: Architecture | None
    final_record: dict  # the log record of the last unit done (empty before the first)


def run_search(strategy: Strategy, out_dir: Path, run_config: dict, resume: bool = False,
               stop_after: int | None = None, progress_bar: bool = True,
               echo: Callable[[str], None] = print, world: World = World()) -> SearchOutcome:
    """Run (or continue) `strategy`, checkpointing after each unit.

    `run_config` is everything that determines the result; a checkpoint made under a different
    one is refused. `stop_after` n stops once n units are done in total (as if killed there).
    Under torchrun every rank runs the strategy and rank 0 alone writes: it reads the checkpoint
    to resume from and sends it to the others, and after every unit the ranks compare digests
    of their states before rank 0 saves its own.
    """
    from tqdm import tqdm

    checkpointer = Checkpointer(out_dir / "checkpoint.pt")
    log_path = out_dir / "log.jsonl"
    writes = world.is_main
    if writes:
        out_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    if resume:
        state = world.broadcast(checkpointer.load() if writes else None)
        check_same_settings(state["run_config"], run_config, checkpointer.path)
        strategy.load_state_dict(state["strategy"])
        set_rng_state(state["rng"])
        start = int(state["next_unit"])
        if writes:  # the log is written before each checkpoint: drop records of a unit that was not saved
            lines = log_path.read_text().splitlines(keepends=True) if log_path.exists() else []
            atomic_write_bytes(log_path, "".join(lines[:start]).encode())
        echo(f"resuming {strategy.name} at {strategy.unit_name} {start + 1} of {strategy.num_units}")
    elif writes and checkpointer.exists():
        raise ValueError(f"{out_dir} already holds a search checkpoint; pass --resume or choose another --out")
    elif writes:
        log_path.unlink(missing_ok=True)
    end = strategy.num_units if stop_after is None else min(strategy.num_units, stop_after)
    for unit in range(start, end):
        with tqdm(total=strategy.unit_steps(unit), disable=not progress_bar, leave=False,
                  desc=f"{strategy.name} {strategy.unit_name} {unit + 1}/{strategy.num_units}") as bar:
            try:
                record = strategy.run_unit(unit, bar.update)
            except RunFailed as error:
                raise RunFailed(f"{strategy.name} {strategy.unit_name} {unit + 1}: {error}; stopped without an "
                                f"architecture (lower the learning rates or check the data)") from None
        record = {strategy.unit_name: unit + 1, **record}
        bad = [key for key, value in record.items() if isinstance(value, float) and not math.isfinite(value)]
        if bad:
            raise RunFailed(f"{strategy.name} {strategy.unit_name} {unit + 1}: {', '.join(bad)} became non-finite; "
                            f"stopped without an architecture")
        state = {"next_unit": unit + 1, "run_config": run_config, "strategy": strategy.state_dict(), "rng": rng_state()}
        if world.distributed:
            world.check_same(state_digest(state), f"the search state after {strategy.unit_name} {unit + 1}")
        if writes:
            with open(log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            checkpointer.save(state)
        echo(summarize(record))
    finished = end == strategy.num_units
    lines = log_path.read_text().splitlines() if writes and log_path.exists() else []
    final_record = world.broadcast(json.loads(lines[-1]) if lines else {})
    return SearchOutcome(finished, end, strategy.architecture() if finished else None, final_record)


def summarize(record: dict) -> str:
    """One log line: the scalar fields of a record."""
    parts = []
    for key, value in record.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key}={value}")
    return " ".join(parts)

