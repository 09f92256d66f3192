"""One search from settings to files: the library behind `dfnas-search` (and `dfnas-run`).

`strategy_config(name, preset)` gives a strategy's settings at a preset ("tiny": minutes on a CPU;
"reference": the published hyperparameters and space sizes); `RunOptions` are the settings of the
run itself (where, on what, how fast), which never change the searched architecture except
through the precision and thread count it picks, both recorded in the checkpoint.
`search(...)` holds the output directory, loads the data, picks the precision, runs or resumes
the strategy and writes architecture.json and the plots.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from dfnas.checkpoint import Checkpointer, rng_state, set_rng_state
from dfnas.config import UsageError, apply, option
from dfnas.device import AMP_CHOICES, DEVICE_HELP, LAYOUT_CHOICES, Precision, resolve_device
from dfnas.distributed import World, close_world, init_world
from dfnas.files import atomic_write_json, exclusive_directory, remove_leftover_temporaries
from dfnas.nas.arch import Architecture
from dfnas.nas.search_data import SearchData, check_data_spec, load_search_data
from dfnas.nas.strategies import STRATEGIES, run_search
from dfnas.nas.strategies.health import search_health
from dfnas.nas.tuning import select_precision, select_threads
from dfnas.nas.tuning_cache import cache_path, load_choice, store_choice, tuning_key

PRESETS = ("tiny", "reference")


def strategy_config(name: str, preset: str = "tiny") -> Any:
    """Strategy `name`'s settings at `preset`: the reference defaults, or those plus its tiny overrides."""
    if name not in STRATEGIES:
        raise UsageError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if preset not in PRESETS:
        raise UsageError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    _, config_type, tiny = STRATEGIES[name]
    overrides = {**tiny, "space_preset": "tiny"} if preset == "tiny" else {"space_preset": "reference"}
    return apply(config_type(), overrides, f"{preset} preset")


@dataclass(frozen=True)
class RunOptions:
    """How a search runs: not part of the searched problem."""

    preset: str = option("tiny", "starting point of the settings: tiny (minutes on a CPU) or reference "
                                 "(the published hyperparameters and space sizes)", choices=PRESETS)
    device: str = option("auto", DEVICE_HELP)
    threads: str = option("auto", "CPU threads for torch: a number, or auto: torch's default or 1, whichever "
                                  "trains faster right now (shared machines)")
    channels_last: str = option("auto", "memory format: auto times both on the supernet and keeps the faster",
                                choices=LAYOUT_CHOICES)
    amp: str = option("auto", "autocast dtype: auto keeps bf16 only where it measures faster; fp16 is CUDA only",
                      choices=AMP_CHOICES)
    val_fraction: float = option(0.1, "fraction of a synthetic dataset held out as the val split", above=0, max=0.9)
    num_classes: int | None = option(None, "fail unless the dataset has this many classes", min=2)
    stop_after: int | None = option(None, "stop after N epochs/generations in total (continue later with --resume)",
                                    min=1)

    def check(self) -> None:
        if self.threads != "auto" and (not self.threads.isdigit() or int(self.threads) < 1):
            raise UsageError(f"threads must be a positive number or auto, got {self.threads!r}")


@dataclass(frozen=True)
class SearchResult:
    finished: bool
    next_unit: int
    num_units: int
    unit_name: str
    architecture: Architecture | None
    final_record: dict
    plots: list[Path]
    seconds: float
    metrics: dict  # the strategy's final_metrics(): the winner's or supernet's score, arch entropy
    warnings: list[str]  # search_health: near chance, architecture weights that never moved
    results: list[Path]  # files beyond architecture.json and the plots (NAT: the front, the archive)
    reports: bool = True  # this process reports the result (under torchrun: rank 0 only)


