"""The four SPOS choice blocks (Guo et al. 2019), built on ShuffleNetV2 units, and their costs.

A stride-1 block splits its input channels in half: one half passes through, the other goes
through the main branch, and the halves are concatenated. A stride-2 block feeds the whole input
to both the main branch and a projection branch (depthwise stride-2 + pointwise). The main
branch ends with `out - in_branch` channels so the concatenation has `out` channels.
"""
from __future__ import annotations

import torch
from torch import nn

from dfnas.nas.spaces.base import Cost, bn_cost, conv_cost, conv_out

CHOICE_NAMES: tuple[str, ...] = ("shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3")


def _dw(channels: int, kernel: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)


def _pw(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, bias=False)


class ChoiceBlock(nn.Module):
    """One SPOS block: `kernel` 3/5/7 ShuffleNet unit, or the Xception unit (`xception=True`)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, xception: bool, affine: bool):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"SPOS blocks have stride 1 or 2, got {stride}")
        self.stride = stride
        branch_in = c_in // 2 if stride == 1 else c_in
        mid, branch_out = c_out // 2, c_out - branch_in
        bn = lambda c: nn.BatchNorm2d(c, affine=affine)  # noqa: E731
        if xception:
            self.main = nn.Sequential(
                _dw(branch_in, 3, stride), bn(branch_in),
                _pw(branch_in, mid), bn(mid), nn.ReLU(inplace=True),
                _dw(mid, 3, 1), bn(mid),
                _pw(mid, mid), bn(mid), nn.ReLU(inplace=True),
                _dw(mid, 3, 1), bn(mid),
                _pw(mid, branch_out), bn(branch_out), nn.ReLU(inplace=True),
            )
        else:
            self.main = nn.Sequential(
                _pw(branch_in, mid), bn(mid), nn.ReLU(inplace=True),
                _dw(mid, kernel, stride), bn(mid),
                _pw(mid, branch_out), bn(branch_out), nn.ReLU(inplace=True),
            )
        self.proj = None
        if stride == 2:
            self.proj = nn.Sequential(
                _dw(c_in, kernel, 2), bn(c_in),
                _pw(c_in, c_in), bn(c_in), nn.ReLU(inplace=True),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is None:
            # ShuffleNetV2's channel shuffle, fused with the split: even channels pass through.
            return torch.cat([x[:, 0::2], self.main(x[:, 1::2])], dim=1)
        return torch.cat([self.proj(x), self.main(x)], dim=1)


def make_block(choice: int, c_in: int, c_out: int, stride: int, affine: bool) -> ChoiceBlock:
    name = CHOICE_NAMES[choice]
    return ChoiceBlock(c_in, c_out, int(name[-1]), stride, name.startswith("xception"), affine)


def block_cost(choice: int, c_in: int, c_out: int, stride: int, size_in: int) -> Cost:
    """Cost of `make_block(choice, ...)` with affine BN on a `size_in` square input."""
    name = CHOICE_NAMES[choice]
    kernel = int(name[-1])
    branch_in = c_in // 2 if stride == 1 else c_in
    mid, branch_out = c_out // 2, c_out - branch_in
    size = conv_out(size_in, 3, stride, 1)
    if name.startswith("xception"):
        total = Cost()
        for c_a, c_b in ((branch_in, mid), (mid, mid), (mid, branch_out)):
            total = total + conv_cost(c_a, c_a, 3, size, size, groups=c_a) + bn_cost(c_a)
            total = total + conv_cost(c_a, c_b, 1, size, size) + bn_cost(c_b)
    else:
        total = conv_cost(branch_in, mid, 1, size_in, size_in) + bn_cost(mid)
        total = total + conv_cost(mid, mid, kernel, size, size, groups=mid) + bn_cost(mid)
        total = total + conv_cost(mid, branch_out, 1, size, size) + bn_cost(branch_out)
    if stride == 2:
        total = total + conv_cost(c_in, c_in, kernel, size, size, groups=c_in) + bn_cost(c_in)
        total = total + conv_cost(c_in, c_in, 1, size, size) + bn_cost(c_in)
    return total
