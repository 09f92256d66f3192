"""ProxylessNAS space: one-path supernet, published counts, net.config conversion."""
from __future__ import annotations

import random

import pytest
import torch

from dfnas.nas.profile import count_macs, count_params
from dfnas.nas.spaces.proxyless import ProxylessConfig, ProxylessNetwork, ProxylessSupernet
from dfnas.nas.spaces.proxyless_blocks import ZERO
from dfnas.nas.spaces.proxyless_netconfig import from_net_config, to_net_config
from dfnas.nas.spaces.proxyless_published import published




def random_choices(config: ProxylessConfig, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(names) for names in config.block_candidates()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_supernet_active_path_equals_standalone_network_with_copied_weights(seed):
    torch.manual_seed(seed)
    config = ProxylessConfig.tiny(input_size=16)
    supernet = ProxylessSupernet(config)
    with torch.no_grad():
        for p in supernet.parameters():
            p.normal_(0, 0.3)
    choices = random_choices(config, seed)
    supernet.set_active(choices)
    assert supernet.active_choices() == choices
    network = ProxylessNetwork(config, choices)
    network.load_state_dict(supernet.subnet_state_dict(choices))  # strict: same module names
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(supernet.train()(x), network.train()(x))
    torch.testing.assert_close(supernet.eval()(x), network.eval()(x))


def test_mixed_edges_expose_all_candidates_and_run_only_the_active_one():
    torch.manual_seed(0)
    config = ProxylessConfig.tiny(input_size=16)
    supernet = ProxylessSupernet(config)
    edges = supernet.mixed_edges
    assert len(edges) == config.num_blocks == 6
    assert [e.candidate_names for e in edges] == config.block_candidates()
    # Only blocks after the first of a stage (identity shortcut) may be removed.
    assert [ZERO in names for names in config.block_candidates()] == [False, True] * 3
    calls = []
    for edge in edges:
        for index, candidate in enumerate(edge.candidates):
            candidate.register_forward_hook(lambda *_, i=index: calls.append(i))
        edge.active = len(edge.candidates) - 1
    supernet(torch.randn(2, 3, 16, 16))
    assert calls == [len(e.candidates) - 1 for e in edges]
    # A strategy can still call any candidate itself (binary-gate gradients need every output).
    block_input = torch.randn(2, 16, 8, 8)
    outputs = [candidate(block_input) for candidate in edges[1].candidates]
    assert all(o.shape == block_input.shape for o in outputs)
    assert torch.count_nonzero(outputs[-1]) == 0  # `zero`


@pytest.mark.parametrize("name, macs, params", [
    # Parameters: osmr/imgclsmob pytorchcv/models/proxylessnas.py asserts these exact counts for
    # the released nets (the paper's 7.1M / 4.4M / 4.1M, rounded).
    # MACs: mit-han-lab/proxylessnas README ("ProxylessNAS (mobile) ... 320M", "(mobile_14) ...
    # 581M"); GPU 465M as tabulated for ProxylessNAS-GPU in MathNAS (NeurIPS 2023, Table 3).
    # No primary MAC figure for the CPU net was found; it is checked on parameters only.
    ("gpu", 465e6, 7_119_848),
    ("cpu", None, 4_361_648),
    ("mobile", 320e6, 4_080_512),
    ("mobile_14", 581e6, 6_857_568),
])
def test_published_proxyless_architectures_match_published_counts(name, macs, params):
    config, choices = published(name)
    network = ProxylessNetwork(config, choices)
    assert count_params(network) == params
    if macs is not None:
        assert abs(count_macs(network, (3, 224, 224)) - macs) / macs < 0.01


@pytest.mark.parametrize("name", ["gpu", "cpu", "mobile", "mobile_14"])
def test_net_config_round_trips(name):
    config, choices = published(name)
    net_config = to_net_config(config, choices)
    assert net_config["first_conv"]["out_channels"] == config.stem_width
    assert sum(b["mobile_inverted_conv"]["name"] == "ZeroLayer" for b in net_config["blocks"]) \
        == choices.count(ZERO)
    assert from_net_config(net_config) == (config, choices)
    assert to_net_config(*from_net_config(net_config)) == net_config


def test_net_config_with_width_multiplier_converts_to_an_equivalent_config():
    config = ProxylessConfig(input_size=32, num_classes=10, width_mult=0.5)
    choices = random_choices(config, 3)
    back, back_choices = from_net_config(to_net_config(config, choices), input_size=32)
    assert back.width_mult == 1.0 and back_choices == choices
    assert back.block_specs() == config.block_specs() and back.scaled == config.scaled


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["blocks"][1]["mobile_inverted_conv"].update(kernel_size=9), "block 0 has unknown op '9x9_MBConv3'"),
    (lambda c: c["blocks"][1].update(mobile_inverted_conv={"name": "ZeroLayer", "stride": 2}),
     "ZeroLayer without a shortcut"),
    (lambda c: c["blocks"][2].update(shortcut=None), r"blocks\[2\] lacks a shortcut"),
    (lambda c: c["blocks"][0]["mobile_inverted_conv"].update(expand_ratio=6), r"blocks\[0\]"),
    (lambda c: c.pop("feature_mix_layer"), "no 'feature_mix_layer'"),
])
def test_invalid_net_configs_are_rejected(edit, message):
    net_config = to_net_config(*published("mobile"))
    edit(net_config)
    with pytest.raises(ValueError, match=message):
        from_net_config(net_config)


def test_zero_is_rejected_on_a_block_without_shortcut():
    config = ProxylessConfig.tiny()
    choices = random_choices(config, 0)
    choices[0] = ZERO
    with pytest.raises(ValueError, match="block 0 has no identity shortcut"):
        ProxylessNetwork(config, choices)


def test_reference_supernet_builds_and_runs_at_224():
    config = ProxylessConfig.imagenet()
    supernet = ProxylessSupernet(config)
    assert len(supernet.mixed_edges) == 21
    supernet.set_active(random_choices(config, 0))
    assert supernet.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
