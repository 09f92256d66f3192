"""One synthesis step: the dfnas engine vs the reference loop as the repos run it vs the best eager loop.

Implementations (same teacher weights, batch, canvas, crop and targets; the teachers and loops are
in synth_baselines.py):
- `reference`: DeepInversion / Data-Free NAS as they run it (torch.optim.Adam over the whole
  canvas, BN hooks through permute + contiguous, teacher not frozen, loss.item() every step).
- `eager_best`: the same math done well in eager PyTorch (frozen teacher, torch.var_mean hooks).
- `dfnas`: `Synthesizer.step` (fused ops from `dfnas.ops`, per-sample windows, region Adam) with
  the device's 'auto' layout/precision (on a CPU with native bf16: channels-last + bfloat16
  autocast), as `dfnas-synth` runs it; `dfnas_fp32`: the same step in NCHW float32.

Teachers: ResNet-18-CIFAR (random init, randomized BN running stats) at batch 64, canvas 40, crop 32;
and the bundled default digit teacher at batch 64, canvas 32, crop 28.

Before a teacher's implementations are timed they must agree (`test_implementations_agree`,
required by the timings; it also runs under --benchmark-disable): from the same clamped canvas,
three steps on the same crop without flips, each implementation's step losses equal the
reference loop's, the objective falls by the same amount, and the fp32 implementations move the
canvas the same way. Tolerances follow tests/tolerances.py: float32 results within 256 ulps of
float32; a bf16-autocast step within one ulp of bf16 (its window gradient differs by ~2 % from
float32, so its canvas is judged by the objective it reaches, not pixel by pixel: Adam's
sign-like first steps turn tiny gradient differences into full-size pixel differences).

`pytest benchmarks/test_bench_synth_step.py` times each (group per teacher);
`python benchmarks/test_bench_synth_step.py` prints interleaved medians, ratios and the share of
the engine's step time spent inside convolutions (torch.profiler).
"""
from __future__ import annotations

import copy
import statistics
import time
from types import SimpleNamespace

import pytest
import torch

from dfnas.synth.engine import Synthesizer
from synth_baselines import BATCH, CASES, IMPLEMENTATIONS, EngineLoop, make_loop

SMOKE_BATCH = 4  # under --benchmark-disable: the same code paths, quickly
CHECK_STEPS = 3


# ------------------------------------------------------------------------------------------------
# Cross-check: the implementations compute the same step
def step_dtype(loop) -> torch.dtype:
    """The precision a loop's step computes in: the engine's autocast dtype, else float32."""
    if isinstance(loop, EngineLoop):
        return loop.synth.precision.amp_dtype or torch.float32
    return torch.float32


def relative_tolerance(dtype: torch.dtype) -> float:
    """tests/tolerances.py's rule for a float32 result: one ulp of a low-precision compute dtype,
    else 256 ulps of float32."""
    if dtype in (torch.bfloat16, torch.float16):
        return torch.finfo(dtype).eps
    return 256 * torch.finfo(torch.float32).eps


