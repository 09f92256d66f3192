"""ProxylessNAS (Cai et al. 2019): binary-gated paths, hardware-aware architecture updates.

Each block has architecture parameters alpha (one per candidate, init N(0, 1e-3)). A weight step
runs one path drawn from softmax(alpha) per block. Every `arch_every` weight steps (after
`warmup_epochs`) the architecture is updated on a batch of the arch split, in one of two ways:

- `gradient`: binary gates g (one-hot on the sampled path, straight-through to p = softmax(alpha)),
  `gate_mode` "full_v2" or "two" (`proxyless_gates.py`). The loss adds the expected cost
  E[c] = sum_blocks sum_k p_k c_k (MFLOPs or ms, from a table): `mul#log` alpha_r * L *
  (log E[c] / log T)^beta (reference default, alpha_r 0.2, beta 0.3) or `add#linear`
  L + lambda (E[c] - T) / T (lambda 0.1).
- `reinforce`: `rl_samples` paths, each scored on its own arch batch, reward
  R = agreement * (T / c)^w (w = 0.1), baseline b <- m b + (1 - m) mean(R) (see `baseline_momentum`),
  loss -mean((R - b) log p(path)) (`proxyless_reinforce.py`).

Architecture optimizer: Adam lr 1e-3, betas (0, 0.999), eps 1e-8, no weight decay. Weights: SGD
nesterov, momentum 0.9, lr 0.025 cosine, wd 4e-5, label smoothing 0.1 (real data).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from dfnas.config import option
from dfnas.nas.arch import Architecture, make_architecture
from dfnas.nas.profile import CostTable, build_latency_table, cost_table
from dfnas.nas.search_data import SearchData
from dfnas.nas.spaces.proxyless import ProxylessSupernet
from dfnas.nas.spaces.proxyless_blocks import ZERO
from dfnas.nas.strategies.base import SearchConfig, space_config
from dfnas.nas.strategies.evaluator import PathEvaluator, calibration_batches, eval_batch_size
from dfnas.nas.strategies.health import fit_batch_to_split, mean_entropy, mean_uniform_entropy, metric_name
from dfnas.nas.strategies.proxyless_gates import (GATE_MODES, GateForward, gate_probe, hardware_loss,
                                                  keep_pair_mass, sample_gates, sample_path)
from dfnas.nas.strategies.proxyless_reinforce import Reinforce
from dfnas.data.images import Batch, BatchStream, split_indices
from dfnas.device import Precision
from dfnas.nas.trainer import Trainer

ARCH_UPDATES = ("gradient", "reinforce")
REGULARIZERS = ("mul#log", "add#linear", "none")
HW_METRICS = ("flops", "latency")


@dataclass
class ProxylessSearchConfig(SearchConfig):
    epochs: int = option(120, "supernet training epochs", min=1, max=100000)
    warmup_epochs: int = option(40, "epochs of weight training before the architecture is updated", min=0)
    batch_size: int = option(256, "training batch size", min=1, max=65536)
    lr: float = option(0.025, "SGD learning rate of the weights (cosine schedule)", above=0)
    momentum: float = option(0.9, "SGD momentum of the weights", min=0, max=0.9999)
    weight_decay: float = option(4e-5, "weight decay of the weights", min=0)
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy terms", min=0, max=0.999)
    grad_clip: float = option(0.0, "clip the weights' gradient norm to this (0 = off; the reference does not clip)",
                              min=0)
    arch_lr: float = option(1e-3, "Adam learning rate of the architecture parameters", above=0)
    arch_betas: tuple[float, float] = option((0.0, 0.999), "Adam betas of the architecture parameters", min=0,
                                             max=0.9999)
    arch_eps: float = option(1e-8, "Adam epsilon of the architecture parameters", above=0)
    arch_every: int = option(5, "one architecture step every N weight steps", min=1)
    arch_fraction: float = option(0.5, "fraction of the training split that drives the architecture steps",
                                above=0, max=0.9)
    gate_mode: str = option("full_v2", "binary gates: full_v2 (all paths' gradients) or two (two sampled paths)",
                          choices=GATE_MODES)
    arch_update: str = option("gradient", "architecture update: gradient (binary gates) or reinforce",
                            choices=ARCH_UPDATES)
    regularizer: str = option("mul#log", "cost loss: mul#log, add#linear or none", choices=REGULARIZERS)
    hw_metric: str = option("flops", "cost: flops (MFLOPs) or latency (ms, from a table)", choices=HW_METRICS)
    target: float | None = option(None, "cost target T (not set: halfway between the space's extremes)", above=0)
    latency_table: str | None = option(None, "latency table JSON (not set: measured on this device)")
    reg_alpha: float = option(0.2, "mul#log regularizer: alpha", min=0)
    reg_beta: float = option(0.3, "mul#log regularizer: beta", min=0)
    reg_lambda: float = option(0.1, "add#linear regularizer: lambda", min=0)
    rl_samples: int = option(10, "REINFORCE: sampled architectures per update", min=1)
    rl_exponent: float = option(0.1, "REINFORCE: exponent of the cost in the reward", min=0)
    baseline_momentum: float = option(0.99, "REINFORCE: momentum of the reward baseline", min=0, max=0.9999)
    calib_batches: int = option(10, "batches that recalibrate BN before each val report", min=1)
    calib_batch_size: int = option(128, "batch size of the BN recalibration", min=1)

    def check(self) -> None:
        super().check()
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in 0..epochs ({self.epochs}), got {self.warmup_epochs}")


# Under a minute on one CPU core: 600 weight steps of 64 (100 of them warm-up) and an
# architecture step after every third. Tiny spaces cost ~1-6 MFLOPs, where mul#log's log ratio is
# undefined or unstable: add#linear. Weights: lr 0.1 (at the reference's 0.025 the supernet stayed
# at loss ln 10 for 60 steps and every removable block chose `zero`). Alphas: lr 0.1, so they
# concentrate within the 160 architecture steps (MNIST: mean entropy 1.87 -> 0.37) and the
# sampled paths, hence the training, converge on the argmax path that the search returns.
PROXYLESS_TINY = {"epochs": 12, "warmup_epochs": 2, "batch_size": 64, "steps_per_epoch": 50, "lr": 0.1,
                  "arch_every": 3, "arch_lr": 0.1, "regularizer": "add#linear", "rl_samples": 4,
                  "calib_batches": 4, "calib_batch_size": 64}


class ProxylessSearch:
    name = "proxyless"
    unit_name = "epoch"

    def __init__(self, config: ProxylessSearchConfig, data: SearchData, precision: Precision):
        config.check()
        weight_part, arch_part = split_indices(len(data.train), config.arch_fraction, config.seed)
        config, notice = fit_batch_to_split(config, min(len(weight_part), len(arch_part)))
        self.notices = [notice] if notice else []
        self.config = config
        self.metric = metric_name(data.soft_labels)
        self.num_classes = data.num_classes
        self.last_metrics: dict = {}
        self.space_config = space_config("proxyless", config.space_preset, data)
        self.precision = precision
        torch.manual_seed(config.seed)
        self.model: ProxylessSupernet = precision.prepare_model(ProxylessSupernet(self.space_config))
        self.edges = self.model.mixed_edges
        self.alphas = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(len(e.candidates), device=precision.device))
                                       for e in self.edges)
        self.table, self.cost_scale = self._cost_table()
        self._set_target()
        self._check_target()
        self.trainer = Trainer(config.loss(), precision, config.grad_clip)
        self.weight_optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                                nesterov=True, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.weight_optimizer, config.epochs)
        self.arch_optimizer = torch.optim.Adam(self.alphas, lr=config.arch_lr, betas=tuple(config.arch_betas),
                                               eps=config.arch_eps, weight_decay=0.0)
        self.weight_stream = BatchStream(data.train.subset(weight_part), config.batch_size, config.seed + 1)
        self.arch_stream = BatchStream(data.train.subset(arch_part), config.batch_size, config.seed + 2)
        self.sampler = torch.Generator().manual_seed(config.seed + 3)
        self.reinforce = Reinforce(config.baseline_momentum)
        self.gate_combine = gate_probe  # benchmarks swap in `gate_reference`, the eager spec
        self.evaluator = PathEvaluator(self.model, self.trainer,
                                       calibration_batches(data.train.subset(weight_part), config.calib_batch_size,
                                                           config.calib_batches, config.seed + 4),
                                       data.val.fixed_batches(eval_batch_size(config.batch_size)))
        self.num_units = config.epochs

    # --- costs

    def _cost_table(self) -> tuple[CostTable, float]:
        if self.config.hw_metric == "flops":
            return cost_table("proxyless", self.space_config, "macs"), 1e-6
        if self.config.latency_table is not None:
            table = CostTable.load(self.config.latency_table)
            expected = cost_table("proxyless", self.space_config)
            if table.space != "proxyless" or table.metric != "latency_ms" or table.config != expected.config:
                raise ValueError(f"latency table {self.config.latency_table} is for {table.space}/{table.metric} "
                                 f"at another config than this search's proxyless space")
            return table, 1.0
        return build_latency_table("proxyless", self.space_config, self.precision.device), 1.0

    def _cost_bounds(self) -> tuple[float, float]:
        low = self.table.fixed_total + sum(min(s.values()) for s in self.table.slots)
        high = self.table.fixed_total + sum(max(s.values()) for s in self.table.slots)
        return low * self.cost_scale, high * self.cost_scale

    def _set_target(self) -> None:
        """The table's cost bounds, and the target T (not set: halfway between them)."""
        self.lowest, self.highest = self._cost_bounds()
        self.target = self.config.target if self.config.target is not None else (self.lowest + self.highest) / 2

    def _check_target(self) -> None:
        unit = "MFLOPs" if self.config.hw_metric == "flops" else "ms"
        if self.target < self.lowest:
            raise ValueError(f"target {self.target:.4g} {unit} is impossible: this space's architectures "
                             f"cost {self.lowest:.4g} to {self.highest:.4g} {unit}")
        if self.config.regularizer == "mul#log" and min(self.lowest, self.target) <= 1.0:
            raise ValueError(f"mul#log needs costs and target above 1 {unit} (log ratio); this space spans "
                             f"{self.lowest:.4g} to {self.highest:.4g} {unit}: use regularizer add#linear")

    def path_cost(self, choices: Sequence[int]) -> float:
        return self.table.cost(list(choices)) * self.cost_scale

    def expected_cost(self) -> torch.Tensor:
        probs = [torch.softmax(a, dim=0).cpu() for a in self.alphas]
        return self.table.expected(probs) * self.cost_scale

    def sample_path(self) -> list[int]:
        return sample_path(self.edges, self.alphas, self.sampler)

    # --- steps

    def probe_forward(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return model(images)

    def unit_steps(self, unit: int) -> int:
        return self.config.epoch_steps(self.weight_stream.batches_per_epoch)

    def gradient_arch_step(self, batch: Batch) -> dict:
        gates, involved = sample_gates(self.edges, self.alphas, self.config.gate_mode, self.sampler)
        old = [a.detach()[inv].clone() for a, inv in zip(self.alphas, involved)]
        with GateForward(self.edges, gates, involved, self.gate_combine):
            # Unscaled fp16 gate gradients would underflow: architecture steps never run in fp16.
            loss = self.trainer.loss(self.model, batch, allow_fp16=False)
        expected = self.expected_cost().to(loss.device)
        total = hardware_loss(loss, expected, self.target, self.config.regularizer,
                              self.config.reg_alpha, self.config.reg_beta, self.config.reg_lambda)
        self.arch_optimizer.zero_grad(set_to_none=True)
        grads = self.trainer.gradients(total, list(self.alphas), allow_unused=True)
        for alpha, grad in zip(self.alphas, grads):
            alpha.grad = torch.zeros_like(alpha) if grad is None else grad
        self.arch_optimizer.step()
        if self.config.gate_mode == "two":
            keep_pair_mass(self.alphas, involved, old)
        arch_loss = self.trainer.world.averaged([total.detach().reshape(1)])[0]  # the global batch's
        return {"arch_loss": float(arch_loss), "expected_cost": float(expected.detach())}

    def reinforce_arch_step(self) -> dict:
        paths, rewards = [], []
        for _ in range(self.config.rl_samples):
            path = self.sample_path()
            batch = self.arch_stream.next()
            with torch.no_grad(), self.precision.autocast():
                logits = self.model(self.precision.prepare_input(batch.images)).float()
            accuracy = float((logits.argmax(1) == batch.reference_labels).float().mean())
            rewards.append(accuracy * (self.target / self.path_cost(path)) ** self.config.rl_exponent)
            paths.append(path)
        return self.reinforce.step(self.arch_optimizer, self.alphas, paths, rewards)

    def run_unit(self, unit: int, progress: Callable[[int], None]) -> dict:
        update_arch = unit >= self.config.warmup_epochs
        lr = self.weight_optimizer.param_groups[0]["lr"]
        self.model.train()
        losses, arch_records = [], []
        for step in range(self.unit_steps(unit)):
            self.sample_path()
            losses.append(self.trainer.step(self.weight_optimizer, self.model, self.weight_stream.next(),
                                            list(self.model.parameters())))
            if update_arch and (step + 1) % self.config.arch_every == 0:
                if self.config.arch_update == "gradient":
                    arch_records.append(self.gradient_arch_step(self.arch_stream.next()))
                else:
                    arch_records.append(self.reinforce_arch_step())
            progress(1)
        self.scheduler.step()
        choices = self.derived_choices()
        self.model.set_active(choices)
        metrics = self.evaluator(self.model)
        probs = [torch.softmax(a.detach(), 0).cpu() for a in self.alphas]
        entropy = mean_entropy(probs)
        self.last_metrics = {"agreement": metrics["agreement"], "kl": metrics["kl"], "arch_entropy": entropy}
        # The val metric is the argmax path's (after BN recalibration): what the search returns.
        record = {
            "lr": lr, "arch_updates": len(arch_records), "train_loss": sum(losses) / len(losses),
            f"val_{self.metric}": metrics["agreement"], "val_kl": metrics["kl"],
            "expected_cost": float(self.expected_cost().detach()),
            "argmax_cost": self.path_cost(self._indices(choices)),
            "target": self.target, "cost_unit": "MFLOPs" if self.config.hw_metric == "flops" else "ms",
            "entropy": entropy, "zero_blocks": choices.count(ZERO),
            "choices": choices, "probs": [p.tolist() for p in probs],
        }
        for key in ("arch_loss", "reward", "baseline"):
            values = [r[key] for r in arch_records if key in r]
            if values:
                record[key] = sum(values) / len(values)
        if unit == 0 and self.notices:
            record["notice"] = "; ".join(self.notices)
        return record

    def final_metrics(self) -> dict:
        """The argmax path's val metric after the last epoch, the mean alpha entropy and the
        `zero` choices, for `health.search_health`; empty before the first epoch."""
        if not self.last_metrics:
            return {}
        choices = self.derived_choices()
        return {"metric": self.metric, self.metric: self.last_metrics["agreement"], **self.last_metrics,
                "num_classes": self.num_classes,
                "uniform_entropy": mean_uniform_entropy([len(a) for a in self.alphas]),
                "zero_blocks": choices.count(ZERO),
                "zero_capable_blocks": sum(ZERO in e.candidate_names for e in self.edges),
                "measured_on": "the argmax path"}

    def _indices(self, choices: Sequence[str]) -> list[int]:
        return [edge.candidate_names.index(name) for edge, name in zip(self.edges, choices)]

    def derived_choices(self) -> list[str]:
        return [edge.candidate_names[int(a.argmax())] for edge, a in zip(self.edges, self.alphas)]

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "alphas": [a.detach().clone() for a in self.alphas],
                "weight_optimizer": self.weight_optimizer.state_dict(),
                "arch_optimizer": self.arch_optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "trainer": self.trainer.state_dict(), "weight_stream": self.weight_stream.state_dict(),
                "arch_stream": self.arch_stream.state_dict(), "sampler": self.sampler.get_state(),
                "baseline": self.reinforce.baseline, "cost_table": self.table.to_dict(),
                "last_metrics": dict(self.last_metrics)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            for alpha, saved in zip(self.alphas, state["alphas"]):
                alpha.copy_(saved)
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.trainer.load_state_dict(state["trainer"])
        self.weight_stream.load_state_dict(state["weight_stream"])
        self.arch_stream.load_state_dict(state["arch_stream"])
        self.sampler.set_state(state["sampler"])
        self.reinforce.baseline = state["baseline"]
        self.last_metrics = dict(state.get("last_metrics", {}))
        self.table = CostTable.from_dict(state["cost_table"])
        self._set_target()  # a measured latency table differs between runs: bounds and target follow the saved one

    def architecture(self) -> Architecture:
        table = self.table if self.config.hw_metric == "latency" else None
        return make_architecture("proxyless", self.space_config, self.derived_choices(), latency_table=table)

    def plot(self, directory: Path) -> list[Path]:
        from dfnas.nas.strategies.plots import heatmap

        width = max(len(a) for a in self.alphas)
        grid = torch.full((len(self.alphas), width), float("nan"))
        for row, alpha in enumerate(self.alphas):
            grid[row, :len(alpha)] = torch.softmax(alpha.detach().float().cpu(), 0)
        names = max((e.candidate_names for e in self.edges), key=len)
        path = directory / "alphas.png"
        heatmap(path, {"blocks": grid}, [f"block {i}" for i in range(len(self.alphas))], names,
                "ProxylessNAS op probabilities softmax(alpha)")
        return [path]
