"""Architecture JSON: round trips, converters, validation messages, building."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from dfnas.nas.arch import (Architecture, as_architecture, build_model, from_genotype,
                            from_proxyless_net_config, from_spos_tuple, make_architecture,
                            to_genotype, to_proxyless_net_config, to_spos_tuple)
from dfnas.nas.profile import count_params
from dfnas.nas.spaces.darts import DARTS_V2, DartsConfig
from dfnas.nas.spaces.darts_eval import DartsNetwork
from dfnas.nas.spaces.proxyless import ProxylessConfig, ProxylessNetwork
from dfnas.nas.spaces.proxyless_netconfig import to_net_config
from dfnas.nas.spaces.proxyless_published import published
from dfnas.nas.spaces.spos import SPOS_PUBLISHED, SposConfig, SposNetwork




def tiny_architectures() -> list[Architecture]:
    proxyless = ProxylessConfig.tiny()
    return [
        from_genotype(DARTS_V2, DartsConfig.tiny()),
        from_spos_tuple((3, 0, 2, 1, 0), SposConfig.tiny()),
        make_architecture("proxyless", proxyless,
                          ["3x3_MBConv3", "zero", "7x7_MBConv6", "5x5_MBConv3", "5x5_MBConv6", "zero"]),
    ]


@pytest.mark.parametrize("arch", tiny_architectures(), ids=lambda a: a.space)
def test_json_round_trip_through_a_file(arch, tmp_path):
    path = tmp_path / "sub" / "arch.json"
    arch.save(path)
    assert not [p for p in path.parent.iterdir() if p.name != "arch.json"]  # no temp file left
    text = path.read_text()
    assert json.loads(text)["version"] == 1
    loaded = Architecture.load(path)
    assert loaded == arch
    assert loaded.to_dict() == arch.to_dict()


def test_converters_round_trip_losslessly():
    assert to_genotype(from_genotype(DARTS_V2)) == DARTS_V2
    assert to_spos_tuple(from_spos_tuple(SPOS_PUBLISHED)) == SPOS_PUBLISHED
    net_config = to_net_config(*published("gpu"))
    assert to_proxyless_net_config(from_proxyless_net_config(net_config)) == net_config
    # ... and through the JSON text in between.
    for arch in (from_genotype(DARTS_V2), from_spos_tuple(SPOS_PUBLISHED),
                 from_proxyless_net_config(net_config)):
        assert Architecture.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch


def test_derived_counts_are_those_of_the_built_network():
    arch = from_spos_tuple(SPOS_PUBLISHED)
    assert arch.derived == {"flops": 322_918_720, "params": count_params(arch.build())}
    assert from_genotype(DARTS_V2).derived["params"] == 3_349_342


def test_build_model_accepts_every_form():
    net_config = to_net_config(*published("mobile"))
    cases = [
        (DARTS_V2, DartsNetwork),
        (list(SPOS_PUBLISHED), SposNetwork),
        (net_config, ProxylessNetwork),
        (from_spos_tuple(SPOS_PUBLISHED).to_dict(), SposNetwork),
        (from_spos_tuple(SPOS_PUBLISHED), SposNetwork),
    ]
    for value, network_type in cases:
        assert isinstance(build_model(value), network_type)
    tiny = tiny_architectures()[1]
    assert as_architecture(tiny.to_dict()) == tiny
    assert tiny.build()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _spos_dict() -> dict:
    return from_spos_tuple((3, 0, 2, 1, 0), SposConfig.tiny()).to_dict()


def _darts_dict() -> dict:
    return from_genotype(DARTS_V2, DartsConfig.tiny()).to_dict()


def _proxyless_dict() -> dict:
    return tiny_architectures()[2].to_dict()


def _edit(base, path, value):
    data = copy.deepcopy(base())
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize("data, message", [
    (_edit(_spos_dict, ["space"], "nasnet"), "unknown search space 'nasnet'"),
    (_edit(_spos_dict, ["version"], 2), "unsupported architecture version 2"),
    (_edit(_spos_dict, ["derived"], KeyError), r"missing \['derived'\]"),
    (_edit(_spos_dict, ["extra"], 1), r"unknown keys \['extra'\]"),
    (_edit(_spos_dict, ["choices"], [0, 1, 2]), "expected 5 choices, got 3"),
    (_edit(_spos_dict, ["choices", 4], 7), "choice 4 = 7 is out of range 0..3"),
    (_edit(_spos_dict, ["choices"], 5), "malformed choices"),
    (_edit(_spos_dict, ["config", "depth"], 3), r"unknown config keys \['depth'\]"),
    (_edit(_spos_dict, ["config", "input_size"], "32"), "config.input_size = '32'"),
    (_edit(_spos_dict, ["derived", "flops"], 1), "derived.flops is 1 but the architecture has"),
    (_edit(_spos_dict, ["derived", "params"], -5), "derived.params must be a non-negative int"),
    (_edit(_spos_dict, ["derived", "latency_ms"], "fast"), "derived.latency_ms must be"),
    (_edit(_darts_dict, ["choices", "normal", 0, 0], "conv_9x9"), "unknown op 'conv_9x9'"),
    (_edit(_darts_dict, ["choices", "reduce"], [["max_pool_3x3", 0]] * 8), "reads input 0 twice"),
    (_edit(_darts_dict, ["choices", "normal_concat"], KeyError), r"genotype is missing \['normal_concat'\]"),
    (_edit(_proxyless_dict, ["choices", 2], "9x9_MBConv3"), "block 2 has unknown op '9x9_MBConv3'"),
    (_edit(_proxyless_dict, ["choices", 0], "zero"), "block 0 has no identity shortcut"),
    ("[1, 2]", "must be a JSON object"),
])
def test_invalid_architectures_are_rejected_with_clear_messages(data, message):
    with pytest.raises(ValueError, match=message):
        Architecture.from_dict(data)


def test_load_reports_malformed_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Architecture.load(path)
