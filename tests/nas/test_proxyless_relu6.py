"""`InplaceReLU6` (the ProxylessNAS supernet's activation) against `nn.ReLU6(inplace=True)`, the
activation it replaces: values, gradients, and a whole supernet training step in both layouts."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig
from dfnas.nas.spaces.proxyless_relu6 import InplaceReLU6, use_torch_relu6
from dfnas.nas.spaces.proxyless import ProxylessConfig, ProxylessNetwork, ProxylessSupernet
from dfnas.nas.trainer import Trainer


def test_values_and_gradients_match_relu6_at_and_around_the_kinks():
    """Catches a gradient mask taken from the output with closed bounds (y = 0 or y = 6 would let
    the gradient through where hardtanh's is zero) and a forward that stops clamping in place."""
    x = torch.tensor([-1.0, 0.0, 1e-7, 3.0, 6.0 - 1e-6, 6.0, 7.0, float("nan")]).repeat(2)
    grad = torch.linspace(1.0, 2.0, len(x))
    results = []
    for activation in (nn.ReLU6(inplace=True), InplaceReLU6()):
        leaf = x.clone().requires_grad_()
        y = activation(leaf * 1.0)  # in place on a non-leaf, as after a BatchNorm
        y.backward(grad)
        results.append((y.detach(), leaf.grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("channels_last", [False, True])
def test_supernet_weight_step_matches_the_relu6_supernet(channels_last):
    """Catches any change of the supernet's loss or weight gradients from the swap (e.g. the
    activation applied to a tensor BatchNorm's backward still reads), in either layout."""
    precision = Precision(torch.device("cpu"), channels_last)
    torch.manual_seed(0)
    fast = precision.prepare_model(ProxylessSupernet(ProxylessConfig.tiny(1, 12, 10))).train()
    today = use_torch_relu6(copy.deepcopy(fast))
    assert any(isinstance(m, InplaceReLU6) for m in fast.modules())
    assert not any(isinstance(m, InplaceReLU6) for m in today.modules())
    batch = Batch(precision.prepare_input(torch.randn(8, 1, 12, 12)), torch.randn(8, 10), torch.randint(0, 10, (8,)))
    trainer = Trainer(LossConfig(), precision)
    for edge, other in zip(fast.mixed_edges, today.mixed_edges):
        edge.active = other.active = len(edge.candidates) - 2  # 7x7 expand 6
    losses = []
    for model in (today, fast):
        loss = trainer.loss(model, batch)
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[0] == losses[1]
    for (name, a), b in zip(today.named_parameters(), fast.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_the_standalone_network_keeps_torch_relu6_for_export():
    """Catches the custom activation leaking into the network that TorchScript / ONNX export."""
    config = ProxylessConfig.tiny(1, 12, 10)
    network = ProxylessNetwork(config, [config.candidate_ops[0]] * config.num_blocks)
    assert not any(isinstance(m, InplaceReLU6) for m in network.modules())
