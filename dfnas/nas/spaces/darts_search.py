"""The DARTS search network: every edge is a softmax-weighted sum of the eight primitives."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from dfnas.nas.spaces.darts import (NUM_EDGES, NUM_NODES, DartsConfig, DartsStem, Genotype,
                                    as_genotype, cell_kinds, derive_genotype, edge_offset,
                                    make_preprocess, stem_output)
from dfnas.nas.spaces.base import subnet_state_dict
from dfnas.nas.spaces.darts_ops import PRIMITIVES, make_op


class MixedOp(nn.Module):
    """One edge: `sum_k w_k * op_k(x)` over `candidates` (in `PRIMITIVES` order)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        candidates = []
        for name in PRIMITIVES:
            op = make_op(name, channels, stride, affine=False)
            if "pool" in name:
                # As in the reference: pools get a non-affine BN so their scale matches the convs'.
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            candidates.append(op)
        self.candidates = nn.ModuleList(candidates)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # `none` is skipped: it outputs zeros, so neither the sum nor any gradient changes.
        return sum(w * op(x) for w, op, name in zip(weights, self.candidates, PRIMITIVES)
                   if name != "none")


class SearchCell(nn.Module):
    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = make_preprocess(c_pp, c, reduction_prev, affine=False)
        self.preprocess1 = make_preprocess(c_p, c, False, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and j < 2 else 1)
            for node in range(NUM_NODES) for j in range(node + 2)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(NUM_NODES):
            offset = edge_offset(node)
            states.append(sum(self.edges[offset + j](h, weights[offset + j])
                              for j, h in enumerate(states)))
        return torch.cat(states[2:], dim=1)


class DartsSearchNetwork(nn.Module):
    """The supernet of the DARTS space.

    `alphas_normal` and `alphas_reduce` (shape (14, 8), `PRIMITIVES` order) are registered
    parameters, so they are saved in `state_dict()`; optimize them through `arch_parameters()` and
    the weights through `weight_parameters()` (`parameters()` yields both).
    """

    def __init__(self, config: DartsConfig):
        super().__init__()
        self.config = config
        self.stem = DartsStem(config)
        c_pp, _, c_p, _ = stem_output(config)
        c = config.cell_channels
        reduction_prev = config.stem == "imagenet"
        cells = []
        for reduction in cell_kinds(config):
            if reduction:
                c *= 2
            cells.append(SearchCell(c_pp, c_p, c, reduction, reduction_prev))
            c_pp, c_p, reduction_prev = c_p, NUM_NODES * c, reduction
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, config.num_classes)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(NUM_EDGES, len(PRIMITIVES)))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(NUM_EDGES, len(PRIMITIVES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights_normal = torch.softmax(self.alphas_normal, dim=-1)
        weights_reduce = torch.softmax(self.alphas_reduce, dim=-1)
        s0, s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights_reduce if cell.reduction else weights_normal)
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    def genotype(self) -> Genotype:
        return derive_genotype(self.alphas_normal, self.alphas_reduce)

    def copy_with_alphas(self) -> "DartsSearchNetwork":
        """A new network of the same config and device holding a copy of the current alphas; its
        weights are freshly initialized (the second-order step overwrites them anyway)."""
        copy = DartsSearchNetwork(self.config).to(self.alphas_normal.device)
        with torch.no_grad():
            for mine, theirs in zip(self.arch_parameters(), copy.arch_parameters()):
                theirs.copy_(mine)
        return copy

    def subnet_state_dict(self, genotype: object) -> dict[str, torch.Tensor]:
        """This network's weights renamed for `DartsNetwork(config, genotype)`.

        Only the ops the genotype keeps are copied; the search BNs are non-affine, so the
        evaluation network's BN scales/shifts keep their defaults (load with `strict=False`).
        """
        genotype = as_genotype(genotype)
        modules = [("stem", "stem")]
        for index, cell in enumerate(self.cells):
            modules += [(f"cells.{index}.{pre}", f"cells.{index}.{pre}") for pre in ("preprocess0", "preprocess1")]
            gene = genotype.reduce if cell.reduction else genotype.normal
            # Pools keep no state in the evaluation network.
            modules += [(f"cells.{index}.edges.{edge_offset(position // 2) + j}.candidates.{PRIMITIVES.index(op)}",
                         f"cells.{index}.ops.{position}")
                        for position, (op, j) in enumerate(gene) if "pool" not in op]
        return subnet_state_dict(self, modules + [("classifier", "classifier")])
