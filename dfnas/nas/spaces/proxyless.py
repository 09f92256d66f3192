"""ProxylessNAS space (Cai et al. 2019): a MobileNetV2 body whose blocks choose an MBConv.

Each searchable block picks one of `{3,5,7}x{3,6}` (kernel x expansion, names like `5x5_MBConv6`)
or, when it has an identity shortcut (every block but the first of a stage), `zero`, which
leaves only the shortcut and so removes the block. An architecture is one name per block.

The supernet is ready for binary gates: each block's `MixedEdge` holds all candidates in an
`nn.ModuleList` (`candidates`, named by `candidate_names`) and runs only `candidates[active]`; a
strategy sets `active` (or calls `set_active`) and may call any candidate itself to build gate
gradients. The standalone network keeps the same module names with `edge.candidates.<k>` replaced
by `op`, so `ProxylessSupernet.subnet_state_dict(choices)` loads into it directly. The block
modules and their costs are in `proxyless_blocks.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from dfnas.nas.spaces.base import (Layout, Part, Slot, bn_cost, conv_cost, conv_out, fixed_modules, linear_cost,
                                   make_divisible, subnet_state_dict)
from dfnas.nas.spaces.proxyless_depthwise import Depthwise
from dfnas.nas.spaces.proxyless_relu6 import InplaceReLU6
from dfnas.nas.spaces.proxyless_blocks import (ZERO, Activation, MBConv, ProxylessBlock, batch_norm,
                                               candidate_cost, make_candidate, mbconv_cost, op_name, relu6)


@dataclass(frozen=True)
class ProxylessConfig:
    """Size of a ProxylessNAS network: stem conv, a fixed 3x3 expand-1 block, the searchable
    stages, a 1x1 feature-mix conv and the classifier. Widths are scaled by `width_mult` (to
    multiples of 8; the head only grows, as in the reference)."""

    in_channels: int = 3
    input_size: int = 224
    num_classes: int = 1000
    width_mult: float = 1.0
    stem_width: int = 32
    stem_stride: int = 2
    first_block_width: int = 16
    stage_widths: tuple[int, ...] = (24, 40, 80, 96, 192, 320)
    stage_depths: tuple[int, ...] = (4, 4, 4, 4, 4, 1)
    stage_strides: tuple[int, ...] = (2, 2, 2, 1, 2, 1)
    head_width: int = 1280
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[int, ...] = (3, 6)
    dropout: float = 0.0
    bn_momentum: float = 0.1
    bn_eps: float = 1e-3

    def __post_init__(self) -> None:
        for field_name in ("stage_widths", "stage_depths", "stage_strides", "kernel_sizes",
                           "expand_ratios"):
            object.__setattr__(self, field_name, tuple(getattr(self, field_name)))
        if not len(self.stage_widths) == len(self.stage_depths) == len(self.stage_strides):
            raise ValueError("ProxylessConfig: stage_widths, stage_depths and stage_strides "
                             "must have the same length")
        if min(self.stage_depths, default=0) < 1:
            raise ValueError(f"ProxylessConfig: every stage needs a block, got {self.stage_depths}")
        if any(s not in (1, 2) for s in self.stage_strides):
            raise ValueError(f"ProxylessConfig: strides must be 1 or 2, got {self.stage_strides}")

    def _scale(self, width: int) -> int:
        return width if self.width_mult == 1.0 else make_divisible(width * self.width_mult)

    @property
    def scaled(self) -> tuple[int, int, tuple[int, ...], int]:
        """(stem, first block, stage widths, head) after `width_mult`."""
        head = self.head_width if self.width_mult <= 1.0 else self._scale(self.head_width)
        return (self._scale(self.stem_width), self._scale(self.first_block_width),
                tuple(self._scale(w) for w in self.stage_widths), head)

    @property
    def candidate_ops(self) -> list[str]:
        return [op_name(k, e) for k in self.kernel_sizes for e in self.expand_ratios]

    @property
    def num_blocks(self) -> int:
        return sum(self.stage_depths)

    def block_specs(self) -> list[tuple[int, int, int, int, bool]]:
        """(in channels, out channels, stride, input size, has shortcut) per searchable block."""
        stem, first, widths, _ = self.scaled
        size = conv_out(self.input_size, 3, self.stem_stride, 1)
        specs, c_in = [], first
        for width, depth, stage_stride in zip(widths, self.stage_depths, self.stage_strides):
            for i in range(depth):
                stride = stage_stride if i == 0 else 1
                specs.append((c_in, width, stride, size, stride == 1 and c_in == width))
                c_in, size = width, conv_out(size, 3, stride, 1)
        return specs

    def block_candidates(self) -> list[list[str]]:
        """Candidate names per block, in the order the supernet holds them."""
        return [self.candidate_ops + ([ZERO] if shortcut else []) for *_, shortcut in self.block_specs()]

    @classmethod
    def tiny(cls, in_channels: int = 3, input_size: int = 32, num_classes: int = 10) -> "ProxylessConfig":
        """Six narrow blocks in three stages: seconds on a CPU."""
        return cls(in_channels, input_size, num_classes, stem_width=8, stem_stride=1,
                   first_block_width=8, stage_widths=(16, 24, 32), stage_depths=(2, 2, 2),
                   stage_strides=(2, 2, 1), head_width=64)

    @classmethod
    def imagenet(cls) -> "ProxylessConfig":
        """The reference search space: 21 blocks, 224x224, 1000 classes."""
        return cls()


def check_choices(config: ProxylessConfig, choices: Sequence[str]) -> None:
    if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
        raise ValueError(f"proxyless: choices must be a list of op names, got {type(choices).__name__}")
    allowed = config.block_candidates()
    if len(choices) != len(allowed):
        raise ValueError(f"proxyless: expected {len(allowed)} choices, got {len(choices)}")
    for block, (name, options) in enumerate(zip(choices, allowed)):
        if name == ZERO and ZERO not in options:
            raise ValueError(f"proxyless: block {block} has no identity shortcut (first block of a "
                             f"stage), so it cannot be 'zero'")
        if name not in options:
            raise ValueError(f"proxyless: block {block} has unknown op {name!r}; expected one of {options}")


class MixedEdge(nn.Module):
    """All candidates of one block; `forward` runs `candidates[active]` only."""

    def __init__(self, candidates: list[nn.Module], candidate_names: list[str]):
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        self.candidate_names = list(candidate_names)
        self.active = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.candidates[self.active](x)


def _first_conv(config: ProxylessConfig, activation: Activation = relu6) -> nn.Sequential:
    stem = config.scaled[0]
    return nn.Sequential(nn.Conv2d(config.in_channels, stem, 3, config.stem_stride, 1, bias=False),
                         batch_norm(stem, config), activation())


def _feature_mix_layer(config: ProxylessConfig, activation: Activation = relu6) -> nn.Sequential:
    _, _, widths, head = config.scaled
    return nn.Sequential(nn.Conv2d(widths[-1], head, 1, bias=False), batch_norm(head, config), activation())


class _ProxylessBody(nn.Module):
    """Everything but the searchable blocks, which the subclasses add as `self.blocks`;
    `activation` makes each ReLU6."""

    def __init__(self, config: ProxylessConfig, activation: Activation = relu6):
        super().__init__()
        self.config = config
        stem, first, _, head = config.scaled
        self.first_conv = _first_conv(config, activation)
        self.first_block = MBConv(stem, first, 3, 1, 1, config, activation)
        self.feature_mix_layer = _feature_mix_layer(config, activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(head, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.first_block(self.first_conv(x)))
        x = torch.flatten(self.pool(self.feature_mix_layer(x)), 1)
        return self.classifier(self.dropout(x))


class ProxylessSupernet(_ProxylessBody):
    """The supernet; `mixed_edges[i]` is block i's `MixedEdge` (layout slot i, same order)."""

    def __init__(self, config: ProxylessConfig):
        # InplaceReLU6 and Depthwise: nn.ReLU6's and nn.Conv2d's math, faster in training (the
        # standalone network keeps the torch modules, which export understands).
        super().__init__(config, InplaceReLU6)
        blocks = []
        for (c_in, c_out, stride, _, shortcut), names in zip(config.block_specs(),
                                                            config.block_candidates()):
            edge = MixedEdge([make_candidate(n, c_in, c_out, stride, config, InplaceReLU6, Depthwise)
                              for n in names], names)
            blocks.append(ProxylessBlock(edge, shortcut))
        self.blocks = nn.Sequential(*blocks)

    @property
    def mixed_edges(self) -> list[MixedEdge]:
        return [block.body for block in self.blocks]

    def set_active(self, choices: Sequence[str]) -> None:
        """Make every block run the named candidate."""
        check_choices(self.config, choices)
        for edge, name in zip(self.mixed_edges, choices):
            edge.active = edge.candidate_names.index(name)

    def active_choices(self) -> list[str]:
        return [edge.candidate_names[edge.active] for edge in self.mixed_edges]

    def subnet_state_dict(self, choices: Sequence[str]) -> dict[str, torch.Tensor]:
        """The weights of path `choices`, named for `ProxylessNetwork(config, choices)`."""
        check_choices(self.config, choices)
        chosen = [(f"blocks.{block}.body.candidates.{edge.candidate_names.index(name)}", f"blocks.{block}.body")
                  for block, (edge, name) in enumerate(zip(self.mixed_edges, choices))]
        return subnet_state_dict(self, fixed_modules(self, "blocks") + chosen)


