"""`InplaceReLU6` (the ProxylessNAS supernet's activation) against `nn.ReLU6(inplace=True)`, the
activation it replaces (the whole supernet: `test_proxyless_reference.py`)."""
from __future__ import annotations

import torch
from torch import nn

from dfnas.nas.spaces.proxyless_relu6 import InplaceReLU6


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
