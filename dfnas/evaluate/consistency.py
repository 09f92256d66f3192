"""The consistency study (`dfnas-consistency`): does a synthetic training set rank architectures as
the real digits do?

N architectures of a space are drawn at random and spread over its capacity (many are sampled,
sorted by MACs, and N evenly spaced quantiles are kept). Each is trained with the same budget on
each *source* (the real digits, the real digits with another seed, and synthetic sets made by the
`dfnas-synth` library with more or fewer of its ingredients), every trained network is evaluated
on the real held-out digits, and each source's ranking is compared with the ranking of `real`
(Spearman rho, Kendall tau; over all N and over the top half by real accuracy, where a search is
decided; bootstrap intervals over architectures).

    OUT/study.json              what the study is (architecture sample, sources, training settings)
    OUT/archs/<id>.json         the architectures (ids in increasing MACs)
    OUT/data/<source>/          each synthetic source's dataset (dfnas-synth format), resumed
    OUT/runs/<source>/<id>/     one dfnas-train run each (result.json when finished)
    OUT/table.csv, table.json   the raw table: id, MACs, params, accuracy per source
    OUT/agreement.json          rho / tau with intervals per source
    OUT/plots/<source>.png      accuracy on the source vs accuracy on real, per architecture
    OUT/report.md               the table of rank agreement and what it means

Rerunning the same command continues: finished datasets and trainings (result.json present) are
reused, interrupted ones resume from their checkpoints. Under `torchrun` every rank takes every
world-size-th training (and its share of each synthesis); rank 0 waits for the others' results
and writes the report.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from dfnas.config import UsageError, apply, check, option
from dfnas.device import DEVICE_HELP
from dfnas.evaluate.config import TrainConfig
from dfnas.files import atomic_write_bytes, atomic_write_json, exclusive_directory
from dfnas.nas.spaces import SPACE_NAMES
from dfnas.synth.config import SynthConfig, default_canvas

FORMAT = "dfnas-consistency-study"
VERSION = 1
REFERENCE = "real"
CEILING = "real-reseed"
DEFAULT_SOURCES = ("real", "real-reseed", "noise", "reg", "rlc", "full")
SPACE_PRESETS = ("tiny", "reference")
POLL_SECONDS = 5.0

# The built-in sources: kind, training-seed offset, canvas choice, synthesis settings (on top of the
# study's num_images / iterations / seed / teacher), and what each one adds.
BUILTIN_SOURCES: dict[str, dict] = {
    "real": {"kind": "real", "seed_offset": 0,
             "about": "the real digits (mnist 'train', 4,000 images), cross-entropy: the reference ranking"},
    "real-reseed": {"kind": "real", "seed_offset": 1,
                    "about": "the real digits again with another training seed: the ceiling seed noise allows"},
    "noise": {"kind": "synthetic", "regional": False, "synth": {"iterations": 0, "rounds": 1},
              "about": "unoptimized random images labelled by the teacher"},
    "reg": {"kind": "synthetic", "regional": False, "synth": {"rounds": 1},
            "about": "BN-statistics + TV synthesis, one round, canvas = crop"},
    "rlc": {"kind": "synthetic", "regional": False, "synth": {"rounds": 4},
            "about": "reg + recursive label calibration (1 hard-label + 3 calibrated rounds)"},
    "full": {"kind": "synthetic", "regional": True, "synth": {"rounds": 4},
             "about": "rlc + regional update (canvas larger than the crop)"},
}
# Synthesis settings every source shares (set at the top level of the study, not per source).
STUDY_SYNTH_KEYS = ("teacher", "weights", "device")
# Training settings the study decides (top-level keys / flags, or per source).
STUDY_TRAIN_KEYS = ("data", "teacher", "weights", "seed", "steps", "batch_size", "device")
# Settings that do not change what a run computes: a rerun may differ in them.
NOT_COMPARED = ("device", "threads", "export", "latency_runs", "evaluations", "data")


@dataclass(frozen=True)
class StudyConfig:
    """The study's own settings; `[train]` and `[source.<name>]` tables of --config hold the rest."""

    space: str = option("spos", "search space the architectures are drawn from", choices=SPACE_NAMES)
    preset: str = option("tiny", "size of the space: tiny (minutes per training on a CPU) or reference",
                         choices=SPACE_PRESETS)
    num_archs: int = option(12, "architectures in the study (at least 3 for a rank correlation)", min=1, max=10**5)
    candidates: int = option(2000, "random architectures drawn before the N spread over MACs are picked",
                             min=1, max=10**6)
    sources: str = option(",".join(DEFAULT_SOURCES), "comma-separated sources to train on: built-in "
                          f"({', '.join(BUILTIN_SOURCES)}) or named in [source.<name>] of --config; "
                          "'real' (the reference) is always included")
    seed: int = option(0, "seed of the architecture sample, the syntheses and the trainings", min=0, max=2**31 - 1)
    workers: int = option(1, "trainings run at once in worker processes (1 torch thread each)", min=1, max=1024)
    steps: int = option(400, "optimizer steps of every training (the same budget on every source)", min=1, max=10**8)
    batch_size: int = option(64, "batch size of every training", min=1, max=65536)
    num_images: int = option(1024, "images of each synthetic source (all rounds together)", min=2, max=10**8)
    iterations: int = option(200, "synthesis optimizer steps per batch and round (the noise source uses 0)",
                             min=0, max=10**7)
    teacher: str = option("default", "the teacher of the synthetic sources (it must take the 28x28 digits)")
    weights: str | None = option(None, "weights file of --teacher")
    resamples: int = option(2000, "bootstrap resamples of the architectures for the intervals", min=10, max=10**6)
    confidence: float = option(0.95, "level of the bootstrap intervals", above=0, max=0.999)
    device: str = option("auto", DEVICE_HELP)

    def check(self) -> None:
        if self.num_archs < 3:
            raise UsageError(f"--num-archs must be at least 3 for a rank correlation, got {self.num_archs}")
        if self.candidates < self.num_archs:
            raise UsageError(f"--candidates ({self.candidates}) must be at least --num-archs ({self.num_archs})")
        names = self.source_names()
        if len(set(names)) != len(names):
            raise UsageError(f"--sources lists a source twice: {self.sources!r}")

    def source_names(self) -> list[str]:
        names = [part.strip() for part in self.sources.split(",") if part.strip()]
        if not names:
            raise UsageError("--sources is empty; give e.g. real,noise,reg")
        return names if REFERENCE in names else [REFERENCE, *names]


