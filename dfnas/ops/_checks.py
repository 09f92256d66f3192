"""Argument checks of the public ops: a ValueError that names the argument and the problem.

The C++ kernels check again (RuntimeError) for callers that reach torch.ops.dfnas directly.
"""
from __future__ import annotations

import torch
from torch import Tensor

from dfnas.ops._common import FLOAT_DTYPES


def image_batch(op: str, name: str, x: object, dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{op}: {name} must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{op}: {name} must not be empty, got shape {tuple(x.shape)}")
    if x.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(f"{op}: {name} must have dtype {names}; got {str(x.dtype).removeprefix('torch.')}")
    return x


def channel_vector(op: str, name: str, v: object, x: Tensor) -> Tensor:
    if not isinstance(v, Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(v).__name__}")
    if v.shape != (x.shape[1],):
        raise ValueError(f"{op}: {name} must have shape ({x.shape[1]},) to match the channels of x, got {tuple(v.shape)}")
    same_device(op, name, v, x)
    return v


def same_device(op: str, name: str, t: Tensor, reference: Tensor, reference_name: str = "x") -> None:
    if t.device != reference.device:
        raise ValueError(f"{op}: {name} is on {t.device} but {reference_name} is on {reference.device}")


def window_offsets(op: str, offsets: object, canvas: Tensor) -> Tensor:
    if not isinstance(offsets, Tensor):
        raise ValueError(f"{op}: offsets must be an integer torch.Tensor of shape (N, 2), got {type(offsets).__name__}")
    if offsets.dtype.is_floating_point or offsets.dtype.is_complex or offsets.dtype == torch.bool:
        raise ValueError(f"{op}: offsets must be an integer tensor, got {offsets.dtype}")
    if offsets.shape != (canvas.shape[0], 2):
        raise ValueError(f"{op}: offsets must have shape ({canvas.shape[0]}, 2), one (y, x) per sample, got {tuple(offsets.shape)}")
    same_device(op, "offsets", offsets, canvas, "canvas")
    return offsets


def window_size(op: str, height: int, width: int, canvas: Tensor) -> None:
    H, W = canvas.shape[2], canvas.shape[3]
    if height < 1 or width < 1:
        raise ValueError(f"{op}: window must be at least 1x1, got {height}x{width}")
    if height > H or width > W:
        raise ValueError(f"{op}: window {height}x{width} is larger than the {H}x{W} canvas")
