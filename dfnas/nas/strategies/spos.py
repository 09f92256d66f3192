"""Single Path One-Shot (Guo et al. 2019) with the data-free changes of Liu et al. (DFNAS).

Two phases, one unit each: `epochs` epochs of supernet training, each step on one path drawn
uniformly per layer (optionally rejection-sampled into `train_flops_range`), then `generations`
generations of `Evolution` under `flops_limit`, each candidate scored by `PathEvaluator` (exact BN
recalibration on a fixed set of training batches, then top-1 agreement with the teacher on the
synthetic val split, or minus the KL).
Reference defaults (megvii-model/SinglePathOneShot): SGD lr 0.5 linearly decayed to 0 per step,
momentum 0.9, wd 4e-5 on weights with ndim > 1 only, label smoothing 0.1 (real data);
evolution 50 / top-10 / 20 generations / 25 mutations (p = 0.1) / 25 crossovers;
recalibration on 200 batches of 128, evaluation in batches of 200. FLOPs are in MFLOPs
(multiply-accumulates / 1e6), as the reference's 330 M limit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from dfnas.config import option
from dfnas.nas.arch import Architecture, make_architecture
from dfnas.nas.profile import cost_table
from dfnas.nas.search_data import SearchData
from dfnas.nas.spaces.spos import SposSupernet
from dfnas.nas.strategies.base import SearchConfig, space_config
from dfnas.nas.strategies.evaluator import FITNESS_METRICS, PathEvaluator, calibration_batches
from dfnas.nas.strategies.evolution import Evolution, EvolutionConfig
from dfnas.nas.strategies.health import fit_batch_to_split, metric_name
from dfnas.data.images import BatchStream
from dfnas.device import Precision
from dfnas.nas.trainer import Trainer

SAMPLING_TRIES = 10_000
SUPERNET_PROBES = 2  # fixed random paths evaluated after every supernet epoch (the log's val metric)


@dataclass
class SposSearchConfig(SearchConfig):
    epochs: int = option(120, "supernet training epochs", min=1, max=100000)
    batch_size: int = option(1024, "training batch size", min=1, max=65536)
    lr: float = option(0.5, "SGD learning rate of the supernet (linear decay to 0)", above=0)
    momentum: float = option(0.9, "SGD momentum", min=0, max=0.9999)
    weight_decay: float = option(4e-5, "weight decay", min=0)
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy terms", min=0, max=0.999)
    grad_clip: float = option(0.0, "clip the weights' gradient norm to this (0 = off; the reference does not clip)",
                              min=0)
    train_flops_range: tuple[float, float] | None = option(None, "sample supernet training paths within MIN MAX MFLOPs (not set: any path)",
                                                         min=0)
    flops_limit: float | None = option(None, "evolution: largest MFLOPs of a candidate (not set: no limit)", above=0)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    calib_batches: int = option(200, "batches that recalibrate BN of each candidate before it is scored", min=1)
    calib_batch_size: int = option(128, "batch size of the BN recalibration", min=1)
    val_batch_size: int = option(200, "batch size of the candidates' val scoring", min=1)
    fitness: str = option("agreement", "what evolution maximizes: agreement (top-1 vs the teacher or labels) or -KL",
                        choices=FITNESS_METRICS)

    def check(self) -> None:
        super().check()
        self.evolution.check()
        if self.train_flops_range is not None and self.train_flops_range[0] > self.train_flops_range[1]:
            raise ValueError(f"train_flops_range {self.train_flops_range} is empty (min > max)")


# About half a minute on one CPU core: 1,000 supernet steps of 64 (whatever the dataset size),
# then 4 generations of 12. The reference's lr 0.5 is for batch 1024 and 1000 classes: at batch 32
# on 10 classes it diverged (train loss 3.4 after the first epoch; winner 0.34 on MNIST).
SPOS_TINY = {"epochs": 10, "steps_per_epoch": 100, "batch_size": 64, "lr": 0.2, "calib_batches": 4,
             "calib_batch_size": 64, "val_batch_size": 250,
             "evolution": {"population": 12, "top_k": 4, "generations": 4, "mutations": 4,
                           "crossovers": 4}}


def single_path_training(model: nn.Module, config: SposSearchConfig, data: SearchData, precision: Precision) -> tuple:
    """What trains `model` one sampled path per step, as SPOS does (and NAT's warm start of any
    space): (trainer, SGD with decay on weights of ndim > 1 only, batch stream, linear decay to 0
    per step, the path sampler's generator, the exact-BN-recalibration evaluator)."""
    trainer = Trainer(config.loss(), precision, config.grad_clip)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, momentum=config.momentum)
    stream = BatchStream(data.train, config.batch_size, config.seed + 1)
    total_steps = config.epochs * config.epoch_steps(stream.batches_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))
    sampler = torch.Generator().manual_seed(config.seed + 3)
    evaluator = PathEvaluator(
        model, trainer, calibration_batches(data.train, config.calib_batch_size, config.calib_batches, config.seed + 4),
        data.val.fixed_batches(config.val_batch_size), config.fitness)
    return trainer, optimizer, stream, scheduler, sampler, evaluator


