"""Property-based tests (hypothesis) over the ops' shape / layout / offset space, each example
against the float64 reference (dfnas/ops/reference.py) under the rule of tests/tolerances.py.

Drawn: shapes from 1x1 pixels and single channels up to odd sizes past a SIMD vector of channels,
every dtype, NCHW / channels-last / permuted / strided-view inputs, windows of any size with
per-sample offsets drawn from the canvas edges (0 and the last valid position) as well as inside.
The parametrized tests pin the common cases; these look for the corner the table missed (a tail
loop, a tiny plane, a window on the last row). Examples are derandomized (the same in every run,
so CI cannot flake) and kept few so tests/ops stays fast; raise `PROPERTY_EXAMPLES` locally to
search harder.
"""
from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfnas import ops
from dfnas.ops import reference
from op_cases import ALL_LAYOUTS, in_layout, outside_windows
from tolerances import assert_close

PROPERTY_EXAMPLES = 40
FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)

# The autouse fixtures (seeded RNG, own working directory) need no reset between examples: every
# example draws its data from its own generator.
property_settings = settings(max_examples=PROPERTY_EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def image_batches(draw, min_side: int = 1):
    """(shape, dtype, layout, seed): N 1-4, C 1-20, H and W from min_side to 13."""
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 20)),
             draw(st.integers(min_side, 13)), draw(st.integers(min_side, 13)))
    return shape, draw(st.sampled_from(FLOAT_DTYPES)), draw(st.sampled_from(ALL_LAYOUTS)), draw(st.integers(0, 2**31))


def edge_or_inside(limit: int):
    """A window coordinate in [0, limit]: the canvas edges as often as a uniform draw."""
    return st.one_of(st.just(0), st.just(limit), st.integers(0, limit))


@st.composite
def canvases_with_windows(draw):
    """(shape, (h, w), offsets (N, 2) int64, seed): windows anywhere in the canvas, edges included."""
    n, channels = draw(st.integers(1, 4)), draw(st.integers(1, 20))
    height, width = draw(st.integers(1, 13)), draw(st.integers(1, 13))
    h, w = draw(st.integers(1, height)), draw(st.integers(1, width))
    offsets = [(draw(edge_or_inside(height - h)), draw(edge_or_inside(width - w))) for _ in range(n)]
    return (n, channels, height, width), (h, w), torch.tensor(offsets, dtype=torch.int64), draw(st.integers(0, 2**31))


def random(shape, seed: int, dtype=torch.float64, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset).to(dtype)


def gradient_of(fn, x: torch.Tensor, *args) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    loss = fn(x, *args)
    loss.backward()
    return loss.detach(), x.grad


@property_settings
@given(image_batches())
def test_bn_stat_loss_matches_reference(case):
    shape, dtype, layout, seed = case
    x = in_layout(random(shape, seed, dtype, scale=2.0, offset=0.5), layout)
    running_mean, running_var = random(shape[1], seed + 1).float(), random(shape[1], seed + 2).float().abs() + 0.5
    loss, grad = gradient_of(ops.bn_stat_loss, x, running_mean, running_var)
    want_loss, want_grad = gradient_of(reference.bn_stat_loss, x.double(), running_mean.double(), running_var.double())
    assert grad.dtype == dtype and grad.shape == x.shape
    assert_close(loss, want_loss)
    assert_close(grad, want_grad)


@property_settings
@given(image_batches(min_side=2), st.sampled_from(reference.TV_KINDS))
def test_tv_loss_matches_reference(case, kind):
    shape, dtype, layout, seed = case
    x = in_layout(random(shape, seed, dtype), layout)
    loss, grad = gradient_of(ops.tv_loss, x, kind)
    want_loss, want_grad = gradient_of(reference.tv_loss, x.double(), kind)
    assert grad.dtype == dtype and grad.shape == x.shape
    assert_close(loss, want_loss)
    assert_close(grad, want_grad)


@property_settings
@given(canvases_with_windows(), st.sampled_from(FLOAT_DTYPES), st.sampled_from(ALL_LAYOUTS))
def test_crop_windows_and_its_gradient_match_reference(case, dtype, layout):
    shape, (h, w), offsets, seed = case
    canvas = in_layout(random(shape, seed, dtype), layout).requires_grad_()
    windows = ops.crop_windows(canvas, offsets, h, w)
    assert torch.equal(windows, reference.crop_windows(canvas.detach(), offsets, h, w))  # a copy: exact
    weights = random(windows.shape, seed + 1, dtype)
    (windows * weights).sum().backward()
    canvas64 = canvas.detach().double().requires_grad_()
    (reference.crop_windows(canvas64, offsets, h, w) * weights.double()).sum().backward()
    assert torch.equal(canvas.grad.double(), canvas64.grad)  # a scatter of one window per sample: exact


@property_settings
@given(canvases_with_windows(), st.sampled_from((torch.float32, torch.float64)),
       st.sampled_from(("contiguous", "channels_last")), st.sampled_from(ALL_LAYOUTS),
       st.integers(1, 50), st.booleans())
def test_region_adam_matches_reference(case, dtype, canvas_layout, grad_layout, step, clamp):
    shape, (h, w), offsets, seed = case
    state = [in_layout(random(shape, seed, dtype), canvas_layout),
             in_layout(random(shape, seed + 1, dtype, scale=0.1), canvas_layout),
             in_layout(random(shape, seed + 2, dtype).abs() * 0.1, canvas_layout)]
    grad = in_layout(random((shape[0], shape[1], h, w), seed + 3, dtype), grad_layout)
    bounds = {}
    if clamp:
        bounds = dict(clamp_min=-random(shape[1], seed + 4, dtype).abs(), clamp_max=random(shape[1], seed + 5, dtype).abs())
    hyper = dict(step=step, lr=0.05, beta1=0.8, beta2=0.95, eps=1e-8)
    before = [t.clone() for t in state]
    expected = [t.to(torch.float64, copy=True) for t in state]
    ops.region_adam_(state[0], grad, state[1], state[2], offsets, **hyper, **bounds)
    reference.region_adam_(expected[0], grad.double(), expected[1], expected[2], offsets, **hyper,
                           **{name: bound.double() for name, bound in bounds.items()})
    outside = outside_windows(shape, offsets, h, w)
    for got, want, old in zip(state, expected, before):
        assert torch.equal(got[outside], old[outside])  # lazy Adam: outside the windows, bit for bit
        assert_close(got, want)
    memory_format = torch.channels_last if canvas_layout == "channels_last" else torch.contiguous_format
    assert state[0].is_contiguous(memory_format=memory_format)
