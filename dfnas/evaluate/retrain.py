"""The retraining loop: optimizer, cosine schedule, loss, a checkpoint per epoch, periodic evaluation.

One step: draw an augmented batch (`BatchStream`), let the online teacher label it if there is
one, compute `dfnas.nas.loss.search_loss` (cross-entropy on hard labels, or the T^2-scaled KL to
the soft labels), add the DARTS auxiliary head's loss, clip, step. The learning rate is a pure
function of the step (linear warm-up, cosine to 0), so the checkpoint needs no scheduler. An epoch
is one pass over the training split; after each, the whole state is saved atomically, so `--resume`
after a kill continues with the same batches and ends with the same weights as an uninterrupted
run. `evaluations` epochs, spread evenly and always including the last, are scored on the real
test digits and the synthetic val split.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from dfnas.checkpoint import Checkpointer, check_same_settings, rng_state, set_rng_state
from dfnas.config import RunFailed, UsageError
from dfnas.data.images import Batch, BatchStream
from dfnas.device import Precision
from dfnas.evaluate.config import TrainConfig
from dfnas.evaluate.evaluate import accuracy
from dfnas.evaluate.sources import Sources
from dfnas.nas.loss import LossConfig, search_loss

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on conv/linear weights only (ndim > 1), not on BN parameters and biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to `lr` over `warmup_steps`, then cosine decay to 0 at `steps`."""
    warmup = min(config.warmup_steps, config.steps - 1)
    if step < warmup:
        return config.lr * (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, config.steps - warmup)
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))


@dataclass
class Progress:
    """What the loop reports: where it starts (steps done, total), each step, each finished epoch."""

    start: Callable[[int, int], None] = lambda done, total: None
    step: Callable[[int, float], None] = lambda step, loss: None
    epoch: Callable[[dict], None] = lambda record: None


@dataclass
class History:
    losses: list[float] = field(default_factory=list)  # one per step
    epochs: list[dict] = field(default_factory=list)  # one record per epoch
    seconds: float = 0.0  # training wall time, summed over resumed runs

    def to_dict(self) -> dict:
        return {"losses": list(self.losses), "epochs": list(self.epochs), "seconds": self.seconds}

    @classmethod
    def from_dict(cls, state: dict) -> "History":
        return cls(list(state["losses"]), list(state["epochs"]), float(state["seconds"]))


class Retrainer:
    """Trains `model` on `sources` under `config`; `run` is resumable from its checkpoints."""

    def __init__(self, model: nn.Module, sources: Sources, config: TrainConfig, precision: Precision):
        self.config = config
        self.sources = sources
        self.precision = precision
        self.model = precision.prepare_model(model).train()
        self.optimizer = make_optimizer(self.model, config)
        self.scaler = precision.grad_scaler()
        self.stream = BatchStream(sources.train, config.batch_size, config.seed, augment=config.augment)
        self.loss_config = LossConfig(config.temperature, config.t2_factor, config.hard_weight,
                                      config.label_smoothing)
        self.step = 0
        self.history = History()

    @property
    def steps_per_epoch(self) -> int:
        return self.stream.batches_per_epoch

    @property
    def num_epochs(self) -> int:
        return math.ceil(self.config.steps / self.steps_per_epoch)

    # ------------------------------------------------------------------ one step

    def batch(self) -> Batch:
        batch = self.stream.next()
        return batch if self.sources.teacher is None else self.sources.teacher.label(batch)

    def loss(self, batch: Batch) -> torch.Tensor:
        with self.precision.autocast():
            output = self.model(self.precision.prepare_input(batch.images))
        if isinstance(output, tuple):  # DARTS with an auxiliary head, in training mode
            logits, aux_logits = output
            return (search_loss(logits, batch, self.loss_config)
                    + self.config.aux_weight * search_loss(aux_logits, batch, self.loss_config))
        return search_loss(output, batch, self.loss_config)

    def train_step(self, epoch: int) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.config)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.batch())
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RunFailed(f"non-finite training loss ({value}) at epoch {epoch + 1}, step {self.step + 1}; "
                            f"try a lower --lr (now {self.config.lr}) or --amp off")
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.step += 1
        return value

    # ------------------------------------------------------------------ epochs

    def evaluate(self) -> dict:
        """Real test accuracy and synthetic val agreement of the current weights (eval mode)."""
        record = {}
        if self.sources.test is not None:
            record["test_accuracy"] = accuracy(self.model, self.sources.test, self.precision)
        if self.sources.val is not None:
            record["val_agreement"] = accuracy(self.model, self.sources.val, self.precision)
        return record

    def evaluates(self, epoch: int) -> bool:
        """Whether `epoch` (0-based) ends with an evaluation: every ceil(epochs / evaluations)-th one and
        the last. On small training sets an epoch is a few dozen steps, and scoring ~1,200 images
        after each was a large share of the run."""
        every = math.ceil(self.num_epochs / self.config.evaluations)
        return epoch == self.num_epochs - 1 or (epoch + 1) % every == 0

    def run_epoch(self, epoch: int, progress: Progress) -> dict:
        started = time.perf_counter()
        if hasattr(self.model, "drop_path_prob"):  # DARTS: the reference's linear ramp
            self.model.drop_path_prob = self.config.drop_path * epoch / self.num_epochs
        end = min((epoch + 1) * self.steps_per_epoch, self.config.steps)
        losses = []
        while self.step < end:
            losses.append(self.train_step(epoch))
            progress.step(self.step, losses[-1])
        self.history.losses.extend(losses)
        record = {"epoch": epoch + 1, "step": self.step, "lr": learning_rate(self.step - 1, self.config),
                  "train_loss": sum(losses) / len(losses), **(self.evaluate() if self.evaluates(epoch) else {})}
        record["seconds"] = time.perf_counter() - started
        self.history.epochs.append(record)
        self.history.seconds += record["seconds"]
        return record

    def run(self, checkpointer: Checkpointer, run_config: dict, progress: Progress = Progress()) -> History:
        """Train the remaining epochs, saving a checkpoint after each."""
        progress.start(self.step, self.config.steps)
        for epoch in range(len(self.history.epochs), self.num_epochs):
            record = self.run_epoch(epoch, progress)
            checkpointer.save(self.state_dict(run_config))
            progress.epoch(record)
        return self.history

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self, run_config: dict) -> dict:
        return {"version": CHECKPOINT_VERSION, "run_config": run_config, "step": self.step,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "stream": self.stream.state_dict(), "history": self.history.to_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict, run_config: dict, path: Path) -> None:
        if state.get("version") != CHECKPOINT_VERSION:
            raise UsageError(f"{path} is not a dfnas-train checkpoint of this version")
        check_same_settings(state["run_config"], run_config, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.stream.load_state_dict(state["stream"])
        self.history = History.from_dict(state["history"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])
