"""torch.compile traces the networks as one graph each (no graph breaks).

The `aot_eager` backend checks tracing without a C++ toolchain. To keep the suite quick this
covers one supernet (SPOS, choice as a Python list) and one standalone network (ProxylessNAS,
with a `zero` block); the other combinations and DARTS were checked by hand with the same call
(fullgraph; the tiny DARTS networks take 21 s / ~165 s to trace on this CPU).
"""
from __future__ import annotations

import torch

from dfnas.nas.spaces.proxyless import ProxylessConfig, ProxylessNetwork
from dfnas.nas.spaces.spos import SposConfig, SposSupernet




def assert_compiles_and_matches(module: torch.nn.Module, *args) -> None:
    module.eval()
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(*args), module(*args))


def test_spos_supernet_compiles_without_graph_breaks():
    config = SposConfig.tiny(input_size=16)
    x = torch.randn(2, 3, 16, 16)
    assert_compiles_and_matches(SposSupernet(config), x, [3, 2, 1, 0, 1])


def test_proxyless_network_compiles_without_graph_breaks():
    config = ProxylessConfig.tiny(input_size=16)
    choices = ["3x3_MBConv3", "zero", "7x7_MBConv6", "5x5_MBConv3", "5x5_MBConv6", "zero"]
    x = torch.randn(2, 3, 16, 16)
    assert_compiles_and_matches(ProxylessNetwork(config, choices), x)
