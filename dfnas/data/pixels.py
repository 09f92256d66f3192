"""Conversions between the teacher's normalized space and stored uint8 pixels."""
from __future__ import annotations

import torch
from torch import Tensor


def channel_view(values, like: Tensor) -> Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)


def to_uint8(x: Tensor, mean, std) -> Tensor:
    """round(255 * clamp(x * std + mean, 0, 1)) as uint8 (docs/synthetic-format.md)."""
    pixels = (x.float() * channel_view(std, x) + channel_view(mean, x)).clamp(0.0, 1.0)
    return torch.round(pixels * 255.0).to(torch.uint8)


def from_uint8(images: Tensor, mean, std) -> Tensor:
    """The normalized float32 image a consumer of the stored uint8 pixels sees."""
    pixels = images.float() / 255.0
    return (pixels - channel_view(mean, pixels)) / channel_view(std, pixels)


def center_crop(x: Tensor, height: int, width: int) -> Tensor:
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def valid_range(mean, std) -> tuple[Tensor, Tensor]:
    """Per-channel normalized values of pixels 0 and 1: the clamp bounds, shape (C,)."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)
    return (0.0 - mean_t) / std_t, (1.0 - mean_t) / std_t
