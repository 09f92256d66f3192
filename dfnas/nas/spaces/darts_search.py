"""The DARTS search network: every edge is a softmax-weighted sum of the eight primitives."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from dfnas.nas.spaces.darts import (NUM_EDGES, NUM_NODES, DartsConfig, DartsStem, Genotype,
                                    as_genotype, cell_kinds, derive_genotype, edge_offset,
                                    make_preprocess, stem_output)
from dfnas.nas.spaces.base import subnet_state_dict
from dfnas.nas.spaces.darts_fused import FusedEdges
from dfnas.nas.spaces.darts_ops import PRIMITIVES


def edge_targets() -> list[tuple[int, ...]]:
    """Per cell state (two inputs, then nodes 0..2), the nodes its edges feed: the inputs all four,
    intermediate state i nodes i-1..3."""
    return [tuple(range(max(state - 1, 0), NUM_NODES)) for state in range(NUM_NODES + 1)]


class SearchCell(nn.Module):
    """A cell of the supernet: every edge a softmax-weighted sum of the primitives, the edges that
    read the same state computed together (`FusedEdges`)."""

    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = make_preprocess(c_pp, c, reduction_prev, affine=False)
        self.preprocess1 = make_preprocess(c_p, c, False, affine=False)
        self.groups = nn.ModuleList(FusedEdges(c, 2 if reduction and state < 2 else 1, len(targets))
                                    for state, targets in enumerate(edge_targets()))
        for state, (group, targets) in enumerate(zip(self.groups, edge_targets())):
            rows = [edge_offset(node) + state for node in targets]
            group.register_buffer("edge_rows", torch.tensor(rows), persistent=False)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        nodes: list[torch.Tensor | None] = [None] * NUM_NODES
        for state, (group, targets) in enumerate(zip(self.groups, edge_targets())):
            if state == len(states):  # node state - 2 has all its inputs now
                states.append(nodes[state - 2])
            out = group(states[state], weights[group.edge_rows])
            for e, node in enumerate(targets):
                nodes[node] = out[:, e] if nodes[node] is None else nodes[node] + out[:, e]
        return torch.cat(nodes, dim=1)

    def candidate_state(self, node: int, j: int, name: str) -> dict[str, torch.Tensor]:
        """Weights of candidate `name` on the edge from state `j` to node `node`, as
        `make_op(name, ...)` names them."""
        targets = edge_targets()[j]
        if node not in targets:
            raise ValueError(f"darts: no edge from state {j} to node {node}")
        return self.groups[j].candidate_state(targets.index(node), name)


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
        modules, candidates = [("stem", "stem")], {}
        for index, cell in enumerate(self.cells):
            modules += [(f"cells.{index}.{pre}", f"cells.{index}.{pre}") for pre in ("preprocess0", "preprocess1")]
            gene = genotype.reduce if cell.reduction else genotype.normal
            for position, (op, j) in enumerate(gene):
                if "pool" in op:
                    continue  # pools keep no state in the evaluation network
                # The fused edges hold every candidate in shared tensors: slice the chosen one out.
                for name, value in cell.candidate_state(position // 2, j, op).items():
                    candidates[f"cells.{index}.ops.{position}.{name}"] = value
        return {**subnet_state_dict(self, modules + [("classifier", "classifier")]), **candidates}
