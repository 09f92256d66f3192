"""The eager `reference` backend (dfnas/ops/_reference_kernels.py) agrees with the C++ CPU kernels
on every schema: values, dtypes and layouts."""
import pytest
import torch

from dfnas import ops
from dfnas.ops import _reference_kernels as eager
from op_cases import LAYOUTS, in_layout
from tolerances import accumulation_dtype, assert_close

schemas = ops.load()  # torch.ops.dfnas: the op schemas, called directly


def assert_same_tensor(got, want, exact=False, computed_in=None):
    """Same dtype, shape, strides; values within two roundings (tests/tolerances.py: both sides
    are implementations rounded to the dtype, or computed in `computed_in` when given)."""
    assert got.dtype == want.dtype and got.shape == want.shape and got.stride() == want.stride()
    if exact:
        assert torch.equal(got, want)
    else:
        assert_close(got, want, roundings=2, computed_in=computed_in)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_losses(dtype, layout):
    x = in_layout(torch.randn(2, 3, 5, 6).to(dtype), layout)
    rm, rv = torch.randn(3), torch.rand(3) + 0.5
    cpp = schemas.bn_stat_loss_forward(x, rm, rv)
    for got, want in zip(eager.bn_stat_loss_forward(x, rm, rv), cpp):
        assert_same_tensor(got, want)
    g = torch.tensor(1.3, dtype=cpp[0].dtype)
    assert_same_tensor(eager.bn_stat_loss_backward(g, x, cpp[1], cpp[2], rm, rv),
                       schemas.bn_stat_loss_backward(g, x, cpp[1], cpp[2], rm, rv))
    for kind in ("l2", "l1"):
        loss, sums = schemas.tv_loss_forward(x, kind)
        eager_loss, eager_sums = eager.tv_loss_forward(x, kind)
        assert_same_tensor(eager_loss, loss)
        # The sums are float64 but accumulated in float32 for float32/bf16 x.
        assert_same_tensor(eager_sums, sums, computed_in=accumulation_dtype(dtype))
        assert_same_tensor(eager.tv_loss_backward(g, x, sums, kind),
                           schemas.tv_loss_backward(g, x, sums, kind))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_windows(layout):
    canvas = in_layout(torch.randn(3, 4, 9, 10), layout)
    offsets = torch.tensor([[0, 0], [2, 3], [5, 5]])
    assert_same_tensor(eager.crop_windows(canvas, offsets, 4, 5),
                       schemas.crop_windows(canvas, offsets, 4, 5), exact=True)
    grad = in_layout(torch.randn(3, 4, 4, 5), layout)
    assert_same_tensor(eager.crop_windows_backward(grad, offsets, 9, 10),
                       schemas.crop_windows_backward(grad, offsets, 9, 10), exact=True)