@dataclass(frozen=True)
class SourceOptions:
    """The keys of a `[source.<name>]` table besides dfnas-synth settings."""

    base: str | None = option(None, "the built-in source a new one starts from", choices=tuple(BUILTIN_SOURCES))
    seed_offset: int = option(0, "added to --seed for this source's trainings (real-reseed: 1)", min=0, max=10**6)
    regional: bool = option(True, "synthetic sources: regional update on a canvas larger than the crop "
                                  "(false: canvas = crop)")
    data: str | None = option(None, "train on this existing synthetic dataset directory instead of synthesizing one")


@dataclass(frozen=True)
class Source:
    """A resolved source: what its trainings learn from."""

    name: str
    base: str
    kind: str  # "real" or "synthetic"
    seed_offset: int
    synth: SynthConfig | None  # what OUT/data/<name> is made with (None: real, or a given dataset)
    dataset: str | None  # a given dataset directory

    def data_spec(self, out: Path) -> str:
        if self.kind == "real":
            return "mnist"
        return self.dataset if self.dataset is not None else str(out / "data" / self.name)

    def to_dict(self) -> dict:
        synth = None if self.synth is None else {k: v for k, v in self.synth.to_dict().items() if k != "device"}
        return {"base": self.base, "kind": self.kind, "seed_offset": self.seed_offset, "dataset": self.dataset,
                "synth": synth}

    def describe(self) -> str:
        if self.kind == "real":
            return BUILTIN_SOURCES[self.base]["about"] + (f" (training seed +{self.seed_offset})" if self.seed_offset else "")
        if self.synth is None:
            return f"the existing synthetic dataset {self.dataset}"
        s = self.synth
        what = ("unoptimized noise labelled by the teacher" if s.iterations == 0 else
                f"{s.iterations} iterations, K = {s.rounds} round(s), calibration T = {s.calibration_temperature:g}, "
                f"BN weight r_feature {s.r_feature:g}")
        return f"{s.num_images} images, {what}, canvas {s.canvas} / crop {s.crop}"


@dataclass(frozen=True)
class ArchEntry:
    id: str
    path: Path
    macs: int
    params: int
    choices: Any  # JSON form


@dataclass(frozen=True)
class TrainJob:
    source: str
    arch_id: str
    arch_path: str
    config: TrainConfig
    out: str


@dataclass(frozen=True)
class StudyPlan:
    config: StudyConfig
    out: Path
    sources: list[Source]
    train: TrainConfig  # the shared settings (data and seed are set per source)
    archs: list[ArchEntry]
    arch_dicts: dict[str, dict]  # id -> architecture JSON
    jobs: list[TrainJob]
    record: dict  # study.json

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)


@dataclass(frozen=True)
class StudyResult:
    report: Path
    agreement: dict
    seconds: float


@dataclass(frozen=True)
class Reporting:
    synth_progress: Callable | None = None  # as `synthesize_dataset(progress=...)`
    echo: Callable[[str], None] = print


# ----------------------------------------------------------------------------- planning (no writes)


