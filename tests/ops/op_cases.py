"""Helpers shared by the op tests: the memory layouts every op must accept, and tolerances."""
import torch

LAYOUTS = ("contiguous", "channels_last", "permuted")

# (atol, rtol) of float32 / reduced-precision results against the float64 reference.
TOLERANCE = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (2e-3, 2e-3),
}


def in_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """x (N, C, H, W) with the same values in the given memory layout."""
    if layout == "contiguous":
        return x.contiguous()
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "permuted":  # H and W swapped in memory: neither NCHW- nor NHWC-contiguous
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    raise ValueError(layout)
