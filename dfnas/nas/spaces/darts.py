"""DARTS cell space (Liu et al. 2019): config, genotype, derivation and the cost layout.

A cell has two inputs (the outputs of the two previous cells), four intermediate nodes and 14
edges: node i (0..3) reads every earlier state j (0..i+1) through one edge. Edges are numbered
node by node, so node i's edges are `edge_offset(i) + j`. Reduction cells sit at 1/3 and 2/3 of
the depth; their edges from the two cell inputs have stride 2.

The modules live in `darts_search.py` (the weighted-sum supernet) and `darts_eval.py` (the network
built from a genotype).
"""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import nn

from dfnas.nas.spaces.base import (Cost, Layout, Part, Slot, bn_cost, conv_cost, conv_out,
                                   linear_cost)
from dfnas.nas.spaces.darts_ops import (PRIMITIVES, FactorizedReduce, ReLUConvBN,
                                        factorized_reduce_cost, make_op, op_cost,
                                        relu_conv_bn_cost)

NUM_NODES = 4
NUM_EDGES = sum(2 + i for i in range(NUM_NODES))  # 14
CONCAT = (2, 3, 4, 5)

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
Genotype.__doc__ = """A discrete DARTS cell pair, in the reference's format: `normal` and `reduce` are
8 `(op_name, input_index)` pairs, two per node in node order; `*_concat` are the concatenated
states (always `[2, 3, 4, 5]` in this space)."""

# quark0/darts cnn/genotypes.py: the cell of the paper's second-order search.
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)


@dataclass(frozen=True)
class DartsConfig:
    """Size of a DARTS network.

    `channels` is the first cell's channel count C (before `width_mult`); the stem outputs
    `stem_multiplier * C` (CIFAR stem) or C (ImageNet stem: three stride-2 convs). `layers` is
    the number of cells. `auxiliary` adds the auxiliary head of the evaluation network.
    """

    in_channels: int = 3
    input_size: int = 32
    num_classes: int = 10
    channels: int = 16
    layers: int = 8
    width_mult: float = 1.0
    stem_multiplier: int = 3
    stem: Literal["cifar", "imagenet"] = "cifar"
    auxiliary: bool = False

    def __post_init__(self) -> None:
        if self.stem not in ("cifar", "imagenet"):
            raise ValueError(f"DartsConfig.stem must be 'cifar' or 'imagenet', got {self.stem!r}")
        if self.layers < 3:
            raise ValueError(f"DartsConfig.layers must be >= 3 (two reduction cells), got {self.layers}")
        if self.cell_channels < 2:
            raise ValueError(f"DartsConfig: channels * width_mult must give >= 2 channels, got {self.cell_channels}")

    @property
    def cell_channels(self) -> int:
        """`channels * width_mult`, rounded to an even number (FactorizedReduce splits it in two)."""
        return 2 * int(round(self.channels * self.width_mult / 2))

    @property
    def reduction_layers(self) -> tuple[int, int]:
        return self.layers // 3, 2 * self.layers // 3

    @classmethod
    def tiny(cls, in_channels: int = 3, input_size: int = 32, num_classes: int = 10) -> "DartsConfig":
        """Five cells of 4 channels: seconds on a CPU."""
        return cls(in_channels, input_size, num_classes, channels=4, layers=5)

    @classmethod
    def search(cls, num_classes: int = 10) -> "DartsConfig":
        """The reference search network: 8 cells, 16 channels, CIFAR."""
        return cls(num_classes=num_classes, channels=16, layers=8)

    @classmethod
    def cifar_eval(cls, num_classes: int = 10) -> "DartsConfig":
        """The reference CIFAR-10 evaluation network: 20 cells, 36 channels, auxiliary head."""
        return cls(num_classes=num_classes, channels=36, layers=20, auxiliary=True)

    @classmethod
    def imagenet_eval(cls) -> "DartsConfig":
        """The reference ImageNet transfer network: 14 cells, 48 channels, 224x224."""
        return cls(input_size=224, num_classes=1000, channels=48, layers=14, stem="imagenet",
                   auxiliary=True)


def edge_offset(node: int) -> int:
    """Index of node `node`'s first edge (its edge from input 0)."""
    return sum(2 + i for i in range(node))


