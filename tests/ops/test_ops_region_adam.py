"""region_adam_: Adam on each sample's window of a canvas, touching nothing outside it."""
import pytest
import torch

from dfnas import ops
from dfnas.ops import reference
from op_cases import in_layout, outside_windows, window_offsets
from tolerances import assert_close

CANVAS_LAYOUTS = ("contiguous", "channels_last")
schemas = ops.load()  # torch.ops.dfnas: the op schemas, called directly


def random_offsets(n, canvas_hw, window_hw):
    return window_offsets(n, *canvas_hw, *window_hw, "cpu")


def adam_state(shape, layout, dtype=torch.float32):
    canvas = in_layout(torch.randn(shape, dtype=dtype), layout)
    exp_avg = in_layout(torch.randn(shape, dtype=dtype) * 0.1, layout)
    exp_avg_sq = in_layout(torch.rand(shape, dtype=dtype) * 0.1, layout)
    return canvas, exp_avg, exp_avg_sq


@pytest.mark.parametrize("layout", CANVAS_LAYOUTS)
@pytest.mark.parametrize("clamp", [False, True])
@pytest.mark.parametrize("shape, window", [((4, 3, 40, 40), (32, 32)), ((3, 5, 11, 13), (4, 9)), ((2, 1, 9, 33), (9, 17))])
def test_region_adam_matches_reference_over_steps_and_leaves_outside_untouched(layout, clamp, shape, window):
    canvas, exp_avg, exp_avg_sq = adam_state(shape, layout)
    ref = [t.detach().double().clone() for t in (canvas, exp_avg, exp_avg_sq)]
    channels = shape[1]
    bounds = dict(clamp_min=torch.full((channels,), -0.8), clamp_max=torch.linspace(0.5, 1.0, channels)) if clamp else {}
    hyper = dict(lr=0.05, beta1=0.5, beta2=0.9, eps=1e-8)
    for step in range(1, 6):
        offsets = random_offsets(shape[0], shape[2:], window)
        grad = in_layout(torch.randn(shape[0], channels, *window), layout)
        before = [t.clone() for t in (canvas, exp_avg, exp_avg_sq)]
        ops.region_adam_(canvas, grad, exp_avg, exp_avg_sq, offsets, step=step, **hyper, **bounds)
        reference.region_adam_(ref[0], grad.double(), ref[1], ref[2], offsets, step=step, **hyper,
                               **{k: v.double() for k, v in bounds.items()})
        outside = outside_windows(shape, offsets, *window)
        for new, old in zip((canvas, exp_avg, exp_avg_sq), before):
            assert torch.equal(new[outside], old[outside]), "a value outside the window changed"
        for got, expected in zip((canvas, exp_avg, exp_avg_sq), ref):
            assert_close(got, expected)
        if clamp:  # updated pixels respect their channel's bounds
            lo = bounds["clamp_min"].view(1, -1, 1, 1).expand(shape)[~outside]
            hi = bounds["clamp_max"].view(1, -1, 1, 1).expand(shape)[~outside]
            assert (canvas[~outside] >= lo).all() and (canvas[~outside] <= hi).all()
    assert canvas.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)


