"""The channel encoding: every ratio vector gives a valid network of the right shape, the same one
torch-pruning's own group-by-group pruning gives, with the least important channels removed."""
from __future__ import annotations

import copy
import functools
import random

import pytest
import torch
import torch_pruning as tp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dfnas.config import UsageError
from dfnas.nas.profile import count_macs, count_params
from dfnas.prune.channels import ChannelSpace, shrink
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


# ----------------------------------------------------------------- found by mutation testing (issue 15)


def test_a_frozen_double_teacher_traced_under_no_grad_gives_the_same_space():
    """The teacher arrives frozen (requires_grad False), maybe in float64, maybe under no_grad: the
    space is that of its trainable float32 copy, and the teacher itself is left as it was."""
    torch.manual_seed(0)
    teacher = ResNetLike()
    reference = ChannelSpace(teacher, SHAPE)
    frozen = copy.deepcopy(teacher).double().requires_grad_(False)
    with torch.no_grad():
        space = ChannelSpace(frozen, SHAPE)
    assert space.groups == reference.groups and space.ranking == reference.ranking
    assert space.teacher_macs == reference.teacher_macs and space.layer_costs == reference.layer_costs
    assert all(p.dtype == torch.float32 and p.requires_grad for p in space.model.parameters())
    assert not space.model.training
    assert all(p.dtype == torch.float64 and not p.requires_grad for p in frozen.parameters())


def test_the_classifier_is_never_a_group_and_sizes_are_the_teachers():
    model = plain_cnn(width=6)
    space = ChannelSpace(model, SHAPE)
    assert [(g.name, g.channels) for g in space.groups] == [("0", 6), ("3", 12)]
    assert space.groups[0].members == ("0", "1", "3")
    assert space.teacher_params == count_params(model)
    assert space.teacher_macs == count_macs(model, SHAPE)


def test_equally_important_channels_are_ranked_by_index():
    model = plain_cnn(width=4)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                module.weight.fill_(0.5)
                module.bias.fill_(0.0)
    space = ChannelSpace(model, SHAPE)
    assert space.ranking["0"] == [0, 1, 2, 3] and space.ranking["3"] == list(range(8))
    pruned = space.prune(space.keep_counts([0.5, 1.0]))
    torch.testing.assert_close(pruned[0].weight, model[0].weight[:2])


def test_keep_counts_round_and_stay_within_one_and_all_channels():
    space = ChannelSpace(plain_cnn(width=6), SHAPE)
    assert space.keep_counts([1.0, 1.0]) == {"0": 6, "3": 12}
    assert space.keep_counts([0.01, 0.5]) == {"0": 1, "3": 6}
    assert space.keep_counts([0.42, 0.46]) == {"0": 3, "3": 6}  # round(2.52), round(5.52)
    with pytest.raises(ValueError, match=r"^channel ratio 1.5 of group 3 is outside \(0, 1\]$"):
        space.keep_counts([0.5, 1.5])
    with pytest.raises(ValueError, match=r"^expected 2 ratios \(one per prunable group\), got 3$"):
        space.keep_counts([0.5, 0.5, 0.5])


def test_pruning_leaves_the_space_and_its_network_untouched():
    space = ChannelSpace(ResNetLike(), SHAPE)
    state = {k: v.clone() for k, v in space.model.state_dict().items()}
    small = space.keep_counts([0.25] * len(space))
    space.prune(small)
    assert all(torch.equal(v, space.model.state_dict()[k]) for k, v in state.items())
    assert space.macs(space.keep_counts([1.0] * len(space))) == space.teacher_macs
    assert space.removals(space.keep_counts([1.0] * len(space))) == {}


def test_removals_name_each_layer_and_handler_once_with_the_lowest_ranked_indices():
    space = ChannelSpace(plain_cnn(width=6), SHAPE)
    counts = {"0": 4, "3": 12}
    dropped = set(space.ranking["0"][4:])
    removals = space.removals(counts)
    assert removals == {("0", "prune_out_channels"): dropped, ("1", "prune_out_channels"): dropped,
                        ("3", "prune_in_channels"): dropped}


class _Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.point = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.point(self.depthwise(torch.relu(self.bn(self.stem(x)))))
        return self.fc(x.mean(dim=(2, 3)))


def test_grouped_convolutions_count_macs_on_the_pruned_network():
    space = ChannelSpace(_Depthwise(), SHAPE)
    assert space.layer_costs is None
    for ratios in ([0.5] * len(space), [1.0] * len(space), [0.25] * len(space)):
        counts = space.keep_counts(ratios)
        assert space.macs(counts) == count_macs(space.prune(counts), SHAPE)


def test_linear_layers_cost_their_kept_features():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 4))
    space = ChannelSpace(model, SHAPE)
    assert space.layer_costs == {"1": (10, 64, 1), "3": (4, 10, 1)}  # (out, in, MACs per pair)
    counts = space.keep_counts([0.3])
    assert space.macs(counts) == 64 * 3 + 3 * 4 == count_macs(space.prune(counts), SHAPE)


