"""The per-layer channel encoding of a network, and the pruned network it describes.

torch-pruning's dependency graph finds the *prunable groups*: sets of layers whose channels must
be removed together (a conv's output channels, its BatchNorm, the next layer's input channels;
in a residual network every layer feeding the same sum is one group). A network's pruning is then
one number per group, the channels kept; `ChannelSpace` maps a vector of ratios (one per group)
to those counts and builds the pruned copy.

Which channels stay is decided once, on the unpruned network: each group's channels are ranked by
the L2 norm of all the weights attached to them (torch-pruning's `MagnitudeImportance` over the
group), and a group keeping k channels keeps its k highest-ranked ones. So the pruned network
starts from the teacher's own weights for the channels it keeps.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch_pruning as tp
from torch import nn

from dfnas.config import UsageError
from dfnas.nas.profile import count_macs, count_params

ROOT_TYPES = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class Group:
    """One prunable group: named by its root layer (whose output channels it removes)."""

    name: str
    channels: int
    members: tuple[str, ...]  # every layer the group touches, for reports


def _trainable_copy(model: nn.Module) -> nn.Module:
    # The dependency graph traces a forward with autograd; the teacher's frozen parameters
    # would leave it nothing to trace.
    model = copy.deepcopy(model).cpu().float().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def _output_layers(model: nn.Module, input_shape: Sequence[int]) -> list[nn.Module]:
    """The layers whose outputs are the network's outputs (the classifier): never pruned."""
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append((m, o))) for m in model.modules()
             if isinstance(m, ROOT_TYPES)]
    try:
        with torch.no_grad():
            result = model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return [m for m, o in outputs if o is result or o.data_ptr() == result.data_ptr()]


def _dependency_graph(model: nn.Module, input_shape: Sequence[int]) -> tp.DependencyGraph:
    with torch.enable_grad():  # the graph is traced through autograd, even when called under no_grad
        return tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, *input_shape))


def _groups(graph: tp.DependencyGraph, ignored: list[nn.Module]) -> list:
    return list(graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES))


