"""The whole job in one call (`dfnas-run`): teacher -> synthetic set -> search -> distilled winner -> report.

Each stage writes its own folder under the output directory and is resumed from what is on disk:
a finished stage is read back, an interrupted one continues from its checkpoint, so rerunning the
same command after a kill (or after a finished run) redoes nothing.

    OUT/data/     dfnas-synth's dataset (shards, manifest, summary.json, preview.png, heat map)
    OUT/search/   dfnas-search's run (architecture.json, log, plots)
    OUT/train/    dfnas-train's run of the winner, distilled from the teacher on OUT/data
    OUT/report.md what happened, the numbers that say whether it worked, links to the figures
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dfnas.config import apply, check, option
from dfnas.device import DEVICE_HELP
from dfnas.evaluate.config import TrainConfig
from dfnas.evaluate.retrain import Progress as TrainProgress
from dfnas.evaluate.run import CHECKPOINT_NAME as TRAIN_CHECKPOINT
from dfnas.evaluate.run import RESULT_NAME as TRAIN_RESULT
from dfnas.evaluate.run import train_architecture
from dfnas.files import atomic_write_bytes, atomic_write_json, exclusive_directory
from dfnas.nas.arch import Architecture
from dfnas.nas.search_run import PRESETS, RunOptions, search, strategy_config
from dfnas.nas.strategies import STRATEGIES
from dfnas.synth.config import SynthConfig
from dfnas.synth.run import synthesize_dataset

STAGE_TABLES = ("synth", "search", "train")  # TOML tables with per-stage settings
GOOD_FRACTION = 0.95  # of the teacher's real accuracy: the data-free result matches the teacher
USABLE_FRACTION = 0.8


@dataclass(frozen=True)
class PipelineConfig:
    """The few settings most runs change; every other one is in the stage tables of --config."""

    teacher: str = option("default", "teacher spec: 'default' (the bundled digit teacher) or 'pkg.module:factory'")
    weights: str | None = option(None, "weights file for the teacher")
    strategy: str = option("spos", "search strategy", choices=tuple(STRATEGIES))
    preset: str = option("tiny", "search preset: tiny (minutes on a CPU) or reference (published sizes)",
                         choices=PRESETS)
    num_images: int = option(2048, "synthetic images to make (the dfnas-synth default)", min=2, max=10**8)
    iterations: int = option(200, "synthesis optimizer steps per batch and round", min=1, max=10**7)
    # 1500, not dfnas-train's 600: distillation from synthetic data keeps gaining (docs/results.md, "dfnas-run")
    train_steps: int = option(1500, "optimizer steps of the winner's distillation", min=1, max=10**8)
    seed: int = option(0, "random seed of every stage", min=0, max=2**31 - 1)
    device: str = option("auto", DEVICE_HELP)


@dataclass(frozen=True)
class StageSettings:
    """The resolved settings of the three stages (what `PipelineConfig` + the tables give)."""

    synth: SynthConfig
    search: Any
    search_options: RunOptions
    train: TrainConfig


def stage_settings(config: PipelineConfig, tables: dict, out: Path) -> StageSettings:
    """Each stage's config: its defaults, then `config`'s values, then its table from the file."""
    unknown = sorted(set(tables) - set(STAGE_TABLES))
    if unknown:
        raise ValueError(f"config file: unknown table(s) {', '.join(unknown)}; expected {', '.join(STAGE_TABLES)}")
    synth = apply(SynthConfig(), {"teacher": config.teacher, "weights": config.weights, "seed": config.seed,
                                  "num_images": config.num_images, "iterations": config.iterations,
                                  "device": config.device}, "dfnas-run")
    synth = apply(synth, tables.get("synth", {}), "config file [synth]")
    search_table = dict(tables.get("search", {}))
    run_keys = {f.name for f in dataclasses.fields(RunOptions)}
    options = apply(RunOptions(preset=config.preset, device=config.device),
                    {k: search_table.pop(k) for k in list(search_table) if k in run_keys}, "config file [search]")
    search_config = apply(strategy_config(config.strategy, options.preset), {"seed": config.seed}, "dfnas-run")
    search_config = apply(search_config, search_table, "config file [search]")
    train = apply(TrainConfig(), {"data": str(out / "data"), "teacher": config.teacher, "weights": config.weights,
                                  "steps": config.train_steps, "seed": config.seed, "device": config.device},
                  "dfnas-run")
    train = apply(train, tables.get("train", {}), "config file [train]")
    for stage_config in (synth, search_config, options, train):
        check(stage_config)
    return StageSettings(synth, search_config, options, train)


@dataclass(frozen=True)
class PipelineResult:
    report: Path
    verdict: str
    summary: dict


@dataclass(frozen=True)
class Reporting:
    """How stages report progress: the synthesis and training progress hooks of their commands."""

    synth_progress: Callable | None = None  # as `synthesize_dataset(progress=...)`
    train_progress: TrainProgress = dataclasses.field(default_factory=TrainProgress)
    search_bars: bool = False
    echo: Callable[[str], None] = print


def run_pipeline(config: PipelineConfig, out: str | Path, tables: dict | None = None,
                 reporting: Reporting | None = None) -> PipelineResult:
    """Run or continue every stage into `out`; write report.md and summary.json."""
    out = Path(out)
    reporting = reporting or Reporting()
    settings = stage_settings(config, tables or {}, out)
    started = time.perf_counter()
    with exclusive_directory(out):
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        data_summary = _synthesize(settings.synth, out / "data", reporting)
        seconds["synth"] = time.perf_counter() - clock
        clock = time.perf_counter()
        arch, search_record, search_warnings = _search(config.strategy, settings, out / "data", out / "search", reporting)
        seconds["search"] = time.perf_counter() - clock
        clock = time.perf_counter()
        train_result = _train(settings.train, out / "search" / "architecture.json", out / "train", reporting)
        seconds["train"] = time.perf_counter() - clock
        summary = {"config": dataclasses.asdict(config), "seconds": {**seconds, "total": time.perf_counter() - started},
                   "data": data_summary, "search": {"strategy": config.strategy, "final_record": search_record, "warnings": search_warnings,
                                                    "architecture": arch.to_dict()},
                   "student": train_result}
        verdict = verdict_of(train_result)
        summary["verdict"] = verdict
        atomic_write_json(out / "summary.json", json.loads(json.dumps(summary, default=str)))
        atomic_write_bytes(out / "report.md", render_report(summary, out).encode())
    return PipelineResult(out / "report.md", verdict, summary)


def _synthesize(config: SynthConfig, out: Path, reporting: Reporting) -> dict:
    echo = reporting.echo
    finished = (out / "manifest.json").exists() and json.loads((out / "manifest.json").read_text()).get("complete")
    echo("[1/3] synthetic data: " + (f"checking {out}" if finished else
                                      f"{config.num_images} images from teacher {config.teacher!r} -> {out}"))
    # Always through the writer: it refuses a dataset made with other settings and resumes a partial one.
    synthesize_dataset(config, out, resume=True, progress=None if finished else reporting.synth_progress)
    return json.loads((out / "summary.json").read_text())


def _search(strategy: str, settings: StageSettings, data: Path, out: Path,
            reporting: Reporting) -> tuple[Architecture, dict, list[str]]:
    echo = reporting.echo
    arch_path = out / "architecture.json"
    if arch_path.exists():
        echo(f"[2/3] search: reusing {arch_path}")
        lines = (out / "log.jsonl").read_text().splitlines() if (out / "log.jsonl").exists() else []
        return Architecture.load(arch_path), (json.loads(lines[-1]) if lines else {}), []
    resume = (out / "checkpoint.pt").exists()
    echo(f"[2/3] search: {strategy} ({settings.search_options.preset} preset) on {data} -> {out}"
         + (" (resuming)" if resume else ""))
    result = search(strategy, settings.search, str(data), out, settings.search_options, resume=resume,
                    progress_bar=reporting.search_bars, echo=echo)
    for warning in result.warnings:
        echo(f"warning: {warning}")
    return result.architecture, result.final_record, result.warnings


def _train(config: TrainConfig, arch_path: Path, out: Path, reporting: Reporting) -> dict:
    echo = reporting.echo
    if (out / TRAIN_RESULT).exists():
        echo(f"[3/3] distillation: reusing {out / TRAIN_RESULT}")
        return json.loads((out / TRAIN_RESULT).read_text())
    resume = (out / TRAIN_CHECKPOINT).exists()
    echo(f"[3/3] distillation of the winner on the synthetic data -> {out}" + (" (resuming)" if resume else ""))
    outcome = train_architecture(arch_path, config, out, resume=resume, progress=reporting.train_progress,
                                 echo=echo)
    return outcome.result


def verdict_of(student: dict) -> str:
    """One sentence: did data-free search + distillation give a model as good as the teacher?"""
    fraction = student.get("fraction_of_teacher")
    if fraction is None:
        return (f"no real test split for this teacher: the student agrees with the teacher on "
                f"{student['synthetic_val_agreement']:.1%} of held-out synthetic images")
    accuracy, teacher = student["test_accuracy"], student["teacher_accuracy"]
    numbers = f"the student reaches {accuracy:.1%} on real held-out data, {fraction:.0%} of the teacher's {teacher:.1%}"
    if fraction >= GOOD_FRACTION:
        return f"worked: {numbers}"
    if fraction >= USABLE_FRACTION:
        return f"partly worked: {numbers} (below {GOOD_FRACTION:.0%}: more synthesis iterations or images help)"
    return f"did not work well: {numbers}; the synthetic data teaches too little (raise --iterations / --num-images)"


def _front_lines(search: Path) -> list[str]:
    """NAT's Pareto front, one line; nothing for strategies that give one architecture."""
    members = sorted((search / "front").glob("*.json"))
    if not members:
        return []
    sizes = [json.loads(p.read_text())["derived"] for p in members]
    listed = ", ".join(f"`{p.name}` {d['flops'] / 1e6:.3g} MMACs / {d['params'] / 1e3:.1f}k" for p, d in zip(members, sizes))
    return [f"- Pareto front: {len(members)} architectures in `search/front/` ({listed}); any of them can be "
            f"distilled as `train/` was: `dfnas-train search/front/NAME.json --data data --teacher ...`."]


