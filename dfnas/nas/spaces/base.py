"""What every search space provides, and the arithmetic behind table-based cost counts.

A space is described twice, on purpose: once as modules (the supernet and the standalone
network) and once as a *layout*, a list of parts with analytically computed multiply-accumulates
and parameters. The profilers use the layout to cost an architecture without building it, and the
tests check that both descriptions agree, so a wiring mistake in either shows up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class Cost:
    """Multiply-accumulates for one sample (what the NAS papers call FLOPs) and parameters."""

    macs: int = 0
    params: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.macs + other.macs, self.params + other.params)


def conv_cost(c_in: int, c_out: int, kernel: int, h_out: int, w_out: int, groups: int = 1,
              bias: bool = False) -> Cost:
    """A 2-D convolution: one MAC per weight per output pixel (bias adds parameters, not MACs)."""
    weights = c_out * (c_in // groups) * kernel * kernel
    return Cost(weights * h_out * w_out, weights + (c_out if bias else 0))


def bn_cost(channels: int, affine: bool = True) -> Cost:
    """BatchNorm folds into the preceding conv at inference, so it costs parameters only."""
    return Cost(0, 2 * channels if affine else 0)


def linear_cost(f_in: int, f_out: int, bias: bool = True) -> Cost:
    return Cost(f_in * f_out, f_in * f_out + (f_out if bias else 0))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor`, never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class Part:
    """One piece of a network: its analytic cost, its input shape (C, H, W) and a builder."""

    name: str
    cost: Cost
    input_shape: tuple[int, int, int]
    build: Callable[[], nn.Module]


@dataclass(frozen=True)
class Slot:
    """One decision of the space: the candidates in the order the supernet holds them."""

    name: str
    candidates: dict[str, Part]


@dataclass(frozen=True)
class Layout:
    """A space at one configuration: fixed parts plus one slot per decision.

    An architecture selects at most one candidate per slot (DARTS leaves unused edges empty);
    its cost is the fixed cost plus the selected candidates' costs.
    """

    fixed: list[Part]
    slots: list[Slot] = field(default_factory=list)

    @property
    def fixed_cost(self) -> Cost:
        total = Cost()
        for part in self.fixed:
            total = total + part.cost
        return total


@dataclass(frozen=True)
class SearchSpace:
    """The registry entry of one space; the strategies and `arch.py` only talk to this.

    - `config_type`: the space's config dataclass (with `tiny()` and reference constructors).
    - `build_supernet(config)`, `build_network(config, choices)`: modules.
    - `check_choices(config, choices)`: raises `ValueError` naming the problem.
    - `selection(config, choices)`: per layout slot, the index of the chosen candidate or None.
    - `layout(config)`: the table-based description (see `Layout`).
    - `choices_to_json` / `choices_from_json`: the `choices` field of the architecture JSON
      (`from_json` only normalizes types; `check_choices` validates).

    Choices are a `Genotype` (darts), a tuple of ints (spos) or a list of op names (proxyless).
    """

    name: str
    config_type: type
    build_supernet: Callable[[Any], nn.Module]
    build_network: Callable[[Any, Any], nn.Module]
    check_choices: Callable[[Any, Any], None]
    selection: Callable[[Any, Any], list[int | None]]
    layout: Callable[[Any], Layout]
    choices_to_json: Callable[[Any], Any]
    choices_from_json: Callable[[Any], Any]


def check_index_choices(choices: Sequence[int], num_layers: int, num_choices: int,
                        what: str) -> None:
    """Shared validation for spaces encoded as one integer per layer."""
    if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
        raise ValueError(f"{what}: choices must be a sequence of ints, got {type(choices).__name__}")
    if len(choices) != num_layers:
        raise ValueError(f"{what}: expected {num_layers} choices, got {len(choices)}")
    for layer, value in enumerate(choices):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what}: choice {layer} must be an int, got {value!r}")
        if not 0 <= value < num_choices:
            raise ValueError(f"{what}: choice {layer} = {value} is out of range 0..{num_choices - 1}")


def subnet_state_dict(supernet: nn.Module, modules: Iterable[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """The weights of one path through `supernet`, named for the standalone network.

    `modules` pairs a supernet module's path (`"layers.3.candidates.1"`) with the path the same
    module has in the standalone network (`"layers.3"`); every tensor of its state dict is copied
    under the new prefix. Each space supplies only these pairs: the fixed parts under their own
    names, and per decision the chosen candidate.
    """
    state = {}
    for source, target in modules:
        for name, value in supernet.get_submodule(source).state_dict().items():
            state[f"{target}.{name}"] = value
    return state


def fixed_modules(supernet: nn.Module, searchable: str) -> list[tuple[str, str]]:
    """`(name, name)` for every child of `supernet` but `searchable`: the parts a subnet keeps as they are."""
    return [(name, name) for name, _ in supernet.named_children() if name != searchable]
