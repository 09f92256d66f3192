"""DARTS (Liu et al. 2019): bilevel search over the weighted-sum cell supernet.

Per step, as in quark0/darts `train_search.py`: first the architecture step on a batch of the arch
split, then the weight step on a batch of the weight split. The architecture gradient is either
first order (dL_arch/d alpha at the current weights) or second order: the gradient at the weights
after one virtual SGD step, w' = w - eta * (momentum * buf + dL_train/dw + wd * w), where the
implicit term is a finite-difference Hessian-vector product (`Architect.hypergradient`).
Reference defaults: SGD lr 0.025 cosine to 0.001, momentum 0.9, wd 3e-4, grad-clip 5; Adam on the
alphas, lr 3e-4, betas (0.5, 0.999), wd 1e-3; a 50/50 weight/arch split of the training set.

Collapse guard (the search drifting to parameter-free ops, AutoDL-Projects#58): no architecture
steps during `warmup_epochs`, and each epoch's record reports the skip connections of the derived
genotype (a warning when the normal cell has more than two).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from dfnas.config import UsageError, option
from dfnas.nas.arch import Architecture, make_architecture
from dfnas.nas.search_data import SearchData
from dfnas.nas.spaces.darts_ops import PRIMITIVES
from dfnas.nas.spaces.darts_search import DartsSearchNetwork
from dfnas.nas.strategies.base import SearchConfig, space_config
from dfnas.nas.strategies.evaluator import PathEvaluator, calibration_batches, eval_batch_size
from dfnas.nas.strategies.health import entropy, fit_batch_to_split, metric_name
from dfnas.data.images import Batch, BatchStream, split_indices
from dfnas.device import Precision
from dfnas.nas.trainer import Trainer

SKIP_WARNING = 2


@dataclass
class DartsSearchConfig(SearchConfig):
    order: int = option(1, "1: first-order DARTS; 2: unrolled (finite-difference Hessian-vector product)",
                      choices=(1, 2))
    lr: float = option(0.025, "SGD learning rate of the weights (cosine decay to lr_min)", above=0)
    lr_min: float = option(0.001, "final learning rate of the weights' cosine schedule", min=0)
    momentum: float = option(0.9, "SGD momentum of the weights", min=0, max=0.9999)
    weight_decay: float = option(3e-4, "weight decay of the weights", min=0)
    arch_lr: float = option(3e-4, "Adam learning rate of the architecture weights (alphas)", above=0)
    arch_betas: tuple[float, float] = option((0.5, 0.999), "Adam betas of the alphas", min=0, max=0.9999)
    arch_weight_decay: float = option(1e-3, "weight decay of the alphas", min=0)
    arch_fraction: float = option(0.5, "fraction of the training split that drives the alpha steps (the rest trains the weights)",
                                above=0, max=0.9)
    warmup_epochs: int = option(0, "epochs of weight training before the alphas are updated", min=0)
    hvp_scale: float = option(0.01, "second order: finite-difference step of the Hessian-vector product, relative to the weights' norm",
                            above=0)
    calib_batches: int = option(10, "batches that recalibrate BN before each epoch's val report (not in the reference)",
                              min=1)

    def check(self) -> None:
        super().check()
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in 0..epochs ({self.epochs}), got {self.warmup_epochs}")


# About a minute on one CPU core: 20 weight-only steps, then 40 steps with an architecture step
# each. Weights: lr 0.1 (with the reference's 0.025 the old 30-step preset ended at train loss
# 1.56 on MNIST; this one ends near 0.55).
# Alphas: lr 0.2, so that lr x architecture steps (40 x 0.2 = 8) is about the reference's
# (50 epochs x 391 steps x 3e-4 = 5.9), the largest distance Adam can move them; at 3e-3 a tiny
# run left the mean entropy at ln 8 to four digits.
DARTS_TINY = {"epochs": 3, "batch_size": 16, "warmup_epochs": 1, "steps_per_epoch": 20, "lr": 0.1,
              "arch_lr": 0.2}


class Architect:
    """The architecture step of DARTS on any model with `arch_parameters()` (the rest of its
    parameters are the weights, optimized by `weight_optimizer`, an SGD)."""

    def __init__(self, model: nn.Module, trainer: Trainer, weight_optimizer: torch.optim.SGD,
                 lr: float = 3e-4, betas: Sequence[float] = (0.5, 0.999), weight_decay: float = 1e-3,
                 second_order: bool = False, hvp_scale: float = 0.01):
        self.model = model
        self.trainer = trainer
        self.weight_optimizer = weight_optimizer
        self.second_order = second_order
        self.hvp_scale = hvp_scale
        self.arch_params = list(model.arch_parameters())
        arch_ids = {id(p) for p in self.arch_params}
        self.weights = {name: p for name, p in model.named_parameters() if id(p) not in arch_ids}
        self.optimizer = torch.optim.Adam(self.arch_params, lr=lr, betas=tuple(betas),
                                          weight_decay=weight_decay)

    def step(self, train_batch: Batch, arch_batch: Batch) -> None:
        if self.second_order:
            grads = self.hypergradient(train_batch, arch_batch)
        else:
            grads = self.trainer.gradients(self._loss(self.weights, arch_batch), self.arch_params)
        for param, grad in zip(self.arch_params, grads):
            param.grad = grad.detach()
        self.optimizer.step()

    def _loss(self, weights: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        # Copies of the buffers: the virtual and perturbed forwards must not move BN statistics.
        buffers = {name: b.clone() for name, b in self.model.named_buffers()}
        forward = lambda x: functional_call(self.model, {**weights, **buffers}, (x,))  # noqa: E731
        return self.trainer.loss(forward, batch, allow_fp16=False)

    def hypergradient(self, train_batch: Batch, arch_batch: Batch) -> list[torch.Tensor]:
        """d L_arch(w', alpha) / d alpha with w' one virtual weight step ahead, second order."""
        group = self.weight_optimizer.param_groups[0]
        eta, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        names = list(self.weights)
        params = [self.weights[n] for n in names]
        grads = self.trainer.gradients(self._loss(self.weights, train_batch), params)
        unrolled = {}
        for name, p, g in zip(names, params, grads):
            buf = self.weight_optimizer.state.get(p, {}).get("momentum_buffer")
            step = g + decay * p.detach() + (momentum * buf if buf is not None else 0.0)
            unrolled[name] = (p.detach() - eta * step).requires_grad_()
        loss = self._loss(unrolled, arch_batch)
        arch_grads = self.trainer.gradients(loss, self.arch_params + list(unrolled.values()))
        direct, v = arch_grads[:len(self.arch_params)], arch_grads[len(self.arch_params):]
        implicit = self.hessian_vector_product(dict(zip(names, v)), train_batch)
        return [d - eta * h for d, h in zip(direct, implicit)]

    def hessian_vector_product(self, v: dict[str, torch.Tensor], batch: Batch) -> list[torch.Tensor]:
        """(d^2 L_train / d alpha d w) v by central differences at w +- r v, r = scale / |v|."""
        r = self.hvp_scale / torch.cat([x.flatten() for x in v.values()]).norm()

        def arch_grad(sign: float) -> tuple[torch.Tensor, ...]:
            shifted = {n: self.weights[n].detach() + sign * r * v[n] for n in self.weights}
            return self.trainer.gradients(self._loss(shifted, batch), self.arch_params)

        plus, minus = arch_grad(1.0), arch_grad(-1.0)
        return [(p - m) / (2 * r) for p, m in zip(plus, minus)]


def alpha_entropy(alphas: torch.Tensor) -> float:
    """Mean entropy (nats) of the per-edge op distributions; log(8) = 2.08 is uniform."""
    return float(entropy(torch.softmax(alphas.detach().float(), dim=-1)).mean())


class DartsSearch:
    name = "darts"
    unit_name = "epoch"

    def __init__(self, config: DartsSearchConfig, data: SearchData, precision: Precision):
        config.check()
        weight_part, arch_part = split_indices(len(data.train), config.arch_fraction, config.seed)
        config, notice = fit_batch_to_split(config, min(len(weight_part), len(arch_part)), ("lr", "lr_min"))
        self.notices = [notice] if notice else []
        self.config = config
        self.data = data
        self.metric = metric_name(data.soft_labels)
        self.last_metrics: dict = {}
        self.space_config = space_config("darts", config.space_preset, data)
        torch.manual_seed(config.seed)
        self.model = precision.prepare_model(DartsSearchNetwork(self.space_config))
        self.trainer = Trainer(config.loss(), precision, config.grad_clip)
        self.weight_optimizer = torch.optim.SGD(self.model.weight_parameters(), lr=config.lr,
                                                momentum=config.momentum, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.weight_optimizer, config.epochs,
                                                                    eta_min=config.lr_min)
        self.architect = Architect(self.model, self.trainer, self.weight_optimizer, config.arch_lr,
                                   config.arch_betas, config.arch_weight_decay, config.order == 2,
                                   config.hvp_scale)
        self.weight_stream = BatchStream(data.train.subset(weight_part), config.batch_size, config.seed + 1)
        self.arch_stream = BatchStream(data.train.subset(arch_part), config.batch_size, config.seed + 2)
        self.evaluator = PathEvaluator(self.model, self.trainer,
                                       calibration_batches(data.train.subset(weight_part), config.batch_size,
                                                           config.calib_batches, config.seed + 4),
                                       data.val.fixed_batches(eval_batch_size(config.batch_size)))
        self.num_units = config.epochs

    def probe_forward(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return model(images)

    def unit_steps(self, unit: int) -> int:
        return self.config.epoch_steps(min(self.weight_stream.batches_per_epoch,
                                           self.arch_stream.batches_per_epoch))

    def run_unit(self, unit: int, progress: Callable[[int], None]) -> dict:
        update_arch = unit >= self.config.warmup_epochs
        lr = self.weight_optimizer.param_groups[0]["lr"]
        self.model.train()
        losses = []
        for _ in range(self.unit_steps(unit)):
            train_batch, arch_batch = self.weight_stream.next(), self.arch_stream.next()
            if update_arch:
                self.architect.step(train_batch, arch_batch)
            losses.append(self.trainer.step(self.weight_optimizer, self.model, train_batch,
                                            list(self.model.weight_parameters())))
            progress(1)
        self.scheduler.step()
        # Running statistics lag weights that moved a lot (few steps, high lr): re-estimate them.
        metrics = self.evaluator(self.model)
        genotype = self.model.genotype()
        skips = {kind: sum(op == "skip_connect" for op, _ in getattr(genotype, kind))
                 for kind in ("normal", "reduce")}
        entropies = [alpha_entropy(self.model.alphas_normal), alpha_entropy(self.model.alphas_reduce)]
        self.last_metrics = {"agreement": metrics["agreement"], "kl": metrics["kl"],
                             "arch_entropy": sum(entropies) / 2}
        record = {
            "lr": lr, "arch_updates": update_arch, "train_loss": sum(losses) / len(losses),
            f"val_{self.metric}": metrics["agreement"], "val_kl": metrics["kl"],
            "alpha_entropy": sum(entropies) / 2,
            "alpha_entropy_normal": entropies[0], "alpha_entropy_reduce": entropies[1],
            "skip_normal": skips["normal"], "skip_reduce": skips["reduce"],
            "genotype": {"normal": genotype.normal, "reduce": genotype.reduce},
            "probs_normal": torch.softmax(self.model.alphas_normal.detach(), -1).tolist(),
            "probs_reduce": torch.softmax(self.model.alphas_reduce.detach(), -1).tolist(),
        }
        if skips["normal"] > SKIP_WARNING:
            record["warning"] = (f"normal cell has {skips['normal']} skip connections: the search may be "
                                 f"collapsing (raise warmup_epochs or stop earlier)")
        if unit == 0 and self.notices:
            record["notice"] = "; ".join(self.notices)
        return record

    def final_metrics(self) -> dict:
        """The last epoch's val metric (supernet, recalibrated BN) and mean alpha entropy, for
        `health.search_health`; empty before the first epoch."""
        if not self.last_metrics:
            return {}
        return {"metric": self.metric, self.metric: self.last_metrics["agreement"], **self.last_metrics,
                "num_classes": self.data.num_classes, "uniform_entropy": math.log(len(PRIMITIVES)),
                "measured_on": "the supernet"}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "weight_optimizer": self.weight_optimizer.state_dict(),
                "arch_optimizer": self.architect.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "trainer": self.trainer.state_dict(),
                "weight_stream": self.weight_stream.state_dict(),
                "arch_stream": self.arch_stream.state_dict(), "last_metrics": dict(self.last_metrics)}

    def load_state_dict(self, state: dict) -> None:
        if any(".edges." in key for key in state["model"]):
            raise UsageError("this DARTS checkpoint holds the edge-by-edge supernet of an older dfnas; its weights "
                             "do not fit the fused supernet (darts_fused.py): start the search again")
        self.model.load_state_dict(state["model"])
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.architect.optimizer.load_state_dict(state["arch_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.trainer.load_state_dict(state["trainer"])
        self.weight_stream.load_state_dict(state["weight_stream"])
        self.arch_stream.load_state_dict(state["arch_stream"])
        self.last_metrics = dict(state.get("last_metrics", {}))

    def architecture(self) -> Architecture:
        return make_architecture("darts", self.space_config, self.model.genotype())

    def plot(self, directory: Path) -> list[Path]:
        from dfnas.nas.strategies.plots import heatmap

        path = directory / "alphas.png"
        panels = {kind: torch.softmax(getattr(self.model, f"alphas_{kind}").detach().float().cpu(), -1)
                  for kind in ("normal", "reduce")}
        edges = [f"{j}->{node + 2}" for node in range(4) for j in range(node + 2)]
        heatmap(path, panels, row_labels=edges, col_labels=list(PRIMITIVES),
                title="DARTS op probabilities softmax(alpha)")
        return [path]