def derive_genotype(alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor) -> Genotype:
    """Discretize architecture weights the DARTS way.

    Per node keep the two incoming edges whose strongest non-`none` weight is largest, and on each
    the argmax op excluding `none` (`none` tends to win outright, see quark0/darts#32).
    """
    none = PRIMITIVES.index("none")

    def parse(alphas: torch.Tensor) -> list[tuple[str, int]]:
        weights = torch.softmax(alphas.detach().float(), dim=-1)
        weights[:, none] = -1.0
        gene = []
        for node in range(NUM_NODES):
            rows = weights[edge_offset(node): edge_offset(node) + node + 2]
            best_value, best_op = rows.max(dim=1)
            inputs = sorted(range(node + 2), key=lambda j: -best_value[j].item())[:2]
            gene.extend((PRIMITIVES[int(best_op[j])], j) for j in inputs)
        return gene

    return Genotype(parse(alphas_normal), list(CONCAT), parse(alphas_reduce), list(CONCAT))


def as_genotype(value: object) -> Genotype:
    """Accept a Genotype or anything shaped like one (a dict or a 4-sequence); normalize types."""
    if isinstance(value, dict):
        missing = [k for k in Genotype._fields if k not in value]
        if missing:
            raise ValueError(f"darts: genotype is missing {missing}")
        extra = [k for k in value if k not in Genotype._fields]
        if extra:
            raise ValueError(f"darts: genotype has unknown keys {extra}")
        value = Genotype(**value)
    elif not isinstance(value, Sequence) or len(value) != 4:
        raise ValueError(f"darts: expected a Genotype (normal, normal_concat, reduce, "
                         f"reduce_concat), got {type(value).__name__}")
    normal, normal_concat, reduce, reduce_concat = value
    try:
        return Genotype([(op, j) for op, j in normal], list(normal_concat),
                        [(op, j) for op, j in reduce], list(reduce_concat))
    except (TypeError, ValueError) as err:
        raise ValueError(f"darts: genotype cells must be lists of (op, input) pairs: {err}") from None


def check_genotype(config: DartsConfig, genotype: object) -> None:
    """Raise `ValueError` naming the first problem of `genotype` in this space."""
    genotype = as_genotype(genotype)
    for kind in ("normal", "reduce"):
        gene, concat = getattr(genotype, kind), getattr(genotype, f"{kind}_concat")
        if len(gene) != 2 * NUM_NODES:
            raise ValueError(f"darts: {kind} cell needs {2 * NUM_NODES} (op, input) pairs, got {len(gene)}")
        for position, (op, j) in enumerate(gene):
            node = position // 2
            if op not in PRIMITIVES or op == "none":
                allowed = [p for p in PRIMITIVES if p != "none"]
                raise ValueError(f"darts: {kind} pair {position} has unknown op {op!r}; expected one of {allowed}")
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < node + 2:
                raise ValueError(f"darts: {kind} pair {position} (node {node}) reads input {j!r}; "
                                 f"expected an int in 0..{node + 1}")
        for node in range(NUM_NODES):
            if gene[2 * node][1] == gene[2 * node + 1][1]:
                raise ValueError(f"darts: {kind} node {node} reads input {gene[2 * node][1]} twice")
        if list(concat) != list(CONCAT):
            raise ValueError(f"darts: {kind}_concat must be {list(CONCAT)}, got {list(concat)}")


def cell_kinds(config: DartsConfig) -> list[bool]:
    """For each cell, whether it is a reduction cell."""
    return [i in config.reduction_layers for i in range(config.layers)]


