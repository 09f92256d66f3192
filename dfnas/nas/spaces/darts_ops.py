"""The eight DARTS primitives (Liu et al. 2019) as modules and as analytic costs.

Every op maps C channels to C channels; stride 2 only on the edges of a reduction cell that read
the two cell inputs. `affine=False` is the search setting (the BN's scale would fight the
architecture weights), `affine=True` the evaluation setting.
"""
from __future__ import annotations

import torch
from torch import nn

from dfnas.nas.spaces.base import Cost, bn_cost, conv_cost, conv_out

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (strided like the other ops on that edge)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise (dilated) conv, pointwise conv, BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable units; only the first one strides."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1x1 stride-2 convs offset by one pixel, concatenated."""

    def __init__(self, c_in: int, c_out: int, affine: bool):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # The shifted branch is padded back to the unshifted size so odd resolutions work too.
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def make_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """Build primitive `name` on `channels` channels."""
    c = channels
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1, affine)
    if name == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2, affine)
    if name == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2, affine)
    if name == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2, affine)
    raise ValueError(f"unknown DARTS primitive {name!r}; expected one of {PRIMITIVES}")


def relu_conv_bn_cost(c_in: int, c_out: int, h_out: int, w_out: int) -> Cost:
    """The 1x1 ReLUConvBN used to preprocess cell inputs."""
    return conv_cost(c_in, c_out, 1, h_out, w_out) + bn_cost(c_out)


def factorized_reduce_cost(c_in: int, c_out: int, h_in: int, w_in: int) -> Cost:
    h, w = conv_out(h_in, 1, 2, 0), conv_out(w_in, 1, 2, 0)
    half = conv_cost(c_in, c_out // 2, 1, h, w)
    return half + half + bn_cost(c_out)


def _dil_conv_cost(c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                   h_in: int, w_in: int) -> tuple[Cost, int, int]:
    h = conv_out(h_in, kernel, stride, padding, dilation)
    w = conv_out(w_in, kernel, stride, padding, dilation)
    cost = conv_cost(c_in, c_in, kernel, h, w, groups=c_in) + conv_cost(c_in, c_out, 1, h, w)
    return cost + bn_cost(c_out), h, w


def op_cost(name: str, channels: int, stride: int, h_in: int, w_in: int) -> Cost:
    """Cost of primitive `name` in an evaluation cell (affine BN); pools and `none` are free."""
    c = channels
    if name in ("none", "max_pool_3x3", "avg_pool_3x3"):
        return Cost()
    if name == "skip_connect":
        return Cost() if stride == 1 else factorized_reduce_cost(c, c, h_in, w_in)
    if name.startswith("sep_conv"):
        kernel = int(name[-1])
        first, h, w = _dil_conv_cost(c, c, kernel, stride, kernel // 2, 1, h_in, w_in)
        second, _, _ = _dil_conv_cost(c, c, kernel, 1, kernel // 2, 1, h, w)
        return first + second
    if name.startswith("dil_conv"):
        kernel = int(name[-1])
        return _dil_conv_cost(c, c, kernel, stride, kernel - 1, 2, h_in, w_in)[0]
    raise ValueError(f"unknown DARTS primitive {name!r}; expected one of {PRIMITIVES}")
