"""From a config to a finished dataset directory: teacher, Synthesizer, writer, report.

This is the library behind `dfnas-synth`; it works the same in one process or under torchrun.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from dfnas.data.writer import DatasetWriter
from dfnas.device import resolve_device
from dfnas.files import exclusive_directory
from dfnas.nas.tuning import select_threads
from dfnas.synth.config import SynthConfig
from dfnas.distributed import World, close_world, init_world
from dfnas.synth.engine import Progress, Synthesizer
from dfnas.synth.report import write_report

@dataclass(frozen=True)
class RunResult:
    out: Path
    config: SynthConfig  # resolved
    shards_written: list[int]  # by this process
    seconds: float
    summary: dict | None  # rank 0 only


def load_configured_teacher(config: SynthConfig):
    from dfnas.teachers import load_teacher

    return load_teacher(config.teacher, config.weights)


def synthesize_dataset(
    config: SynthConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    teacher=None,
    progress: Callable[[World, int], Callable[[Progress], None] | None] | None = None,
) -> RunResult:
    """Synthesize `config.num_images` images into `out`; returns after the manifest is complete.

    `progress(world, total_iterations)` may return a per-iteration callback for this rank.
    """
    start = time.perf_counter()
    config.validate()
    world = init_world(resolve_device(config.device).type)
    try:
        teacher = teacher if teacher is not None else load_configured_teacher(config)
        synthesizer = Synthesizer(teacher, config, world.local_rank)
        synthesizer.check_teacher_input()  # before anything is written
        choose_threads(synthesizer, teacher)
        if not world.is_main:  # rank 0 holds the directory for the whole job
            return _synthesize(synthesizer, teacher, out, resume, progress, world, start)
        with exclusive_directory(out):
            return _synthesize(synthesizer, teacher, out, resume, progress, world, start)
    finally:
        close_world(world)


def choose_threads(synthesizer: Synthesizer, teacher) -> None:
    """Set torch's CPU threads: the configured number, or with 'auto' torch's default unless one
    thread runs a batch of the teacher's forward + backward (the synthesis step's cost) at least
    1.1x faster. OpenMP workers spin-waiting for busy cores made a default run 28 min instead of
    ~1 min on a loaded 2-core machine. The thread count is not part of the dataset's settings, so
    a resumed run may use another."""
    config, precision = synthesizer.config, synthesizer.precision
    if precision.device.type != "cpu":
        return
    if config.threads != "auto":
        torch.set_num_threads(int(config.threads))
        return
    images = torch.randn(config.batch_size, synthesizer.canvas_shape[0], config.crop, config.crop, requires_grad=True)
    threads, _ = select_threads(teacher.model, lambda model, x: model(x), images, precision)
    torch.set_num_threads(threads)


def _synthesize(synthesizer: Synthesizer, teacher, out, resume: bool, progress, world: World,
                start: float) -> RunResult:
    cfg = synthesizer.config
    header = {
        "num_images": cfg.num_images,
        "canvas": list(synthesizer.canvas_shape),
        "crop": [cfg.crop, cfg.crop],
        "config": cfg.to_dict(),
        "teacher": teacher.info.to_manifest(),
    }
    # Rank 0 adopts/creates the manifest first, so every rank then sees the same verified set.
    if world.is_main:
        writer = DatasetWriter(out, header, cfg.shard_counts(), resume=resume)
    world.barrier()
    if not world.is_main:
        writer = DatasetWriter(out, header, cfg.shard_counts(), resume=True, write_manifest=False)
    mine = world.my_share(world.broadcast(writer.pending()))
    report = progress(world, len(mine) * cfg.rounds * cfg.iterations) if progress else None
    records = []
    for index in mine:
        shard = synthesizer.synthesize_shard(index, report)
        record = writer.write_shard(index, shard.images, shard.soft_labels, shard.targets)
        records.append(record)
        writer.add([record])
    synthesizer.close()
    all_records = [record for rank_records in world.gather(records) for record in rank_records]
    summary = None
    if world.is_main:
        writer.add(all_records)
        writer.finish()
        summary = write_report(Path(out))
    world.barrier()
    return RunResult(out=Path(out), config=cfg, shards_written=mine, seconds=time.perf_counter() - start,
                     summary=summary)
