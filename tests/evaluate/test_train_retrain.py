"""The retraining loop's pure parts (issue 15, mutation testing): the learning-rate schedule, the
optimizer's parameter groups and the history's round trip, checked directly on small numbers."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dfnas.evaluate.config import TrainConfig
from dfnas.evaluate.retrain import History, learning_rate, make_optimizer


def test_learning_rate_warms_up_linearly_then_follows_the_cosine_to_zero():
    """Guards against an off-by-one in the warm-up (`step + 1`, `warmup + 1`), the warm-up ending
    a step early or late (`<` for `<=`), the cosine's phase or amplitude, and the end of decay."""
    config = TrainConfig(lr=0.1, warmup_steps=3, steps=11)
    assert [learning_rate(s, config) for s in range(3)] == pytest.approx([0.025, 0.05, 0.075])
    assert learning_rate(3, config) == pytest.approx(0.1)  # the peak, where the cosine starts
    assert learning_rate(5, config) == pytest.approx(0.05 * (1 + math.cos(math.pi * 2 / 8)))
    assert learning_rate(7, config) == pytest.approx(0.05)  # half way through the decay
    assert learning_rate(11, config) == pytest.approx(0.0, abs=1e-12)


def test_a_warm_up_longer_than_the_run_ends_one_step_before_its_end():
    """Guards against the warm-up bound `min(warmup_steps, steps - 1)` (a run shorter than its
    warm-up still reaches the peak rate at its last step) and the `max(1, ...)` guard of a
    one-step run (which would divide by zero)."""
    config = TrainConfig(lr=0.2, warmup_steps=50, steps=5)
    assert [learning_rate(s, config) for s in range(5)] == pytest.approx([0.04, 0.08, 0.12, 0.16, 0.2])
    one_step = TrainConfig(lr=0.2, warmup_steps=50, steps=1)
    assert learning_rate(0, one_step) == pytest.approx(0.2)
    no_warmup = TrainConfig(lr=0.2, warmup_steps=0, steps=2)
    assert [learning_rate(s, no_warmup) for s in range(2)] == pytest.approx([0.2, 0.1])


def small_network() -> nn.Module:
    network = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    network[1].weight.requires_grad_(False)  # frozen parameters are left out
    return network


def test_sgd_decays_only_conv_and_linear_weights_with_nesterov_momentum():
    """Guards against weight decay on BatchNorm parameters and biases (or on nothing), frozen
    parameters handed to the optimizer, and the optimizer's learning rate or momentum lost."""
    network = small_network()
    config = TrainConfig(lr=0.3, momentum=0.8, weight_decay=0.01)
    optimizer = make_optimizer(network, config)
    assert isinstance(optimizer, torch.optim.SGD)
    decay, no_decay = optimizer.param_groups
    assert [id(p) for p in decay["params"]] == [id(network[0].weight), id(network[3].weight)]
    assert [id(p) for p in no_decay["params"]] == [id(network[0].bias), id(network[1].bias), id(network[3].bias)]
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    for group in optimizer.param_groups:
        assert group["lr"] == 0.3 and group["momentum"] == 0.8 and group["nesterov"]


def test_sgd_without_momentum_is_plain_and_adamw_takes_momentum_as_beta1():
    """Guards against Nesterov requested without momentum (torch refuses it) and AdamW's betas."""
    sgd = make_optimizer(small_network(), TrainConfig(momentum=0.0))
    assert all(not group["nesterov"] and group["momentum"] == 0.0 for group in sgd.param_groups)
    adamw = make_optimizer(small_network(), TrainConfig(optimizer="adamw", lr=0.002, momentum=0.7, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    decay, no_decay = adamw.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(group["betas"] == (0.7, 0.999) and group["lr"] == 0.002 for group in adamw.param_groups)


def test_history_round_trips_and_copies_its_lists():
    """Guards against a checkpoint's history losing a field or sharing lists with the live one."""
    history = History([1.5, 0.5], [{"epoch": 1}], 2.25)
    state = history.to_dict()
    restored = History.from_dict(state)
    assert restored == history
    state["losses"].append(9.0)
    assert history.losses == [1.5, 0.5]
