"""One optimization step and one evaluation pass of a model under a loss and a `Precision`."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dfnas.config import RunFailed
from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig, distillation_kl, search_loss

Forward = Callable[[torch.Tensor], torch.Tensor]


class Trainer:
    """Loss, optimization step and evaluation of a model `forward` under one `Precision`."""

    def __init__(self, loss: LossConfig, precision: Precision, grad_clip: float | None = None):
        self.loss_config = loss
        self.precision = precision
        self.grad_clip = grad_clip
        self.scaler = precision.grad_scaler()
        self.steps = 0  # optimization steps taken (named in errors)

    def loss(self, forward: Forward, batch: Batch, allow_fp16: bool = True) -> torch.Tensor:
        with self.precision.autocast(allow_fp16):
            logits = forward(self.precision.prepare_input(batch.images))
        return search_loss(logits, batch, self.loss_config)

    def step(self, optimizer: torch.optim.Optimizer, forward: Forward, batch: Batch,
             params: Sequence[torch.Tensor] | None = None) -> float:
        """zero_grad, loss, backward, clip (`params`, when given), step. Returns the loss."""
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss(forward, batch)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        if self.grad_clip and params is not None:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.grad_clip)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
        self.steps += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RunFailed(f"the training loss became {value} at step {self.steps}")
        return value

    @torch.no_grad()
    def evaluate(self, forward: Forward, batches: Sequence[Batch]) -> dict[str, float]:
        """`agreement`: top-1 vs teacher argmax (or labels); `kl`: teacher KL at T = 1 (or CE)."""
        correct, divergence, count = 0, 0.0, 0
        for batch in batches:
            with self.precision.autocast():
                logits = forward(self.precision.prepare_input(batch.images)).float()
            correct += int((logits.argmax(dim=1) == batch.reference_labels).sum())
            if batch.soft_labels is None:
                divergence += float(F.cross_entropy(logits, batch.targets, reduction="sum"))
            else:
                divergence += float(distillation_kl(logits, batch.soft_labels, 1.0)) * len(logits)
            count += len(logits)
        return {"agreement": correct / count, "kl": divergence / count}

    def state_dict(self) -> dict:
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
