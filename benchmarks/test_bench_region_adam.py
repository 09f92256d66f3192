"""Region Adam: one update of a synthesis canvas whose crop window got a gradient.

- `torch_adam`: torch.optim.Adam (default foreach) over the whole canvas, the crop's gradient
  scattered into a full-canvas gradient as the reference implementations do (crop = slice).
- `torch_adam_fused`: the same with torch.optim.Adam(fused=True).
- `dfnas`: region_adam_ on the windows only (per-sample offsets, per-channel clamp fused).

Minimal traffic: 7 float32 per updated pixel (read p, g, m, v; write p, m, v). The target is
dfnas <= f * torch_adam_fused + 10 %, f = window area / canvas area.

Before any implementation is timed, all three must compute the same update
(`test_implementations_agree`, also required by the timings): three steps on the same canvas,
gradient and windows, canvas and moments compared under the rule of tests/tolerances.py. The
windows stay put between steps, so full-canvas Adam leaves the pixels outside them untouched too,
and the torch variants get the per-channel clamp after each step there (outside the timing: the
fused clamp is part of what dfnas is timed for).
"""
import pytest
import torch

from dfnas import ops

CASES = [((64, 3, 40, 40), 32), ((16, 3, 256, 256), 224)]
IMPLEMENTATIONS = ("torch_adam", "torch_adam_fused", "dfnas")
HYPER = dict(lr=0.1, betas=(0.5, 0.9), eps=1e-8)
CHECK_STEPS = 3


def case_id(case) -> str:
    return f"{'x'.join(map(str, case[0]))}-crop{case[1]}"


def inputs(case):
    """The canvas, per-sample window offsets, the windows' gradient and the clamp bounds of a case."""
    shape, crop = case
    n, channels, height, width = shape
    generator = torch.Generator().manual_seed(0)
    lo, hi = torch.full((channels,), -2.0), torch.full((channels,), 2.0)
    canvas = torch.randn(shape, generator=generator).clamp(-2.0, 2.0)  # valid pixels, as synthesis keeps them
    offsets = torch.stack([torch.randint(0, height - crop + 1, (n,), generator=generator),
                           torch.randint(0, width - crop + 1, (n,), generator=generator)], 1)
    window_grad = torch.randn(n, channels, crop, crop, generator=generator)
    return canvas, offsets, window_grad, lo, hi


def make_implementation(impl: str, case):
    """(step, state): `step()` is what is timed; `state()` gives (canvas, exp_avg, exp_avg_sq)
    after clamping the torch variants' canvas as dfnas does (the cross-check's view)."""
    canvas, offsets, window_grad, lo, hi = inputs(case)
    crop = case[1]
    if impl == "dfnas":
        exp_avg, exp_avg_sq = torch.zeros_like(canvas), torch.zeros_like(canvas)
        step_count = iter(range(1, 10**9))

        def step():
            ops.region_adam_(canvas, window_grad, exp_avg, exp_avg_sq, offsets, step=next(step_count),
                             lr=HYPER["lr"], beta1=HYPER["betas"][0], beta2=HYPER["betas"][1], eps=HYPER["eps"],
                             clamp_min=lo, clamp_max=hi)

        return step, lambda: (canvas, exp_avg, exp_avg_sq)

    param = canvas.clone().requires_grad_()
    param.grad = torch.zeros_like(param)
    for i, (y, x) in enumerate(offsets.tolist()):
        param.grad[i, :, y : y + crop, x : x + crop] = window_grad[i]
    optimizer = torch.optim.Adam([param], **HYPER, fused=impl == "torch_adam_fused")

    def clamped_state():
        with torch.no_grad():
            param.copy_(torch.maximum(torch.minimum(param, hi.view(1, -1, 1, 1)), lo.view(1, -1, 1, 1)))
        moments = optimizer.state[param]
        return param.detach(), moments["exp_avg"], moments["exp_avg_sq"]

    return optimizer.step, clamped_state


def assert_implementations_agree(case) -> None:
    results = {}
    for impl in IMPLEMENTATIONS:
        step, state = make_implementation(impl, case)
        for _ in range(CHECK_STEPS):
            step()
            current = state()  # clamps the torch variants after each step, as dfnas does
        results[impl] = [t.clone() for t in current]
    eps = torch.finfo(torch.float32).eps
    for impl in IMPLEMENTATIONS[1:]:
        for name, got, want in zip(("canvas", "exp_avg", "exp_avg_sq"), results[impl], results["torch_adam"]):
            # Two float32 implementations: two roundings + 256 ulps of the scale (tests/tolerances.py).
            scale = want.abs().max().item()
            torch.testing.assert_close(got, want, rtol=2 * eps, atol=256 * eps * scale,
                                       msg=lambda m, i=impl, n=name: f"{i} vs torch_adam, {n}: {m}")


@pytest.fixture(scope="module")
def agreed():
    """Runs each case's cross-check once; the timings of a case wait for it."""
    done = set()

    def check(case):
        if case_id(case) not in done:
            assert_implementations_agree(case)
            done.add(case_id(case))

    return check


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_implementations_agree(case, agreed):
    agreed(case)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_region_adam_step(benchmark, record_bandwidth, agreed, impl, case):
    agreed(case)
    shape, crop = case
    benchmark.group = f"region_adam {'x'.join(map(str, shape))} crop {crop}"
    step, _ = make_implementation(impl, case)
    benchmark(step)
    updated = shape[0] * shape[1] * crop * crop if impl == "dfnas" else torch.Size(shape).numel()
    record_bandwidth(7 * updated * 4)
