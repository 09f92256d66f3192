"""Regional update state and the random windows: which part of the canvas the teacher sees.

The canvas is larger than the teacher's input. Each iteration every sample gets a window
(per-sample random offsets, or one offset shared by the batch as the reference does) and, where
the teacher allows it, a random horizontal flip. Only the window's pixels and Adam moments are
updated (`region_adam_`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RegionState:
    """A batch of canvases with their Adam moments and the global step count."""

    canvas: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    step: int = 0

    @classmethod
    def from_noise(cls, shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
                   clamp_min: Tensor, clamp_max: Tensor) -> RegionState:
        # Noise is drawn on the CPU so every device starts from the same canvas; it is clamped once
        # here so the whole canvas is valid even where no window has reached yet.
        noise = torch.randn(shape, generator=generator)
        canvas = torch.maximum(torch.minimum(noise, clamp_max.cpu().view(1, -1, 1, 1)), clamp_min.cpu().view(1, -1, 1, 1))
        canvas = canvas.to(device)
        return cls(canvas=canvas, exp_avg=torch.zeros_like(canvas), exp_avg_sq=torch.zeros_like(canvas))


def draw_offsets(generator: torch.Generator, batch: int, max_y: int, max_x: int, mode: str) -> Tensor:
    """(batch, 2) int64 top-left corners (y, x), each uniform in [0, max] inclusive."""
    rows = 1 if mode == "shared" else batch
    y = torch.randint(0, max_y + 1, (rows,), generator=generator)
    x = torch.randint(0, max_x + 1, (rows,), generator=generator)
    return torch.stack([y, x], dim=1).expand(batch, 2).contiguous()


def draw_flips(generator: torch.Generator, batch: int) -> Tensor:
    """(batch,) bool: which samples the teacher sees mirrored."""
    return torch.rand(batch, generator=generator) < 0.5


def flip_where(x: Tensor, flips: Tensor) -> Tensor:
    """Mirror the samples selected by `flips` along the width; differentiable, so the gradient
    lands back on the unflipped crop (canvas orientation)."""
    return torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