def plan_study(config: StudyConfig, tables: dict | None, out: str | Path) -> StudyPlan:
    """Resolve and check everything the study needs; nothing is written. Bad input: UsageError."""
    out = Path(out)
    tables = dict(tables or {})
    if "sources" in tables:  # `sources` is the list of sources to run; a table of that name cannot coexist in TOML
        raise UsageError("config file: name source tables [source.<name>] (singular), e.g. [source.rlc-T2]")
    unknown = sorted(set(tables) - {"train", "source"})
    if unknown:
        raise UsageError(f"config file: unknown table(s) {', '.join(unknown)}; expected [train] and [source.<name>]")
    check(config)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    source_tables = tables.get("source", {})
    if not isinstance(source_tables, dict) or not all(isinstance(v, dict) for v in source_tables.values()):
        raise UsageError("config file: [source] must hold one table per source, e.g. [source.rlc-T2]")
    teacher_input = _teacher_input(config)
    sources = [resolve_source(name, source_tables.get(name), config, teacher_input)
               for name in config.source_names()]
    train = shared_train_config(config, tables.get("train", {}))
    archs, arch_dicts = sample_architectures(config, out)
    record = {"format": FORMAT, "version": VERSION,
              "architectures": {k: getattr(config, k) for k in ("space", "preset", "seed", "num_archs", "candidates")},
              "train": _compared(train.to_dict()),
              "sources": {s.name: s.to_dict() for s in sources}}
    _check_existing(out, record, arch_dicts)
    for source in sources:
        if source.synth is not None:
            _check_val_split(source, train.val_fraction)
    jobs = []
    for source in sources:
        job_config = dataclasses.replace(train, data=source.data_spec(out), seed=config.seed + source.seed_offset)
        check(job_config)
        jobs += [TrainJob(source.name, arch.id, str(arch.path), job_config, str(out / "runs" / source.name / arch.id))
                 for arch in archs]
    return StudyPlan(config, out, sources, train, archs, arch_dicts, jobs, record)


def _teacher_input(config: StudyConfig) -> int:
    """The teacher's input side; it must be a digit classifier (the study evaluates on real digits)."""
    from dfnas.data import mnist
    from dfnas.teachers import load_teacher

    try:
        info = load_teacher(config.teacher, config.weights).info
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"--teacher {config.teacher!r}: {error}") from None
    shape = (info.in_channels, *info.input_size)
    if tuple(info.class_names) != mnist.CLASS_NAMES or shape != (mnist.IN_CHANNELS, *mnist.IMAGE_SIZE):
        raise UsageError(f"--teacher {config.teacher!r} classifies {info.num_classes} classes of "
                         f"{'x'.join(map(str, shape))} images; the study evaluates on the real 1x28x28 digits 0-9")
    return int(info.input_size[0])


def resolve_source(name: str, table: dict | None, config: StudyConfig, crop_default: int) -> Source:
    """A source from its name (built-in, or defined by `[source.<name>]` with `base = ...`) and table."""
    where = f"config file [source.{name}]"
    table = {str(k).replace("-", "_"): v for k, v in (table or {}).items()}
    own = {f.name for f in dataclasses.fields(SourceOptions)}
    synth_fields = [f.name for f in dataclasses.fields(SynthConfig) if f.name not in STUDY_SYNTH_KEYS]
    for key in table:
        if key not in own and key not in synth_fields:
            shared = " (set it at the top level, for every source)" if key in STUDY_SYNTH_KEYS else ""
            raise UsageError(f"{where}: unknown setting {key!r}{shared}; expected one of {', '.join(sorted(own))} "
                             f"or a dfnas-synth setting ({', '.join(synth_fields)})")
    if name in BUILTIN_SOURCES:
        if table.get("base", name) != name:
            raise UsageError(f"{where}: the built-in source {name!r} cannot change its base; give the variant "
                             f"another name, e.g. [source.{name}-2]")
        base = name
    elif "base" in table:
        base = table["base"]
        if base not in BUILTIN_SOURCES:
            raise UsageError(f"{where}: base must be one of {', '.join(BUILTIN_SOURCES)}, got {base!r}")
    else:
        raise UsageError(f"unknown source {name!r}; expected one of {', '.join(BUILTIN_SOURCES)}, or define "
                         f"[source.{name}] with base = one of them in --config")
    builtin = BUILTIN_SOURCES[base]
    options = SourceOptions(base=base, seed_offset=builtin.get("seed_offset", 0),
                            regional=builtin.get("regional", True))
    options = apply(options, {k: v for k, v in table.items() if k in own and k != "base"}, where)
    check(options)
    synth_values = {k: v for k, v in table.items() if k not in own}
    if builtin["kind"] == "real":
        given = sorted(set(synth_values) | ({"data"} if options.data else set()) | ({"regional"} & set(table)))
        if given:
            raise UsageError(f"{where}: {name!r} trains on the real digits; {', '.join(given)} do not apply to it")
        return Source(name, base, "real", options.seed_offset, None, None)
    if options.data is not None:
        if synth_values:
            raise UsageError(f"{where}: data = {options.data!r} is an existing dataset; synthesis settings "
                             f"({', '.join(sorted(synth_values))}) do not apply to it")
        _check_dataset(options.data, where)
        return Source(name, base, "synthetic", options.seed_offset, None, options.data)
    synth = apply(SynthConfig(), {"teacher": config.teacher, "weights": config.weights, "device": config.device,
                                  "num_images": config.num_images, "iterations": config.iterations,
                                  "seed": config.seed}, "dfnas-consistency")
    synth = apply(synth, builtin.get("synth", {}), f"built-in source {base!r}")
    synth = apply(synth, synth_values, where)
    crop = synth.crop if synth.crop is not None else crop_default
    if not options.regional:
        if synth.canvas is not None and synth.canvas != crop:
            raise UsageError(f"{where}: regional = false means canvas = crop ({crop}), but canvas = {synth.canvas}")
        synth = dataclasses.replace(synth, canvas=crop)
    elif synth.canvas is not None and synth.canvas <= crop:
        raise UsageError(f"{where}: a regional update needs a canvas larger than the crop ({crop}); "
                         f"canvas = {synth.canvas} (or set regional = false)")
    synth = dataclasses.replace(synth, crop=crop, canvas=synth.canvas or default_canvas(crop))
    check(synth)
    return Source(name, base, "synthetic", options.seed_offset, synth, None)


