"""Per-sample window crop (forward): a Python loop of slices, the eager reference's advanced
indexing, and the fused op.

Minimal traffic of the fused op: read and write every window element once (2·N·C·h·w·E).
"""
import pytest
import torch

from dfnas import ops
from dfnas.ops import reference

CASES = [((64, 3, 40, 40), 32), ((16, 3, 256, 256), 224)]


def sliced_loop(canvas, offsets, height, width):
    # As the reference implementations crop, one sample at a time.
    return torch.stack([canvas[i, :, y : y + height, x : x + width] for i, (y, x) in enumerate(offsets.tolist())])


IMPLEMENTATIONS = {"eager_slices": sliced_loop, "eager_reference": reference.crop_windows, "dfnas": ops.crop_windows}


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-crop{c[1]}")
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_crop_windows(benchmark, record_bandwidth, impl, case, layout):
    shape, crop = case
    n, _, height, width = shape
    canvas = torch.randn(shape)
    if layout == "channels_last":
        canvas = canvas.contiguous(memory_format=torch.channels_last)
    offsets = torch.stack([torch.randint(0, height - crop + 1, (n,)), torch.randint(0, width - crop + 1, (n,))], 1)
    crop_fn = IMPLEMENTATIONS[impl]

    benchmark.group = f"crop_windows {'x'.join(map(str, shape))} crop {crop} {layout}"
    windows = benchmark(crop_fn, canvas, offsets, crop, crop)
    assert torch.equal(windows, reference.crop_windows(canvas, offsets, crop, crop))
    record_bandwidth(2 * windows.numel() * windows.element_size())