def assert_implementations_agree(teacher, canvas: int, crop: int) -> None:
    loops = {name: make_loop(name, teacher, canvas, crop, SMOKE_BATCH) for name in IMPLEMENTATIONS}
    reference = loops["reference"]
    generator = torch.Generator().manual_seed(7)
    start = torch.randn(reference.image().shape, generator=generator)
    start = start.clamp(min=reference.low_t, max=reference.high_t)  # a valid canvas: every clamp agrees
    offset = ((canvas - crop) // 2, canvas - crop)  # inside the canvas, touching its right edge
    judge = loops["eager_best"]

    def objective(image: torch.Tensor) -> float:
        """The shared objective on the checked crop, in float32 eager PyTorch."""
        y, x = offset
        with torch.no_grad():
            return float(judge.loss(image[:, :, y : y + crop, x : x + crop]))

    before = objective(start)
    losses, images = {}, {}
    for name, loop in loops.items():
        loop.set_image(start)
        losses[name] = [float(loop.step(offset, flip=False)) for _ in range(CHECK_STEPS)]
        images[name] = loop.image().detach().clone()
    fall = before - objective(images["reference"])
    assert fall > 0, "the reference loop's steps did not lower the objective"
    for name, loop in loops.items():
        tol = relative_tolerance(step_dtype(loop))
        for step, (got, want) in enumerate(zip(losses[name], losses["reference"]), 1):
            assert abs(got - want) <= tol * abs(want), f"{name}: step {step} loss {got} vs reference {want}"
        got_fall = before - objective(images[name])
        assert abs(got_fall - fall) <= tol * fall, f"{name}: objective fell by {got_fall}, reference by {fall}"
        if step_dtype(loop) == torch.float32:
            update, reference_update = images[name] - start, images["reference"] - start
            error = torch.linalg.vector_norm(update - reference_update) / torch.linalg.vector_norm(reference_update)
            assert error <= tol, f"{name}: canvas update differs from the reference loop's by {float(error):.3g} (norm-wise)"


@pytest.fixture(scope="module")
def teachers():
    return {}


def get_teacher(cache: dict, case: str):
    if case not in cache:
        cache[case] = CASES[case][0]()
    return cache[case]


@pytest.fixture(scope="module")
def agreed(teachers):
    """Runs each teacher's cross-check once; that teacher's timings wait for it."""
    done = set()

    def check(case: str) -> None:
        if case not in done:
            _, canvas, crop = CASES[case]
            assert_implementations_agree(get_teacher(teachers, case), canvas, crop)
            done.add(case)

    return check


@pytest.mark.parametrize("case", list(CASES))
def test_implementations_agree(agreed, case):
    agreed(case)


# ------------------------------------------------------------------------------------------------
# pytest-benchmark
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_synth_step(benchmark, teachers, agreed, case, implementation):
    agreed(case)
    _, canvas, crop = CASES[case]
    batch = SMOKE_BATCH if benchmark.disabled else BATCH
    loop = make_loop(implementation, get_teacher(teachers, case), canvas, crop, batch)
    loop.step()  # warm-up outside the timing (oneDNN primitive creation)
    benchmark.group = f"synth step: {case} batch {batch} canvas {canvas} crop {crop}"
    benchmark.extra_info.update(case=case, implementation=implementation, batch=batch, canvas=canvas, crop=crop,
                                threads=torch.get_num_threads())
    benchmark.pedantic(loop.step, rounds=5, iterations=1)


# ------------------------------------------------------------------------------------------------
# Script mode: interleaved medians, ratios, convolution share
def conv_share(loop, steps: int = 3) -> float:
    """Fraction of wall time of `steps` steps spent in convolution ops (self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            loop.step()
        wall_us = (time.perf_counter() - start) * 1e6
    conv_us = sum(event.self_cpu_time_total for event in profiler.key_averages() if "conv" in event.key.lower())
    return conv_us / wall_us


def timed_interleaved(loops: dict, rounds: int) -> dict:
    """Median wall and process-CPU seconds per step of each loop, steps interleaved so load drift
    on a shared machine hits every implementation alike."""
    wall: dict = {key: [] for key in loops}
    cpu: dict = {key: [] for key in loops}
    for loop in loops.values():
        loop.step()
    for _ in range(rounds):
        for key, loop in loops.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            loop.step()
            wall[key].append(time.perf_counter() - start_wall)
            cpu[key].append(time.process_time() - start_cpu)
    return {key: (statistics.median(wall[key]), statistics.median(cpu[key])) for key in loops}


def main(rounds: int = 7) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}")
    for case, (factory, canvas, crop) in CASES.items():
        teacher = factory()
        loops = {name: make_loop(name, teacher, canvas, crop) for name in IMPLEMENTATIONS}
        medians = timed_interleaved(loops, rounds)
        engine_wall, engine_cpu = medians["dfnas"]
        print(f"\n{case}: canvas {canvas}, crop {crop} (median of {rounds} interleaved steps; wall ms | CPU ms)")
        for name in IMPLEMENTATIONS:
            wall, cpu = medians[name]
            print(f"  {name:<11} {wall * 1e3:9.1f} | {cpu * 1e3:9.1f}   dfnas speed-up x{wall / engine_wall:.2f} | x{cpu / engine_cpu:.2f}")
        shares = ", ".join(f"{name} {conv_share(loop):.0%}" for name, loop in loops.items())
        print(f"  share of step wall time inside convolutions (profiler): {shares}")


def layout_amp_table(rounds: int = 5) -> None:
    """Engine step time for each (channels-last, autocast) choice, interleaved, per teacher."""
    import dataclasses

    choices = [("off", "off"), ("on", "off"), ("off", "bf16"), ("on", "bf16")]
    for case, (factory, canvas, crop) in CASES.items():
        teacher = factory()
        loops = {}
        for layout, amp in choices:
            loop = EngineLoop(teacher, canvas, crop)
            config = dataclasses.replace(loop.synth.config, channels_last=layout, amp=amp)
            loop.synth = Synthesizer(SimpleNamespace(model=copy.deepcopy(teacher.model), info=teacher.info), config)
            loops[(layout, amp)] = loop
        medians = timed_interleaved(loops, rounds)
        base_wall, base_cpu = medians[("off", "off")]
        print(f"\n{case}: engine step, median of {rounds} interleaved (wall ms | CPU ms)")
        for (layout, amp), (wall, cpu) in medians.items():
            print(f"  channels_last={layout:<3} amp={amp:<4} {wall * 1e3:9.1f} | {cpu * 1e3:9.1f}"
                  f"  x{base_wall / wall:.2f} | x{base_cpu / cpu:.2f} vs NCHW fp32")


if __name__ == "__main__":
    import sys

    layout_amp_table() if sys.argv[1:] == ["layouts"] else main()
