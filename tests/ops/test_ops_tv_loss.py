import pytest
import torch

from dfnas import ops
from dfnas.ops import reference
from op_cases import LAYOUTS, in_layout
from tolerances import assert_close

schemas = ops.load()  # torch.ops.dfnas: the op schemas, called directly

SHAPES = [(1, 1, 2, 2), (2, 3, 5, 7), (4, 3, 32, 32), (2, 1, 17, 33), (1, 40, 6, 9), (3, 16, 2, 40)]


@pytest.mark.parametrize("kind", ["l2", "l1"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_forward_and_backward_match_float64_reference(kind, shape, layout, dtype):
    x = in_layout(torch.randn(shape).to(dtype), layout).requires_grad_()
    loss = ops.tv_loss(x, kind)
    loss.backward()
    ref_x = x.detach().double().requires_grad_()
    ref = reference.tv_loss(ref_x, kind)
    ref.backward()

    assert loss.shape == () and loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_close(loss, ref)
    assert x.grad.dtype == dtype
    # Every case checks its gradient, l1 in low precision too (sign): the reference runs on the same
    # rounded inputs and a float32 difference of two bf16/fp16/fp32 values has the exact sign, so
    # sign(d) agrees; an early return here once let a sign-flipped l1 gradient pass.
    assert_close(x.grad, ref_x.grad)


@pytest.mark.parametrize("kind", ["l2", "l1"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck_float64(kind, layout):
    x = in_layout(torch.randn(2, 3, 4, 5, dtype=torch.float64), layout).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ops.tv_loss(t, kind), (x,))


@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_l1_and_l2_gradients_in_float32_match_where_differences_are_clear_of_zero(kind):
    # Integer-valued pixels: every difference is an exact integer, so sign() is exact in float32.
    x = torch.randint(-50, 50, (2, 3, 9, 13)).float().requires_grad_()
    ops.tv_loss(x, kind).backward()
    ref_x = x.detach().double().requires_grad_()
    reference.tv_loss(ref_x, kind).backward()
    torch.testing.assert_close(x.grad.double(), ref_x.grad, atol=1e-6, rtol=1e-5)


def test_constant_image_has_zero_loss_and_zero_gradient():
    x = torch.full((2, 3, 6, 6), 0.25, requires_grad=True)
    loss = ops.tv_loss(x, "l2")
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_nan_input_gives_nan_loss():
    x = torch.randn(1, 3, 8, 8)
    x[0, 1, 4, 4] = float("nan")
    assert torch.isnan(ops.tv_loss(x, "l2")) and torch.isnan(ops.tv_loss(x, "l1"))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradient_keeps_input_layout(layout):
    x = in_layout(torch.randn(2, 3, 8, 8), layout).requires_grad_()
    ops.tv_loss(x).backward()
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert x.grad.is_contiguous(memory_format=memory_format)


def test_deterministic_run_to_run():
    x = torch.randn(16, 3, 224, 224).requires_grad_()
    runs = []
    for _ in range(2):
        x.grad = None
        loss = ops.tv_loss(x, "l2")
        loss.backward()
        runs.append((loss.clone(), x.grad.clone()))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_opcheck():
    for kind in ("l2", "l1"):
        for layout in LAYOUTS:
            for requires_grad in (False, True):
                x = in_layout(torch.randn(2, 3, 5, 6), layout).requires_grad_(requires_grad)
                torch.library.opcheck(schemas.tv_loss_forward.default, (x, kind))
        x = torch.randn(2, 3, 5, 6)
        _, sums = schemas.tv_loss_forward(x, kind)
        torch.library.opcheck(schemas.tv_loss_backward.default, (torch.tensor(2.0), x, sums, kind))


@pytest.mark.parametrize(
    "x, kind, message",
    [
        (torch.randn(3, 8, 8), "l2", "4-D"),
        (torch.randn(1, 3, 1, 8), "l2", "at least 2x2"),
        (torch.randn(1, 3, 8, 8), "l3", "kind must be one of"),
        (torch.randn(0, 3, 8, 8), "l2", "empty"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int32), "l1", "dtype"),
    ],
)
def test_bad_arguments_raise_clear_errors(x, kind, message):
    with pytest.raises(ValueError, match=message):
        ops.tv_loss(x, kind)


def test_the_specification_refuses_an_unknown_kind_by_name():
    """Guards against (issue 15, mutation testing) the reference's own refusal losing its message:
    `dfnas.ops.reference` is also called directly (the eager backend, the tests)."""
    with pytest.raises(ValueError, match=r"^tv_loss: kind must be one of \('l2', 'l1'\), got 'l3'$"):
        reference.tv_loss(torch.randn(1, 1, 3, 3), "l3")
