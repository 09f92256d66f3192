"""All mixed edges that leave one cell state, computed as a few wide ops instead of many tiny ones.

A DARTS search cell has 14 edges x 7 candidate ops, each a chain of ReLU / depthwise / pointwise /
BN on 4-16 channels: thousands of tiny kernels per step. `FusedEdges` computes the `E` edges that
leave one state (the cell's inputs feed all 4 nodes, intermediate state i nodes i-1..3) with the
same math as the sum over `PRIMITIVES` of `w_k * op_k(x)`. Measured (BENCHMARKS.md): per-state
groups step 1.66x faster than fusing each edge's candidates alone; one group for both cell inputs
(twice the channels) ran 1.0-1.2x slower than two per-state groups.

- ReLU once (every conv candidate starts with ReLU of the same tensor), repeated per edge (a
  depthwise conv with channel multiplier E instead measures 1.1-3x slower in oneDNN).
- Each depthwise candidate of all E edges as one grouped convolution; the pointwise convs of all
  edges and candidates as one grouped 1x1; one BN over the concatenation (BN is per channel,
  so it equals the per-op BNs, running statistics included), with the mixing weights as its
  per-channel scale, so weighting costs no pass of its own; the edge sums are block sums.
- Dilated depthwise convs run undilated: oneDNN's dilated depthwise backward is 3-8x slower than
  the undilated one here. Stride 1: the four polyphase sub-images (even/odd rows x columns) go into
  the batch, where a dilation-2 kernel is an ordinary one. Stride 2: only the even sub-image is read.
- Pools, BN-after-pool and identity skip read the raw state, identical for every edge: computed
  once and mixed per edge by one matrix product. `FactorizedReduce` skips (stride 2) of all edges
  run as two 1x1 convs and one BN.

Parameters keep their natural shapes (no zero-padded kernels), so SGD, weight decay and gradient
clipping see exactly the reference's numbers. `candidate_state` slices one candidate back out in
`make_op`'s state-dict layout (for `subnet_state_dict` and the equivalence tests).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dfnas.nas.spaces.darts_ops import PRIMITIVES

# Columns of the mixing weights per candidate group, in `PRIMITIVES` order.
_POOLS = [PRIMITIVES.index("max_pool_3x3"), PRIMITIVES.index("avg_pool_3x3")]
_SKIP = PRIMITIVES.index("skip_connect")
_SEPS = [PRIMITIVES.index("sep_conv_3x3"), PRIMITIVES.index("sep_conv_5x5")]
_DILS = [PRIMITIVES.index("dil_conv_3x3"), PRIMITIVES.index("dil_conv_5x5")]
# Stage-1 block order of the conv candidates: sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5.
_CONV_NAMES = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


def _is_channels_last(x: torch.Tensor) -> bool:
    """Channels innermost: a channels-last tensor or a channel slice of one."""
    return x.shape[1] > 1 and x.stride(1) == 1 and not x.is_contiguous()


def _dense(x: torch.Tensor) -> torch.Tensor:
    """A strided view (the even sub-image) as its own tensor in its layout: a convolution then
    returns its input gradient in that layout too (not NCHW, which would send the backward of
    everything upstream down oneDNN's and BN's slow mixed-layout paths)."""
    return x.contiguous(memory_format=torch.channels_last if _is_channels_last(x) else torch.contiguous_format)


def repeat_per_edge(x: torch.Tensor, edges: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, E*C, H, W): the channels repeated once per edge, in `x`'s memory layout."""
    if edges == 1:
        return x
    n, c, h, w = x.shape
    if _is_channels_last(x):
        nhwc = x.permute(0, 2, 3, 1).reshape(n, h, w, 1, c).expand(n, h, w, edges, c)
        return nhwc.reshape(n, h, w, edges * c).permute(0, 3, 1, 2)
    return x.reshape(n, 1, c, h, w).expand(n, edges, c, h, w).reshape(n, edges * c, h, w)


