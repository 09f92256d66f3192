"""Region Adam: one update of a synthesis canvas whose crop window got a gradient.

- `torch_adam`: torch.optim.Adam (default foreach) over the whole canvas, the crop's gradient
  scattered into a full-canvas gradient as the reference implementations do (crop = slice).
- `torch_adam_fused`: the same with torch.optim.Adam(fused=True).
- `dfnas`: region_adam_ on the windows only (per-sample offsets, per-channel clamp fused).

Minimal traffic: 7 float32 per updated pixel (read p, g, m, v; write p, m, v). The target is
dfnas <= f * torch_adam_fused + 10 %, f = window area / canvas area.
"""
import pytest
import torch

from dfnas import ops

CASES = [((64, 3, 40, 40), 32), ((16, 3, 256, 256), 224)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-crop{c[1]}")
@pytest.mark.parametrize("impl", ["torch_adam", "torch_adam_fused", "dfnas"])
def test_region_adam_step(benchmark, record_bandwidth, impl, case):
    shape, crop = case
    n, channels, height, width = shape
    canvas = torch.randn(shape)
    offsets = torch.stack([torch.randint(0, height - crop + 1, (n,)), torch.randint(0, width - crop + 1, (n,))], 1)
    window_grad = torch.randn(n, channels, crop, crop)
    benchmark.group = f"region_adam {'x'.join(map(str, shape))} crop {crop}"

    if impl == "dfnas":
        exp_avg, exp_avg_sq = torch.zeros_like(canvas), torch.zeros_like(canvas)
        lo, hi = torch.full((channels,), -2.0), torch.full((channels,), 2.0)
        step_count = iter(range(1, 10**9))

        def step():
            ops.region_adam_(canvas, window_grad, exp_avg, exp_avg_sq, offsets, step=next(step_count),
                             lr=0.1, beta1=0.5, beta2=0.9, clamp_min=lo, clamp_max=hi)

        benchmark(step)
        record_bandwidth(7 * window_grad.numel() * 4)
        return

    param = canvas.clone().requires_grad_()
    param.grad = torch.zeros_like(param)
    for i, (y, x) in enumerate(offsets.tolist()):
        param.grad[i, :, y : y + crop, x : x + crop] = window_grad[i]
    optimizer = torch.optim.Adam([param], lr=0.1, betas=(0.5, 0.9), fused=impl == "torch_adam_fused")
    benchmark(optimizer.step)
    record_bandwidth(7 * canvas.numel() * 4)
