"""Triton kernels against the float64 reference. Without a GPU they run under the Triton
interpreter (TRITON_INTERPRET=1, set in conftest.py) on tiny CPU tensors; on a GPU machine the
same tests run compiled kernels on CUDA tensors."""
import pytest
import torch

pytest.importorskip("triton")

from dfnas import ops  # noqa: E402
from dfnas.ops import _backend, _reference_kernels, reference  # noqa: E402
from dfnas.ops import triton as triton_ops  # noqa: E402
from dfnas.ops._common import dense_memory_format  # noqa: E402

import op_cases  # noqa: E402
from op_cases import LAYOUTS, in_layout, outside_windows  # noqa: E402
from tolerances import accumulation_dtype, assert_close  # noqa: E402

schemas = ops.load()  # torch.ops.dfnas: the op schemas, called directly

pytestmark = pytest.mark.triton

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def images(shape, dtype, layout):
    return op_cases.images(shape, dtype, layout, DEVICE)


def reference_grad(fn, x, *args):
    x64 = x.detach().double().clone().requires_grad_()
    fn(x64, *args).backward()
    return x64.grad


def assert_like_kernel_output(out, x):
    """Outputs shaped like x: x's dtype and the dense layout rule (as the C++ kernels)."""
    assert out.dtype == x.dtype and out.shape == x.shape
    assert out.is_contiguous(memory_format=dense_memory_format(x))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_bn_stat_loss(dtype, layout):
    x = images((2, 5, 6, 7), dtype, layout)
    running_mean = torch.randn(5, device=DEVICE)
    running_var = torch.rand(5, device=DEVICE) + 0.5
    loss, mean, var = triton_ops.bn_stat_loss.forward(x, running_mean, running_var)
    x64 = x.double()
    expected = reference.bn_stat_loss(x64, running_mean.double(), running_var.double())
    assert loss.dtype == mean.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_close(loss, expected)
    assert_close(mean, x64.mean((0, 2, 3)))
    assert_close(var, x64.var((0, 2, 3), unbiased=False))

    grad_loss = torch.tensor(1.7, dtype=loss.dtype, device=DEVICE)
    grad = triton_ops.bn_stat_loss.backward(grad_loss, x, mean, var, running_mean, running_var)
    assert_like_kernel_output(grad, x)
    expected_grad = 1.7 * reference_grad(reference.bn_stat_loss, x, running_mean.double(), running_var.double())
    assert_close(grad, expected_grad)  # dtype-derived: a wrongly scaled fp16/bf16 gradient fails (scale)


def test_bn_stat_loss_several_slices_per_channel():
    x = images((2, 2, 96, 96), torch.float32, "contiguous")  # 18432 values per channel: two slices
    running_mean, running_var = torch.zeros(2, device=DEVICE), torch.ones(2, device=DEVICE)
    loss, _, _ = triton_ops.bn_stat_loss.forward(x, running_mean, running_var)
    expected = reference.bn_stat_loss(x.double(), running_mean.double(), running_var.double())
    assert_close(loss, expected)


def test_bn_stat_loss_zero_norms_give_zero_gradient():
    values = torch.tensor([0.5, -1.25, 2.0], device=DEVICE)
    x = values[None, :, None, None].expand(2, 3, 4, 4).contiguous()
    loss, mean, var = triton_ops.bn_stat_loss.forward(x, values, torch.zeros(3, device=DEVICE))
    assert loss.item() == 0.0
    grad = triton_ops.bn_stat_loss.backward(torch.ones((), device=DEVICE), x, mean, var, values,
                                            torch.zeros(3, device=DEVICE))
    assert torch.equal(grad, torch.zeros_like(x))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_tv_loss(kind, dtype, layout):
    x = images((2, 3, 5, 6), dtype, layout)
    loss, sums = triton_ops.tv_loss.forward(x, kind)
    assert_close(loss, reference.tv_loss(x.double(), kind))
    _, expected_sums = _reference_kernels.tv_loss_forward(x.double(), kind)
    assert_close(sums, expected_sums, computed_in=accumulation_dtype(dtype))  # float64, summed in opmath

    grad = triton_ops.tv_loss.backward(torch.tensor(0.8, dtype=loss.dtype, device=DEVICE), x, sums, kind)
    assert_like_kernel_output(grad, x)
    assert_close(grad, 0.8 * reference_grad(reference.tv_loss, x, kind))


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (1, 2, 3, 2), (3, 1, 2, 9)])
def test_tv_loss_small_images(shape):
    x = images(shape, torch.float64, "channels_last")
    loss, sums = triton_ops.tv_loss.forward(x, "l2")
    assert_close(loss, reference.tv_loss(x, "l2"))
    grad = triton_ops.tv_loss.backward(torch.ones((), dtype=torch.float64, device=DEVICE), x, sums, "l2")
    assert_close(grad, reference_grad(reference.tv_loss, x, "l2"))


def test_tv_loss_constant_image_has_zero_gradient():
    x = torch.full((1, 2, 4, 5), 3.0, device=DEVICE)
    loss, sums = triton_ops.tv_loss.forward(x, "l2")
    assert loss.item() == 0.0
    grad = triton_ops.tv_loss.backward(torch.ones((), device=DEVICE), x, sums, "l2")
    assert torch.equal(grad, torch.zeros_like(x))