def train_single_path_epoch(search, sample: Callable[[], Sequence[int]], unit: int,
                            progress: Callable[[int], None]) -> dict:
    """One epoch of single-path supernet training (SPOS; NAT's warm start): a path from `sample`
    per step, then the probe paths' scores after exact BN recalibration (`search.last_metrics`).
    `search` holds what `single_path_training` built, `model`, `probe_paths`, `path_forward`,
    `metric`, `notices` and `config`. Returns the epoch's log record."""
    search.model.train()
    losses, lr = [], search.optimizer.param_groups[0]["lr"]
    for _ in range(search.config.epoch_steps(search.stream.batches_per_epoch)):
        batch, path = search.stream.next(), sample()
        # Parameters off the path get no gradient (None), so momentum and decay skip them.
        losses.append(search.trainer.step(search.optimizer, search.path_forward(path), batch,
                                          list(search.model.parameters())))
        search.scheduler.step()
        progress(1)
    probes = search.evaluator.score_each([search.path_forward(path) for path in search.probe_paths])
    search.last_metrics = {key: sum(p[key] for p in probes) / len(probes) for key in ("agreement", "kl")}
    search.model.train()
    record = {"phase": "supernet", "lr": lr, "train_loss": sum(losses) / len(losses),
              f"val_{search.metric}": search.last_metrics["agreement"], "val_kl": search.last_metrics["kl"]}
    if unit == 0 and search.notices:
        record["notice"] = "; ".join(search.notices)
    return record


def single_path_state(search) -> dict:
    """The checkpoint of what `single_path_training` built (as `train_single_path_epoch`'s
    `search` holds it), plus the probe paths' last metrics."""
    return {"model": search.model.state_dict(), "optimizer": search.optimizer.state_dict(),
            "scheduler": search.scheduler.state_dict(), "trainer": search.trainer.state_dict(),
            "stream": search.stream.state_dict(), "sampler": search.sampler.get_state(),
            "last_metrics": dict(search.last_metrics)}


def load_single_path_state(search, state: dict) -> None:
    """Restore what `single_path_state` saved (a checkpoint without metrics leaves none)."""
    search.model.load_state_dict(state["model"])
    search.optimizer.load_state_dict(state["optimizer"])
    search.scheduler.load_state_dict(state["scheduler"])
    search.trainer.load_state_dict(state["trainer"])
    search.stream.load_state_dict(state["stream"])
    search.sampler.set_state(state["sampler"])
    search.last_metrics = dict(state.get("last_metrics", {}))


