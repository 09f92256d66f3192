"""`train_architecture`: the whole of `dfnas-train` as a library call.

Order matters for "bad input leaves nothing behind": the architecture, the data, the teachers,
their fit, the output directory and (with `resume`) the checkpoint are all checked before the
output directory is created and locked. Then: train (checkpoint per epoch), write the weights,
measure, export, plot, and write result.json last.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save as safetensors_bytes

from dfnas.checkpoint import Checkpointer
from dfnas.config import UsageError
from dfnas.device import Precision, resolve_device
from dfnas.evaluate.config import TrainConfig
from dfnas.evaluate.evaluate import accuracy, cpu_latency, size_of
from dfnas.evaluate.export import export_all
from dfnas.evaluate.plots import training_curve
from dfnas.evaluate.retrain import CHECKPOINT_NAME, Progress, Retrainer
from dfnas.evaluate.sources import Sources, load_sources
from dfnas.files import atomic_write_bytes, atomic_write_json, exclusive_directory, remove_leftover_temporaries, sha256_file
from dfnas.nas.arch import Architecture

RESULT_FORMAT = "dfnas-train-result"
RESULT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
RESULT_NAME = "result.json"
CURVE_NAME = "training_curve.png"
ARCH_NAME = "architecture.json"
LOSS_DESCRIPTIONS = {
    "cross_entropy": "cross-entropy with the real labels",
    "kl_soft_labels": "KL to the dataset's stored soft labels",
    "kl_online_teacher": "KL to the online teacher's logits on each augmented batch",
}


@dataclass(frozen=True)
class TrainOutcome:
    result: dict
    out: Path

    @property
    def ok(self) -> bool:
        return self.result["status"] == "ok"

    def summary(self) -> str:
        """One line that says whether it worked."""
        r = self.result
        if r["test_accuracy"] is not None:
            head = f"test accuracy {r['test_accuracy']:.3f}"
            if r["fraction_of_teacher"] is not None:
                head += f" ({r['fraction_of_teacher']:.0%} of the teacher's {r['teacher_accuracy']:.3f})"
            else:
                head += " (real MNIST test digits; no teacher to compare with)"
        else:
            head = f"synthetic val agreement {r['synthetic_val_agreement']:.3f} (no real test set for this data)"
        params = r["params"]
        size = f"{params / 1e6:.2f}M" if params >= 1e6 else f"{params / 1e3:.0f}k"
        line = f"{head}, {size} params, {r['macs'] / 1e6:.3g} MMACs -> {self.out / WEIGHTS_NAME}"
        failed = [name for name, e in r["export"].items() if e.get("ok") is False]
        skipped = [name for name, e in r["export"].items() if e.get("ok") is None]
        if failed:
            line += f"; export check FAILED: {', '.join(failed)} (see {self.out / RESULT_NAME})"
        if skipped:
            line += f"; skipped export: {', '.join(skipped)} ({r['export'][skipped[0]].get('skipped')})"
        return line


def load_architecture(path: str | Path) -> Architecture:
    try:
        return Architecture.load(path)
    except FileNotFoundError:
        raise UsageError(f"architecture file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"architecture file {path} is a directory") from None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as error:
        raise UsageError(f"architecture file {path}: {error}") from None


def check_output(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    holds_run = (out / CHECKPOINT_NAME).exists() or (out / RESULT_NAME).exists()
    if resume and not (out / CHECKPOINT_NAME).exists():
        raise UsageError(f"--resume: {out} holds no {CHECKPOINT_NAME} to continue from; run without --resume")
    if not resume and holds_run:
        raise UsageError(f"{out} already holds a dfnas-train run; pass --resume to continue it or choose another --out")


def run_config_of(config: TrainConfig, arch: Architecture, sources: Sources, precision: Precision) -> dict:
    """Everything that determines the trained weights; a checkpoint made under another is refused."""
    return {"config": config.training_dict(), "architecture": arch.to_dict(),
            "data_sha256": sources.description["sha256"], "precision": precision.to_dict(),
            "threads": torch.get_num_threads()}


def train_architecture(arch_path: str | Path, config: TrainConfig, out: str | Path, *, resume: bool = False,
                       progress: Progress = Progress(), echo: Callable[[str], None] = print) -> TrainOutcome:
    started = time.perf_counter()
    out = Path(out)
    check_output(out, resume)
    arch = load_architecture(arch_path)
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    precision = Precision.from_names(device, config.channels_last, config.amp)
    sources = load_sources(config, arch, device)
    echo(f"data: {sources.description['spec']} ({sources.kind}, {len(sources.train)} training images); loss: "
         f"{LOSS_DESCRIPTIONS[sources.loss_name]}; {arch.space} network; {device}, {precision.name}, "
         f"threads: {torch.get_num_threads()}")

    torch.manual_seed(config.seed)
    trainer = Retrainer(arch.build(), sources, config, precision)
    run_config = run_config_of(config, arch, sources, precision)
    checkpointer = Checkpointer(out / CHECKPOINT_NAME)
    if resume:
        trainer.load_state_dict(checkpointer.load(device), run_config, checkpointer.path)
        echo(f"resuming at step {trainer.step} of {config.steps}")
    with exclusive_directory(out):
        remove_leftover_temporaries(out)
        trained_before = trainer.history.seconds
        history = trainer.run(checkpointer, run_config, progress)
        trained_now = history.seconds - trained_before
        result = _finish(trainer, arch, sources, config, precision, run_config, out)
        seconds = history.seconds + (time.perf_counter() - started - trained_now)
        result["seconds"] = seconds
        atomic_write_json(out / RESULT_NAME, result)
    return TrainOutcome(result, out)


def _finish(trainer: Retrainer, arch: Architecture, sources: Sources, config: TrainConfig,
            precision: Precision, run_config: dict, out: Path) -> dict:
    model = trainer.model.eval()
    arch.save(out / ARCH_NAME)
    shape = (sources.in_channels, sources.input_size, sources.input_size)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # One metadata key: safetensors writes several in a random (hash map) order, and the file's
    # sha256 should depend on the weights alone.
    metadata = {"dfnas": json.dumps({"format": "dfnas-trained-network", "architecture": arch.to_dict()})}
    atomic_write_bytes(out / WEIGHTS_NAME, safetensors_bytes(weights, metadata=metadata))

    last = trainer.history.epochs[-1]
    test_accuracy = last.get("test_accuracy")
    val_agreement = last.get("val_agreement")
    teacher = sources.reference_teacher
    teacher_accuracy = None
    if teacher is not None and teacher.labels is not None and sources.test is not None:
        teacher_accuracy = accuracy(teacher.labels, sources.test)
    fraction = (test_accuracy / teacher_accuracy
                if test_accuracy is not None and teacher_accuracy else None)

    example_set = sources.test if sources.test is not None else (sources.val or sources.train)
    example = example_set.fixed_batches(16, limit=1)[0].images
    exports = export_all(model, example, out, config.export_formats())
    failed = [name for name, e in exports.items() if e.get("ok") is False]
    latency = cpu_latency(model, shape, runs=config.latency_runs)
    size = size_of(model, shape)
    training_curve(out / CURVE_NAME, trainer.history.losses, trainer.history.epochs, sources.loss_name,
                   teacher_accuracy, f"{arch.space} network on {sources.description['spec']}")
    return {
        "format": RESULT_FORMAT, "version": RESULT_VERSION,
        "status": "ok" if not failed else "export check failed",
        "test_accuracy": test_accuracy,
        "test_set": ("dfnas.data.mnist 'test' split: 1,000 real digits" if sources.test is not None else None),
        "test_note": sources.test_note,
        "synthetic_val_agreement": val_agreement,
        "teacher_accuracy": teacher_accuracy,
        "fraction_of_teacher": fraction,
        "teacher": None if teacher is None else {**teacher.to_dict(),
                                                 "role": "online labels" if sources.teacher else "comparison only"},
        "macs": size["macs"], "params": size["params"],
        "latency_ms": latency["median_ms"], "latency": latency,
        "architecture": {"space": arch.space, "file": ARCH_NAME, "derived": arch.derived},
        "data": sources.description,
        "loss": {"kind": sources.loss_name, "description": LOSS_DESCRIPTIONS[sources.loss_name],
                 "temperature": config.temperature if sources.loss_name != "cross_entropy" else None},
        "config": config.to_dict(),
        "device": str(precision.device), "precision": precision.to_dict(), "threads": run_config["threads"],
        "training": {"steps": trainer.step, "epochs": len(trainer.history.epochs),
                     "steps_per_epoch": trainer.steps_per_epoch, "final_train_loss": last["train_loss"],
                     "seconds": trainer.history.seconds, "history": trainer.history.epochs},
        "export": exports,
        "files": {"weights": WEIGHTS_NAME, "curve": CURVE_NAME, "checkpoint": CHECKPOINT_NAME,
                  "architecture": ARCH_NAME, **{name: e["file"] for name, e in exports.items() if e.get("file")}},
        "weights_sha256": sha256_file(out / WEIGHTS_NAME),
        "torch": torch.__version__,
    }