class ProxylessNetwork(_ProxylessBody):
    """The standalone network of one architecture (one op name per block)."""

    def __init__(self, config: ProxylessConfig, choices: Sequence[str]):
        check_choices(config, choices)
        super().__init__(config)
        self.choices = list(choices)
        self.blocks = nn.Sequential(*(
            ProxylessBlock(make_candidate(name, c_in, c_out, stride, config), shortcut)
            for name, (c_in, c_out, stride, _, shortcut) in zip(choices, config.block_specs())
        ))


def layout(config: ProxylessConfig) -> Layout:
    """Costs of the standalone network part by part (one slot per searchable block)."""
    stem, first, widths, head = config.scaled
    size = conv_out(config.input_size, 3, config.stem_stride, 1)
    specs = config.block_specs()
    last_size = conv_out(specs[-1][3], 3, specs[-1][2], 1)
    fixed = [
        Part("first_conv", conv_cost(config.in_channels, stem, 3, size, size) + bn_cost(stem),
             (config.in_channels, config.input_size, config.input_size),
             lambda: _first_conv(config)),
        Part("first_block", mbconv_cost(stem, first, 3, 1, 1, size), (stem, size, size),
             lambda: MBConv(stem, first, 3, 1, 1, config)),
        Part("feature_mix_layer", conv_cost(widths[-1], head, 1, last_size, last_size) + bn_cost(head),
             (widths[-1], last_size, last_size), lambda: _feature_mix_layer(config)),
        Part("classifier", linear_cost(head, config.num_classes), (head, 1, 1),
             lambda: nn.Linear(head, config.num_classes)),
    ]
    slots = [
        Slot(f"block{index}", {
            name: Part(name, candidate_cost(name, c_in, c_out, stride, size_in), (c_in, size_in, size_in),
                       lambda n=name, a=c_in, b=c_out, s=stride: make_candidate(n, a, b, s, config))
            for name in names
        })
        for index, ((c_in, c_out, stride, size_in, _), names) in enumerate(zip(specs, config.block_candidates()))
    ]
    return Layout(fixed, slots)


def selection(config: ProxylessConfig, choices: Sequence[str]) -> list[int | None]:
    check_choices(config, choices)
    return [names.index(name) for name, names in zip(choices, config.block_candidates())]