def _check_dataset(path: str, where: str) -> None:
    from dfnas.data import mnist
    from dfnas.data.synthetic import read_manifest

    try:
        manifest = read_manifest(path)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"{where}: {error}") from None
    if not manifest.complete:
        raise UsageError(f"{where}: the dataset {path} is not complete (its synthesis did not finish)")
    if tuple(manifest.teacher.class_names) != mnist.CLASS_NAMES or manifest.canvas[0] != mnist.IN_CHANNELS \
            or tuple(manifest.crop) != mnist.IMAGE_SIZE:
        raise UsageError(f"{where}: the dataset {path} does not hold 1x28x28 digits 0-9 (the study evaluates on them)")


def _check_val_split(source: Source, val_fraction: float) -> None:
    """dfnas-train holds out floor(n_c * val_fraction) images of each class c: it needs some."""
    from dfnas.data import mnist

    classes = len(mnist.CLASS_NAMES)
    least = classes * math.ceil(1 / val_fraction - 1e-9)
    if source.synth.num_images < least:
        raise UsageError(f"source {source.name!r}: {source.synth.num_images} images leave no held-out images at "
                         f"val_fraction {val_fraction:g} (dfnas-train needs some); use num_images >= {least}")


def shared_train_config(config: StudyConfig, table: dict) -> TrainConfig:
    """The training settings of every run: TrainConfig's defaults, the study's budget, then [train]."""
    if not isinstance(table, dict):
        raise UsageError("config file: [train] must be a table of dfnas-train settings")
    decided = sorted(k for k in table if str(k).replace("-", "_") in STUDY_TRAIN_KEYS)
    if decided:
        raise UsageError(f"config file [train]: {', '.join(decided)} are decided by the study (top-level keys / "
                         f"flags, or the source), not by [train]")
    train = apply(TrainConfig(), {"data": "mnist", "steps": config.steps, "batch_size": config.batch_size,
                                  "seed": config.seed, "device": config.device, "threads": 1, "export": "none",
                                  "latency_runs": 5}, "dfnas-consistency")
    train = apply(train, table, "config file [train]")
    check(train)
    return train


def _compared(train_dict: dict) -> dict:
    return {k: v for k, v in train_dict.items() if k not in NOT_COMPARED and k != "seed"}


# ----------------------------------------------------------------------------- architectures


def random_choices(space: str, space_config: Any, rng: random.Random) -> Any:
    """Uniformly random valid choices of `space` (every decision drawn independently)."""
    if space == "spos":
        return tuple(rng.randrange(space_config.num_choices) for _ in range(space_config.num_layers))
    if space == "proxyless":
        return [rng.choice(options) for options in space_config.block_candidates()]
    if space == "darts":
        from dfnas.nas.spaces.darts import CONCAT, NUM_NODES, Genotype
        from dfnas.nas.spaces.darts_ops import PRIMITIVES

        ops = [p for p in PRIMITIVES if p != "none"]

        def cell() -> list[tuple[str, int]]:
            gene = []
            for node in range(NUM_NODES):
                gene += [(rng.choice(ops), j) for j in sorted(rng.sample(range(node + 2), 2))]
            return gene

        return Genotype(cell(), list(CONCAT), cell(), list(CONCAT))
    raise UsageError(f"unknown space {space!r}; expected one of {', '.join(SPACE_NAMES)}")


