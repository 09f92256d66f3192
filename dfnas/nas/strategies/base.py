"""What a search strategy is, the settings all of them share, and the loop that runs one.

A strategy works in *units* (an epoch of supernet training, a generation of evolution) and is
checkpointed after each: `run_search` saves `strategy.state_dict()` plus the global RNG atomically,
then appends the unit's record to `log.jsonl`. `--resume` loads the checkpoint and continues from
the next unit, so a killed run ends with the same architecture as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from dfnas.nas.arch import Architecture
from dfnas.nas.search_data import SearchData
from dfnas.nas.spaces.darts import DartsConfig
from dfnas.nas.spaces.proxyless import ProxylessConfig
from dfnas.nas.spaces.spos import SposConfig
from dfnas.nas.train import Checkpointer, LossConfig, rng_state, set_rng_state

SPACE_PRESETS = ("tiny", "reference")


@dataclass
class SearchConfig:
    """Settings shared by every strategy (each strategy's config extends this)."""

    seed: int = 2
    space_preset: str = "tiny"
    epochs: int = 50
    batch_size: int = 64
    temperature: float = 3.0
    t2_factor: bool = True
    hard_weight: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float = 5.0  # 0 = off
    steps_per_epoch: int = 0  # 0 = every batch of the split; more caps an epoch (tiny presets)

    def loss(self) -> LossConfig:
        return LossConfig(self.temperature, self.t2_factor, self.hard_weight, self.label_smoothing)

    def check(self) -> None:
        if self.space_preset not in SPACE_PRESETS:
            raise ValueError(f"space_preset must be one of {SPACE_PRESETS}, got {self.space_preset!r}")
        if self.steps_per_epoch < 0:
            raise ValueError(f"steps_per_epoch must be >= 0, got {self.steps_per_epoch}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def epoch_steps(self, batches: int) -> int:
        """Steps of one epoch over `batches` full batches (capped by `steps_per_epoch`)."""
        return min(batches, self.steps_per_epoch) if self.steps_per_epoch else batches


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


def run_search(strategy: Strategy, out_dir: Path, run_config: dict, resume: bool = False,
               stop_after: int | None = None, progress_bar: bool = True,
               echo: Callable[[str], None] = print) -> SearchOutcome:
    """Run (or continue) `strategy`, checkpointing after each unit.

    `run_config` is everything that determines the result; a checkpoint made under a different
    one is refused. `stop_after` n stops once n units are done in total (as if killed there).
    """
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(out_dir / "checkpoint.pt")
    log_path = out_dir / "log.jsonl"
    start = 0
    if resume:
        state = checkpointer.load()
        changed = differences(state["run_config"], run_config)
        if changed:
            raise ValueError(f"{checkpointer.path} was made with different settings ({', '.join(changed)}); "
                             f"resume with the original ones or use another --out")
        strategy.load_state_dict(state["strategy"])
        set_rng_state(state["rng"])
        start = int(state["next_unit"])
        # The log is written before each checkpoint: drop records of a unit that was not saved.
        lines = log_path.read_text().splitlines(keepends=True) if log_path.exists() else []
        log_path.write_text("".join(lines[:start]))
        echo(f"resuming {strategy.name} at {strategy.unit_name} {start + 1} of {strategy.num_units}")
    elif checkpointer.exists():
        raise ValueError(f"{out_dir} already holds a search checkpoint; pass --resume or choose another --out")
    else:
        log_path.unlink(missing_ok=True)
    end = strategy.num_units if stop_after is None else min(strategy.num_units, stop_after)
    for unit in range(start, end):
        with tqdm(total=strategy.unit_steps(unit), disable=not progress_bar, leave=False,
                  desc=f"{strategy.name} {strategy.unit_name} {unit + 1}/{strategy.num_units}") as bar:
            record = strategy.run_unit(unit, bar.update)
        record = {strategy.unit_name: unit + 1, **record}
        with open(log_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        checkpointer.save({"next_unit": unit + 1, "run_config": run_config,
                           "strategy": strategy.state_dict(), "rng": rng_state()})
        echo(summarize(record))
    finished = end == strategy.num_units
    return SearchOutcome(finished, end, strategy.architecture() if finished else None)


def differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two nested dicts."""
    changed = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def summarize(record: dict) -> str:
    """One log line: the scalar fields of a record."""
    parts = []
    for key, value in record.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key}={value}")
    return " ".join(parts)

