"""BN-statistics loss, forward + backward: DeepInversion's eager hook vs the fused op.

Minimal traffic of the fused op: forward reads x once, backward reads x and writes grad_x.
"""
import pytest
import torch

from dfnas import ops

SHAPES = [(64, 64, 32, 32), (64, 128, 16, 16), (64, 512, 4, 4)]


def eager_hook_loss(x, running_mean, running_var):
    # As the reference implementations compute it inside their BN forward hook.
    channels = x.shape[1]
    mean = x.mean([0, 2, 3])
    var = x.permute(1, 0, 2, 3).contiguous().view(channels, -1).var(1, unbiased=False)
    return torch.norm(running_var - var, 2) + torch.norm(running_mean - mean, 2)


IMPLEMENTATIONS = {"eager_reference": eager_hook_loss, "dfnas": ops.bn_stat_loss}


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_bn_stat_loss_forward_backward(benchmark, record_bandwidth, impl, shape, layout):
    x = torch.randn(shape)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    running_mean, running_var = torch.randn(shape[1]), torch.rand(shape[1])
    loss_fn = IMPLEMENTATIONS[impl]

    def step():
        return torch.autograd.grad(loss_fn(x, running_mean, running_var), x)[0]

    benchmark.group = f"bn_stat_loss fwd+bwd {'x'.join(map(str, shape))} {layout}"
    grad = benchmark(step)
    expected = torch.autograd.grad(eager_hook_loss(x, running_mean, running_var), x)[0]
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-4)
    record_bandwidth(3 * x.numel() * x.element_size())
