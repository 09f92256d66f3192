"""Profilers: table-based counts equal built-model counts; expected costs; latency tables."""
from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from dfnas.nas.profile import (CostTable, arch_cost, build_latency_table, cost_table, count_macs,
                               count_params, darts_slot_probabilities)
from dfnas.nas.spaces import get_space
from dfnas.nas.spaces.darts import DARTS_V2, DartsConfig, Genotype
from dfnas.nas.spaces.darts_ops import PRIMITIVES
from dfnas.nas.spaces.proxyless import ProxylessConfig
from dfnas.nas.spaces.spos import SposConfig




def random_choices(space: str, config, rng: random.Random):
    if space == "darts":
        ops = [p for p in PRIMITIVES if p != "none"]
        cell = lambda: [(rng.choice(ops), j) for node in range(4)  # noqa: E731
                        for j in rng.sample(range(node + 2), 2)]
        return Genotype(cell(), [2, 3, 4, 5], cell(), [2, 3, 4, 5])
    if space == "spos":
        return tuple(rng.randrange(4) for _ in range(config.num_layers))
    return [rng.choice(names) for names in config.block_candidates()]


CASES = [
    ("darts", DartsConfig.tiny(input_size=16)),
    ("darts", DartsConfig(input_size=28, in_channels=1, channels=6, layers=6, width_mult=1.5)),
    ("darts", DartsConfig(input_size=64, channels=8, layers=4, stem="imagenet")),
    ("spos", SposConfig.tiny()),
    ("spos", SposConfig(input_size=64, num_classes=10, width_mult=0.5)),
    ("proxyless", ProxylessConfig.tiny()),
    ("proxyless", ProxylessConfig(input_size=64, num_classes=10, width_mult=0.35)),
]


@pytest.mark.parametrize("space, config", CASES, ids=lambda c: c if isinstance(c, str) else "")
def test_table_counts_equal_built_model_counts(space, config):
    rng = random.Random(0)
    for _ in range(3):
        choices = random_choices(space, config, rng)
        network = get_space(space).build_network(config, choices)
        shape = (config.in_channels, config.input_size, config.input_size)
        assert arch_cost(space, config, choices) == (count_macs(network, shape), count_params(network))


@pytest.mark.parametrize("space, config, choices", [
    ("darts", DartsConfig.cifar_eval(), DARTS_V2),
    ("spos", SposConfig.imagenet(), tuple(random.Random(1).randrange(4) for _ in range(20))),
    ("proxyless", ProxylessConfig.imagenet(), None),
])
def test_table_counts_equal_built_model_counts_at_reference_size(space, config, choices):
    choices = choices or random_choices(space, config, random.Random(2))
    network = get_space(space).build_network(config, choices)
    shape = (config.in_channels, config.input_size, config.input_size)
    assert arch_cost(space, config, choices) == (count_macs(network, shape), count_params(network))


def test_count_macs_of_a_hand_computed_model():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2, groups=4),
                          nn.Flatten(), nn.Linear(8 * 2 * 2, 5))
    expected = 8 * 5 * 5 * (3 * 9) + 8 * 2 * 2 * (2 * 9) + 32 * 5
    assert count_macs(model, (3, 5, 5)) == expected
    assert count_params(model) == (8 * 27 + 8) + (8 * 18 + 8) + (32 * 5 + 5)


@pytest.mark.parametrize("space, config", CASES[::3], ids=lambda c: c if isinstance(c, str) else "")
def test_expected_cost_is_exact_for_one_hot_and_differentiable(space, config):
    table = cost_table(space, config, "macs")
    choices = random_choices(space, config, random.Random(3))
    selection = get_space(space).selection(config, choices)
    one_hot = [torch.zeros(len(slot)) for slot in table.slots]
    for probs, index in zip(one_hot, selection):
        if index is not None:
            probs[index] = 1.0
    assert table.expected(one_hot).item() == pytest.approx(arch_cost(space, config, choices)[0], rel=1e-6)
    logits = [torch.randn(len(slot), dtype=torch.float64, requires_grad=True) for slot in table.slots]
    value = table.expected([torch.softmax(l, 0) for l in logits])
    value.backward()
    # d E / d logit_k = p_k (c_k - E_slot): compare one slot against the closed form.
    p = torch.softmax(logits[-1].detach(), 0)
    c = torch.tensor(list(table.slots[-1].values()), dtype=torch.float64)
    torch.testing.assert_close(logits[-1].grad, p * (c - (p * c).sum()))


def test_darts_expected_flops_under_uniform_alphas_is_the_mean_op_cost():
    config = DartsConfig.tiny()
    table = cost_table("darts", config, "macs")
    alphas = torch.zeros(14, 8, requires_grad=True)
    probs = darts_slot_probabilities(config, alphas, alphas)
    assert len(probs) == config.layers * 14
    mean = table.fixed_total + sum(sum(slot.values()) / 8 for slot in table.slots)
    assert table.expected(probs).item() == pytest.approx(mean, rel=1e-6)


def test_latency_table_measures_every_candidate_and_round_trips(tmp_path):
    config = SposConfig.tiny(input_size=16)
    table = build_latency_table("spos", config, warmup=1, repeats=3)
    assert table.metric == "latency_ms" and table.device.startswith("cpu")
    assert len(table.slots) == config.num_layers
    values = list(table.fixed.values()) + [v for slot in table.slots for v in slot.values()]
    assert all(math.isfinite(v) and v > 0 for v in values)
    path = tmp_path / "latency.json"
    table.save(path)
    loaded = CostTable.load(path)
    assert loaded == table
    assert loaded.cost([0] * config.num_layers) == pytest.approx(
        table.fixed_total + sum(slot["shufflenet_3x3"] for slot in table.slots))


def test_cost_table_rejects_bad_inputs():
    with pytest.raises(ValueError, match="'macs' or 'params'"):
        cost_table("spos", SposConfig.tiny(), "latency_ms")
    table = cost_table("spos", SposConfig.tiny(), "params")
    with pytest.raises(ValueError, match="slot 0 has 4 candidates, got 3"):
        table.expected([torch.ones(3)] * 5)
    with pytest.raises(ValueError, match="not a dfnas-cost-table"):
        CostTable.from_dict({"format": "other"})
