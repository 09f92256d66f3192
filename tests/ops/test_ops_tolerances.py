"""The tolerance rule itself (tests/tolerances.py): it passes the kernels' real gradients in every
dtype and layout, and it rejects the wrong ones a looser rule let through (it guards against the
rule being loosened again: scale, zero)."""
import pytest
import torch

from dfnas import ops
from dfnas.ops import reference
from op_cases import LAYOUTS, in_layout
from tolerances import assert_close, tolerances

SHAPES = [(2, 3, 5, 7), (4, 8, 16, 18)]  # gradients ~1e-2 and ~1e-4


def bn_gradients(shape, dtype, layout):
    x = in_layout((torch.randn(shape, dtype=torch.float64) * 2 + 0.5).to(dtype), layout).requires_grad_()
    running_mean, running_var = torch.randn(shape[1]), torch.rand(shape[1]) + 0.5
    ops.bn_stat_loss(x, running_mean, running_var).backward()
    x64 = x.detach().double().requires_grad_()
    reference.bn_stat_loss(x64, running_mean.double(), running_var.double()).backward()
    return x.grad, x64.grad


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_rule_passes_correct_and_rejects_scaled_or_zero_gradients(dtype, layout, shape):
    grad, want = bn_gradients(shape, dtype, layout)
    assert_close(grad, want)
    with pytest.raises(AssertionError):  # scale: the bf16 bug that passed 10 x TOL x max|grad|
        assert_close(grad * 1.15, want, dtype=dtype)
    with pytest.raises(AssertionError):  # zero: passed the CUDA tests' unscaled atol
        assert_close(torch.zeros_like(grad), want)


def test_rule_is_one_ulp_of_the_dtype_plus_the_computation():
    reference_values = torch.tensor([0.5, -2.0, 1e-3], dtype=torch.float64)
    bf16 = tolerances(torch.bfloat16, reference_values)
    assert bf16["rtol"] == torch.finfo(torch.bfloat16).eps
    assert bf16["atol"] == pytest.approx(256 * torch.finfo(torch.float32).eps * 2.0, rel=1e-3)
    assert tolerances(torch.float64, reference_values, roundings=2)["rtol"] == 2 * torch.finfo(torch.float64).eps
