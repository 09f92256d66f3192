"""SPOS space (Guo et al. 2019): a ShuffleNetV2 body with one of four blocks per layer.

An architecture is one int in 0..3 per layer (`CHOICE_NAMES` order), 20 layers at the reference
depth (stage repeats 4, 4, 8, 4). The supernet holds all four blocks per layer and runs the ones a
`choice` names; the standalone network holds only those, under the same module names minus
`.candidates.<k>`, so `SposSupernet.subnet_state_dict(choice)` loads into it directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from dfnas.nas.spaces.base import (Layout, Part, Slot, bn_cost, check_index_choices, conv_cost, conv_out,
                                   fixed_modules, linear_cost, make_divisible, subnet_state_dict)
from dfnas.nas.spaces.spos_blocks import CHOICE_NAMES, block_cost, make_block

# SinglePathOneShot README: the architecture its evolution search found (323M FLOPs, 3.5M params).
SPOS_PUBLISHED = (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)


@dataclass(frozen=True)
class SposConfig:
    """Size of a SPOS network. Stage widths are scaled by `width_mult` (to multiples of 8, which
    keeps the channel split even); stem and head widths are used as given."""

    in_channels: int = 3
    input_size: int = 224
    num_classes: int = 1000
    width_mult: float = 1.0
    stage_repeats: tuple[int, ...] = (4, 4, 8, 4)
    stage_widths: tuple[int, ...] = (64, 160, 320, 640)
    stem_width: int = 16
    stem_stride: int = 2
    head_width: int = 1024
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if len(self.stage_repeats) != len(self.stage_widths):
            raise ValueError(f"SposConfig: {len(self.stage_repeats)} stage repeats but "
                             f"{len(self.stage_widths)} stage widths")
        if min(self.stage_repeats, default=0) < 1:
            raise ValueError(f"SposConfig: every stage needs at least one layer, got {self.stage_repeats}")
        object.__setattr__(self, "stage_repeats", tuple(self.stage_repeats))
        object.__setattr__(self, "stage_widths", tuple(self.stage_widths))

    @property
    def num_layers(self) -> int:
        return sum(self.stage_repeats)

    @property
    def num_choices(self) -> int:
        return len(CHOICE_NAMES)

    @property
    def scaled_widths(self) -> tuple[int, ...]:
        return tuple(make_divisible(w * self.width_mult) for w in self.stage_widths)

    def layer_specs(self) -> list[tuple[int, int, int, int]]:
        """(in channels, out channels, stride, input size) of every choice layer."""
        specs = []
        c_in, size = self.stem_width, conv_out(self.input_size, 3, self.stem_stride, 1)
        for repeats, c_out in zip(self.stage_repeats, self.scaled_widths):
            for i in range(repeats):
                stride = 2 if i == 0 else 1
                specs.append((c_in, c_out, stride, size))
                c_in, size = c_out, conv_out(size, 3, stride, 1)
        return specs

    @classmethod
    def tiny(cls, in_channels: int = 3, input_size: int = 32, num_classes: int = 10) -> "SposConfig":
        """Five layers, narrow: seconds on a CPU."""
        return cls(in_channels, input_size, num_classes, stage_repeats=(1, 1, 2, 1),
                   stage_widths=(16, 32, 64, 128), stem_width=8, stem_stride=1, head_width=128)

    @classmethod
    def imagenet(cls) -> "SposConfig":
        """The reference supernet: 20 layers, 224x224, 1000 classes."""
        return cls()

    @classmethod
    def cifar(cls, num_classes: int = 10) -> "SposConfig":
        """Reference widths and depth on 32x32 (stem at stride 1 keeps a 2x2 last stage)."""
        return cls(input_size=32, num_classes=num_classes, stem_stride=1)


def check_choice(config: SposConfig, choice: Sequence[int]) -> None:
    check_index_choices(choice, config.num_layers, config.num_choices, "spos")


def _stem(config: SposConfig, affine: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(config.in_channels, config.stem_width, 3, config.stem_stride, 1, bias=False),
        nn.BatchNorm2d(config.stem_width, affine=affine), nn.ReLU(inplace=True))


def _head(config: SposConfig, affine: bool) -> nn.Sequential:
    c_last = config.scaled_widths[-1]
    return nn.Sequential(nn.Conv2d(c_last, config.head_width, 1, bias=False),
                         nn.BatchNorm2d(config.head_width, affine=affine), nn.ReLU(inplace=True))


class _SposBody(nn.Module):
    """Stem, head and classifier shared by the supernet and the standalone network."""

    def __init__(self, config: SposConfig, affine: bool):
        super().__init__()
        self.config = config
        self.stem = _stem(config, affine)
        self.head = _head(config, affine)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.head_width, config.num_classes, bias=False)

    def _classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(self.head(x)), 1)))


class SposLayer(nn.Module):
    """One choice layer of the supernet: all four blocks, one run per forward."""

    def __init__(self, c_in: int, c_out: int, stride: int, affine: bool):
        super().__init__()
        self.candidates = nn.ModuleList(make_block(k, c_in, c_out, stride, affine)
                                        for k in range(len(CHOICE_NAMES)))

    def forward(self, x: torch.Tensor, choice: int) -> torch.Tensor:
        return self.candidates[choice](x)


class SposSupernet(_SposBody):
    """`forward(x, choice)` runs the blocks `choice` (one int per layer) names.

    BatchNorms are non-affine as in the reference supernet: each block keeps its own statistics,
    which SPOS recalibrates per candidate before evaluating it.
    """

    def __init__(self, config: SposConfig):
        super().__init__(config, affine=False)
        self.layers = nn.ModuleList(SposLayer(c_in, c_out, stride, affine=False)
                                    for c_in, c_out, stride, _ in config.layer_specs())

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_choices(self) -> int:
        return len(CHOICE_NAMES)

    def forward(self, x: torch.Tensor, choice: Sequence[int]) -> torch.Tensor:
        choice = [int(k) for k in choice]  # accepts numpy/tensor ints from samplers
        if len(choice) != len(self.layers) or not all(0 <= k < self.num_choices for k in choice):
            raise ValueError(f"spos: choice must be {len(self.layers)} ints in 0..{self.num_choices - 1}, "
                             f"got {choice}")
        x = self.stem(x)
        for layer, k in zip(self.layers, choice):
            x = layer(x, k)
        return self._classify(x)

    def subnet_state_dict(self, choice: Sequence[int]) -> dict[str, torch.Tensor]:
        """The weights of path `choice`, named for `SposNetwork(config, choice)` (load with
        `strict=False`: the standalone network's BN scales/shifts keep their defaults)."""
        check_choice(self.config, choice)
        chosen = [(f"layers.{layer}.candidates.{k}", f"layers.{layer}") for layer, k in enumerate(choice)]
        return subnet_state_dict(self, fixed_modules(self, "layers") + chosen)


class SposNetwork(_SposBody):
    """The standalone network of one architecture (affine BN everywhere)."""

    def __init__(self, config: SposConfig, choice: Sequence[int]):
        check_choice(config, choice)
        super().__init__(config, affine=True)
        self.choice = tuple(int(k) for k in choice)
        self.layers = nn.Sequential(*(make_block(k, c_in, c_out, stride, affine=True)
                                      for k, (c_in, c_out, stride, _) in zip(self.choice,
                                                                             config.layer_specs())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._classify(self.layers(self.stem(x)))


def layout(config: SposConfig) -> Layout:
    """Costs of the standalone network part by part (one slot per choice layer)."""
    specs = config.layer_specs()
    stem_size = conv_out(config.input_size, 3, config.stem_stride, 1)
    last_size = conv_out(specs[-1][3], 3, specs[-1][2], 1)
    c_last = config.scaled_widths[-1]
    fixed = [
        Part("stem", conv_cost(config.in_channels, config.stem_width, 3, stem_size, stem_size)
             + bn_cost(config.stem_width), (config.in_channels, config.input_size, config.input_size),
             lambda: _stem(config, True)),
        Part("head", conv_cost(c_last, config.head_width, 1, last_size, last_size)
             + bn_cost(config.head_width), (c_last, last_size, last_size), lambda: _head(config, True)),
        Part("classifier", linear_cost(config.head_width, config.num_classes, bias=False),
             (config.head_width, 1, 1),
             lambda: nn.Linear(config.head_width, config.num_classes, bias=False)),
    ]
    slots = [
        Slot(f"layer{index}", {
            name: Part(name, block_cost(k, c_in, c_out, stride, size), (c_in, size, size),
                       lambda k=k, a=c_in, b=c_out, s=stride: make_block(k, a, b, s, True))
            for k, name in enumerate(CHOICE_NAMES)
        })
        for index, (c_in, c_out, stride, size) in enumerate(specs)
    ]
    return Layout(fixed, slots)


def selection(config: SposConfig, choice: Sequence[int]) -> list[int | None]:
    check_choice(config, choice)
    return [int(k) for k in choice]

