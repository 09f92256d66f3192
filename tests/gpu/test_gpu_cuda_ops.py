"""The dfnas ops on CUDA tensors, through the public API, for every backend this machine has
(CUDA C++, Triton, eager reference), against the float64 reference. Skipped without a GPU."""
import pytest
import torch

import dfnas
import dfnas.ops
from dfnas.ops import _backend, reference
from op_cases import LAYOUTS, images, in_layout, outside_windows, window_offsets
from tolerances import assert_close

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA device (torch.cuda.is_available() is False)"),
]

# Odd sizes (no 16-byte packs), pack-friendly sizes, several reduction slices per channel.
SHAPES = [(2, 3, 7, 9), (4, 16, 8, 8), (8, 8, 64, 72)]


def available_backends():
    params = []
    for name in ("cuda", "triton", "reference"):
        available = (dfnas.build_info()["cuda_built"] if name == "cuda"
                     else _backend.triton_available() if name == "triton" else True)
        skip = pytest.mark.skipif(not available, reason=f"backend {name} not available")
        params.append(pytest.param(name, marks=skip))
    return params


@pytest.fixture(params=available_backends())
def backend(request):
    dfnas.ops.set_backend(request.param)
    yield request.param
    dfnas.ops.set_backend("auto")


def grads_of(loss_fn, x, *args):
    x = x.detach().clone().requires_grad_()
    loss = loss_fn(x, *args)
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_bn_stat_loss(backend, dtype, layout, shape):
    x = images(shape, dtype, layout, "cuda")
    rm, rv = torch.randn(shape[1], device="cuda"), torch.rand(shape[1], device="cuda") + 0.5
    loss, grad = grads_of(dfnas.ops.bn_stat_loss, x, rm, rv)
    want_loss, want_grad = grads_of(reference.bn_stat_loss, x.double(), rm.double(), rv.double())
    assert grad.dtype == dtype
    # dtype-derived, scaled by max|grad| (tests/tolerances.py): under the former unscaled atol an
    # all-zero bf16/fp16 gradient passed at the larger shapes (zero).
    assert_close(loss, want_loss)
    assert_close(grad, want_grad)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_tv_loss(backend, kind, dtype, layout, shape):
    x = images(shape, dtype, layout, "cuda")
    loss, grad = grads_of(dfnas.ops.tv_loss, x, kind)
    want_loss, want_grad = grads_of(reference.tv_loss, x.double(), kind)
    assert grad.dtype == dtype
    assert_close(loss, want_loss)
    assert_close(grad, want_grad)  # l1 too: sign(d) of rounded inputs is exact (sign)


def test_reductions_are_deterministic(backend):
    x = images((16, 32, 56, 56), torch.float32, "channels_last", "cuda")
    rm, rv = torch.zeros(32, device="cuda"), torch.ones(32, device="cuda")
    first = (dfnas.ops.bn_stat_loss(x, rm, rv), dfnas.ops.tv_loss(x))
    for _ in range(3):
        again = (dfnas.ops.bn_stat_loss(x, rm, rv), dfnas.ops.tv_loss(x))
        assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_crop_windows(backend, dtype, layout):
    canvas = images((5, 8, 32, 30), dtype, layout, "cuda").requires_grad_()
    offsets = window_offsets(5, 32, 30, 24, 20, "cuda")
    out = dfnas.ops.crop_windows(canvas, offsets, 24, 20)
    assert torch.equal(out, reference.crop_windows(canvas.detach(), offsets, 24, 20))
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    canvas64 = canvas.detach().double().requires_grad_()
    (reference.crop_windows(canvas64, offsets, 24, 20) * weights.double()).sum().backward()
    assert torch.equal(canvas.grad.double(), canvas64.grad)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [3, 8])
def test_region_adam(backend, channels, dtype, layout):
    shape, h, w = (6, channels, 40, 36), 28, 24
    state = [images(shape, dtype, layout, "cuda"),
             in_layout(0.1 * torch.randn(shape, device="cuda").to(dtype), layout),
             in_layout(torch.rand(shape, device="cuda").to(dtype), layout)]
    expected = [t.to(torch.float64, copy=True) for t in state]  # the float64 reference, same start
    before = [t.clone() for t in state]
    offsets = window_offsets(6, 40, 36, h, w, "cuda")
    bounds = dict(clamp_min=torch.full((channels,), -1.0, device="cuda"),
                  clamp_max=torch.full((channels,), 1.0, device="cuda"))
    for step in (1, 2, 3):
        grad = torch.randn(6, channels, h, w, device="cuda").to(dtype)
        hyper = dict(step=step, lr=0.05, beta1=0.9, beta2=0.999, eps=1e-8)
        dfnas.ops.region_adam_(state[0], grad, state[1], state[2], offsets, **hyper, **bounds)
        reference.region_adam_(expected[0], grad.double(), expected[1], expected[2], offsets, **hyper,
                               **{name: bound.double() for name, bound in bounds.items()})
    outside = outside_windows(shape, offsets, h, w)
    for got, want, old in zip(state, expected, before):
        assert torch.equal(got[outside], old[outside])
        assert_close(got, want)