def render_report(summary: dict, out: Path) -> str:
    """report.md: the verdict, then one section per stage with its numbers and figures."""
    data, student, searched = summary["data"], summary["student"], summary["search"]
    derived = searched["architecture"]["derived"]
    weak = {k: v for k, v in data.get("class_agreement", {}).items() if v < 0.9}
    seconds = summary["seconds"]
    figures = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    record = {k: v for k, v in searched["final_record"].items() if isinstance(v, (int, float, str))}
    lines = [
        "# dfnas-run report", "",
        f"**Verdict:** {summary['verdict']}.", "",
        f"Total {seconds['total']:.0f} s (synthesis {seconds['synth']:.0f} s, search {seconds['search']:.0f} s, "
        f"distillation {seconds['train']:.0f} s; a stage reused from disk takes seconds).", "",
        "## Synthetic data (`data/`)", "",
        f"- {data['num_images']} images; the teacher assigns {data['agreement_with_targets']:.1%} of them to their "
        f"target class, mean confidence {data['mean_teacher_confidence']:.3f}.",
        "- Classes below 90% agreement: " + (", ".join(f"{k} ({v:.0%})" for k, v in weak.items()) or "none") + ".",
        "", "## Search (`search/`)", "",
        f"- Strategy {searched['strategy']}; winner: {derived['flops'] / 1e6:.3g} MMACs, "
        f"{derived['params'] / 1e3:.1f}k parameters (`search/architecture.json`).",
        *_front_lines(out / "search"),
        "- Warnings: " + ("; ".join(searched.get("warnings", [])) or "none") + ".",
        "- Last log record: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in record.items()) + ".",
        "", "## The winner, distilled from the teacher on the synthetic data (`train/`)", "",
    ]
    if student.get("test_accuracy") is not None:
        lines.append(f"- Real held-out accuracy {student['test_accuracy']:.1%}; the teacher's "
                     f"{student['teacher_accuracy']:.1%}.")
    if student.get("synthetic_val_agreement") is not None:
        lines.append(f"- Agreement with the teacher on held-out synthetic images {student['synthetic_val_agreement']:.1%}.")
    exports = ", ".join(f"{name}: {'ok' if e.get('ok') else 'not written'}" for name, e in student.get("export", {}).items())
    lines += [f"- Exported models: {exports or 'none'} (`train/`).", "", "## Figures", ""]
    lines += [f"- `{figure}`" for figure in figures]
    return "\n".join(lines) + "\n"