class SposSearch:
    name = "spos"

    def __init__(self, config: SposSearchConfig, data: SearchData, precision: Precision):
        config.check()
        config, notice = fit_batch_to_split(config, len(data.train))
        self.notices = [notice] if notice else []
        self.config = config
        self.metric = metric_name(data.soft_labels)
        self.num_classes = data.num_classes
        self.last_metrics: dict = {}  # the supernet's probe paths after the last epoch
        self.best_metrics: dict = {}  # the evolution's best candidate so far
        self.space_config = space_config("spos", config.space_preset, data)
        self.table = cost_table("spos", self.space_config)
        self.lowest, self.highest = self._mflops_bounds()
        self._check_flops_settings()
        torch.manual_seed(config.seed)
        self.model: SposSupernet = precision.prepare_model(SposSupernet(self.space_config))
        (self.trainer, self.optimizer, self.stream, self.scheduler, self.sampler,
         self.evaluator) = single_path_training(self.model, config, data, precision)
        self.evolution = Evolution(config.evolution, self.space_config.num_layers,
                                   self.space_config.num_choices, self.mflops, config.flops_limit,
                                   config.seed + 5)
        probes = torch.Generator().manual_seed(config.seed + 6)
        self.probe_paths = [tuple(int(k) for k in torch.randint(self.space_config.num_choices,
                                                                (self.space_config.num_layers,), generator=probes))
                            for _ in range(SUPERNET_PROBES)]
        self.num_units = config.epochs + config.evolution.generations

    @property
    def unit_name(self) -> str:
        return "unit"

    def mflops(self, path: tuple[int, ...]) -> float:
        return self.table.cost(list(path)) / 1e6

    def _mflops_bounds(self) -> tuple[float, float]:
        low = self.table.fixed_total + sum(min(slot.values()) for slot in self.table.slots)
        high = self.table.fixed_total + sum(max(slot.values()) for slot in self.table.slots)
        return low / 1e6, high / 1e6

    def _check_flops_settings(self) -> None:
        span = f"this space's architectures have {self.lowest:.4g} to {self.highest:.4g} MFLOPs"
        limit = self.config.flops_limit
        if limit is not None and limit < self.lowest:
            raise ValueError(f"flops limit {limit:.4g} MFLOPs is impossible: {span}")
        low_high = self.config.train_flops_range
        if low_high is not None and (low_high[1] < self.lowest or low_high[0] > self.highest):
            raise ValueError(f"train FLOPs range {low_high[0]:.4g}..{low_high[1]:.4g} MFLOPs is impossible: {span}")

    def sample_path(self) -> tuple[int, ...]:
        """Uniform per layer, rejected until inside `train_flops_range` (if set)."""
        layers, choices = self.space_config.num_layers, self.space_config.num_choices
        for _ in range(SAMPLING_TRIES):
            path = tuple(int(k) for k in torch.randint(choices, (layers,), generator=self.sampler))
            low_high = self.config.train_flops_range
            if low_high is None or low_high[0] <= self.mflops(path) <= low_high[1]:
                return path
        raise ValueError(f"no path within train_flops_range {self.config.train_flops_range} after "
                         f"{SAMPLING_TRIES} uniform draws; widen the range")

    def probe_forward(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return model(images, [0] * self.space_config.num_layers)

    def unit_steps(self, unit: int) -> int:
        if unit < self.config.epochs:
            return self.config.epoch_steps(self.stream.batches_per_epoch)
        return len(self.evolution.candidates)

    def run_unit(self, unit: int, progress: Callable[[int], None]) -> dict:
        if unit < self.config.epochs:
            return self._train_epoch(unit, progress)
        return self._generation(progress)

    def _train_epoch(self, unit: int, progress: Callable[[int], None]) -> dict:
        return train_single_path_epoch(self, self.sample_path, unit, progress)

    def path_forward(self, path: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: self.model(x, path)

    def _generation(self, progress: Callable[[int], None]) -> dict:
        candidates = list(self.evolution.candidates)  # scored all at once: under torchrun, shared out
        results = dict(zip(candidates, self.evaluator.score_each([self.path_forward(p) for p in candidates])))
        evaluated = self.evolution.evaluate_generation(lambda path: results[path]["fitness"], progress)
        best = self.evolution.best()
        if best.path in results:  # a new best (the best of earlier generations keeps its metrics)
            self.best_metrics = {"agreement": results[best.path]["agreement"], "kl": results[best.path]["kl"]}
        return {"phase": "evolution", "evaluated": len(evaluated),
                f"val_{self.metric}": self.best_metrics.get("agreement"), "val_kl": self.best_metrics.get("kl"),
                "best_fitness": best.fitness, "best_mflops": best.mflops,
                "best_path": list(best.path),
                "candidates": [{**e.to_dict(), "kl": results[e.path]["kl"]} for e in evaluated],
                "top_k": [e.to_dict() for e in self.evolution.top()]}

    def state_dict(self) -> dict:
        return {**single_path_state(self), "evolution": self.evolution.state_dict(),
                "best_metrics": dict(self.best_metrics)}

    def final_metrics(self) -> dict:
        """The evolution winner's val metric (after its BN recalibration), or before the evolution
        the supernet's probe paths; for `health.search_health`. Empty before the first unit."""
        metrics, measured_on = self.best_metrics, "the evolution's winner"
        if not metrics:
            metrics, measured_on = self.last_metrics, f"{SUPERNET_PROBES} random paths of the supernet"
        if not metrics:
            return {}
        return {"metric": self.metric, self.metric: metrics["agreement"], **metrics,
                "num_classes": self.num_classes, "measured_on": measured_on}

    def load_state_dict(self, state: dict) -> None:
        load_single_path_state(self, state)
        self.evolution.load_state_dict(state["evolution"])
        self.best_metrics = dict(state.get("best_metrics", {}))

    def architecture(self) -> Architecture:
        return make_architecture("spos", self.space_config, self.evolution.best().path)

    def plot(self, directory: Path) -> list[Path]:
        from dfnas.nas.strategies.plots import pareto_scatter

        entries = list(self.evolution.archive.values())
        best = self.evolution.best()
        path = directory / "evolution.png"
        pareto_scatter(path, [e.mflops for e in entries], [e.fitness for e in entries],
                       [e.generation for e in entries], (best.mflops, best.fitness),
                       self.config.flops_limit,
                       {"agreement": "val agreement with the teacher", "accuracy": "val accuracy"}[self.metric]
                       if self.config.fitness == "agreement" else "-KL",
                       "SPOS evolution: evaluated candidates")
        return [path]
