"""One synthesis step: the dfnas engine vs the reference loop as the repos run it vs the best eager loop.

Implementations (same teacher weights, batch, canvas, crop and targets):
- `reference`: DeepInversion / Data-Free NAS as they run it: BN forward hooks computing
  `x.mean([0,2,3])` and the variance through `x.permute(1,0,2,3).contiguous()`, teacher in eval mode
  but *not* frozen (weight gradients computed and zeroed), TV through four slices, `torch.optim.Adam`
  over the whole canvas with the crop as a slice, three per-channel clamps, `loss.item()` and a copy
  of the canvas every step (their "best image").
- `eager_best`: the same math done well in eager PyTorch: frozen teacher, `torch.var_mean` hooks,
  NCHW (measured faster than channels-last on this CPU), one broadcast clamp, no host sync.
- `dfnas`: `Synthesizer.step` (fused ops from `dfnas.ops`, per-sample windows, region Adam) with
  the device's 'auto' layout/precision (on this CPU: channels-last + bfloat16 autocast), as
  `dfnas-synth` runs it; `dfnas_fp32`: the same step in NCHW float32, for a like-for-like view.

Teachers: ResNet-18-CIFAR (random init, randomized BN running stats) at batch 64, canvas 40, crop 32;
and the bundled default digit teacher at batch 64, canvas 32, crop 28.

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
import torch.nn.functional as F
from torch import nn

from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import Synthesizer
from dfnas.synth.region import RegionState, draw_offsets

BATCH = 64
SMOKE_BATCH = 4  # under --benchmark-disable: the same code paths, quickly
LR = 0.1
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


# ------------------------------------------------------------------------------------------------
# Teachers
class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18Cifar(nn.Module):
    """ResNet-18 for 32x32 inputs: 3x3 stem, no max-pool, four stages of two BasicBlocks."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        stages, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)]
            in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def randomize_running_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model


def resnet18_cifar_teacher() -> SimpleNamespace:
    torch.manual_seed(0)
    info = SimpleNamespace(name="resnet18_cifar", sha256="random-init", num_classes=10, class_names=[str(i) for i in range(10)],
                           input_size=(32, 32), in_channels=3, mean=CIFAR_MEAN, std=CIFAR_STD, flip_ok=True)
    return SimpleNamespace(model=randomize_running_stats(ResNet18Cifar()).eval(), info=info)


def default_teacher() -> SimpleNamespace:
    from dfnas.teachers import load_teacher

    return load_teacher("default")


CASES = {"resnet18_cifar": (resnet18_cifar_teacher, 40, 32), "default": (default_teacher, 32, 28)}


# ------------------------------------------------------------------------------------------------
# The reference loop and the best eager loop
def tv_four_slices(x):
    right = x[:, :, :, :-1] - x[:, :, :, 1:]
    down = x[:, :, :-1, :] - x[:, :, 1:, :]
    diag1 = x[:, :, 1:, :-1] - x[:, :, :-1, 1:]
    diag2 = x[:, :, :-1, :-1] - x[:, :, 1:, 1:]
    return torch.norm(right) + torch.norm(down) + torch.norm(diag1) + torch.norm(diag2)


class EagerLoop:
    """A canvas optimized with torch.optim.Adam through a sliced crop, the way the repos do it."""

    def __init__(self, teacher, canvas: int, crop: int, *, reference: bool, batch: int = BATCH, seed: int = 0) -> None:
        self.reference = reference
        self.model = copy.deepcopy(teacher.model).eval()
        if not reference:
            self.model.requires_grad_(False)
        self.crop = crop
        self.flip = bool(teacher.info.flip_ok)
        info = teacher.info
        self.low = [(0 - m) / s for m, s in zip(info.mean, info.std)]
        self.high = [(1 - m) / s for m, s in zip(info.mean, info.std)]
        self.low_t = torch.tensor(self.low).view(1, -1, 1, 1)
        self.high_t = torch.tensor(self.high).view(1, -1, 1, 1)
        generator = torch.Generator().manual_seed(seed)
        self.canvas = torch.randn(batch, info.in_channels, canvas, canvas, generator=generator).requires_grad_()
        self.optimizer = torch.optim.Adam([self.canvas], lr=LR, betas=(0.5, 0.9), eps=1e-8)
        self.targets = torch.arange(batch) % info.num_classes
        self.offsets = torch.Generator().manual_seed(seed + 1)
        self.limit = canvas - crop
        self.stat_losses: list[torch.Tensor] = []
        layers = [m for m in self.model.modules() if isinstance(m, nn.BatchNorm2d)]
        self.layer_weights = [10.0] + [1.0] * (len(layers) - 1)
        for layer in layers:
            layer.register_forward_hook(self._reference_hook if reference else self._var_mean_hook)
        self.best = None

    def _reference_hook(self, module, inputs, output):
        x = inputs[0]
        channels = x.shape[1]
        mean = x.mean([0, 2, 3])
        var = x.permute(1, 0, 2, 3).contiguous().view(channels, -1).var(1, unbiased=False)
        self.stat_losses.append(torch.norm(module.running_var - var, 2) + torch.norm(module.running_mean - mean, 2))

    def _var_mean_hook(self, module, inputs, output):
        var, mean = torch.var_mean(inputs[0], dim=(0, 2, 3), unbiased=False)
        self.stat_losses.append(torch.linalg.vector_norm(mean - module.running_mean)
                                + torch.linalg.vector_norm(var - module.running_var))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        self.stat_losses = []
        logits = self.model(x)
        bn = sum(w * loss for w, loss in zip(self.layer_weights, self.stat_losses))
        l2 = torch.norm(x.reshape(x.shape[0], -1), dim=1).mean()
        return F.cross_entropy(logits, self.targets) + 0.01 * bn + 1e-4 * tv_four_slices(x) + 1e-5 * l2

    def step(self) -> None:
        y, x = (int(v) for v in torch.randint(0, self.limit + 1, (2,), generator=self.offsets))
        self.optimizer.zero_grad()
        crop = self.canvas[:, :, y : y + self.crop, x : x + self.crop]
        if self.reference:
            self.model.zero_grad()
            # Data-Free NAS flips every step (its random flip is computed but not used).
            crop = torch.flip(crop, dims=(3,)) if self.flip else crop
        elif self.flip and bool(torch.rand((), generator=self.offsets) < 0.5):
            crop = torch.flip(crop, dims=(3,))
        loss = self.loss(crop)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            if self.reference:
                for c in range(self.canvas.shape[1]):
                    self.canvas.data[:, c] = torch.clamp(self.canvas.data[:, c], self.low[c], self.high[c])
                if loss.item() < 1e4:  # the repos' best-image bookkeeping (best_cost is never updated)
                    self.best = self.canvas.data.clone()
            else:
                torch.maximum(torch.minimum(self.canvas, self.high_t), self.low_t, out=self.canvas.data)


