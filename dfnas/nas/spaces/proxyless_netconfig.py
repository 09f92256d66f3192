"""Convert between (ProxylessConfig, choices) and a ProxylessNAS `net.config`-style dict.

The dict follows the layout of `learned_net/net.config` in mit-han-lab/proxylessnas: `first_conv`,
`blocks` (each a `MobileInvertedResidualBlock` with a `mobile_inverted_conv` that is an
`MBInvertedConvLayer` or a `ZeroLayer`, and a `shortcut` that is an `IdentityLayer` or null),
`feature_mix_layer` and `classifier`. We emit only the fields that define the structure; on
reading, extra fields of the original files are ignored. The image size is not part of a
net.config, so `from_net_config` takes it as an argument.

Stages are recovered from the blocks: a stage starts where the stride is 2 or the width changes.
`to_net_config` folds `width_mult` into explicit widths, so converting back gives an equivalent
config with `width_mult=1.0`.
"""
from __future__ import annotations

from typing import Any, Sequence

from dfnas.nas.spaces.proxyless import ProxylessConfig, check_choices
from dfnas.nas.spaces.proxyless_blocks import ZERO, op_name, parse_op_name


def _mbconv(c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> dict:
    return {"name": "MBInvertedConvLayer", "in_channels": c_in, "out_channels": c_out,
            "kernel_size": kernel, "stride": stride, "expand_ratio": expand}


def _block(conv: dict, shortcut_channels: int | None) -> dict:
    shortcut = None
    if shortcut_channels is not None:
        shortcut = {"name": "IdentityLayer", "in_channels": shortcut_channels,
                    "out_channels": shortcut_channels}
    return {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": conv, "shortcut": shortcut}


def to_net_config(config: ProxylessConfig, choices: Sequence[str]) -> dict:
    check_choices(config, choices)
    stem, first, widths, head = config.scaled
    blocks = [_block(_mbconv(stem, first, 3, 1, 1), None)]
    for name, (c_in, c_out, stride, _, shortcut) in zip(choices, config.block_specs()):
        if name == ZERO:
            conv = {"name": "ZeroLayer", "stride": stride}
        else:
            kernel, expand = parse_op_name(name)
            conv = _mbconv(c_in, c_out, kernel, stride, expand)
        blocks.append(_block(conv, c_in if shortcut else None))
    return {
        "name": "ProxylessNASNets",
        "bn": {"momentum": config.bn_momentum, "eps": config.bn_eps},
        "first_conv": {"name": "ConvLayer", "in_channels": config.in_channels, "out_channels": stem,
                       "kernel_size": 3, "stride": config.stem_stride, "act_func": "relu6"},
        "blocks": blocks,
        "feature_mix_layer": {"name": "ConvLayer", "in_channels": widths[-1], "out_channels": head,
                              "kernel_size": 1, "stride": 1, "act_func": "relu6"},
        "classifier": {"name": "LinearLayer", "in_features": head, "out_features": config.num_classes,
                       "bias": True, "dropout_rate": config.dropout},
    }


def _get(node: Any, key: str, where: str) -> Any:
    if not isinstance(node, dict) or key not in node:
        raise ValueError(f"net.config: {where} has no {key!r}")
    return node[key]


def _expect(value: Any, expected: Any, where: str) -> None:
    if value != expected:
        raise ValueError(f"net.config: {where} is {value!r}; this space needs {expected!r}")


def from_net_config(net_config: dict, input_size: int = 224) -> tuple[ProxylessConfig, list[str]]:
    """Parse a net.config dict; raises `ValueError` naming the first unsupported field."""
    if not isinstance(net_config, dict):
        raise ValueError(f"net.config must be a dict, got {type(net_config).__name__}")
    first_conv = _get(net_config, "first_conv", "the net")
    _expect(_get(first_conv, "kernel_size", "first_conv"), 3, "first_conv.kernel_size")
    blocks = _get(net_config, "blocks", "the net")
    if not isinstance(blocks, list) or len(blocks) < 2:
        raise ValueError("net.config: blocks must list the first block and at least one searchable block")
    first = _get(blocks[0], "mobile_inverted_conv", "blocks[0]")
    _expect((_get(first, "kernel_size", "blocks[0]"), _get(first, "expand_ratio", "blocks[0]"),
             _get(first, "stride", "blocks[0]")), (3, 1, 1), "blocks[0] (kernel, expand, stride)")
    _expect(blocks[0].get("shortcut"), None, "blocks[0].shortcut")

    widths, depths, strides, choices = [], [], [], []
    c_prev = _get(first, "out_channels", "blocks[0]")
    for index, block in enumerate(blocks[1:], start=1):
        where = f"blocks[{index}]"
        conv = _get(block, "mobile_inverted_conv", where)
        shortcut = block.get("shortcut")
        stride = _get(conv, "stride", where)
        if _get(conv, "name", where) == "ZeroLayer":
            if shortcut is None:
                raise ValueError(f"net.config: {where} is a ZeroLayer without a shortcut")
            c_out = _get(shortcut, "out_channels", f"{where}.shortcut")
            choices.append(ZERO)
        else:
            _expect(_get(conv, "in_channels", where), c_prev, f"{where}.in_channels")
            c_out = _get(conv, "out_channels", where)
            choices.append(op_name(_get(conv, "kernel_size", where), _get(conv, "expand_ratio", where)))
        new_stage = stride == 2 or c_out != c_prev or not widths
        if new_stage:
            widths.append(c_out)
            depths.append(1)
            strides.append(stride)
        else:
            _expect(stride, 1, f"{where}.stride")
            depths[-1] += 1
        has_shortcut = not new_stage
        if (shortcut is not None) != has_shortcut:
            raise ValueError(f"net.config: {where} {'has' if shortcut else 'lacks'} a shortcut; "
                             f"only blocks after the first of a stage have one")
        c_prev = c_out

    feature_mix = _get(net_config, "feature_mix_layer", "the net")
    _expect(_get(feature_mix, "in_channels", "feature_mix_layer"), c_prev, "feature_mix_layer.in_channels")
    classifier = _get(net_config, "classifier", "the net")
    bn = net_config.get("bn", {})
    config = ProxylessConfig(
        in_channels=_get(first_conv, "in_channels", "first_conv"),
        input_size=input_size,
        num_classes=_get(classifier, "out_features", "classifier"),
        stem_width=_get(first_conv, "out_channels", "first_conv"),
        stem_stride=_get(first_conv, "stride", "first_conv"),
        first_block_width=_get(first, "out_channels", "blocks[0]"),
        stage_widths=tuple(widths), stage_depths=tuple(depths), stage_strides=tuple(strides),
        head_width=_get(feature_mix, "out_channels", "feature_mix_layer"),
        dropout=classifier.get("dropout_rate", 0.0),
        bn_momentum=bn.get("momentum", 0.1), bn_eps=bn.get("eps", 1e-3),
    )
    check_choices(config, choices)
    return config, choices
