"""ProxylessNAS's `reinforce` architecture update (Williams 1992, with a moving baseline).

Each sampled path gets a reward R (the search computes agreement * (T / c)^w); the baseline
follows b <- m b + (1 - m) mean(R) (the first update sets b = mean(R)), and one optimizer step
descends -mean((R - b) log p(path)), raising the probability of paths rewarded above b.
"""
from __future__ import annotations

from typing import Sequence

import torch


def path_log_prob(alphas: Sequence[torch.Tensor], path: Sequence[int]) -> torch.Tensor:
    """log p(path) = sum over blocks of log softmax(alpha)[chosen op]."""
    return sum(torch.log_softmax(a, 0)[k] for a, k in zip(alphas, path))


class Reinforce:
    """The update and its reward baseline (`baseline` is None until the first update)."""

    def __init__(self, momentum: float):
        self.momentum = momentum
        self.baseline: float | None = None

    def step(self, optimizer: torch.optim.Optimizer, alphas: Sequence[torch.Tensor],
             paths: Sequence[Sequence[int]], rewards: Sequence[float]) -> dict:
        log_probs = [path_log_prob(alphas, path) for path in paths]
        mean_reward = sum(rewards) / len(rewards)
        m = self.momentum
        self.baseline = mean_reward if self.baseline is None else m * self.baseline + (1 - m) * mean_reward
        loss = -sum((r - self.baseline) * lp for r, lp in zip(rewards, log_probs)) / len(rewards)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"reward": mean_reward, "baseline": self.baseline}