def search(name: str, config: Any, data_spec: str, out: str | Path, options: RunOptions = RunOptions(),
           resume: bool = False, progress_bar: bool = True, echo: Callable[[str], None] = print) -> SearchResult:
    """Run (or with `resume`, continue) strategy `name` with `config` on `data_spec` into `out`.

    Under torchrun (docs/search.md, "Scale-out") every process calls this: each trains the same
    supernet on its rows of every batch, rank 0 alone holds and writes `out` and echoes.
    """
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    device_type = resolve_device(options.device).type
    if options.threads != "auto":
        torch.set_num_threads(int(options.threads))
    check_data_spec(data_spec)  # inputs before outputs
    world = init_world(device_type)
    device = resolve_device(options.device, world.local_rank)  # under torchrun on CUDA: this rank's GPU
    try:
        if world.distributed:
            check_splittable(config, world)
            if not world.is_main:
                echo, progress_bar = (lambda message: None), False
        # Rank 0 holds the directory; a file or unwritable --out fails here, before the data is loaded.
        with exclusive_directory(out) if world.is_main else contextlib.nullcontext():
            return _search(name, config, data_spec, out, device, options, resume, progress_bar, echo, world,
                           started)
    finally:
        close_world(world)


def check_splittable(config: Any, world: World) -> None:
    """Under torchrun every training batch is split into equal rows per process, and every
    process must search the same problem."""
    if config.batch_size % world.size:
        raise UsageError(f"batch_size {config.batch_size} does not split evenly over {world.size} processes")
    measured_latency = getattr(config, "latency_table", "") is None and (
        getattr(config, "hw_metric", None) == "latency"
        or (hasattr(config, "objective_names") and "latency" in (*config.objective_names(), *config.limits())))
    if measured_latency:  # each process would time its own table, so their searches would differ
        raise UsageError("under torchrun, latency needs --latency-table (measure one with a single process)")


def _search(name: str, config: Any, data_spec: str, out: Path, device: torch.device, options: RunOptions,
            resume: bool, progress_bar: bool, echo: Callable[[str], None], world: World,
            started: float) -> SearchResult:
    strategy_type = STRATEGIES[name][0]
    data = load_search_data(data_spec, device, options.val_fraction, options.num_classes)
    checkpointer = Checkpointer(out / "checkpoint.pt")
    if world.is_main and not resume and checkpointer.exists():
        raise UsageError(f"{out} already holds a search checkpoint; continue it with --resume or choose "
                         f"another --out")
    saved_run_config = None
    if resume:
        saved = world.broadcast(checkpointer.load() if world.is_main else None)
        if "run_config" not in saved or "precision" not in saved["run_config"]:
            raise UsageError(f"{checkpointer.path} is not a dfnas-search checkpoint (no run_config)")
        saved_run_config = saved["run_config"]
        if world.is_main:
            remove_leftover_temporaries(out)
    echo(f"data: {data.source}: {len(data.train)} train / {len(data.val)} val images, {data.num_classes} "
         f"classes, {data.input_size}x{data.input_size}, "
         f"{'teacher soft labels' if data.soft_labels else 'hard labels'}; device {device}")
    if resume:  # the saved choices: another precision or thread count could change the result
        precision = Precision.from_dict(device, saved_run_config["precision"])
        strategy, timings = strategy_type(config, data, precision), {}
        if options.threads == "auto":
            torch.set_num_threads(int(saved_run_config["threads"]))
    else:
        strategy, precision, timings = _agreed_setup(name, config, data, device, options, echo, world)
    for notice in getattr(strategy, "notices", []):
        echo(f"notice: {notice}")
    echo(f"precision: {precision.name}, {torch.get_num_threads()} threads"
         + (f" x {world.size} processes" if world.distributed else "")
         + (f" (measured step seconds: {json.dumps({k: round(v, 4) for k, v in timings.items()})})"
            if timings else ""))
    run_config = {"strategy": name, "config": config.to_dict(), "precision": precision.to_dict(),
                  "threads": torch.get_num_threads(), "data": _data_record(data, options)}
    if world.distributed:  # the float sums run in another order: a different count is another run
        run_config["processes"] = world.size
    if not resume and world.is_main:
        atomic_write_json(out / "config.json", json.loads(json.dumps(
            {**run_config, "preset": options.preset, "measured_step_seconds": timings, "device": str(device)},
            default=str)))
    outcome = run_search(strategy, out, run_config, resume=resume, stop_after=options.stop_after,
                         progress_bar=progress_bar, echo=echo, world=world)
    plots: list[Path] = []
    results: list[Path] = []
    if outcome.finished and world.is_main:
        outcome.architecture.save(out / "architecture.json")
        plots = strategy.plot(out)
        if hasattr(strategy, "write_results"):  # strategies whose answer is more than one architecture
            results = strategy.write_results(out)
    world.barrier()  # every process returns once the outputs are complete
    return SearchResult(outcome.finished, outcome.next_unit, strategy.num_units, strategy.unit_name,
                        outcome.architecture, outcome.final_record, plots, time.perf_counter() - started,
                        strategy.final_metrics(), search_health(strategy) if outcome.finished else [], results,
                        world.is_main)