def test_region_adam_float64_equals_reference_bitwise_close():
    canvas, exp_avg, exp_avg_sq = adam_state((2, 3, 10, 10), "contiguous", torch.float64)
    ref = [t.clone() for t in (canvas, exp_avg, exp_avg_sq)]
    offsets = random_offsets(2, (10, 10), (6, 6))
    grad = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    ops.region_adam_(canvas, grad, exp_avg, exp_avg_sq, offsets, step=3, lr=0.1)
    reference.region_adam_(ref[0], grad, ref[1], ref[2], offsets, step=3, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    for got, expected in zip((canvas, exp_avg, exp_avg_sq), ref):
        assert_close(got, expected)


def test_region_adam_full_window_equals_torch_adam():
    canvas, _, _ = adam_state((2, 3, 8, 8), "contiguous")
    param = canvas.clone().requires_grad_()
    optimizer = torch.optim.Adam([param], lr=0.01, betas=(0.5, 0.9))
    exp_avg, exp_avg_sq = torch.zeros_like(canvas), torch.zeros_like(canvas)
    offsets = torch.zeros(2, 2, dtype=torch.int64)
    for step in range(1, 4):
        grad = torch.randn_like(canvas)
        param.grad = grad.clone()
        optimizer.step()
        ops.region_adam_(canvas, grad, exp_avg, exp_avg_sq, offsets, step=step, lr=0.01, beta1=0.5, beta2=0.9)
    assert_close(canvas, param.detach(), roundings=2)  # both float32 results: two roundings


def test_region_adam_opcheck():
    for layout in CANVAS_LAYOUTS:
        canvas, exp_avg, exp_avg_sq = adam_state((2, 3, 9, 9), layout)
        grad = in_layout(torch.randn(2, 3, 5, 5), layout)
        offsets = random_offsets(2, (9, 9), (5, 5))
        kwargs = dict(step=2, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, clamp_min=torch.full((3,), -1.0), clamp_max=None)
        torch.library.opcheck(schemas.region_adam_.default, (canvas, grad, exp_avg, exp_avg_sq, offsets), kwargs)


def test_region_adam_deterministic():
    results = []
    for _ in range(2):
        torch.manual_seed(1)
        canvas, exp_avg, exp_avg_sq = adam_state((16, 3, 64, 64), "channels_last")
        grad = in_layout(torch.randn(16, 3, 56, 56), "channels_last")
        ops.region_adam_(canvas, grad, exp_avg, exp_avg_sq, random_offsets(16, (64, 64), (56, 56)), step=7, lr=0.2)
        results.append(canvas)
    assert torch.equal(results[0], results[1])


def test_region_adam_window_out_of_bounds_is_rejected():
    canvas, exp_avg, exp_avg_sq = adam_state((2, 3, 10, 10), "contiguous")
    grad = torch.randn(2, 3, 8, 8)
    offsets = torch.tensor([[0, 0], [3, 1]])
    with pytest.raises(RuntimeError, match="window of sample 1 at \\(y=3, x=1\\)"):
        ops.region_adam_(canvas, grad, exp_avg, exp_avg_sq, offsets, step=1, lr=0.1)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(grad=torch.randn(2, 4, 8, 8)), "grad must be \\(2, 3, h, w\\)"),
        (dict(grad=torch.randn(2, 3, 12, 8)), "larger than the 10x10 canvas"),
        (dict(grad=torch.randn(2, 3, 8, 8, dtype=torch.float64)), "grad must be a torch.float32 tensor"),
        (dict(exp_avg=torch.zeros(2, 3, 10, 9)), "exp_avg must have the canvas's shape"),
        (dict(offsets=torch.zeros(3, 2, dtype=torch.int64)), "offsets must have shape \\(2, 2\\)"),
        (dict(offsets=torch.zeros(2, 2)), "offsets must be an integer tensor"),
        (dict(canvas=torch.zeros(2, 3, 10, 10, dtype=torch.bfloat16)), "canvas must have dtype float32, float64"),
        (dict(step=0), "step must be >= 1"),
        (dict(lr=-1.0), "lr >= 0"),
        (dict(clamp_min=torch.zeros(4)), "clamp_min must have shape \\(3,\\)"),
    ],
)
def test_region_adam_bad_arguments_raise_clear_errors(change, message):
    canvas, exp_avg, exp_avg_sq = adam_state((2, 3, 10, 10), "contiguous")
    args = dict(canvas=canvas, grad=torch.randn(2, 3, 8, 8), exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                offsets=torch.zeros(2, 2, dtype=torch.int64), step=1, lr=0.1)
    args.update(change)
    canvas = args.pop("canvas")
    with pytest.raises(ValueError, match=message):
        ops.region_adam_(canvas, args.pop("grad"), args.pop("exp_avg"), args.pop("exp_avg_sq"), args.pop("offsets"), **args)


def test_region_adam_non_dense_canvas_rejected():
    canvas = torch.randn(2, 3, 10, 10).transpose(2, 3)
    with pytest.raises(ValueError, match="contiguous or channels_last"):
        ops.region_adam_(canvas, torch.randn(2, 3, 4, 4), torch.zeros_like(canvas), torch.zeros_like(canvas),
                         torch.zeros(2, 2, dtype=torch.int64), step=1, lr=0.1)
