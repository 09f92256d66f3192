"""Training a PruningNet on the synthetic set (MetaPruning's first stage, data-free).

Every step: a new random ratio vector in the MACs band (the candidates the search will look at),
an augmented synthetic batch labelled by the teacher, the loss T^2 KL(teacher || pruned network)
at temperature T, one Adam step on the generators and the shared parameters. The state (weights,
optimizer, batch stream, ratio sampler, losses) is saved every `save_every` steps and at the end,
so a killed run resumes with the same batches and ratio vectors.
"""
from __future__ import annotations

from typing import Callable

import torch

from dfnas.checkpoint import Checkpointer
from dfnas.data.images import BatchStream, ImageSet
from dfnas.nas.loss import distillation_kl
from dfnas.prune.pruning_net import PruningNet
from dfnas.prune.search import TRIES, RatioEvolution, random_state, set_random_state


class PruningNetTrainer:
    def __init__(self, net: PruningNet, train: ImageSet, label: Callable, sampler: RatioEvolution, *, steps: int,
                 batch_size: int, lr: float, temperature: float, seed: int):
        self.net, self.label, self.sampler = net, label, sampler
        self.steps, self.temperature = steps, temperature
        self.optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        self.stream = BatchStream(train, batch_size, seed, augment=True)
        self.step = 0
        self.losses: list[float] = []

    def draw(self) -> tuple[float, ...]:
        for _ in range(TRIES):
            genome = self.sampler.random_genome()
            if genome is not None:
                return self.sampler.ratios(genome)
        raise ValueError("no channel-ratio vector reaches the MACs band; widen --band or change the budget")

    def train_step(self) -> float:
        ratios = self.draw()
        batch = self.label(self.stream.next())
        logits = self.net(batch.images, ratios)
        loss = distillation_kl(logits, batch.soft_labels, self.temperature) * self.temperature ** 2
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def run(self, checkpointer: Checkpointer, run_config: dict, save_every: int = 100,
            on_step: Callable[[int, float], None] = lambda step, loss: None) -> None:
        self.net.train()
        while self.step < self.steps:
            self.losses.append(self.train_step())
            on_step(self.step, self.losses[-1])
            if self.step % save_every == 0 or self.step == self.steps:
                checkpointer.save(self.state_dict(run_config))
        self.net.eval()

    def state_dict(self, run_config: dict) -> dict:
        return {"run_config": run_config, "step": self.step, "net": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "stream": self.stream.state_dict(),
                "sampler": random_state(self.sampler.rng), "losses": list(self.losses)}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["stream"])
        set_random_state(self.sampler.rng, state["sampler"])
        self.step = int(state["step"])
        self.losses = list(state["losses"])