def sample_architectures(config: StudyConfig, out: Path) -> tuple[list[ArchEntry], dict[str, dict]]:
    """`candidates` random architectures, deduplicated, sorted by MACs; N evenly spaced ones kept.

    Ids a00, a01, ... follow increasing MACs. Deterministic in (space, preset, seed, N, candidates)."""
    from dfnas.data import mnist
    from dfnas.nas.arch import make_architecture
    from dfnas.nas.profile import cost_table
    from dfnas.nas.spaces import get_space
    from dfnas.nas.strategies.base import space_config

    shape = _DigitShape(mnist.IN_CHANNELS, mnist.IMAGE_SIZE[0], len(mnist.CLASS_NAMES))
    space_cfg = space_config(config.space, config.preset, shape)
    entry = get_space(config.space)
    macs_table = cost_table(config.space, space_cfg, "macs")  # one layout: cheap MACs of every draw
    rng = random.Random(f"dfnas-consistency:{config.space}:{config.preset}:{config.seed}")
    pool: dict[str, tuple[float, Any]] = {}
    for _ in range(config.candidates):
        choices = random_choices(config.space, space_cfg, rng)
        key = json.dumps(entry.choices_to_json(choices))
        if key not in pool:
            pool[key] = (macs_table.cost(entry.selection(space_cfg, choices)), choices)
    if len(pool) < config.num_archs:
        raise UsageError(f"only {len(pool)} distinct {config.space} architectures among {config.candidates} draws; "
                         f"lower --num-archs or raise --candidates")
    ordered = sorted(pool.items(), key=lambda item: (item[1][0], item[0]))
    last, count = len(ordered) - 1, config.num_archs
    picked = [make_architecture(config.space, space_cfg, ordered[round(i * last / (count - 1))][1][1])
              for i in range(count)]
    width = max(2, len(str(count - 1)))
    archs, dicts = [], {}
    for i, arch in enumerate(picked):
        arch_id = f"a{i:0{width}d}"
        data = arch.to_dict()
        dicts[arch_id] = data
        archs.append(ArchEntry(arch_id, out / "archs" / f"{arch_id}.json", int(arch.derived["flops"]),
                               int(arch.derived["params"]), data["choices"]))
    return archs, dicts


@dataclass(frozen=True)
class _DigitShape:
    """What `space_config` reads of the data: channels, input side, classes."""

    in_channels: int
    input_size: int
    num_classes: int


# ----------------------------------------------------------------------------- an existing study


def _check_existing(out: Path, record: dict, arch_dicts: dict[str, dict]) -> None:
    """A rerun must be the same study (sources may be added): else a UsageError naming what differs."""
    path = out / "study.json"
    if not path.exists():
        if out.is_dir() and any(p.name != ".lock" for p in out.iterdir()):
            raise UsageError(f"--out {out} is not empty and holds no consistency study (no study.json)")
        return
    try:
        existing = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"{path} is not readable: {error}") from None
    if not isinstance(existing, dict) or existing.get("format") != FORMAT:
        raise UsageError(f"{path} is not a dfnas-consistency study")
    hint = "; use another --out (or remove the differing runs)"
    differ = _differences(existing.get("architectures", {}), record["architectures"])
    if differ:
        raise UsageError(f"{out} holds a study of other architectures ({differ}){hint}")
    differ = _differences(existing.get("train", {}), record["train"])
    if differ:
        raise UsageError(f"{out} was trained with other settings ({differ}){hint}")
    for name, source in record["sources"].items():
        before = existing.get("sources", {}).get(name)
        if before is not None:
            differ = _differences(_flat(before), _flat(source))
            if differ:
                raise UsageError(f"{out}: source {name!r} was made with other settings ({differ}); give the new "
                                 f"definition another name (e.g. [source.{name}-2] base = '{source['base']}') or "
                                 f"use another --out")
    for arch_id, data in arch_dicts.items():
        arch_path = out / "archs" / f"{arch_id}.json"
        if arch_path.exists() and json.loads(arch_path.read_text()) != json.loads(json.dumps(data)):
            raise UsageError(f"{arch_path} differs from the architecture this study draws{hint}")


def _flat(source: dict) -> dict:
    flat = {k: v for k, v in source.items() if k != "synth"}
    flat.update({f"synth.{k}": v for k, v in (source.get("synth") or {}).items()})
    return flat


def _differences(existing: dict, requested: dict) -> str:
    keys = sorted(set(existing) | set(requested))
    return ", ".join(f"{k}: {existing.get(k)!r} on disk vs {requested.get(k)!r} requested"
                     for k in keys if existing.get(k) != requested.get(k))


# ----------------------------------------------------------------------------- running


