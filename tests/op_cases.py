"""Helpers shared by the op tests (CPU and GPU code): memory layouts, random windows. The tolerance
rule is in tolerances.py."""
import torch

LAYOUTS = ("contiguous", "channels_last", "permuted")
# Also a view that is dense in no order: every other column of a wider tensor.
ALL_LAYOUTS = LAYOUTS + ("sliced",)


def in_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """x (N, C, H, W) with the same values in the given memory layout."""
    if layout == "contiguous":
        return x.contiguous()
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "permuted":  # H and W swapped in memory: neither NCHW- nor NHWC-dense
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "sliced":  # a strided view: x's values in every other column of a wider tensor
        wide = x.new_zeros(*x.shape[:3], 2 * x.shape[3])
        wide[..., ::2] = x
        return wide[..., ::2]
    raise ValueError(layout)


def images(shape, dtype, layout, device):
    return in_layout(torch.randn(shape, dtype=torch.float64, device=device).to(dtype), layout)


def window_offsets(n, canvas_h, canvas_w, h, w, device):
    """Random (y, x) windows, the first at the top-left corner and the last at the bottom-right."""
    y = torch.randint(0, canvas_h - h + 1, (n,))
    x = torch.randint(0, canvas_w - w + 1, (n,))
    y[0], x[0], y[-1], x[-1] = 0, 0, canvas_h - h, canvas_w - w
    return torch.stack([y, x], dim=1).to(device, torch.int32)


def outside_windows(shape, offsets, h, w):
    """Boolean mask, shaped like the canvas, of the elements outside each sample's window."""
    mask = torch.ones(shape[0], 1, shape[2], shape[3], dtype=torch.bool, device=offsets.device)
    for n, (y, x) in enumerate(offsets.tolist()):
        mask[n, :, y:y + h, x:x + w] = False
    return mask.expand(shape)