def test_shrink_cuts_roots_to_the_given_counts_and_refuses_bad_requests():
    model = shrink(ResNetLike(), SHAPE, {"conv1": 3, "layer1.0.conv1": 8, "layer2.0.conv1": 5})
    assert model.conv1.out_channels == model.layer1[1].conv2.out_channels == model.layer2[0].conv1.in_channels == 3
    assert model.layer1[0].conv1.out_channels == 8 and model.layer2[0].conv1.out_channels == 5
    model(torch.zeros(1, *SHAPE))
    linear = shrink(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 4)), SHAPE, {"1": 7})
    assert linear[1].out_features == 7 and linear[3].in_features == 7
    with pytest.raises(ValueError, match=r"^the network has no layer\(s\) \['nope'\] to prune$"):
        shrink(plain_cnn(), SHAPE, {"nope": 1})
    with pytest.raises(ValueError, match=r"^cannot keep 0 output channels of layer 0 \(Conv2d\)$"):
        shrink(plain_cnn(), SHAPE, {"0": 0})
    with pytest.raises(ValueError, match="cannot keep 7 output channels"):
        shrink(plain_cnn(width=6), SHAPE, {"0": 7})
    with pytest.raises(ValueError, match=r"of layer 1 \(BatchNorm2d\)"):
        shrink(plain_cnn(), SHAPE, {"1": 2})
    assert shrink(plain_cnn(width=6), SHAPE, {"0": 6})[0].out_channels == 6


def test_nothing_to_prune_is_refused_with_the_reason():
    with pytest.raises(UsageError, match=r"^the teacher has no prunable layers \(no conv or linear layer outside the "
                                         r"classifier whose output channels can be removed\)$"):
        ChannelSpace(nothing_to_prune(), SHAPE)


class _ReshapedHead(nn.Module):
    """The classifier's output is returned through a view (same storage, another tensor)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 6)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3))).view(-1, 2, 3)


def test_a_classifier_returned_through_a_view_is_still_not_pruned():
    space = ChannelSpace(_ReshapedHead(), SHAPE)
    assert [g.name for g in space.groups] == ["conv"]


def test_channels_are_ranked_by_the_l2_norm_of_their_weights():
    """Channel 0 has one large weight, channel 1 nine small ones: L2 ranks 1 first (2.25 > 2.10),
    an L1 or L3 norm would rank 0 first."""
    model = plain_cnn(width=2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                module.weight.fill_(1.0)
                module.bias.fill_(0.0)
        model[0].weight[0] = 0.0
        model[0].weight[0, 0, 0, 0] = 1.45
        model[0].weight[1] = 0.5
    assert ChannelSpace(model, SHAPE).ranking["0"] == [1, 0]


def test_groups_come_in_module_order_not_name_order():
    layers = []
    for i in range(6):
        layers += [nn.Conv2d(1 if i == 0 else 3, 3, 3, padding=1), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(3 * 64, 2))
    space = ChannelSpace(model, SHAPE)
    assert [g.name for g in space.groups] == ["0", "2", "4", "6", "8", "10"]


def test_macs_are_whole_numbers_summed_from_the_layers():
    space = ChannelSpace(plain_cnn(width=6), SHAPE)
    assert space.layer_costs == {"0": (6, 1, 64 * 9), "3": (12, 6, 16 * 9), "8": (10, 12, 1)}
    for ratios in ([0.5, 0.5], [1.0, 0.25]):
        macs = space.macs(space.keep_counts(ratios))
        assert type(macs) is int and macs == count_macs(space.prune(space.keep_counts(ratios)), SHAPE)
    assert all(type(v) is int for cost in space.layer_costs.values() for v in cost)


def test_a_single_channel_layer_and_a_layer_used_twice_are_costed():
    one = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(36, 2))
    space = ChannelSpace(one, SHAPE)
    assert space.groups[0].channels == 1 and space.macs(space.keep_counts([1.0])) == count_macs(one, SHAPE)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.shared = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.shared(torch.relu(self.shared(self.stem(x)))).mean(dim=(2, 3)))

    twice = Twice()
    space = ChannelSpace(twice, SHAPE)
    assert space.layer_costs["shared"] == (4, 4, 2 * 64 * 9)
    assert space.macs(space.keep_counts([1.0] * len(space))) == count_macs(twice, SHAPE)


def test_a_two_group_convolution_is_counted_on_the_pruned_network():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Flatten(),
                          nn.Linear(4 * 64, 2))
    space = ChannelSpace(model, SHAPE)
    assert space.layer_costs is None
    counts = space.keep_counts([1.0] * len(space))
    assert space.macs(counts) == count_macs(model, SHAPE)


def test_shrink_keeps_a_single_channel_or_all_of_them():
    model = shrink(plain_cnn(width=6), SHAPE, {"0": 1, "3": 12})
    assert model[0].out_channels == 1 and model[3].in_channels == 1 and model[3].out_channels == 12


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
