"""The channel encoding: every ratio vector gives a valid network of the right shape, the same one
torch-pruning's own group-by-group pruning gives, with the least important channels removed."""
from __future__ import annotations

import functools
import random

import pytest
import torch
import torch_pruning as tp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dfnas.config import UsageError
from dfnas.nas.profile import count_macs
from dfnas.prune.channels import ChannelSpace
from dfnas.prune.pruned import build
from dfnas.teachers import load_teacher
from prune_teachers import ResNetLike, nothing_to_prune, plain_cnn

SHAPE = (1, 8, 8)


def _teachers():
    torch.manual_seed(0)
    return {"residual": ResNetLike(), "plain": plain_cnn(), "default": load_teacher("default").model}


def _shape(name):
    return (1, 28, 28) if name == "default" else SHAPE


def _randomize_batchnorm(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-1, 1)
    return model.eval()


def _pruned_by_torch_pruning(space: ChannelSpace, counts: dict) -> nn.Module:
    """The reference: torch-pruning's dependency graph, one group after another."""
    import copy

    model = copy.deepcopy(space.model)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *space.input_shape))
    modules = dict(model.named_modules())
    for group in space.groups:
        removed = sorted(space.ranking[group.name][counts[group.name]:])
        if removed:
            root = modules[group.name]
            handler = tp.prune_linear_out_channels if isinstance(root, nn.Linear) else tp.prune_conv_out_channels
            graph.get_pruning_group(root, handler, idxs=removed).prune()
    return model.eval()


@pytest.mark.parametrize("name", ["residual", "plain", "default"])
def test_every_ratio_vector_builds_the_network_torch_pruning_builds(name):
    teacher = _randomize_batchnorm(_teachers()[name])
    space = ChannelSpace(teacher, _shape(name))
    rng = random.Random(0)
    x = torch.randn(3, *_shape(name))
    for trial in range(6):
        ratios = [rng.choice([0.1, 0.34, 0.5, 0.77, 1.0]) for _ in range(len(space))]
        if trial == 0:
            ratios = [0.01] * len(space)  # one channel everywhere
        counts = space.keep_counts(ratios)
        pruned = space.prune(counts).eval()
        modules = dict(pruned.named_modules())
        for group in space.groups:
            root = modules[group.name]
            kept = root.out_features if isinstance(root, nn.Linear) else root.out_channels
            assert kept == counts[group.name] == max(1, round(ratios[space.groups.index(group)] * group.channels))
        assert space.macs(counts) == count_macs(pruned, _shape(name))  # the summed count is the profiler's
        reference = _pruned_by_torch_pruning(space, counts)
        with torch.no_grad():
            torch.testing.assert_close(pruned(x), reference(x), rtol=0, atol=0)


def test_residual_couplings_form_one_group():
    """coupling: every layer feeding the stem's residual sums must lose the same channels."""
    space = ChannelSpace(ResNetLike(), SHAPE)
    stem = next(g for g in space.groups if g.name == "conv1")
    assert {"layer1.0.conv2", "layer1.1.conv2", "layer1.0.bn2", "layer2.0.conv1", "layer2.0.downsample.0"} <= set(
        stem.members)
    block_inner = next(g for g in space.groups if g.name == "layer1.0.conv1")
    assert set(block_inner.members) == {"layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2"}
    pruned = space.prune(space.keep_counts([0.5, 1, 1, 1, 1]))
    assert pruned.conv1.out_channels == pruned.layer1[0].conv2.out_channels == pruned.layer2[0].conv1.in_channels == 4


def test_channels_without_any_weight_are_removed_first_and_change_nothing():
    """importance: a layer keeping k channels keeps its k largest; dead channels go first."""
    torch.manual_seed(1)
    model = _randomize_batchnorm(plain_cnn(width=6))
    dead = [1, 4]
    with torch.no_grad():
        model[0].weight[dead] = 0
        model[0].bias[dead] = 0
        model[1].weight[dead] = 0
        model[1].bias[dead] = 0
        model[3].weight[:, dead] = 0
    space = ChannelSpace(model, SHAPE)
    assert sorted(space.ranking["0"][-2:]) == dead
    pruned = space.prune(space.keep_counts([4 / 6, 1.0])).eval()
    assert pruned[0].out_channels == 4
    x = torch.randn(5, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x))


def _analytic_macs(width1: int, width2: int, width3: int, width4: int) -> int:
    """The default teacher (28 -> 28 -> 14 -> 7 -> 7, 3x3 convs, linear head) by hand."""
    return (9 * 1 * width1 * 28 * 28 + 9 * width1 * width2 * 14 * 14 + 9 * width2 * width3 * 7 * 7
            + 9 * width3 * width4 * 7 * 7 + width4 * 10)


def test_macs_of_pruned_networks_match_the_count_by_hand():
    space = ChannelSpace(load_teacher("default").model, (1, 28, 28))
    assert space.teacher_macs == _analytic_macs(16, 32, 64, 64)
    for ratios in ([0.5] * 4, [0.1, 1.0, 0.25, 0.7], [1.0, 0.03, 0.5, 0.5]):
        counts = space.keep_counts(ratios)
        widths = [counts[g.name] for g in space.groups]
        assert space.macs(counts) == _analytic_macs(*widths) == count_macs(space.prune(counts), (1, 28, 28))


def test_a_saved_pruned_network_is_rebuilt_by_the_documented_factory():
    teacher = _randomize_batchnorm(ResNetLike())
    space = ChannelSpace(teacher, SHAPE)
    counts = space.keep_counts([0.25, 0.5, 0.75, 0.5, 0.5])
    pruned = space.prune(counts).eval()
    rebuilt = build("prune_teachers:ResNetLike", {}, list(SHAPE), counts)
    rebuilt.load_state_dict(pruned.state_dict())  # strict: same names and shapes
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), pruned(x), rtol=0, atol=0)


def test_bad_ratios_and_networks_are_refused():
    space = ChannelSpace(plain_cnn(), SHAPE)
    with pytest.raises(ValueError, match="outside"):
        space.keep_counts([0.0, 1.0])
    with pytest.raises(ValueError, match="outside"):
        space.keep_counts([0.5, 1.2])
    with pytest.raises(ValueError, match="expected 2 ratios"):
        space.keep_counts([0.5])
    with pytest.raises(UsageError, match="no prunable layers"):
        ChannelSpace(nothing_to_prune(), SHAPE)


@settings(max_examples=25, derandomize=True, deadline=None, database=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=5, max_size=5))
def test_any_ratio_vector_of_a_residual_network_builds_and_counts_right(ratios):
    """property: every ratio vector in (0, 1] gives a runnable network with the counted shape."""
    space = _residual_space()
    counts = space.keep_counts(ratios)
    pruned = space.prune(counts).eval()
    with torch.no_grad():
        assert pruned(torch.zeros(2, *SHAPE)).shape == (2, 10)
    assert pruned.conv1.out_channels == counts["conv1"] == pruned.layer2[0].conv1.in_channels
    assert space.macs(counts) == count_macs(pruned, SHAPE) <= space.teacher_macs


@functools.lru_cache(maxsize=1)
def _residual_space() -> ChannelSpace:
    torch.manual_seed(0)
    return ChannelSpace(ResNetLike(), SHAPE)