class ChannelSpace:
    """The prunable groups of `model` and the channel ranking inside each.

    Ratios are per group, in module order (`groups`); a ratio r keeps max(1, round(r * channels))
    channels.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int]):
        self.input_shape = tuple(input_shape)
        self.model = _trainable_copy(model)
        names = {module: name for name, module in self.model.named_modules()}
        order = {name: index for index, name in enumerate(names.values())}
        graph = _dependency_graph(self.model, self.input_shape)
        importance = tp.importance.MagnitudeImportance(p=2)
        found = []
        for group in _groups(graph, _output_layers(self.model, self.input_shape)):
            root = group[0].dep.target.module
            scores = importance(group)
            # Each layer a group touches, with the channel indices it loses per root channel
            # (`root_idxs`: torch-pruning maps them through concatenations and flattens).
            edits = [(names[item.dep.target.module], item.dep.handler, list(item.idxs), list(item.root_idxs))
                     for item in group if item.dep.target.module in names]
            found.append((names[root], root, scores, edits))
        if not found:
            raise UsageError("the teacher has no prunable layers (no conv or linear layer outside the classifier "
                             "whose output channels can be removed)")
        found.sort(key=lambda entry: order[entry[0]])
        self.groups = tuple(Group(name, _out_channels(root), tuple(dict.fromkeys(e[0] for e in edits)))
                            for name, root, _, edits in found)
        self.edits = {name: edits for name, _, _, edits in found}
        self.handlers = {(layer, handler.__name__): handler for edits in self.edits.values()
                         for layer, handler, _, _ in edits}
        # Most important first; ties broken by index so the ranking is deterministic.
        self.ranking = {name: sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
                        for name, _, scores, _ in found}
        self.teacher_macs = count_macs(self.model, self.input_shape)
        self.layer_costs = _layer_costs(self.model, self.input_shape)
        self.teacher_params = count_params(self.model)

    def __len__(self) -> int:
        return len(self.groups)

    def keep_counts(self, ratios: Sequence[float]) -> dict[str, int]:
        if len(ratios) != len(self.groups):
            raise ValueError(f"expected {len(self.groups)} ratios (one per prunable group), got {len(ratios)}")
        counts = {}
        for group, ratio in zip(self.groups, ratios):
            if not 0.0 < ratio <= 1.0:
                raise ValueError(f"channel ratio {ratio} of group {group.name} is outside (0, 1]")
            counts[group.name] = max(1, min(group.channels, round(ratio * group.channels)))
        return counts

    def removals(self, counts: dict[str, int]) -> dict[tuple[str, str], set[int]]:
        """(layer, 'prune_out_channels' | 'prune_in_channels' ...) -> the indices it loses, gathered
        over all groups in the unpruned network's numbering."""
        removals: dict[tuple[str, str], set[int]] = {}
        for group in self.groups:
            removed_roots = set(self.ranking[group.name][counts[group.name]:])
            for layer, handler, idxs, root_idxs in self.edits[group.name]:
                lost = {idx for idx, root in zip(idxs, root_idxs) if root in removed_roots}
                if lost:
                    removals.setdefault((layer, handler.__name__), set()).update(lost)
        return removals

    def prune(self, counts: dict[str, int]) -> nn.Module:
        """A pruned copy of the network keeping counts[g] highest-ranked channels of each group g.
        Each layer is cut once, by `removals`: no dependency graph per candidate."""
        model = copy.deepcopy(self.model)
        modules = dict(model.named_modules())
        for (layer, name), lost in self.removals(counts).items():
            self.handlers[layer, name](modules[layer], sorted(lost))
        return model

    def macs(self, counts: dict[str, int]) -> int:
        """MACs of the pruned network: counted on it, or (plain convs and linears only) summed from
        each layer's kept input and output channels times its per-channel-pair cost."""
        if self.layer_costs is None:
            return count_macs(self.prune(counts), self.input_shape)
        removals = self.removals(counts)
        total = 0
        for layer, (outputs, inputs, per_pair) in self.layer_costs.items():
            kept_out = outputs - len(removals.get((layer, "prune_out_channels"), ()))
            kept_in = inputs - len(removals.get((layer, "prune_in_channels"), ()))
            total += kept_out * kept_in * per_pair
        return total


def _layer_costs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, int, int]] | None:
    """layer -> (output channels, input channels, MACs per (output, input) channel pair), as
    `count_macs` counts them; None when a grouped convolution makes MACs not bilinear."""
    names = {module: name for name, module in model.named_modules()}
    costs: dict[str, list[int]] = {}

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            outputs, inputs, per_pair = module.out_features, module.in_features, output.numel() // module.out_features
        else:
            outputs, inputs = module.out_channels, module.in_channels
            per_pair = output.numel() // outputs * module.weight[0, 0].numel()
        entry = costs.setdefault(names[module], [outputs, inputs, 0])
        entry[2] += per_pair

    layers = [m for m in model.modules() if isinstance(m, ROOT_TYPES)]
    if any(isinstance(m, nn.Conv2d) and m.groups != 1 for m in layers):
        return None
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return {name: tuple(entry) for name, entry in costs.items()}


def _out_channels(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def shrink(model: nn.Module, input_shape: Sequence[int], counts: dict[str, int]) -> nn.Module:
    """`model` (freshly built, any weights) with each group root cut to counts[name] output
    channels: the structure of a pruned network, for loading its saved weights."""
    graph = _dependency_graph(model, input_shape)
    modules = dict(model.named_modules())
    unknown = sorted(set(counts) - set(modules))
    if unknown:
        raise ValueError(f"the network has no layer(s) {unknown} to prune")
    for name, count in counts.items():
        root = modules[name]
        if not isinstance(root, ROOT_TYPES) or not 1 <= count <= _out_channels(root):
            raise ValueError(f"cannot keep {count} output channels of layer {name} ({type(root).__name__})")
        removed = list(range(count, _out_channels(root)))
        if removed:
            handler = tp.prune_linear_out_channels if isinstance(root, nn.Linear) else tp.prune_conv_out_channels
            graph.get_pruning_group(root, handler, idxs=removed).prune()
    return model
