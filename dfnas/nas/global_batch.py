"""Layers that see the whole batch of a data-parallel step: batch norm and dropout, on any device.

Under torchrun each rank runs its rows of the global batch; a BN layer in training mode must
still normalize with the statistics of the whole batch, and dropout must drop what one process
would drop in those rows, or two processes train a different supernet than one.
`torch.nn.SyncBatchNorm` does the BN part on CUDA only (it raises for CPU input), and only for
`nn.BatchNorm*` modules, while the fused DARTS supernet calls `F.batch_norm` itself with its
mixing weights folded into the BN scale. So the synchronization sits one level lower: inside
`whole_batch(world)` every call of `torch.nn.functional.batch_norm` in training mode (which is
what every BN module, fused or not, ends in) uses `global_batch_norm`, and every call of
`F.dropout` in training mode `global_dropout`. The swap is of a module attribute, for the
block only, and only with more than one process.

Statistics: per channel, this rank's mean m_r and sum of squared deviations M2_r (two passes,
as torch computes them), one autograd-aware all-gather of both (its backward hands every rank
the gradients of its statistics from all ranks' losses, which is the gradient of the global
batch's loss), then Chan et al.'s merge, the same on every rank: mean = mean_r(m_r), biased
variance = (sum_r M2_r + n sum_r (m_r - mean)^2) / N over all N = ranks x n values. The one-pass
form E[x^2] - E[x]^2 cancels catastrophically on channels with a tiny variance, where eps
dominates and the gradient is largest: it made a 2-process DARTS search's gradients differ by 2%
from one process. The running statistics move as in torch (unbiased variance, N / (N - 1)).

Dropout: every rank draws the mask of the whole batch from the global RNG (equal on every rank)
exactly as `F.dropout` draws it on a CPU (`bernoulli_(1 - p)`, divided by 1 - p) and keeps its
rows: the same mask, bit for bit, as one process applies.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Iterator

import torch
import torch.distributed.nn.functional as distributed_functional
import torch.nn.functional as F

from dfnas.distributed import World

# torch 2.13 deprecates the autograd-aware collectives in favour of the private
# `_functional_collectives`; these still work, under gloo too, and are the public ones.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
                        category=FutureWarning)
_torch_batch_norm = F.batch_norm
_torch_dropout = F.dropout


def global_batch_norm(ranks: int, input: torch.Tensor, running_mean: torch.Tensor | None,
                      running_var: torch.Tensor | None, weight: torch.Tensor | None = None,
                      bias: torch.Tensor | None = None, training: bool = False, momentum: float = 0.1,
                      eps: float = 1e-5) -> torch.Tensor:
    """`F.batch_norm` with the batch statistics of the input of all `ranks` processes together
    (every rank must call it, with inputs of equal shape). Outside training it is `F.batch_norm`."""
    if not training:
        return _torch_batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    shape = [1, -1] + [1] * (x.dim() - 2)
    dims = [0, *range(2, x.dim())]
    values = x.numel() // x.shape[1]  # per channel, on this rank
    count = values * ranks
    local_mean = x.mean(dims)
    local_m2 = (x - local_mean.view(shape)).square().sum(dims)
    means, m2s = torch.stack(distributed_functional.all_gather(torch.stack([local_mean, local_m2]))).unbind(1)
    mean = means.mean(0)
    var = (m2s.sum(0) + values * (means - mean).square().sum(0)) / count
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype), alpha=momentum)
            unbiased = var.detach() * (count / max(count - 1, 1))
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
    out = (x - mean.view(shape)) * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    return out.to(input.dtype)


def global_dropout(world: World, input: torch.Tensor, p: float = 0.5, training: bool = True,
                   inplace: bool = False) -> torch.Tensor:
    """`F.dropout` of this rank's rows of the whole batch, as one process drops them."""
    if not training or p == 0.0:
        return _torch_dropout(input, p, training, inplace)
    shape = (input.shape[0] * world.size, *input.shape[1:])
    noise = torch.empty(shape, dtype=input.dtype, device=input.device)
    noise = noise.zero_() if p == 1.0 else noise.bernoulli_(1 - p).div_(1 - p)
    mine = noise[world.my_rows(shape[0])]
    return input.mul_(mine) if inplace else input * mine


@contextlib.contextmanager
def whole_batch(world: World) -> Iterator[None]:
    """Within the block, batch norm and dropout in training mode act on every rank's rows
    together (nothing changes with one process)."""
    if not world.distributed:
        yield
        return
    previous = F.batch_norm, F.dropout
    F.batch_norm = functools.partial(global_batch_norm, world.size)
    F.dropout = functools.partial(global_dropout, world)
    try:
        yield
    finally:
        F.batch_norm, F.dropout = previous