class EngineLoop:
    """The dfnas Synthesizer's step on a batch of canvases."""

    def __init__(self, teacher, canvas: int, crop: int, batch: int = BATCH, seed: int = 0, precision: str = "auto") -> None:
        teacher = SimpleNamespace(model=copy.deepcopy(teacher.model), info=teacher.info)
        # "auto" is what dfnas-synth runs (bf16 + channels-last on this CPU); "fp32" is NCHW float32.
        layout = {"amp": "off", "channels_last": "off"} if precision == "fp32" else {}
        self.synth = Synthesizer(teacher, SynthConfig(batch_size=batch, canvas=canvas, crop=crop, device="cpu", **layout))
        self.generator = torch.Generator().manual_seed(seed)
        self.batch = batch
        shape = (batch, teacher.info.in_channels, canvas, canvas)
        self.state = RegionState.from_noise(shape, self.generator, torch.device("cpu"), self.synth.clamp_min, self.synth.clamp_max)
        self.targets = torch.arange(batch) % teacher.info.num_classes
        self.limit = canvas - crop

    def step(self) -> None:
        offsets = draw_offsets(self.generator, self.batch, self.limit, self.limit, "per_sample")
        flips = (torch.rand(self.batch, generator=self.generator) < 0.5) if self.synth.flip else None
        self.synth.step(self.state, self.targets, offsets, flips, LR)


def make_loop(name: str, teacher, canvas: int, crop: int, batch: int = BATCH):
    if name.startswith("dfnas"):
        return EngineLoop(teacher, canvas, crop, batch, precision="fp32" if name == "dfnas_fp32" else "auto")
    return EagerLoop(teacher, canvas, crop, reference=name == "reference", batch=batch)


IMPLEMENTATIONS = ("reference", "eager_best", "dfnas_fp32", "dfnas")


# ------------------------------------------------------------------------------------------------
# pytest-benchmark
@pytest.fixture(scope="module")
def teachers():
    return {}


def get_teacher(cache: dict, case: str):
    if case not in cache:
        cache[case] = CASES[case][0]()
    return cache[case]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_synth_step(benchmark, teachers, case, implementation):
    _, canvas, crop = CASES[case]
    batch = SMOKE_BATCH if benchmark.disabled else BATCH
    loop = make_loop(implementation, get_teacher(teachers, case), canvas, crop, batch)
    loop.step()  # warm-up outside the timing (oneDNN primitive creation)
    benchmark.group = f"synth step: {case} batch {batch} canvas {canvas} crop {crop}"
    benchmark.extra_info.update(case=case, implementation=implementation, batch=batch, canvas=canvas, crop=crop,
                                threads=torch.get_num_threads())
    benchmark.pedantic(loop.step, rounds=5, iterations=1)


@pytest.mark.parametrize("case", list(CASES))
def test_implementations_compute_the_same_loss(teachers, case):
    """Same crop, no flip: reference, best eager and engine losses agree (same objective)."""
    _, canvas, crop = CASES[case]
    teacher = get_teacher(teachers, case)
    reference = EagerLoop(teacher, canvas, crop, reference=True, batch=SMOKE_BATCH)
    eager = EagerLoop(teacher, canvas, crop, reference=False, batch=SMOKE_BATCH)
    engine = EngineLoop(teacher, canvas, crop, SMOKE_BATCH, precision="fp32")
    x = reference.canvas.detach()[:, :, :crop, :crop].clamp(min=reference.low_t, max=reference.high_t)
    with torch.no_grad():
        expected = reference.loss(x)
        assert torch.allclose(eager.loss(x), expected, rtol=1e-4)
    engine.state.canvas.copy_(reference.canvas.detach().clamp(min=reference.low_t, max=reference.high_t))
    terms, _ = engine.synth.step(engine.state, engine.targets, torch.zeros(SMOKE_BATCH, 2, dtype=torch.int64), None, LR)
    assert torch.allclose(terms.total.detach(), expected, rtol=1e-4)


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