def selection(config: DartsConfig, genotype: object) -> list[int | None]:
    """Per (cell, edge) slot of `layout`, the chosen primitive's index or None (edge unused)."""
    genotype = as_genotype(genotype)
    picked: list[int | None] = []
    for reduction in cell_kinds(config):
        gene = genotype.reduce if reduction else genotype.normal
        cell: list[int | None] = [None] * NUM_EDGES
        for position, (op, j) in enumerate(gene):
            cell[edge_offset(position // 2) + j] = PRIMITIVES.index(op)
        picked.extend(cell)
    return picked


def genotype_to_json(genotype: object) -> dict:
    genotype = as_genotype(genotype)
    return {"normal": [[op, j] for op, j in genotype.normal], "normal_concat": genotype.normal_concat,
            "reduce": [[op, j] for op, j in genotype.reduce], "reduce_concat": genotype.reduce_concat}


def stem_output(config: DartsConfig) -> tuple[int, int, int, int]:
    """Channels and resolution of the stem's two outputs (the first cell's inputs 0 and 1)."""
    if config.stem == "cifar":
        c = config.stem_multiplier * config.cell_channels
        return c, config.input_size, c, config.input_size
    size0 = conv_out(conv_out(config.input_size, 3, 2, 1), 3, 2, 1)
    return config.cell_channels, size0, config.cell_channels, conv_out(size0, 3, 2, 1)


class DartsStem(nn.Module):
    """CIFAR: one conv feeding both inputs of the first cell. ImageNet: three stride-2 convs, the
    first cell reading the outputs of the second (input 0) and the third (input 1)."""

    def __init__(self, config: DartsConfig):
        super().__init__()
        c, c_in = config.cell_channels, config.in_channels
        if config.stem == "cifar":
            out = config.stem_multiplier * c
            self.stem0 = nn.Sequential(nn.Conv2d(c_in, out, 3, padding=1, bias=False),
                                       nn.BatchNorm2d(out))
            self.stem1 = None
            return
        self.stem0 = nn.Sequential(
            nn.Conv2d(c_in, c // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2),
            nn.ReLU(inplace=False),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
        )
        self.stem1 = nn.Sequential(nn.ReLU(inplace=False),
                                   nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, (s0 if self.stem1 is None else self.stem1(s0))


def _stem_cost(config: DartsConfig) -> Cost:
    c, size = config.cell_channels, config.input_size
    if config.stem == "cifar":
        out = config.stem_multiplier * c
        return conv_cost(config.in_channels, out, 3, size, size) + bn_cost(out)
    total, c_in = Cost(), config.in_channels
    for c_out in (c // 2, c, c):
        size = conv_out(size, 3, 2, 1)
        total = total + conv_cost(c_in, c_out, 3, size, size) + bn_cost(c_out)
        c_in = c_out
    return total


def make_preprocess(c_in: int, c_out: int, reduce_input: bool, affine: bool) -> nn.Module:
    """Bring a cell input to the cell's width (and resolution, after a reduction cell)."""
    if reduce_input:
        return FactorizedReduce(c_in, c_out, affine)
    return ReLUConvBN(c_in, c_out, 1, 1, 0, affine)


def layout(config: DartsConfig) -> Layout:
    """Costs of the evaluation network (affine BN, no auxiliary head) part by part."""
    c_pp, size_pp, c_p, size_p = stem_output(config)
    fixed = [Part("stem", _stem_cost(config), (config.in_channels, config.input_size,
                                                config.input_size), lambda: DartsStem(config))]
    slots: list[Slot] = []
    c = config.cell_channels
    reduction_prev = config.stem == "imagenet"
    for index, reduction in enumerate(cell_kinds(config)):
        if reduction:
            c *= 2
        pre0_cost = (factorized_reduce_cost(c_pp, c, size_pp, size_pp) if reduction_prev
                     else relu_conv_bn_cost(c_pp, c, size_pp, size_pp))
        fixed.append(Part(f"cell{index}.preprocess0", pre0_cost, (c_pp, size_pp, size_pp),
                          lambda a=c_pp, b=c, r=reduction_prev: make_preprocess(a, b, r, True)))
        fixed.append(Part(f"cell{index}.preprocess1", relu_conv_bn_cost(c_p, c, size_p, size_p),
                          (c_p, size_p, size_p), lambda a=c_p, b=c: make_preprocess(a, b, False, True)))
        size_out = conv_out(size_p, 1, 2, 0) if reduction else size_p
        for node in range(NUM_NODES):
            for j in range(node + 2):
                stride = 2 if reduction and j < 2 else 1
                size_in = size_p if j < 2 else size_out
                candidates = {
                    name: Part(name, op_cost(name, c, stride, size_in, size_in), (c, size_in, size_in),
                               lambda n=name, s=stride, ch=c: make_op(n, ch, s, True))
                    for name in PRIMITIVES
                }
                slots.append(Slot(f"cell{index}.node{node}.input{j}", candidates))
        c_pp, c_p = c_p, NUM_NODES * c
        size_pp, size_p = size_p, size_out
        reduction_prev = reduction
    fixed.append(Part("classifier", linear_cost(c_p, config.num_classes), (c_p, 1, 1),
                      lambda ch=c_p: nn.Linear(ch, config.num_classes)))
    return Layout(fixed, slots)