def world_from_env() -> tuple[int, int]:
    """(rank, world size) of a torchrun job; (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def run_study(config: StudyConfig, out: str | Path, tables: dict | None = None,
              reporting: Reporting | None = None) -> StudyResult | None:
    """Run or continue the study in `out`; rank 0 (or the single process) returns the result."""
    started = time.perf_counter()
    reporting = reporting or Reporting()
    rank, world = world_from_env()
    if world > 1:
        _pin_local_gpu(config.device)
    if rank != 0:  # rank 0 holds the directory; the others take their share of the work in it
        _wait_for([Path(out) / "study.json"], "rank 0 to write the study", reporting.echo)
        plan = plan_study(config, tables, out)  # checked against rank 0's study.json
        _wait_for([a.path for a in plan.archs], "rank 0 to write the architectures", reporting.echo)
        _synthesize(plan, reporting, rank, world)
        _train_share(plan, plan.jobs[rank::world], reporting.echo, prefix=f"rank {rank}: ")
        return None
    plan = plan_study(config, tables, out)
    with exclusive_directory(plan.out):
        _write_study(plan)
        synth_seconds = _synthesize(plan, reporting, rank, world)
        train_seconds = _train_share(plan, plan.jobs[0::world], reporting.echo,
                                     prefix="rank 0: " if world > 1 else "")
        _wait_for([Path(job.out) / "result.json" for job in plan.jobs], "the other ranks' trainings", reporting.echo)
        return write_report(plan, seconds=time.perf_counter() - started, synth_seconds=synth_seconds,
                            train_seconds=train_seconds)


def _pin_local_gpu(device: str) -> None:
    """Under torchrun, give each rank its local GPU: `dfnas-train` puts an unnumbered 'cuda' on GPU 0."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and device in ("auto", "cuda") and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = local_rank  # before anything initializes CUDA in this process


def _write_study(plan: StudyPlan) -> None:
    path = plan.out / "study.json"
    record = plan.record
    if path.exists():  # keep sources of earlier runs (this run may add some)
        existing = json.loads(path.read_text())
        record = {**record, "sources": {**existing.get("sources", {}), **record["sources"]}}
    atomic_write_json(path, record)  # first: a directory with anything in it has its study.json
    for arch in plan.archs:
        if not arch.path.exists():
            atomic_write_json(arch.path, plan.arch_dicts[arch.id])


def _wait_for(paths: list[Path], what: str, echo: Callable[[str], None],
              ready: Callable[[Path], bool] = Path.exists) -> None:
    told = False
    while True:
        missing = [p for p in paths if not ready(p)]
        if not missing:
            return
        if not told:
            echo(f"waiting for {what} ({len(missing)} file(s), e.g. {missing[0]})")
            told = True
        time.sleep(POLL_SECONDS)


def _complete(manifest: Path) -> bool:
    try:
        return bool(json.loads(manifest.read_text()).get("complete"))
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _single_process_synthesis(world: int) -> Iterator[None]:
    """`synthesize_dataset` joins the torchrun process group when WORLD_SIZE > 1 and leaves it at the
    end; joining again in the same process hangs at times (measured: 2 of 4 runs of two syntheses in a
    row under `torchrun --nproc-per-node 2`). So under torchrun each rank synthesizes whole sources
    alone, seeing a world of one."""
    if world == 1:
        yield
        return
    saved = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = "1"
    try:
        yield
    finally:
        os.environ["WORLD_SIZE"] = saved


def _synthesize(plan: StudyPlan, reporting: Reporting, rank: int = 0, world: int = 1) -> float:
    """Make or resume the synthetic sources' datasets: all of them in one process; under torchrun,
    rank r makes every world-th one and everyone then waits until all are complete."""
    from dfnas.synth.run import synthesize_dataset

    synthetic = [s for s in plan.sources if s.synth is not None]
    seconds = 0.0
    for source in synthetic[rank::world]:
        root = plan.out / "data" / source.name
        prefix = f"rank {rank}: " if world > 1 else ""
        if _complete(root / "manifest.json") and (root / "summary.json").exists():
            # Made by this study with this definition (study.json says so); dfnas-train verifies
            # every shard's sha256 when it loads the set.
            reporting.echo(f"{prefix}data/{source.name}: reusing the finished dataset")
            continue
        reporting.echo(f"{prefix}data/{source.name}: synthesizing {source.describe()}")
        clock = time.perf_counter()
        with _single_process_synthesis(world):
            synthesize_dataset(source.synth, root, resume=True, progress=reporting.synth_progress if rank == 0 else None)
        seconds += time.perf_counter() - clock
    if world > 1:
        _wait_for([plan.out / "data" / s.name / "manifest.json" for s in synthetic], "the other ranks' datasets",
                  reporting.echo, ready=_complete)
    return seconds