def to_phases(x: torch.Tensor, edges: int = 1) -> torch.Tensor:
    """(N, C, H, W) -> (4N, E*C, ceil(H/2), ceil(W/2)): the even/odd row x column sub-images in the
    batch (zero-padded to even size, which a zero-padded convolution cannot tell apart), the
    channels repeated per edge as `repeat_per_edge` does, in one copy."""
    n, c, h, w = x.shape
    x = F.pad(x, (0, w % 2, 0, h % 2))
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    if _is_channels_last(x):
        grid = x.permute(0, 2, 3, 1).reshape(n, h2, 2, w2, 2, 1, c).expand(n, h2, 2, w2, 2, edges, c)
        return grid.permute(2, 4, 0, 1, 3, 5, 6).reshape(4 * n, h2, w2, edges * c).permute(0, 3, 1, 2)
    grid = x.reshape(n, 1, c, h2, 2, w2, 2).expand(n, edges, c, h2, 2, w2, 2)
    return grid.permute(4, 6, 0, 1, 2, 3, 5).reshape(4 * n, edges * c, h2, w2)


def from_phases(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of `to_phases` for an (N, C, H, W) original."""
    n4, c, h2, w2 = x.shape
    n = n4 // 4
    if _is_channels_last(x):
        image = x.permute(0, 2, 3, 1).reshape(2, 2, n, h2, w2, c).permute(2, 3, 0, 4, 1, 5)
        image = image.reshape(n, 2 * h2, 2 * w2, c).permute(0, 3, 1, 2)
    else:
        image = x.reshape(2, 2, n, c, h2, w2).permute(2, 3, 4, 0, 5, 1).reshape(n, c, 2 * h2, 2 * w2)
    return image[:, :, :h, :w]


def mix_shared(blocks: torch.Tensor, weights: torch.Tensor, channels: int) -> torch.Tensor:
    """sum_m weights[m, e] * blocks[m] for (N, M*C, H, W) `blocks` of C channels shared by every
    edge e; returns (N, E, C, H, W), a view in `blocks`'s layout.

    One matrix product: channels-last rows (pixels, M*C) times kron(weights, I_C), 25x faster here
    than broadcasting the weights over an inner dimension of 4-16 channels; NCHW, weights^T times
    (M, C*H*W) per sample."""
    n, _, h, w = blocks.shape
    m, e = weights.shape
    if _is_channels_last(blocks):
        rows = blocks.permute(0, 2, 3, 1).reshape(n * h * w, m * channels)
        eye = torch.eye(channels, dtype=rows.dtype, device=rows.device)
        mixing = (weights.to(rows.dtype)[:, None, :, None] * eye[None, :, None, :]).reshape(m * channels, e * channels)
        out = rows @ mixing
        return out.reshape(n, h, w, e, channels).permute(0, 3, 4, 1, 2)
    out = torch.matmul(weights.t().to(blocks.dtype), blocks.reshape(n, m, channels * h * w))
    return out.reshape(n, e, channels, h, w)


def block_sum(blocks: torch.Tensor, edges: int, channels: int) -> torch.Tensor:
    """sum_m blocks[m, e] for (N, M*E*C, H, W) blocks in order (m, edge): (N, E, C, H, W)."""
    n, _, h, w = blocks.shape
    if _is_channels_last(blocks):
        rows = blocks.permute(0, 2, 3, 1).reshape(n * h * w, -1, edges * channels)
        return rows.sum(1).reshape(n, h, w, edges, channels).permute(0, 3, 4, 1, 2)
    return blocks.reshape(n, -1, edges * channels * h * w).sum(1).reshape(n, edges, channels, h, w)


class ScaledBatchNorm2d(nn.BatchNorm2d):
    """Non-affine BN (batch statistics, running averages as `nn.BatchNorm2d`) whose output is
    multiplied per channel by `scale`, inside the BN kernel: the mixing weights cost no extra pass."""

    def __init__(self, channels: int):
        super().__init__(channels, affine=False)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average (the evaluator's recalibration)
                factor = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean, self.running_var, scale, None, self.training, factor, self.eps)


def depthwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Stride-1 'same' depthwise convolution. A kernel wider than the image's reach (2 * size - 1)
    is cropped: the dropped taps only ever meet zero padding (same output, zero gradient), and
    oneDNN's 5x5 on a 2x2 image costs 6x its 3x3."""
    k = weight.shape[-1]
    h, w = x.shape[-2:]
    crop_h, crop_w = max(0, (k - 2 * h + 1) // 2), max(0, (k - 2 * w + 1) // 2)
    weight = weight[:, :, crop_h:k - crop_h, crop_w:k - crop_w]
    return F.conv2d(x, weight, None, 1, (k // 2 - crop_h, k // 2 - crop_w), 1, x.shape[1])


def _conv_weight(*shape: int) -> nn.Parameter:
    # nn.Conv2d's default initialization; fan-in (shape[1] * kernel area) is the per-op one.
    weight = nn.Parameter(torch.empty(shape))
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return weight


def _bn_state(bn: nn.BatchNorm2d, start: int, stop: int, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}running_mean": bn.running_mean[start:stop].clone(),
            f"{prefix}running_var": bn.running_var[start:stop].clone(),
            f"{prefix}num_batches_tracked": bn.num_batches_tracked.clone()}


class FusedEdges(nn.Module):
    """The `edges` mixed edges leaving one state of C channels, stride `stride`."""

    def __init__(self, channels: int, stride: int, edges: int):
        super().__init__()
        self.channels, self.stride, self.edges = channels, stride, edges
        c, e = channels, edges
        self.sep3_dw1 = _conv_weight(e * c, 1, 3, 3)  # blocks (edge)
        self.sep5_dw1 = _conv_weight(e * c, 1, 5, 5)
        self.dil3_dw = _conv_weight(e * c, 1, 3, 3)
        self.dil5_dw = _conv_weight(e * c, 1, 5, 5)
        self.pw1 = _conv_weight(4 * e * c, c, 1, 1)  # blocks (candidate in _CONV_NAMES, edge)
        self.bn1 = ScaledBatchNorm2d(4 * e * c)
        self.sep3_dw2 = _conv_weight(e * c, 1, 3, 3)  # blocks (edge)
        self.sep5_dw2 = _conv_weight(e * c, 1, 5, 5)
        self.pw2 = _conv_weight(2 * e * c, c, 1, 1)  # blocks (sep_conv_3x3 / 5x5, edge)
        self.bn2 = ScaledBatchNorm2d(2 * e * c)
        self.pool_bn = nn.BatchNorm2d(2 * c, affine=False)  # blocks (max / avg)
        if stride == 2:
            self.reduce1 = _conv_weight(e * c // 2, c, 1, 1)
            self.reduce2 = _conv_weight(e * c // 2, c, 1, 1)
            self.reduce_bn = ScaledBatchNorm2d(e * c)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """`x`: the state (N, C, H, W); `weights`: (E, 8) mixing weights in `PRIMITIVES` order.
        Returns the edges' outputs, (N, E, C, H', W')."""
        e, c, s = self.edges, self.channels, self.stride

        def scale(columns: list[int]) -> torch.Tensor:
            """Per-channel mixing weights of blocks (candidate in `columns`, edge)."""
            return weights[:, columns].t().reshape(-1, 1).expand(-1, c).reshape(-1)

        relu_x = torch.relu(x)
        # Channel multiplier E instead of the repeat is 1.1-3x slower in oneDNN here.
        relu = repeat_per_edge(relu_x, e)
        sep1 = [F.conv2d(relu, self.sep3_dw1, None, s, 1, 1, e * c),
                F.conv2d(relu, self.sep5_dw1, None, s, 2, 1, e * c)]
        if s == 1:
            phases = to_phases(relu_x, e)
            dil = [from_phases(depthwise(phases, kernel), x.shape[2], x.shape[3])
                   for kernel in (self.dil3_dw, self.dil5_dw)]
        else:
            even = _dense(relu[:, :, ::2, ::2])
            dil = [depthwise(even, self.dil3_dw), depthwise(even, self.dil5_dw)]
        stage1_scale = torch.cat([torch.ones_like(weights[0, 0]).expand(2 * e * c), scale(_DILS)])
        stage1 = self.bn1(F.conv2d(torch.cat(sep1 + dil, 1), self.pw1, None, 1, 0, 1, 4 * e), stage1_scale)
        # split, not slicing: its backward concatenates the gradients in the tensor's layout.
        sep_mid, dil_out = torch.split(stage1, 2 * e * c, 1)
        # ReLU per half writes each as its own tensor in the layout (no copy for the convolution).
        sep3_mid, sep5_mid = (torch.relu(half) for half in torch.split(sep_mid, e * c, 1))
        sep2 = torch.cat([depthwise(sep3_mid, self.sep3_dw2), depthwise(sep5_mid, self.sep5_dw2)], 1)
        stage2 = self.bn2(F.conv2d(sep2, self.pw2, None, 1, 0, 1, 2 * e), scale(_SEPS))
        result = block_sum(stage2, e, c) + block_sum(dil_out, e, c)
        pools = torch.cat([F.max_pool2d(x, 3, s, 1), F.avg_pool2d(x, 3, s, 1, count_include_pad=False)], 1)
        result = result + mix_shared(self.pool_bn(pools), weights[:, _POOLS].t(), c)
        if s == 1:
            return result + mix_shared(x, weights[:, _SKIP].reshape(1, e), c)
        return result + self._factorized_reduce(relu_x, scale([_SKIP])).reshape(result.shape)

    def _factorized_reduce(self, relu: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Every edge's `FactorizedReduce` of the ReLU'd state, times `scale`."""
        e, half = self.edges, self.channels // 2
        shifted = F.pad(relu[:, :, 1:, 1:], (0, 1, 0, 1))
        # Per edge: conv_1's channels then conv_2's, as FactorizedReduce concatenates them.
        even = F.conv2d(relu, self.reduce1, None, 2)
        odd = F.conv2d(shifted, self.reduce2, None, 2)
        n, _, h, w = even.shape
        if _is_channels_last(even):
            both = torch.stack([even.permute(0, 2, 3, 1).reshape(n, h, w, e, half),
                                odd.permute(0, 2, 3, 1).reshape(n, h, w, e, half)], 4)
            return self.reduce_bn(both.reshape(n, h, w, 2 * e * half).permute(0, 3, 1, 2), scale)
        both = torch.stack([even.reshape(n, e, half, h, w), odd.reshape(n, e, half, h, w)], 2)
        return self.reduce_bn(both.reshape(n, 2 * e * half, h, w), scale)

    def candidate_state(self, edge: int, name: str) -> dict[str, torch.Tensor]:
        """Candidate `name` of edge `edge` as `make_op(name, C, stride, affine=False).state_dict()`
        (pools: the search's `Sequential(pool, BN)`); copies."""
        c, e = self.channels, self.edges
        if name in _CONV_NAMES:
            kind = _CONV_NAMES.index(name)
            block = kind * e + edge
            depthwise = getattr(self, ("sep3_dw1", "sep5_dw1", "dil3_dw", "dil5_dw")[kind])
            first = {"1.weight": depthwise[edge * c:(edge + 1) * c].detach().clone(),
                     "2.weight": self.pw1[block * c:(block + 1) * c].detach().clone(),
                     **_bn_state(self.bn1, block * c, (block + 1) * c, "3.")}
            if name.startswith("dil"):
                return first
            second_dw = self.sep3_dw2 if name == "sep_conv_3x3" else self.sep5_dw2
            second = {"1.weight": second_dw[edge * c:(edge + 1) * c].detach().clone(),
                      "2.weight": self.pw2[block * c:(block + 1) * c].detach().clone(),
                      **_bn_state(self.bn2, block * c, (block + 1) * c, "3.")}
            return {**{f"0.{k}": v for k, v in first.items()}, **{f"1.{k}": v for k, v in second.items()}}
        if "pool" in name:
            block = ("max_pool_3x3", "avg_pool_3x3").index(name)
            return _bn_state(self.pool_bn, block * c, (block + 1) * c, "1.")
        if name == "skip_connect" and self.stride == 2:
            half = c // 2
            return {"conv_1.weight": self.reduce1[edge * half:(edge + 1) * half].detach().clone(),
                    "conv_2.weight": self.reduce2[edge * half:(edge + 1) * half].detach().clone(),
                    **_bn_state(self.reduce_bn, edge * c, (edge + 1) * c, "bn.")}
        if name in PRIMITIVES:
            return {}  # none, identity skip: no state
        raise ValueError(f"unknown DARTS primitive {name!r}; expected one of {PRIMITIVES}")
