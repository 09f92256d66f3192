"""The DARTS search cell edge by edge, as the paper writes it: every edge its own
`sum_k w_k * op_k(x)` over `make_op` modules. The spec that the fused supernet
(`darts_fused.FusedEdges`) is tested against and benchmarked beside, like `dfnas.ops.reference`.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from dfnas.nas.spaces.darts import NUM_NODES, edge_offset
from dfnas.nas.spaces.darts_ops import PRIMITIVES, make_op
from dfnas.nas.spaces.darts_search import DartsSearchNetwork


class ReferenceMixedOp(nn.Module):
    """One edge: `sum_k w_k * op_k(x)` over the primitives (pools followed by a non-affine BN, as in
    the reference); `none` is skipped, its output being zero."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        candidates = []
        for name in PRIMITIVES:
            op = make_op(name, channels, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            candidates.append(op)
        self.candidates = nn.ModuleList(candidates)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op, name in zip(weights, self.candidates, PRIMITIVES) if name != "none")


class ReferenceCell(nn.Module):
    """A search cell edge by edge, around given preprocessing modules."""

    def __init__(self, preprocess0: nn.Module, preprocess1: nn.Module, c: int, reduction: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = preprocess0, preprocess1
        self.edges = nn.ModuleList(ReferenceMixedOp(c, 2 if reduction and j < 2 else 1)
                                   for node in range(NUM_NODES) for j in range(node + 2))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(NUM_NODES):
            offset = edge_offset(node)
            states.append(sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)))
        return torch.cat(states[2:], dim=1)


def reference_state(net: DartsSearchNetwork) -> dict[str, torch.Tensor]:
    """`net`'s state in the reference network's names."""
    state = {k: v for k, v in net.state_dict().items() if ".groups." not in k}
    for index, cell in enumerate(net.cells):
        for node in range(NUM_NODES):
            for j in range(node + 2):
                for m, name in enumerate(PRIMITIVES):
                    for key, value in cell.candidate_state(node, j, name).items():
                        state[f"cells.{index}.edges.{edge_offset(node) + j}.candidates.{m}.{key}"] = value
    return state


def reference_grads(net: DartsSearchNetwork) -> dict[str, torch.Tensor]:
    """`net`'s parameter gradients in the reference network's names (through a copy whose
    parameters hold the gradients)."""
    holder = copy.deepcopy(net)
    with torch.no_grad():
        for p, q in zip(holder.parameters(), net.parameters()):
            p.copy_(q.grad)
    return reference_state(holder)


def reference_of(net: DartsSearchNetwork) -> nn.Module:
    """A network computing `net`'s function edge by edge, with `net`'s weights and statistics."""
    reference = copy.deepcopy(net)
    reference.cells = nn.ModuleList(
        ReferenceCell(cell.preprocess0, cell.preprocess1, cell.groups[0].channels, cell.reduction)
        for cell in reference.cells)
    reference.to(next(net.parameters()).dtype)
    reference.load_state_dict(reference_state(net))
    return reference
