"""TV prior (l2), forward + backward on synthesis crops: four eager slices vs the fused op.

Minimal traffic of the fused op: forward reads x once, backward reads x and writes grad_x.
"""
import pytest
import torch

from dfnas import ops
from dfnas.ops import reference

SHAPES = [(64, 3, 32, 32), (16, 3, 224, 224)]
IMPLEMENTATIONS = {"eager_reference": reference.tv_loss, "dfnas": ops.tv_loss}


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_tv_loss_forward_backward(benchmark, record_bandwidth, impl, shape, layout):
    x = torch.randn(shape)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    loss_fn = IMPLEMENTATIONS[impl]

    def step():
        return torch.autograd.grad(loss_fn(x, "l2"), x)[0]

    benchmark.group = f"tv_loss l2 fwd+bwd {'x'.join(map(str, shape))} {layout}"
    grad = benchmark(step)
    expected = torch.autograd.grad(reference.tv_loss(x, "l2"), x)[0]
    torch.testing.assert_close(grad, expected, atol=1e-5, rtol=1e-4)
    record_bandwidth(3 * x.numel() * x.element_size())
