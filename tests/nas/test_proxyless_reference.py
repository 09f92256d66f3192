"""The ProxylessNAS supernet (with `InplaceReLU6` and `Depthwise`) against `torch_modules` of it,
the supernet before issue 12: a whole training step in both layouts, and the standalone network."""
from __future__ import annotations

import copy

import pytest
import torch

from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig
from dfnas.nas.spaces.proxyless import ProxylessConfig, ProxylessNetwork, ProxylessSupernet
from dfnas.nas.spaces.proxyless_depthwise import Depthwise
from dfnas.nas.spaces.proxyless_reference import torch_modules
from dfnas.nas.spaces.proxyless_relu6 import InplaceReLU6
from dfnas.nas.trainer import Trainer

FAST = (InplaceReLU6, Depthwise)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("candidate", [-1, 0])  # 7x7 expand 6 (Depthwise's fast path on maps up to 6x6), 3x3 expand 3
def test_supernet_weight_step_matches_the_torch_modules_supernet(channels_last, candidate):
    """Catches any change of the supernet's loss or weight gradients from the faster modules (e.g.
    an activation applied to a tensor BatchNorm's backward still reads, a wrong depthwise weight
    gradient), and a swap back that loses the parameters an optimizer holds."""
    precision = Precision(torch.device("cpu"), channels_last)
    torch.manual_seed(0)
    fast = precision.prepare_model(ProxylessSupernet(ProxylessConfig.tiny(1, 12, 10))).train()
    today = torch_modules(copy.deepcopy(fast))
    assert any(isinstance(m, FAST) for m in fast.modules())
    assert not any(isinstance(m, FAST) for m in today.modules())
    assert [n for n, _ in today.named_parameters()] == [n for n, _ in fast.named_parameters()]
    batch = Batch(precision.prepare_input(torch.randn(8, 1, 12, 12)), torch.randn(8, 10), torch.randint(0, 10, (8,)))
    trainer = Trainer(LossConfig(), precision)
    for edge, other in zip(fast.mixed_edges, today.mixed_edges):
        edge.active = other.active = candidate % (len(edge.candidates) - (edge.candidate_names[-1] == "zero"))
    losses = []
    for model in (today, fast):
        loss = trainer.loss(model, batch)
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[0] == losses[1]
    for (name, a), b in zip(today.named_parameters(), fast.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_torch_modules_keeps_the_parameter_objects():
    """Catches a swap that copies weights into new parameters (an optimizer would then step
    parameters the model no longer uses)."""
    model = ProxylessSupernet(ProxylessConfig.tiny(1, 12, 10))
    before = {id(p) for p in model.parameters()}
    assert {id(p) for p in torch_modules(model).parameters()} == before


def test_the_standalone_network_keeps_torch_modules_for_export():
    """Catches the custom modules leaking into the network that TorchScript / ONNX export."""
    config = ProxylessConfig.tiny(1, 12, 10)
    network = ProxylessNetwork(config, [config.candidate_ops[-1]] * config.num_blocks)
    assert not any(isinstance(m, FAST) for m in network.modules())
