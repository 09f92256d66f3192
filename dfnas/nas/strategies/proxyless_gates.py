"""ProxylessNAS path sampling and binary gates: the `gradient` architecture update's machinery.

A block's gates g are one-hot on a sampled path but carry the gradient of p = softmax(alpha)
(straight-through: g = one_hot - sg(p) + p). `GateForward` makes the sampled op's output depend on
every involved gate, so that dL/dg_k = <o_k(x), dL/dy> while only the sampled op is in the graph,
hence dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i) as in mit-han-lab/proxylessnas.
`gate_mode` "full_v2" involves all candidates; "two" samples two without replacement, gates only
them (p over the pair) and afterwards `keep_pair_mass` shifts their alphas so the pair's total
probability is unchanged (the reference's `rescale_updated_arch_param`).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from dfnas.nas.spaces.proxyless import MixedEdge

GATE_MODES = ("full_v2", "two")


def draw(probs: torch.Tensor, generator: torch.Generator, count: int = 1) -> list[int]:
    """`count` distinct indices drawn from `probs` (on the CPU, so runs repeat across devices)."""
    return torch.multinomial(probs.detach().float().cpu(), count, replacement=False, generator=generator).tolist()


def sample_path(edges: Sequence[MixedEdge], alphas: Sequence[torch.Tensor], generator: torch.Generator) -> list[int]:
    """One op per block drawn from softmax(alpha), made active in the supernet."""
    path = [draw(torch.softmax(a, 0), generator)[0] for a in alphas]
    for edge, k in zip(edges, path):
        edge.active = k
    return path


def sample_gates(edges: Sequence[MixedEdge], alphas: Sequence[torch.Tensor], gate_mode: str,
                 generator: torch.Generator) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Binary gates per block (value one-hot on the active op, gradient through softmax) and the
    candidates each involves; the sampled ops are made active."""
    gates, involved = [], []
    for edge, alpha in zip(edges, alphas):
        if gate_mode == "full_v2":
            chosen = list(range(len(alpha)))
        else:
            chosen = draw(torch.softmax(alpha, 0), generator, 2)
        probs = torch.softmax(alpha[chosen], 0)
        active = draw(probs, generator)[0]
        edge.active = chosen[active]
        one_hot = torch.zeros_like(probs)
        one_hot[active] = 1.0
        gates.append(one_hot - probs.detach() + probs)
        involved.append(chosen)
    return gates, involved


def gate_reference(output: torch.Tensor, gates: torch.Tensor, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """y + sum_k (g_k - sg(g_k)) * o_k: the eager definition of a gated block output (the spec
    of `gate_probe`; `outputs` carry no graph)."""
    straight_through = gates - gates.detach()
    return output + sum(straight_through[i] * o for i, o in enumerate(outputs))


def _inner(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """<a, b> over all elements in `dtype`: one pass over a and b when they share a dense layout
    (then their memory orders match element by element), else a product and a sum."""
    if a.stride() == b.stride() and (a.is_contiguous() or a.is_contiguous(memory_format=torch.channels_last)):
        flat = (a.numel(),), (1,)
        return torch.dot(a.as_strided(*flat).to(dtype), b.as_strided(*flat).to(dtype))
    return (a.to(dtype) * b.to(dtype)).sum()


class _GateProbe(torch.autograd.Function):
    @staticmethod
    def forward(ctx, output: torch.Tensor, gates: torch.Tensor, *outputs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*outputs)
        ctx.gate_dtype = gates.dtype
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gates_grad = torch.stack([_inner(o, grad, ctx.gate_dtype) for o in ctx.saved_tensors])
        return (grad, gates_grad) + (None,) * len(ctx.saved_tensors)


def gate_probe(output: torch.Tensor, gates: torch.Tensor, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """`gate_reference` with its value and gradients, without its forward products and sums: y is
    `output` itself, dL/dg_k = <o_k, dL/dy> in one pass per candidate. The reference spends one
    multiply and one add over the block's output per involved candidate, and two passes per
    candidate in backward (BENCHMARKS.md, "SPOS and ProxylessNAS steps")."""
    return _GateProbe.apply(output, gates, *outputs)


Combine = Callable[[torch.Tensor, torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]


class GateForward:
    """While active, every `MixedEdge` returns y + sum_k (g_k - sg(g_k)) * sg(o_k(x)) over its
    involved candidates: the value stays y = o_active(x), weight gradients flow through the
    active op only, and dL/dg_k = <o_k(x), dL/dy> (the other candidates run without a graph).
    `combine` builds that output (`gate_probe`, or the eager `gate_reference`)."""

    def __init__(self, edges: Sequence[MixedEdge], gates: Sequence[torch.Tensor],
                 involved: Sequence[Sequence[int]], combine: Combine = gate_probe):
        self.edges, self.gates, self.involved, self.combine = edges, gates, involved, combine
        self.handles: list = []

    def _hook(self, gates: torch.Tensor, involved: Sequence[int]):
        def hook(edge: MixedEdge, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                outputs = [output.detach() if k == edge.active else edge.candidates[k](inputs[0])
                           for k in involved]
            return self.combine(output, gates, outputs)
        return hook

    def __enter__(self) -> "GateForward":
        self.handles = [edge.register_forward_hook(self._hook(g, inv))
                        for edge, g, inv in zip(self.edges, self.gates, self.involved)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def keep_pair_mass(alphas: Sequence[torch.Tensor], involved: Sequence[Sequence[int]],
                   old: Sequence[torch.Tensor]) -> None:
    """Shift each updated pair so its log-sum-exp, hence the others' probabilities, is kept."""
    for alpha, inv, before in zip(alphas, involved, old):
        offset = torch.logsumexp(alpha[inv], 0) - torch.logsumexp(before, 0)
        alpha[inv] -= offset


def hardware_loss(loss: torch.Tensor, expected: torch.Tensor, target: float, kind: str,
                  alpha: float, beta: float, lam: float) -> torch.Tensor:
    """The gated loss L combined with the expected cost E[c] = sum_blocks sum_k p_k c_k and the
    target T: `mul#log` alpha * L * (log E[c] / log T)^beta, `add#linear` L + lambda (E[c] - T) / T."""
    if kind == "mul#log":
        return alpha * loss * (torch.log(expected) / math.log(target)) ** beta
    if kind == "add#linear":
        return loss + lam * (expected - target) / target
    return loss
