"""`Depthwise` (the ProxylessNAS supernet's depthwise convolution) against the `nn.Conv2d` it
replaces: values, input and weight gradients, on both sides of its small-map rule, both layouts."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dfnas.nas.spaces.proxyless_depthwise import MAX_MAP, Depthwise

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def _both(kernel: int, stride: int, shape: tuple[int, ...], layout: str, input_grad: bool = True):
    """Output, input gradient, weight gradient and grad_fn name of `Depthwise` and of `nn.Conv2d`
    with the same weights, input and output gradient."""
    torch.manual_seed(0)
    fast = Depthwise(shape[1], kernel, stride).to(memory_format=LAYOUTS[layout])
    torch_conv = nn.Conv2d(shape[1], shape[1], kernel, stride, kernel // 2, groups=shape[1], bias=False)
    torch_conv = torch_conv.to(memory_format=LAYOUTS[layout])
    torch_conv.weight.data.copy_(fast.weight.data)
    x = torch.randn(shape).contiguous(memory_format=LAYOUTS[layout])
    results = []
    for conv in (fast, torch_conv):
        leaf = x.clone().requires_grad_(input_grad)
        y = conv(leaf)
        y.backward(torch.linspace(-1, 1, y.numel()).view(y.shape))
        results.append((y.detach(), leaf.grad, conv.weight.grad, type(y.grad_fn).__name__))
    return results


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kernel,shape", [(5, (4, 6, 7, 7)), (7, (4, 6, 7, 7)), (7, (3, 5, 4, 6)), (5, (2, 3, 3, 3))])
def test_small_maps_take_the_fast_weight_gradient_with_the_same_math(layout, kernel, shape):
    """Catches a wrong correlation in the weight gradient (padding, flipped kernel, channels and
    images mixed up in the N*C view, a missing sum over the batch), and values or input gradients
    that stop being oneDNN's own."""
    (y, gx, gw, grad_fn), (y_ref, gx_ref, gw_ref, _) = _both(kernel, 1, shape, layout)
    assert grad_fn == "_DepthwiseBackward"
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=0)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-5)


def test_a_first_layer_without_input_gradient_gets_only_the_weight_gradient():
    """Catches a backward that computes (or fails on) an input gradient nobody asked for."""
    (_, gx, gw, grad_fn), (_, _, gw_ref, _) = _both(5, 1, (2, 4, 7, 7), "channels_last", input_grad=False)
    assert grad_fn == "_DepthwiseBackward" and gx is None
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,shape", [
    (5, 1, (2, 4, MAX_MAP + 1, MAX_MAP + 1)),  # larger maps: oneDNN's weight gradient is faster
    (7, 2, (2, 4, 7, 7)),  # stride 2: the correlation above is stride 1 only
    (3, 1, (2, 4, 7, 7)),  # 3x3: oneDNN's weight gradient runs at forward speed
])
def test_outside_the_rule_it_is_nn_conv2d(kernel, stride, shape):
    """Catches the fast path taken where it is wrong (stride 2) or slower (large maps, 3x3)."""
    (y, gx, gw, grad_fn), (y_ref, gx_ref, gw_ref, _) = _both(kernel, stride, shape, "channels_last")
    assert grad_fn != "_DepthwiseBackward"
    for a, b in ((y, y_ref), (gx, gx_ref), (gw, gw_ref)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_state_dict_is_nn_conv2d_s():
    """Catches a renamed or extra parameter, which would break supernet -> network weight loading."""
    assert list(Depthwise(4, 5, 1).state_dict()) == list(nn.Conv2d(4, 4, 5, 1, 2, groups=4, bias=False).state_dict())
