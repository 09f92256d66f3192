"""MetaPruning's PruningNet, for networks of plain convolutions, linears and BatchNorms.

Given a vector of channel ratios (one per prunable group), the PruningNet produces the weights of
that pruned network: every conv / linear weight comes from a small generator fed with the ratios
of the groups that set its output and input channels (FC -> ReLU -> FC to the full-size weight,
as in MetaPruning), cropped to the kept channels. Trained with a new random ratio vector every
batch, it learns weights for any pruning at once, so candidates can be scored without training
each one.

Where this differs from MetaPruning (Liu et al. 2019), and why:
- It starts at the teacher: a generated weight is the teacher's weight plus the generator's
  output, whose last layer starts at zero. Before training the PruningNet gives every candidate
  the teacher's magnitude-ranked weights; training adapts them per ratio vector. MetaPruning
  trains from scratch on ImageNet; here the only data is synthetic and the teacher is the best
  start there is.
- Channels are cropped by importance rank (the kept ones are each group's highest-ranked,
  `ChannelSpace.ranking`), not the first ones.
- BatchNorm keeps the teacher's affine parameters (shared, sliced, trained); its statistics are
  batch statistics in training and recalibrated before a candidate is scored (MetaPruning keeps
  one non-affine BatchNorm per width choice).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from dfnas.prune.channels import ChannelSpace

SUPPORTED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)
MAX_GENERATOR_PARAMETERS = 64_000_000  # MetaPruning's ResNet-50 generators are ~75M for one layer


def unsuitable_reason(space: ChannelSpace, hidden: int) -> str | None:
    """Why a PruningNet cannot serve this network, or None when it can."""
    for name, module in space.model.named_modules():
        own = list(module.parameters(recurse=False))
        if own and not isinstance(module, SUPPORTED):
            return f"layer {name} ({type(module).__name__}) is not a convolution, linear or BatchNorm layer"
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            return f"layer {name} is a grouped convolution"
    size = sum(m.weight.numel() * (hidden + 1) for m in space.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    if size > MAX_GENERATOR_PARAMETERS:
        return f"its weight generators would hold {size / 1e6:.0f}M parameters"
    return None


class PruningNet(nn.Module):
    def __init__(self, space: ChannelSpace, hidden: int = 32):
        super().__init__()
        self.space = space
        self._structure = [space.model]  # a list: the teacher's copy is not a submodule of this one
        group_index = {group.name: i for i, group in enumerate(space.groups)}
        self.controls: dict[str, tuple[int | None, int | None]] = {}
        for name, module in space.model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self.controls[name] = (self._controller(name, "prune_out_channels", group_index),
                                       self._controller(name, "prune_in_channels", group_index))
        self.generators = nn.ModuleDict()
        self.generated = set()
        shared = {}
        for name, tensor in space.model.named_parameters():
            layer, kind = name.rsplit(".", 1)
            if kind == "weight" and layer in self.controls:
                generator = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, tensor.numel()))
                nn.init.zeros_(generator[2].weight)
                nn.init.zeros_(generator[2].bias)
                self.generators[_key(layer)] = generator
                self.register_buffer(f"teacher_{_key(layer)}", tensor.detach().clone())
                self.generated.add(name)
            else:
                shared[_key(name)] = nn.Parameter(tensor.detach().clone())
        self.shared = nn.ParameterDict(shared)
        for name, tensor in space.model.named_buffers():
            self.register_buffer(f"buffer_{_key(name)}", tensor.detach().clone())

    @property
    def device(self) -> torch.device:
        return next(self.generators.parameters()).device

    def _controller(self, layer: str, handler: str, group_index: dict[str, int]) -> int | None:
        for group, edits in self.space.edits.items():
            if any(edit[0] == layer and edit[1].__name__ == handler for edit in edits):
                return group_index[group]
        return None

    def tensors(self, ratios: Sequence[float]) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the pruned network `ratios` describes, by name."""
        counts = self.space.keep_counts(ratios)
        removals = self.space.removals(counts)
        out = {}
        for name, full in self._full_tensors(ratios, self.device):
            layer = name.rsplit(".", 1)[0]
            tensor = full
            if full.ndim >= 1:
                tensor = _keep(tensor, 0, removals.get((layer, "prune_out_channels")))
            if full.ndim >= 2:
                tensor = _keep(tensor, 1, removals.get((layer, "prune_in_channels")))
            out[name] = tensor
        return out

    def _full_tensors(self, ratios: Sequence[float], device):
        structure = self._structure[0]
        for name, _ in structure.named_parameters():
            if name in self.generated:
                layer = name.rsplit(".", 1)[0]
                out_group, in_group = self.controls[layer]
                code = torch.tensor([[1.0 if out_group is None else ratios[out_group],
                                      1.0 if in_group is None else ratios[in_group]]], device=device)
                teacher = getattr(self, f"teacher_{_key(layer)}")
                yield name, teacher + self.generators[_key(layer)](code).view_as(teacher)
            else:
                yield name, self.shared[_key(name)]
        for name, _ in structure.named_buffers():
            yield name, getattr(self, f"buffer_{_key(name)}").clone()

    def train(self, mode: bool = True) -> "PruningNet":
        super().train(mode)
        self._structure[0].train(mode)  # batch statistics in training
        return self

    def forward(self, images: torch.Tensor, ratios: Sequence[float]) -> torch.Tensor:
        """The pruned network's output, computed with the unpruned structure and cropped tensors
        (its layers take their sizes from the tensors given)."""
        return functional_call(self._structure[0], self.tensors(ratios), (images,))

    @torch.no_grad()
    def materialize(self, ratios: Sequence[float]) -> nn.Module:
        """The pruned network itself, holding the generated weights (eval mode)."""
        model = self.space.prune(self.space.keep_counts(ratios)).to(self.device)
        model.load_state_dict({k: v.detach() for k, v in self.tensors(ratios).items()})
        return model.eval()


def _key(name: str) -> str:
    return name.replace(".", "__")


def _keep(tensor: torch.Tensor, dim: int, removed: set[int] | None) -> torch.Tensor:
    if not removed:
        return tensor
    kept = [i for i in range(tensor.shape[dim]) if i not in removed]
    return tensor.index_select(dim, torch.tensor(kept, device=tensor.device))
