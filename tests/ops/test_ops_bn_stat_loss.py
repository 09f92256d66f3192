import pytest
import torch

from dfnas import ops
from dfnas.ops import reference
from op_cases import LAYOUTS, in_layout
from tolerances import assert_close

schemas = ops.load()  # torch.ops.dfnas: the op schemas, called directly

SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (4, 16, 8, 8), (3, 37, 9, 11), (2, 512, 4, 4), (1, 2, 33, 65)]


def running_stats(channels, dtype=torch.float64):
    return torch.randn(channels, dtype=dtype), torch.rand(channels, dtype=dtype) + 0.5


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_forward_and_backward_match_float64_reference(shape, layout, dtype):
    x64 = torch.randn(shape, dtype=torch.float64) * 2 + 0.5
    rm, rv = running_stats(shape[1])
    x = in_layout(x64.to(dtype), layout).requires_grad_()
    loss = ops.bn_stat_loss(x, rm.float(), rv.float())
    loss.backward()

    ref_x = x.detach().double().requires_grad_()
    ref = reference.bn_stat_loss(ref_x, rm.float().double(), rv.float().double())
    ref.backward()

    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert loss.shape == ()
    assert_close(loss, ref)
    assert x.grad.dtype == dtype
    # Guards against a wrong gradient in low precision (scale): a bf16 gradient 1.15x too large
    # passed the former 10 x TOL x max|grad| tolerance.
    assert_close(x.grad, ref_x.grad)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradient_keeps_input_layout(layout):
    x = in_layout(torch.randn(2, 8, 4, 4), layout).requires_grad_()
    rm, rv = running_stats(8, torch.float32)
    ops.bn_stat_loss(x, rm, rv).backward()
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert x.grad.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck_float64(layout):
    x = in_layout(torch.randn(2, 5, 3, 4, dtype=torch.float64), layout).requires_grad_()
    rm, rv = running_stats(5)
    assert torch.autograd.gradcheck(lambda t: ops.bn_stat_loss(t, rm, rv), (x,))


def test_variance_is_accurate_far_from_zero_mean():
    # A large common offset defeats the naive E[x^2] - E[x]^2 in float32; the shifted sums don't.
    x = torch.randn(8, 4, 16, 16, dtype=torch.float64) * 0.01 + 1000.0
    rm, rv = torch.full((4,), 1000.0, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    expected = reference.bn_stat_loss(x, rm, rv)
    got = ops.bn_stat_loss(x.float(), rm.float(), rv.float())
    torch.testing.assert_close(got.double(), expected, rtol=1e-3, atol=1e-5)


def test_matching_statistics_give_zero_loss_and_finite_gradient():
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    rm = x.mean(dim=(0, 2, 3))
    rv = x.var(dim=(0, 2, 3), unbiased=False)
    x.requires_grad_()
    loss = ops.bn_stat_loss(x, rm, rv)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    # ||d|| is not differentiable at 0; near it the gradient is the bounded direction d/||d||.
    assert torch.isfinite(x.grad).all()


def test_exact_zero_norm_has_zero_gradient_like_torch():
    # A constant input whose mean/var equal the running stats exactly: both norms are 0.
    x = torch.full((2, 3, 4, 4), 0.5, dtype=torch.float64, requires_grad=True)
    rm, rv = torch.full((3,), 0.5, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    ops.bn_stat_loss(x, rm, rv).backward()
    ref_x = x.detach().clone().requires_grad_()
    reference.bn_stat_loss(ref_x, rm, rv).backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert torch.equal(ref_x.grad, torch.zeros_like(x))


def test_nan_input_gives_nan_loss():
    x = torch.randn(2, 3, 4, 4)
    x[1, 2, 0, 3] = float("nan")
    loss = ops.bn_stat_loss(x, torch.zeros(3), torch.ones(3))
    assert torch.isnan(loss)


def test_deterministic_run_to_run():
    x = torch.randn(16, 64, 32, 32).requires_grad_()
    rm, rv = running_stats(64, torch.float32)
    results = []
    for _ in range(2):
        x.grad = None
        loss = ops.bn_stat_loss(x, rm, rv)
        loss.backward()
        results.append((loss.clone(), x.grad.clone()))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def test_opcheck():
    rm, rv = running_stats(6, torch.float32)
    for layout in LAYOUTS:
        for requires_grad in (False, True):
            x = in_layout(torch.randn(3, 6, 5, 4), layout).requires_grad_(requires_grad)
            torch.library.opcheck(schemas.bn_stat_loss_forward.default, (x, rm, rv))
    x = torch.randn(3, 6, 5, 4)
    loss, mean, var = schemas.bn_stat_loss_forward(x, rm, rv)
    torch.library.opcheck(schemas.bn_stat_loss_backward.default, (torch.tensor(1.0), x, mean, var, rm, rv))


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.randn(3, 4, 4), torch.zeros(3), torch.ones(3)), "4-D"),
        ((torch.randn(0, 3, 4, 4), torch.zeros(3), torch.ones(3)), "empty"),
        ((torch.randn(2, 3, 4, 4), torch.zeros(4), torch.ones(3)), "running_mean must have shape \\(3,\\)"),
        ((torch.randn(2, 3, 4, 4), torch.zeros(3), torch.ones(3, 1)), "running_var must have shape"),
        ((torch.randint(0, 5, (2, 3, 4, 4)), torch.zeros(3), torch.ones(3)), "dtype"),
        (("not a tensor", torch.zeros(3), torch.ones(3)), "must be a torch.Tensor"),
    ],
)
def test_bad_arguments_raise_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        ops.bn_stat_loss(*args)


def test_kernel_checks_reach_direct_op_callers():
    with pytest.raises(RuntimeError, match="running_mean must have shape"):
        schemas.bn_stat_loss_forward(torch.randn(2, 3, 4, 4), torch.zeros(2), torch.ones(3))


def test_only_the_loss_is_differentiable_and_only_in_x():
    """Guards against (issue 15, mutation testing) the saved per-channel moments returned as
    differentiable outputs (`mark_non_differentiable` of one of them only) and the backward
    returning a non-tensor for x when only the running statistics require a gradient."""
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    loss, mean, var = schemas.bn_stat_loss_forward(x, torch.zeros(3), torch.ones(3))
    assert loss.requires_grad and not mean.requires_grad and not var.requires_grad
    running_mean = torch.zeros(3, requires_grad=True)
    loss, _, _ = schemas.bn_stat_loss_forward(x.detach(), running_mean, torch.ones(3))
    loss.backward()  # the running statistics are constants of the loss: no gradient reaches them
    assert running_mean.grad is None


@pytest.mark.parametrize("op, args", [
    ("bn_stat_loss_forward", lambda x: (x, torch.empty(3, device="meta"), torch.empty(3, device="meta"))),
    ("tv_loss_forward", lambda x: (x, "l2")),
    ("crop_windows", lambda x: (x, torch.zeros(2, 2, dtype=torch.int64, device="meta"), 2, 2)),
])
def test_fake_kernels_name_the_op_of_a_tensor_that_is_not_4d(op, args):
    """Guards against the fake (meta) kernels' shape check losing its message (torch.compile and
    the meta device report it); called directly on `meta` tensors."""
    name = op.removesuffix("_forward")
    with pytest.raises(RuntimeError, match=rf"^{name}: expected a 4-D \(N, C, H, W\) tensor, got 3-D$"):
        getattr(schemas, op)(*args(torch.empty(2, 3, 4, device="meta")))