def _train_share(plan: StudyPlan, jobs: list[TrainJob], echo: Callable[[str], None], prefix: str = "") -> float:
    """Run the unfinished jobs among `jobs`, `workers` at a time; returns their training seconds."""
    pending = [job for job in jobs if not (Path(job.out) / "result.json").exists()]
    done = len(jobs) - len(pending)
    if done:
        echo(f"{prefix}{done} of {len(jobs)} trainings already finished")
    if not pending:
        return 0.0
    echo(f"{prefix}training {len(pending)} networks ({plan.config.workers} at a time, "
         f"{plan.train.steps} steps each)")
    seconds = 0.0

    def report(index: int, job: TrainJob, outcome: dict) -> None:
        nonlocal seconds
        seconds += outcome["seconds"]
        resumed = " (resumed)" if outcome["resumed"] else ""
        echo(f"{prefix}[{index}/{len(pending)}] {job.source} {job.arch_id}: real test accuracy "
             f"{outcome['test_accuracy']:.3f} ({outcome['seconds']:.0f} s){resumed}")

    if plan.config.workers == 1:
        for index, job in enumerate(pending, 1):
            report(index, job, run_job(job))
        return seconds
    import multiprocessing

    pool = ProcessPoolExecutor(plan.config.workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
    try:
        futures = {pool.submit(run_job, job): job for job in pending}
        for index, future in enumerate(as_completed(futures), 1):
            report(index, futures[future], future.result())
    finally:
        # On a failure the queued trainings are cancelled; those running finish (and are kept).
        pool.shutdown(wait=True, cancel_futures=True)
    return seconds


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def run_job(job: TrainJob) -> dict:
    """One training (resumed from its checkpoint if one exists); returns its accuracy and seconds."""
    from dfnas.evaluate.retrain import CHECKPOINT_NAME, Progress
    from dfnas.evaluate.run import train_architecture

    out = Path(job.out)
    resume = (out / CHECKPOINT_NAME).exists()
    outcome = train_architecture(job.arch_path, job.config, out, resume=resume, progress=Progress(),
                                 echo=lambda message: None)
    result = outcome.result
    return {"test_accuracy": result["test_accuracy"], "seconds": result["seconds"], "resumed": resume}


# ----------------------------------------------------------------------------- the report


def read_table(plan: StudyPlan) -> list[dict]:
    """One row per architecture: id, MACs, params, choices and the real test accuracy per source."""
    rows = []
    for arch in plan.archs:
        accuracy = {}
        for source in plan.sources:
            result = json.loads((plan.out / "runs" / source.name / arch.id / "result.json").read_text())
            accuracy[source.name] = result["test_accuracy"]
        rows.append({"id": arch.id, "macs": arch.macs, "params": arch.params, "choices": arch.choices,
                     "accuracy": accuracy})
    return rows


def compute_agreement(plan: StudyPlan, rows: list[dict]) -> dict:
    """Per source: rho / tau against `real` over all architectures and over real's top half."""
    import numpy as np

    from dfnas.evaluate.rank_stats import agreement, top_half

    config = plan.config
    real = np.array([row["accuracy"][REFERENCE] for row in rows])
    top = top_half(real)
    result = {"reference": REFERENCE, "ceiling": CEILING if any(s.name == CEILING for s in plan.sources) else None,
              "top_half": [rows[i]["id"] for i in top], "resamples": config.resamples,
              "confidence": config.confidence, "sources": {}}
    for source in plan.sources:
        values = np.array([row["accuracy"][source.name] for row in rows])
        entry = {"mean_accuracy": float(values.mean()), "min_accuracy": float(values.min()),
                 "max_accuracy": float(values.max()), "about": source.describe()}
        if source.name != REFERENCE:
            # The same resampled architectures for every source (seeded by the study seed).
            entry["all"] = agreement(real, values, resamples=config.resamples, confidence=config.confidence,
                                     seed=config.seed).to_dict()
            entry["top_half"] = agreement(real[top], values[top], resamples=config.resamples,
                                          confidence=config.confidence, seed=config.seed + 1).to_dict()
        result["sources"][source.name] = entry
    return result


def write_report(plan: StudyPlan, *, seconds: float = 0.0, synth_seconds: float = 0.0,
                 train_seconds: float = 0.0) -> StudyResult:
    from dfnas.evaluate.consistency_plots import agreement_chart, source_scatter

    out = plan.out
    rows = read_table(plan)
    names = [s.name for s in plan.sources]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["arch_id", "macs", "params", *[f"acc_{name}" for name in names], "choices"])
    for row in rows:
        writer.writerow([row["id"], row["macs"], row["params"], *[f"{row['accuracy'][n]:.4f}" for n in names],
                         json.dumps(row["choices"], separators=(",", ":"))])
    atomic_write_bytes(out / "table.csv", buffer.getvalue().encode())
    atomic_write_json(out / "table.json", {"space": plan.config.space, "preset": plan.config.preset,
                                           "test_set": "dfnas.data.mnist 'test' split: 1,000 real digits",
                                           "sources": names, "archs": rows})
    stats = compute_agreement(plan, rows)
    all_training = sum(json.loads((Path(job.out) / "result.json").read_text())["seconds"] for job in plan.jobs)
    stats["seconds"] = {"this_run": seconds, "synthesis_this_run": synth_seconds,
                        "training_this_run": train_seconds, "training_all_runs": all_training}
    atomic_write_json(out / "agreement.json", stats)
    top = set(stats["top_half"])
    for source in plan.sources:
        if source.name == REFERENCE:
            continue
        source_scatter(out / "plots" / f"{source.name}.png", rows, source.name, [r["id"] in top for r in rows],
                       stats["sources"][source.name], REFERENCE)
    agreement_chart(out / "plots" / "agreement.png", stats, names)
    report = out / "report.md"
    atomic_write_bytes(report, render_report(plan, rows, stats).encode())
    return StudyResult(report, stats, seconds)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _cell(entry: dict, statistic: str) -> str:
    key = "spearman" if statistic == "rho" else "kendall"
    value = entry[f"{key}_rho" if statistic == "rho" else f"{key}_tau"]
    interval = entry[f"{key}_interval"]
    if value is None:
        return "n/a (constant)"
    return f"{_fmt(value)} [{_fmt(interval['low'])}, {_fmt(interval['high'])}]"