def _data_record(data: SearchData, options: RunOptions) -> dict:
    return {"source": data.source, "num_classes": data.num_classes, "train": len(data.train),
            "val": len(data.val), "val_fraction": options.val_fraction}


def _agreed_setup(name: str, config: Any, data: SearchData, device: torch.device, options: RunOptions,
                  echo: Callable[[str], None], world: World) -> tuple:
    """`_measured_setup` in one process; under torchrun rank 0 measures the precision and every
    rank builds the strategy under its choice. `threads` auto keeps the thread count torchrun set
    (OMP_NUM_THREADS): one process timing threads while the others wait would misjudge a loaded
    machine. The global RNG follows rank 0's (measuring may draw from it)."""
    if not world.distributed:
        return _measured_setup(name, config, data, device, options, echo)
    if options.threads == "auto":
        options = dataclasses.replace(options, threads=str(torch.get_num_threads()))
    measured = _measured_setup(name, config, data, device, options, echo) if world.is_main else None
    choice = world.broadcast(None if measured is None else (measured[1].to_dict(), measured[2], rng_state()))
    set_rng_state(choice[2])
    if measured is not None:
        return measured
    precision = Precision.from_dict(device, choice[0])
    return STRATEGIES[name][0](config, data, precision), precision, choice[1]


def _measured_setup(name: str, config: Any, data: SearchData, device: torch.device, options: RunOptions,
                    echo: Callable[[str], None]) -> tuple:
    """Build strategy `name` under the precision (and, with threads auto, the CPU thread count)
    that trains its supernet fastest here: measured, or remembered from an earlier measurement of
    the same configuration on this machine (`tuning_cache`). Returns (strategy, precision, seconds)."""
    strategy_type = STRATEGIES[name][0]
    # NAT searches more than one space (other supernets, other timings); the key of every other
    # strategy stays as it was, so their remembered choices stay valid.
    space = {"space": config.space} if hasattr(config, "space") else {}
    key = tuning_key(device, strategy=name, space_preset=config.space_preset, batch_size=config.batch_size,
                     input_size=data.input_size, channels_last=options.channels_last, amp=options.amp,
                     threads=options.threads, **space)
    cached = load_choice(key)
    try:
        precision = Precision.from_dict(device, cached["precision"]) if cached else None
        threads = int(cached["threads"]) if cached else None
    except (KeyError, TypeError, ValueError):  # an entry of another format: measure again
        precision = None
    if precision is not None:
        if options.threads == "auto":
            torch.set_num_threads(threads)
        echo(f"precision and threads as measured before, from {cache_path()} (delete it to measure again)")
        return strategy_type(config, data, precision), precision, dict(cached.get("timings", {}))
    plain = Precision(device)
    strategy = strategy_type(config, data, plain)
    probe_images = data.train.fixed_batches(config.batch_size, 1)[0].images
    precision, timings = select_precision(device, options.channels_last, options.amp, strategy.model,
                                          strategy.probe_forward, probe_images)
    if options.threads == "auto":
        chosen, thread_timings = select_threads(strategy.model, strategy.probe_forward, probe_images, precision)
        torch.set_num_threads(chosen)
        timings.update({f"threads={k}": v for k, v in thread_timings.items()})
    store_choice(key, {"precision": precision.to_dict(), "threads": torch.get_num_threads(), "timings": timings})
    if precision != plain:
        strategy = strategy_type(config, data, precision)
    return strategy, precision, timings
