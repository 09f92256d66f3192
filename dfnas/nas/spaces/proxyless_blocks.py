"""The ProxylessNAS block modules (Cai et al. 2019): MBConv candidates, `zero`, and their costs.

A candidate is named `"{k}x{k}_MBConv{e}"` (depthwise kernel k, expansion e) or `zero`. A block
is `body(x) (+ x)`: the body is one candidate in the standalone network and a `MixedEdge` of all
candidates in the supernet, under the same module name, which keeps the two state dicts aligned.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import nn

from dfnas.nas.spaces.base import Cost, bn_cost, conv_cost, conv_out

ZERO = "zero"


class BatchNormSettings(Protocol):
    """What the blocks read from the space's config (a `ProxylessConfig`)."""

    bn_eps: float
    bn_momentum: float


def op_name(kernel: int, expand: int) -> str:
    return f"{kernel}x{kernel}_MBConv{expand}"


def parse_op_name(name: str) -> tuple[int, int]:
    """`'5x5_MBConv6'` -> (5, 6); raises ValueError for anything else."""
    try:
        kernels, expand = name.split("_MBConv")
        k1, k2 = kernels.split("x")
        if k1 != k2:
            raise ValueError
        return int(k1), int(expand)
    except ValueError:
        raise ValueError(f"proxyless: {name!r} is not an op name like '5x5_MBConv6' or 'zero'") from None


def batch_norm(channels: int, config: BatchNormSettings) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=config.bn_eps, momentum=config.bn_momentum)


Activation = Callable[[], nn.Module]
DepthwiseFactory = Callable[[int, int, int], nn.Module]  # (channels, kernel, stride) -> module


def relu6() -> nn.Module:
    return nn.ReLU6(inplace=True)


def depthwise(channels: int, kernel: int, stride: int) -> nn.Module:
    return nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)


class MBConv(nn.Module):
    """Inverted residual body: 1x1 expand (skipped at expansion 1), depthwise kxk, 1x1 project.
    `activation` makes each ReLU6 and `depth` the depthwise convolution (the supernet passes
    faster ones with the same math)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int,
                 config: BatchNormSettings, activation: Activation = relu6, depth: DepthwiseFactory = depthwise):
        super().__init__()
        mid = round(c_in * expand)
        self.inverted_bottleneck = None
        if expand != 1:
            self.inverted_bottleneck = nn.Sequential(
                nn.Conv2d(c_in, mid, 1, bias=False), batch_norm(mid, config), activation())
        self.depth_conv = nn.Sequential(depth(mid, kernel, stride), batch_norm(mid, config), activation())
        self.point_linear = nn.Sequential(nn.Conv2d(mid, c_out, 1, bias=False), batch_norm(c_out, config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class ZeroOp(nn.Module):
    """The `zero` candidate: contributes nothing, so its block reduces to the shortcut."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class ProxylessBlock(nn.Module):
    """`body(x) (+ x)`: the body is a `MixedEdge` in the supernet, one op standalone."""

    def __init__(self, body: nn.Module, shortcut: bool):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.shortcut else out


def make_candidate(name: str, c_in: int, c_out: int, stride: int, config: BatchNormSettings,
                   activation: Activation = relu6, depth: DepthwiseFactory = depthwise) -> nn.Module:
    if name == ZERO:
        return ZeroOp()
    kernel, expand = parse_op_name(name)
    return MBConv(c_in, c_out, kernel, stride, expand, config, activation, depth)


def mbconv_cost(c_in: int, c_out: int, kernel: int, stride: int, expand: int, size_in: int) -> Cost:
    mid = round(c_in * expand)
    size = conv_out(size_in, kernel, stride, kernel // 2)
    total = Cost()
    if expand != 1:
        total = conv_cost(c_in, mid, 1, size_in, size_in) + bn_cost(mid)
    total = total + conv_cost(mid, mid, kernel, size, size, groups=mid) + bn_cost(mid)
    return total + conv_cost(mid, c_out, 1, size, size) + bn_cost(c_out)


def candidate_cost(name: str, c_in: int, c_out: int, stride: int, size_in: int) -> Cost:
    if name == ZERO:
        return Cost()
    kernel, expand = parse_op_name(name)
    return mbconv_cost(c_in, c_out, kernel, stride, expand, size_in)