def render_report(plan: StudyPlan, rows: list[dict], stats: dict) -> str:
    config, train = plan.config, plan.train
    n, top_n = len(rows), len(stats["top_half"])
    level = f"{config.confidence:.0%}"
    lines = [
        "# Consistency study: do synthetic sources rank architectures as the real digits do?", "",
        f"{n} {config.space} architectures ({config.preset} space; MACs {rows[0]['macs'] / 1e6:.3g}M to "
        f"{rows[-1]['macs'] / 1e6:.3g}M, evenly spaced quantiles of {config.candidates} random draws, seed "
        f"{config.seed}), each trained for {train.steps} steps of batch {train.batch_size} on every source "
        f"and evaluated on the real held-out digits (dfnas.data.mnist 'test', 1,000 images).", "",
        f"Rank agreement with `{REFERENCE}` (Spearman rho, Kendall tau-b; {level} bootstrap intervals over "
        f"{config.resamples} resamples of the architectures). 'top half' = the {top_n} architectures `{REFERENCE}` "
        f"ranks best, where a search is decided.", "",
        "| source | mean acc | acc range | rho (all) | tau (all) | rho (top half) | tau (top half) |",
        "|---|---|---|---|---|---|---|",
    ]
    for source in plan.sources:
        entry = stats["sources"][source.name]
        accuracy = f"{entry['mean_accuracy']:.3f}"
        spread = f"{entry['min_accuracy']:.3f}-{entry['max_accuracy']:.3f}"
        if source.name == REFERENCE:
            lines.append(f"| `{source.name}` (reference) | {accuracy} | {spread} | 1 | 1 | 1 | 1 |")
            continue
        a, t = entry["all"], entry["top_half"]
        lines.append(f"| `{source.name}` | {accuracy} | {spread} | {_cell(a, 'rho')} | {_cell(a, 'tau')} | "
                     f"{_cell(t, 'rho')} | {_cell(t, 'tau')} |")
    lines.append("")
    ceiling = stats["sources"].get(CEILING)
    if ceiling is not None:
        lines.append(f"**Ceiling:** `{CEILING}` is the real digits again with another training seed, so its "
                     f"agreement (rho {_fmt(ceiling['all']['spearman_rho'])}, tau "
                     f"{_fmt(ceiling['all']['kendall_tau'])} over all; rho "
                     f"{_fmt(ceiling['top_half']['spearman_rho'])} in the top half) is what seed noise alone "
                     f"allows at this training budget for a source as noisy as the real digits (a less noisy "
                     f"one can pass it).")
        low = ceiling["all"]["spearman_interval"]["low"]
        if ceiling["all"]["spearman_rho"] is None or low is None or low <= 0:
            lines += ["", "**Warning:** the ceiling's interval reaches 0 or below: the real ranking itself is not "
                          "reproducible across seeds here (the architectures are closer in real accuracy than "
                          "seed noise and the 1,000 test digits resolve), so no row of this table measures rank "
                          "agreement. Spread the architectures further (another space or preset), train longer, "
                          "or use more architectures before reading the synthetic rows."]
    else:
        lines.append(f"No `{CEILING}` source in this study: add it to see how much agreement seed noise alone allows.")
    synthetic = [(name, e) for name, e in stats["sources"].items()
                 if plan.source(name).kind == "synthetic" and e["all"]["spearman_rho"] is not None]
    if synthetic:
        best, entry = max(synthetic, key=lambda item: item[1]["all"]["spearman_rho"])
        lines.append("")
        lines.append(f"Best rank agreement among the synthetic sources (rho over all): `{best}` "
                     f"(rho {_fmt(entry['all']['spearman_rho'])}). Intervals that overlap do not separate sources.")
    lines += ["", "## Sources", ""]
    lines += [f"- `{s.name}`: {s.describe()}" for s in plan.sources]
    seconds = stats["seconds"]
    lines += ["", "## Files", "",
              "- `table.csv`, `table.json`: accuracy of every architecture on every source (with MACs, params, choices)",
              "- `agreement.json`: the statistics above; `plots/<source>.png`: source vs real accuracy; "
              "`plots/agreement.png`: rho per source with intervals",
              "- `runs/<source>/<arch>/result.json`: each training; `data/<source>/`: each synthetic dataset", "",
              f"Wall time of the last invocation {seconds['this_run']:.0f} s (synthesis "
              f"{seconds['synthesis_this_run']:.0f} s); training time of all runs together "
              f"{seconds['training_all_runs']:.0f} s."]
    return "\n".join(lines) + "\n"
