"""One optimization step and one evaluation pass of a model under a loss and a `Precision`.

Under torchrun (`World` of more than one process) the trainer is data parallel: every rank is
handed the same global batch, computes the loss on its own rows (`World.my_rows`) with batch norm
over the global batch (`global_batch`), and the gradients (of weights and of architecture
parameters alike) are averaged over the ranks, so every rank takes the same optimizer step as a
single process on the whole batch, up to the order of float additions.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dfnas.config import RunFailed
from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.distributed import World, current_world
from dfnas.nas.global_batch import whole_batch
from dfnas.nas.loss import LossConfig, distillation_kl, search_loss

Forward = Callable[[torch.Tensor], torch.Tensor]


class Trainer:
    """Loss, optimization step and evaluation of a model `forward` under one `Precision`."""

    def __init__(self, loss: LossConfig, precision: Precision, grad_clip: float | None = None,
                 world: World | None = None):
        self.loss_config = loss
        self.world = current_world() if world is None else world
        self.precision = precision
        self.grad_clip = grad_clip
        self.scaler = precision.grad_scaler()
        self.steps = 0  # optimization steps taken (named in errors)

    def loss(self, forward: Forward, batch: Batch, allow_fp16: bool = True) -> torch.Tensor:
        """The training loss of `batch` (under torchrun: of this rank's rows of it)."""
        if self.world.distributed:
            batch = rows(batch, self.world.my_rows(len(batch.targets)))
        with self.precision.autocast(allow_fp16), whole_batch(self.world):
            logits = forward(self.precision.prepare_input(batch.images))
        return search_loss(logits, batch, self.loss_config)

    def gradients(self, loss: torch.Tensor, inputs: Sequence[torch.Tensor],
                  allow_unused: bool = False) -> list[torch.Tensor | None]:
        """d loss / d inputs averaged over the ranks: the gradient of the global batch's loss."""
        grads = list(torch.autograd.grad(loss, inputs, allow_unused=allow_unused))
        present = [i for i, g in enumerate(grads) if g is not None]
        for i, g in zip(present, self.world.averaged([grads[i] for i in present])):
            grads[i] = g
        return grads

    def step(self, optimizer: torch.optim.Optimizer, forward: Forward, batch: Batch,
             params: Sequence[torch.Tensor] | None = None) -> float:
        """zero_grad, loss, backward, clip (`params`, when given), step. Returns the loss."""
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss(forward, batch)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
        value = self._average_gradients(optimizer, loss)
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if self.grad_clip and params is not None:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.grad_clip)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
        self.steps += 1
        if not math.isfinite(value):
            raise RunFailed(f"the training loss became {value} at step {self.steps}")
        return value

    def _average_gradients(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
        """Average the gradients and the loss over the ranks (one all-reduce); returns the loss.
        Before unscaling, so every rank sees the same infinities and skips the same steps. Every
        rank has the same parameters without a gradient (the same sampled path), so the flat
        buffers line up."""
        if not self.world.distributed:
            return float(loss.detach())
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        *grads, mean_loss = self.world.averaged([p.grad for p in params] + [loss.detach().reshape(1)])
        for param, grad in zip(params, grads):
            param.grad = grad
        return float(mean_loss)

    @torch.no_grad()
    def evaluate(self, forward: Forward, batches: Sequence[Batch]) -> dict[str, float]:
        """`agreement`: top-1 vs teacher argmax (or labels); `kl`: teacher KL at T = 1 (or CE)."""
        correct, divergence, count = self.evaluation_sums(forward, batches)
        return {"agreement": correct / count, "kl": divergence / count}

    @torch.no_grad()
    def evaluation_sums(self, forward: Forward, batches: Sequence[Batch]) -> tuple[int, float, int]:
        """Correct predictions, summed divergence and images of `batches` (what `evaluate`
        divides; ranks that evaluated shares of the batches add them up)."""
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
        return correct, divergence, count

    def state_dict(self) -> dict:
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def rows(batch: Batch, part: slice) -> Batch:
    """Rows `part` of `batch`."""
    soft = None if batch.soft_labels is None else batch.soft_labels[part]
    return Batch(batch.images[part], soft, batch.targets[part])