def window_offsets(n, canvas_h, canvas_w, h, w):
    return op_cases.window_offsets(n, canvas_h, canvas_w, h, w, DEVICE)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_crop_windows(dtype, layout):
    canvas = images((3, 4, 9, 11), dtype, layout)
    offsets = window_offsets(3, 9, 11, 5, 6)
    out = triton_ops.crop_windows.crop(canvas, offsets, 5, 6)
    assert torch.equal(out, reference.crop_windows(canvas, offsets, 5, 6))
    assert out.is_contiguous(memory_format=dense_memory_format(canvas))

    grad = in_layout(torch.randn(3, 4, 5, 6, device=DEVICE).to(dtype), layout)
    canvas_grad = triton_ops.crop_windows.crop_backward(grad, offsets, 9, 11)
    assert torch.equal(canvas_grad, _reference_kernels.crop_windows_backward(grad, offsets, 9, 11))
    assert canvas_grad.is_contiguous(memory_format=dense_memory_format(grad))


def test_crop_whole_canvas():
    canvas = images((2, 3, 4, 5), torch.float32, "channels_last")
    offsets = torch.zeros(2, 2, dtype=torch.int64, device=DEVICE)
    assert torch.equal(triton_ops.crop_windows.crop(canvas, offsets, 4, 5), canvas)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clamp", [False, True])
def test_region_adam(clamp, dtype, layout):
    shape, h, w = (3, 4, 9, 10), 4, 5
    canvas = images(shape, dtype, layout)
    exp_avg = in_layout(0.1 * torch.randn(shape, device=DEVICE).to(dtype), layout)
    exp_avg_sq = in_layout(torch.rand(shape, device=DEVICE).to(dtype), layout)
    offsets = window_offsets(3, 9, 10, h, w)
    bounds = {}
    if clamp:
        bounds = {"clamp_min": -0.5 * torch.rand(4, device=DEVICE), "clamp_max": 0.5 * torch.rand(4, device=DEVICE)}
    expected = [t.to(torch.float64, copy=True) for t in (canvas, exp_avg, exp_avg_sq)]  # float64 reference
    before = [t.clone() for t in (canvas, exp_avg, exp_avg_sq)]
    for step in (1, 2, 3):
        grad = torch.randn(3, 4, h, w, device=DEVICE).to(dtype)
        hyper = dict(step=step, lr=0.05, beta1=0.9, beta2=0.99, eps=1e-8)
        triton_ops.region_adam.region_adam_(canvas, grad, exp_avg, exp_avg_sq, offsets, **hyper, **bounds)
        reference.region_adam_(expected[0], grad.double(), expected[1], expected[2], offsets, **hyper,
                               **{name: bound.double() for name, bound in bounds.items()})
    outside = outside_windows(shape, offsets, h, w)
    for got, want, old in zip((canvas, exp_avg, exp_avg_sq), expected, before):
        assert torch.equal(got[outside], old[outside])  # untouched, bit for bit
        assert_close(got, want)
    assert canvas.is_contiguous(memory_format=dense_memory_format(before[0]))


@pytest.fixture
def triton_on_cpu_key():
    """The Triton kernels installed for the CPU dispatch key, so that the public API, autograd
    and opcheck reach them with CPU tensors (the interpreter runs them)."""
    if DEVICE != "cpu":
        pytest.skip("a CUDA device is present: the cuda-marked tests dispatch to Triton there")
    override = _backend.KernelOverride(triton_ops.kernels(), "CPU")
    yield
    override.remove()


def test_public_api_and_autograd_reach_the_triton_kernels(triton_on_cpu_key):
    import dfnas.ops

    x = images((2, 3, 6, 5), torch.float32, "channels_last").requires_grad_()
    running_mean, running_var = torch.randn(3), torch.rand(3) + 0.5
    offsets = window_offsets(2, 6, 5, 4, 3)
    window = dfnas.ops.crop_windows(x, offsets, 4, 3)
    loss = dfnas.ops.tv_loss(window, "l2") + dfnas.ops.bn_stat_loss(window, running_mean, running_var)
    loss.backward()

    x64 = x.detach().double().requires_grad_()
    window64 = reference.crop_windows(x64, offsets, 4, 3)
    expected = reference.tv_loss(window64, "l2") + reference.bn_stat_loss(window64, running_mean.double(),
                                                                           running_var.double())
    expected.backward()
    assert_close(loss, expected)
    assert_close(x.grad, x64.grad)


def test_triton_outputs_match_the_fake_kernels(triton_on_cpu_key):
    """Dtypes, shapes and strides of the Triton outputs agree with dfnas/ops/_fake.py."""
    x = images((2, 3, 4, 5), torch.float32, "channels_last")
    offsets = window_offsets(2, 4, 5, 2, 3)
    loss, mean, var = schemas.bn_stat_loss_forward(x, torch.zeros(3), torch.ones(3))
    tv, sums = schemas.tv_loss_forward(x, "l1")
    cases = [
        (schemas.bn_stat_loss_forward.default, (x, torch.zeros(3), torch.ones(3))),
        (schemas.bn_stat_loss_backward.default, (torch.ones(()), x, mean, var, torch.zeros(3), torch.ones(3))),
        (schemas.tv_loss_forward.default, (x, "l1")),
        (schemas.tv_loss_backward.default, (torch.ones(()), x, sums, "l1")),
        (schemas.crop_windows.default, (x, offsets, 2, 3)),
        (schemas.crop_windows_backward.default, (x[:, :, :2, :3].contiguous(memory_format=torch.channels_last),
                                                         offsets, 4, 5)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))
