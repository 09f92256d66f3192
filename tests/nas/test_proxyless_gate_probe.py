"""`gate_probe` (the fast gated block output of the ProxylessNAS architecture step) against
`gate_reference` (the eager straight-through sum it replaces), in float32 and both layouts."""
from __future__ import annotations

import copy

import pytest
import torch

from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig
from dfnas.nas.spaces.proxyless import ProxylessConfig, ProxylessSupernet
from dfnas.nas.strategies.proxyless_gates import GateForward, gate_probe, gate_reference, sample_gates
from dfnas.nas.trainer import Trainer

LAYOUTS = {"nchw": False, "channels_last": True}


def _gated_step(model: ProxylessSupernet, batch: Batch, precision: Precision, gate_mode: str, combine):
    """Loss and dL/dalpha of one architecture step of `model` (gates drawn with a fixed seed)."""
    torch.manual_seed(5)
    alphas = [torch.randn(len(e.candidates), requires_grad=True) for e in model.mixed_edges]
    gates, involved = sample_gates(model.mixed_edges, alphas, gate_mode, torch.Generator().manual_seed(9))
    with GateForward(model.mixed_edges, gates, involved, combine):
        loss = Trainer(LossConfig(), precision).loss(model, batch)
    return loss, torch.autograd.grad(loss, alphas, allow_unused=True)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("gate_mode", ["full_v2", "two"])
def test_gate_probe_matches_the_reference_sum(layout, gate_mode):
    """Catches a gate gradient paired with the wrong candidate or computed over mismatched
    element orders (channels-last outputs against an NCHW gradient), a changed block output, and
    BatchNorm statistics that the two forwards would update differently."""
    precision = Precision(torch.device("cpu"), channels_last=LAYOUTS[layout])
    torch.manual_seed(0)
    reference = precision.prepare_model(ProxylessSupernet(ProxylessConfig.tiny(1, 12, 10))).train()
    fast = copy.deepcopy(reference)
    batch = Batch(precision.prepare_input(torch.randn(8, 1, 12, 12)), torch.randn(8, 10), torch.randint(0, 10, (8,)))
    loss_ref, grads_ref = _gated_step(reference, batch, precision, gate_mode, gate_reference)
    loss_fast, grads_fast = _gated_step(fast, batch, precision, gate_mode, gate_probe)
    assert float(loss_fast.detach()) == float(loss_ref.detach())
    for block, (g_ref, g_fast) in enumerate(zip(grads_ref, grads_fast)):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-5, atol=1e-7, msg=lambda m, b=block: f"block {b}: {m}")
    for (name, a), b in zip(reference.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("make_grad", [
    lambda out: torch.randn(out.shape),  # NCHW against channels-last outputs
    lambda out: torch.randn(out.shape[1:]).expand(out.shape),  # a broadcast gradient (stride 0)
    lambda out: torch.randn(out.shape).contiguous(memory_format=torch.channels_last),  # same layout
])
def test_gate_gradient_is_the_inner_product_whatever_the_layouts(make_grad):
    """Catches the one-pass inner product used on tensors whose memory orders differ (it would
    pair unrelated elements), and a gradient returned in the outputs' dtype instead of the gates'."""
    torch.manual_seed(1)
    outputs = [torch.randn(3, 4, 5, 5).contiguous(memory_format=torch.channels_last) for _ in range(3)]
    output = outputs[1].clone().requires_grad_()
    gates = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    grad = make_grad(output)
    fast = torch.autograd.grad(gate_probe(output, gates, outputs), (output, gates), grad)
    expected = torch.autograd.grad(gate_reference(output, gates, outputs), (output, gates), grad)
    assert fast[1].dtype == torch.float64
    torch.testing.assert_close(fast[0], expected[0], rtol=0, atol=0)
    torch.testing.assert_close(fast[1], expected[1], rtol=1e-6, atol=1e-6)
