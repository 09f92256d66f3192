"""crop_windows: per-sample windows of a canvas, and the scatter of their gradient back."""
import pytest
import torch

from dfnas import ops
from dfnas.ops import reference
from op_cases import in_layout, window_offsets

CANVAS_LAYOUTS = ("contiguous", "channels_last")
schemas = ops.load()  # torch.ops.dfnas: the op schemas, called directly


def random_offsets(n, canvas_hw, window_hw):
    return window_offsets(n, *canvas_hw, *window_hw, "cpu")


@pytest.mark.parametrize("layout", CANVAS_LAYOUTS + ("permuted",))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape, window", [((4, 3, 40, 40), (32, 32)), ((2, 1, 7, 9), (7, 1)), ((1, 5, 6, 6), (1, 1))])
def test_crop_windows_matches_reference_and_layout(layout, dtype, shape, window):
    canvas = in_layout(torch.randn(shape).to(dtype), layout)
    offsets = random_offsets(shape[0], shape[2:], window)
    out = ops.crop_windows(canvas, offsets, *window)
    assert torch.equal(out, reference.crop_windows(canvas, offsets, *window))
    if layout == "channels_last" and shape[1] > 1 and window != (1, 1):
        assert out.is_contiguous(memory_format=torch.channels_last)


def test_crop_windows_gradcheck_and_opcheck():
    canvas = torch.randn(3, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    offsets = random_offsets(3, (6, 7), (3, 4))
    assert torch.autograd.gradcheck(lambda c: ops.crop_windows(c, offsets, 3, 4), (canvas,))
    for layout in CANVAS_LAYOUTS + ("permuted",):
        c = in_layout(torch.randn(3, 2, 6, 7), layout).requires_grad_()
        torch.library.opcheck(schemas.crop_windows.default, (c, offsets, 3, 4))
    torch.library.opcheck(schemas.crop_windows_backward.default, (torch.randn(3, 2, 3, 4), offsets, 6, 7))


def test_crop_window_out_of_bounds_is_rejected():
    canvas = torch.randn(2, 3, 10, 10)
    with pytest.raises(RuntimeError, match="window of sample 0 at \\(y=-1"):
        ops.crop_windows(canvas, torch.tensor([[-1, 0], [0, 0]]), 8, 8)
    with pytest.raises(RuntimeError, match="window of sample 1 at \\(y=3, x=1\\)"):
        schemas.crop_windows_backward(torch.randn(2, 3, 8, 8), torch.tensor([[0, 0], [3, 1]]), 10, 10)


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.randn(2, 3, 10), torch.zeros(2, 2, dtype=torch.int64), 4, 4), "canvas must be 4-D"),
        ((torch.randn(2, 3, 10, 10), torch.zeros(3, 2, dtype=torch.int64), 4, 4), "offsets must have shape \\(2, 2\\)"),
        ((torch.randn(2, 3, 10, 10), torch.zeros(2, 2), 4, 4), "offsets must be an integer tensor"),
        ((torch.randn(2, 3, 10, 10), torch.zeros(2, 2, dtype=torch.int64), 11, 4), "larger than the 10x10 canvas"),
        ((torch.randn(2, 3, 10, 10), torch.zeros(2, 2, dtype=torch.int64), 0, 4), "at least 1x1"),
    ],
)
def test_crop_windows_bad_arguments_raise_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        ops.crop_windows(*args)


def test_reference_window_index_stays_on_the_offsets_device():
    """Guards against (issue 15, mutation testing) the spec's index tensors made on the default
    device instead of the offsets' (the eager backend runs it on CUDA tensors); shown with the
    `meta` device, which refuses to mix with CPU tensors just as CUDA does."""
    n, y, x = reference.window_index(torch.tensor([[0, 1], [2, 0]], device="meta"), 3, 4)
    assert [t.device.type for t in (n, y, x)] == ["meta"] * 3
    assert [tuple(t.shape) for t in (n, y, x)] == [(2, 1, 1), (2, 3, 1), (2, 1, 4)]
