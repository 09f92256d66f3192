"""`prune_teacher`: the whole of `dfnas-prune` as a library call.

    teacher + its synthetic set
      -> ChannelSpace (prunable groups, channel ranking)        dfnas.prune.channels
      -> ratio evolution under the MACs budget, candidates
         scored after BN recalibration on synthetic images      dfnas.prune.search, .score
      -> the best candidate (and the uniform pruning at the same
         budget) distilled from the teacher on the synthetic set
      -> pruned.safetensors + pruned.json (a loadable teacher spec), ratios.json, candidates.json,
         accuracy_vs_macs.png, result.json (written last)

Everything the user gave is checked before the output directory is created. The search saves its
state after every generation (`search.pt`) and each distillation after every epoch, so `--resume`
after a kill continues and ends where an uninterrupted run would.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from dfnas.checkpoint import Checkpointer, check_same_settings
from dfnas.config import UsageError
from dfnas.device import Precision, resolve_device
from dfnas.evaluate.config import TrainConfig
from dfnas.evaluate.evaluate import accuracy, cpu_latency, size_of
from dfnas.evaluate.retrain import CHECKPOINT_NAME, Progress, Retrainer
from dfnas.evaluate.sources import Sources, TeacherLabels, real_test_set
from dfnas.files import atomic_write_bytes, atomic_write_json, exclusive_directory, remove_leftover_temporaries
from dfnas.prune.channels import ChannelSpace
from dfnas.prune.config import PruneConfig
from dfnas.prune.plots import accuracy_vs_macs
from dfnas.prune.score import CandidateScorer
from dfnas.prune.pruning_net import PruningNet, unsuitable_reason
from dfnas.prune.pruning_net_training import PruningNetTrainer
from dfnas.prune.search import Budget, RatioEvolution, uniform_ratio

RESULT_NAME = "result.json"
SEARCH_STATE = "search.pt"
PRUNING_NET_STATE = "pruning_net.pt"
HIDDEN = 32  # MetaPruning's generator width
PLOT_NAME = "accuracy_vs_macs.png"
FACTORY = "dfnas.prune.pruned:build"
STATE_VERSION = 1
SCORES = {
    "synthetic": "agreement with the teacher's top-1 on the synthetic val split after BatchNorm recalibration on "
                 "synthetic train images (KL to the teacher breaks ties)",
    "mnist": "accuracy on a held-out sixth of the real digits' train split after BatchNorm recalibration on the "
             "rest (real-data guidance, for comparison)",
}
GOOD_GAP = 0.01  # the aim: within 1 point of the teacher's real accuracy


@dataclass(frozen=True)
class PruneOutcome:
    result: dict
    out: Path

    def summary(self) -> str:
        r = self.result
        searched = r["networks"]["searched"]
        line = (f"pruned to {searched['macs'] / 1e6:.3g} MMACs ({searched['macs'] / r['teacher']['macs']:.0%} of the "
                f"teacher's), {searched['params'] / 1e3:.0f}k params")
        if searched["test_accuracy"] is not None:
            line += f": test accuracy {searched['test_accuracy']:.3f} (teacher {r['teacher']['test_accuracy']:.3f}"
            uniform = r["networks"].get("uniform")
            if uniform is not None:
                line += f", uniform pruning {uniform['test_accuracy']:.3f}"
            line += ")"
        else:
            line += f": synthetic val agreement {searched['val_agreement']:.3f}"
        return f"{line}; {r['verdict']} -> {self.out / 'pruned.safetensors'}"


def check_rebuildable(spec: str) -> None:
    """Refuse, before loading anything, a teacher that cannot be rebuilt at a pruned shape."""
    if spec.startswith("timm:") or (spec != "default" and (":" not in spec or Path(spec).exists())):
        raise UsageError(f"--teacher {spec!r}: dfnas-prune needs 'default' or a 'pkg.module:factory' teacher "
                         f"(a TorchScript or timm model cannot be rebuilt at a pruned shape)")


def _load_teacher(config: PruneConfig, device: torch.device):
    from dfnas.teachers import load_teacher

    try:
        return load_teacher(config.teacher, config.weights, device=device)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(f"--teacher {config.teacher!r}: {error}") from None


def _load_data(config: PruneConfig, teacher, device: torch.device):
    from dfnas.data.synthetic import read_manifest
    from dfnas.nas.search_data import MNIST, DataError, load_search_data

    if config.data == MNIST:
        raise UsageError("--data must be the teacher's synthetic dataset (dfnas-synth); dfnas-prune uses no real data")
    try:
        data = load_search_data(config.data, device, config.val_fraction)
        manifest = read_manifest(config.data)
    except (DataError, FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    if manifest.teacher.sha256 != teacher.info.sha256:
        raise UsageError(f"--data {config.data} was synthesized from teacher {manifest.teacher.name!r} "
                         f"(sha256 {manifest.teacher.sha256[:12]}), not from --teacher {config.teacher!r}")
    return data, manifest


def _budget(config: PruneConfig, space: ChannelSpace, grid: tuple[float, ...]) -> Budget:
    target = config.target_macs if config.target_macs is not None else config.ratio * space.teacher_macs
    if target >= space.teacher_macs:
        raise UsageError(f"the budget {target:.0f} MACs is not below the teacher's {space.teacher_macs} MACs; "
                         f"nothing to prune")
    smallest = space.macs(space.keep_counts([grid[0]] * len(space)))
    if smallest > target:
        raise UsageError(f"the budget {target:.0f} MACs is unreachable: the smallest network of the ratio grid "
                         f"(every layer at {grid[0]}) needs {smallest}")
    return Budget(low=(1 - config.band) * target, high=target)


def _scorer(config: PruneConfig, data, test, device: torch.device) -> CandidateScorer:
    """Synthetic guidance: recalibrate on the synthetic train split, score on its val split.
    Real guidance: the same on the real digits' train split (a seeded sixth held out for scoring),
    never on the test digits the result is reported on."""
    if config.guide == "synthetic":
        return CandidateScorer(data.train, data.val, config.calib_batches, config.calib_batch_size, config.seed)
    if test is None:
        raise UsageError("--guide mnist needs a digit teacher (10 classes named 0-9, 1x28x28 inputs)")
    from dfnas.data.images import split_indices
    from dfnas.nas.search_data import MNIST, load_search_data

    real = load_search_data(MNIST, device).train
    real = replace(real, mean=tuple(data.train.mean), std=tuple(data.train.std))
    calibration, held_out = split_indices(len(real), 1 / 6, config.seed)
    return CandidateScorer(real.subset(calibration), real.subset(held_out), config.calib_batches,
                           config.calib_batch_size, config.seed)


def _check_output(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    started = any((out / name).exists() for name in (PRUNING_NET_STATE, SEARCH_STATE, RESULT_NAME))
    if resume and not started:
        raise UsageError(f"--resume: {out} holds no dfnas-prune run to continue; run without --resume")
    if not resume and started:
        raise UsageError(f"{out} already holds a dfnas-prune run; pass --resume to continue it or choose another --out")


def prune_teacher(config: PruneConfig, out: str | Path, *, resume: bool = False,
                  on_generation: Callable[[int, int, dict], None] = lambda index, total, best: None,
                  train_progress: Callable[[str], Progress] = lambda name: Progress(),
                  echo: Callable[[str], None] = print) -> PruneOutcome:
    started = time.perf_counter()
    out = Path(out)
    _check_output(out, resume)
    check_rebuildable(config.teacher)
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    teacher = _load_teacher(config, device)
    data, manifest = _load_data(config, teacher, device)
    input_shape = (data.in_channels, data.input_size, data.input_size)
    space = ChannelSpace(teacher.model, input_shape)
    grid = config.ratio_grid()
    budget = _budget(config, space, grid)
    run_config = {"config": {k: v for k, v in config.to_dict().items() if k != "threads"},
                  "teacher_sha256": teacher.info.sha256, "data_manifest": manifest.teacher.sha256,
                  "threads": torch.get_num_threads(), "version": STATE_VERSION}
    echo(f"{config.teacher}: {len(space)} prunable groups, {space.teacher_macs / 1e6:.3g} MMACs; budget "
         f"{budget.low / 1e6:.3g}-{budget.high / 1e6:.3g} MMACs; data {config.data} ({len(data.train)} train, "
         f"{len(data.val)} val images); candidates scored by BN recalibration + agreement on {config.guide} images")

    test, test_note = real_test_set(data, manifest.teacher.class_names, device)
    labels = TeacherLabels(teacher.model, teacher.info.mean, teacher.info.std, data.train.mean, data.train.std, device)
    scorer = _scorer(config, data, test, device)
    macs_of = lambda ratios: space.macs(space.keep_counts(ratios))  # noqa: E731
    unsuitable = unsuitable_reason(space, HIDDEN) if config.pruning_net_steps else "--pruning-net-steps 0"
    torch.manual_seed(config.seed)  # the generators' initial weights
    net = None if unsuitable else PruningNet(space, HIDDEN).to(device)
    weights_for = (lambda ratios: space.prune(space.keep_counts(ratios)).to(device)) if net is None else net.materialize
    weights_note = (f"PruningNet trained {config.pruning_net_steps} steps on the synthetic set" if net is not None
                    else f"the teacher's weights, channels ranked by L2 magnitude (no PruningNet: {unsuitable})")
    score_of = lambda ratios: scorer(weights_for(ratios))  # noqa: E731
    evolution = RatioEvolution(grid, len(space), budget, macs_of, score_of, population=config.population,
                               parents=config.parents, mutation_prob=config.mutation_prob, seed=config.seed)
    echo(f"candidate weights: {weights_note}")
    checkpointer = Checkpointer(out / SEARCH_STATE)
    if resume and checkpointer.exists():
        state = checkpointer.load()
        check_same_settings(state["run_config"], run_config, checkpointer.path)
        evolution.load_state_dict(state["search"])

    with exclusive_directory(out):
        remove_leftover_temporaries(out)
        if net is not None:
            sampler = RatioEvolution(grid, len(space), budget, macs_of, score_of, population=config.population,
                                     parents=config.parents, mutation_prob=config.mutation_prob, seed=config.seed + 1)
            _train_pruning_net(net, data, labels, sampler, config, out, run_config, train_progress("pruning net"))
        while len(evolution.generations) < config.generations:
            evolution.step()
            checkpointer.save({"run_config": run_config, "search": evolution.state_dict()})
            best = evolution.top(1)[0]
            on_generation(len(evolution.generations), config.generations,
                          {"agreement": best.score.agreement, "macs": best.macs})
        best = evolution.top(1)[0]
        choices = {"searched": best.ratios}
        if config.baseline:
            choices["uniform"] = (uniform_ratio(len(space), macs_of, budget),) * len(space)

        sources = Sources(data.train, data.val, test, test_note, data.num_classes, data.in_channels, data.input_size,
                          "synthetic", {"spec": config.data}, labels, None)
        train_config = TrainConfig(data=config.data, teacher=config.teacher, weights=config.weights,
                                   steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                                   temperature=config.temperature, seed=config.seed, export="none")
        precision = Precision.from_names(device, "off", "off")
        networks = {}
        for name, ratios in choices.items():
            counts = space.keep_counts(ratios)
            model = _distill(weights_for(ratios), sources, train_config, precision, out / name,
                             {**run_config, "network": name, "counts": counts}, train_progress(name))
            networks[name] = {**_describe(model, counts, ratios, sources, input_shape),
                              "before_distillation": asdict(score_of(ratios))}
            _save(out, name, model, counts, input_shape, teacher)
            echo(f"{name}: {_line(networks[name])}")

        teacher_size = size_of(teacher.model, input_shape)
        teacher_record = {"spec": config.teacher, "weights": config.weights, "sha256": teacher.info.sha256,
                          "macs": space.teacher_macs, "params": teacher_size["params"],
                          "test_accuracy": None if test is None else accuracy(labels, test),
                          "latency_ms": cpu_latency(teacher.model, input_shape)["median_ms"]}
        candidates = [c.to_dict() for c in sorted(evolution.archive.values(), key=lambda c: c.macs)]
        atomic_write_json(out / "candidates.json", candidates)
        atomic_write_json(out / "ratios.json", {
            "groups": [{"layer": g.name, "channels": g.channels, "members": list(g.members)} for g in space.groups],
            **{name: {"ratios": list(choices[name]), "channels": networks[name]["channels"]} for name in choices}})
        accuracy_vs_macs(out / PLOT_NAME, candidates, networks, teacher_record, budget)
        result = {
            "format": "dfnas-prune-result", "version": 1,
            "verdict": _verdict(networks, teacher_record),
            "teacher": teacher_record, "networks": networks,
            "budget": {"low": budget.low, "high": budget.high, "target": budget.high},
            "search": {"generations": len(evolution.generations), "candidates_scored": len(evolution.archive),
                       "guide": config.guide, "score": SCORES[config.guide],
                       "weights": weights_note, "best": best.to_dict()},
            "test_set": None if test is None else "dfnas.data.mnist 'test' split: 1,000 real digits",
            "test_note": test_note,
            "load": {"teacher_spec": FACTORY, "weights": "pruned.safetensors",
                     "python": f"dfnas.teachers.load_teacher({FACTORY!r}, weights='{out / 'pruned.safetensors'}')"},
            "config": config.to_dict(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "seconds": time.perf_counter() - started,
        }
        atomic_write_json(out / RESULT_NAME, result)
    return PruneOutcome(result, out)


def _train_pruning_net(net: PruningNet, data, labels: TeacherLabels, sampler: RatioEvolution, config: PruneConfig,
                       out: Path, run_config: dict, progress: Progress) -> None:
    trainer = PruningNetTrainer(net, data.train, labels.label, sampler, steps=config.pruning_net_steps,
                                batch_size=config.batch_size, lr=config.pruning_net_lr,
                                temperature=config.temperature, seed=config.seed)
    checkpointer = Checkpointer(out / PRUNING_NET_STATE)
    if checkpointer.exists():
        state = checkpointer.load(next(net.parameters()).device)
        check_same_settings(state["run_config"], run_config, checkpointer.path)
        trainer.load_state_dict(state)
    progress.start(trainer.step, trainer.steps)
    trainer.run(checkpointer, run_config, on_step=progress.step)
    atomic_write_json(out / "pruning_net_losses.json", trainer.losses)


def _distill(model: nn.Module, sources: Sources, config: TrainConfig, precision: Precision, folder: Path,
             run_config: dict, progress: Progress) -> nn.Module:
    folder.mkdir(exist_ok=True)
    torch.manual_seed(config.seed)
    trainer = Retrainer(model, sources, config, precision)
    checkpointer = Checkpointer(folder / CHECKPOINT_NAME)
    if checkpointer.exists():
        trainer.load_state_dict(checkpointer.load(precision.device), run_config, checkpointer.path)
    trainer.run(checkpointer, run_config, progress)
    atomic_write_json(folder / "history.json", trainer.history.to_dict())
    return trainer.model.eval()


def _describe(model: nn.Module, counts: dict, ratios, sources: Sources, input_shape) -> dict:
    size = size_of(model, input_shape)
    return {"test_accuracy": None if sources.test is None else accuracy(model, sources.test),
            "val_agreement": accuracy(model, sources.val), "macs": size["macs"], "params": size["params"],
            "latency_ms": cpu_latency(model, input_shape)["median_ms"], "channels": counts,
            "ratios": list(ratios)}


def _line(network: dict) -> str:
    acc = network["test_accuracy"]
    head = f"test accuracy {acc:.3f}" if acc is not None else f"val agreement {network['val_agreement']:.3f}"
    return f"{head}, {network['macs'] / 1e6:.3g} MMACs, {network['params'] / 1e3:.0f}k params"


def _verdict(networks: dict, teacher: dict) -> str:
    searched, uniform = networks["searched"], networks.get("uniform")
    if searched["test_accuracy"] is None or teacher["test_accuracy"] is None:
        return "no real test set: judge by the synthetic val agreement"
    gap = teacher["test_accuracy"] - searched["test_accuracy"]
    head = (f"within {GOOD_GAP:.0%} of the teacher" if gap <= GOOD_GAP
            else f"{gap:.1%} below the teacher (aim: within {GOOD_GAP:.0%})")
    if uniform is None:
        return head
    ahead = searched["test_accuracy"] - uniform["test_accuracy"]
    return head + (f", {ahead:+.1%} vs uniform pruning" if ahead else ", equal to uniform pruning")


def _save(out: Path, name: str, model: nn.Module, counts: dict, input_shape, teacher) -> None:
    """`<name>.safetensors` + `<name>.json`: loadable with load_teacher(FACTORY, weights=...)."""
    stem = "pruned" if name == "searched" else name
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out / f"{stem}.safetensors", safetensors_bytes(weights))
    info = teacher.info
    atomic_write_json(out / f"{stem}.json", {
        "name": f"{info.name} pruned ({name})", "class_names": list(info.class_names),
        "num_classes": info.num_classes, "input_size": list(info.input_size), "in_channels": info.in_channels,
        "mean": list(info.mean), "std": list(info.std), "flip_ok": info.flip_ok,
        "factory_kwargs": {"base": teacher.factory, "base_kwargs": teacher.factory_kwargs, "input_shape": list(input_shape),
                           "channels": counts}})
