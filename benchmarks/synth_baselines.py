"""The synthesis-step benchmark's teachers and the loops it times (imported by
test_bench_synth_step.py, which holds the timings and their cross-check).

Teachers: ResNet-18-CIFAR (random init, randomized BN running stats) at canvas 40, crop 32; and the
bundled default digit teacher at canvas 32, crop 28.

Loops, all one synthesis step on a batch of canvases (same objective: cross-entropy + 0.01 x the
layer-weighted BN-statistics loss + 1e-4 x TV-l2 + 1e-5 x mean L2 norm; Adam lr 0.1, betas 0.5/0.9):
- `EagerLoop(reference=True)`: DeepInversion / Data-Free NAS as they run it: BN forward hooks
  computing `x.mean([0,2,3])` and the variance through `x.permute(1,0,2,3).contiguous()`, teacher
  in eval mode but *not* frozen (weight gradients computed and zeroed), TV through four slices,
  `torch.optim.Adam` over the whole canvas with the crop as a slice, three per-channel clamps,
  `loss.item()` and a copy of the canvas every step (their "best image").
- `EagerLoop(reference=False)`: the same math done well in eager PyTorch: frozen teacher,
  `torch.var_mean` hooks, NCHW, one broadcast clamp, no host sync.
- `EngineLoop`: `Synthesizer.step` (fused ops, per-sample windows, region Adam), with the device's
  'auto' layout/precision as `dfnas-synth` runs it, or NCHW float32 (`precision="fp32"`).
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from dfnas.synth.config import SynthConfig
from dfnas.synth.engine import Synthesizer
from dfnas.synth.region import RegionState, draw_offsets

BATCH = 64
LR = 0.1
# The objective and optimizer every loop runs (the reference implementations' values). The engine
# is given them explicitly, so a change of SynthConfig's defaults cannot make it optimize
# something else than the loops it is timed against.
WEIGHTS = dict(r_feature=0.01, first_bn_multiplier=10.0, tv_l2=1e-4, tv_l1=0.0, l2=1e-5)
ADAM = dict(beta1=0.5, beta2=0.9, eps=1e-8)
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


# name -> (teacher factory, canvas, crop)
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
        self.optimizer = torch.optim.Adam([self.canvas], lr=LR, betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"])
        self.targets = torch.arange(batch) % info.num_classes
        self.offsets = torch.Generator().manual_seed(seed + 1)
        self.limit = canvas - crop
        self.stat_losses: list[torch.Tensor] = []
        layers = [m for m in self.model.modules() if isinstance(m, nn.BatchNorm2d)]
        self.layer_weights = [WEIGHTS["first_bn_multiplier"]] + [1.0] * (len(layers) - 1)
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
        return (F.cross_entropy(logits, self.targets) + WEIGHTS["r_feature"] * bn + WEIGHTS["tv_l2"] * tv_four_slices(x)
                + WEIGHTS["l2"] * l2)

    def step(self, offset: tuple[int, int] | None = None, flip: bool | None = None) -> torch.Tensor:
        """One step; returns the loss. `offset`/`flip` default to the loop's own random draws
        (the cross-check passes them to compare implementations on the same crop)."""
        if offset is None:
            offset = tuple(int(v) for v in torch.randint(0, self.limit + 1, (2,), generator=self.offsets))
        y, x = offset
        self.optimizer.zero_grad()
        crop = self.canvas[:, :, y : y + self.crop, x : x + self.crop]
        if flip is None:
            # Data-Free NAS flips every step (its random flip is computed but not used).
            flip = self.flip and (self.reference or bool(torch.rand((), generator=self.offsets) < 0.5))
        if self.reference:
            self.model.zero_grad()
        if flip:
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
        return loss.detach()

    def image(self) -> torch.Tensor:
        return self.canvas.detach()

    def set_image(self, canvas: torch.Tensor) -> None:
        with torch.no_grad():
            self.canvas.copy_(canvas)


class EngineLoop:
    """The dfnas Synthesizer's step on a batch of canvases."""

    def __init__(self, teacher, canvas: int, crop: int, batch: int = BATCH, seed: int = 0, precision: str = "auto") -> None:
        teacher = SimpleNamespace(model=copy.deepcopy(teacher.model), info=teacher.info)
        # "auto" is what dfnas-synth runs (bf16 + channels-last on CPUs with native bf16); "fp32" is NCHW float32.
        layout = {"amp": "off", "channels_last": "off"} if precision == "fp32" else {}
        config = SynthConfig(batch_size=batch, canvas=canvas, crop=crop, device="cpu", **WEIGHTS, **ADAM, **layout)
        self.synth = Synthesizer(teacher, config)
        self.generator = torch.Generator().manual_seed(seed)
        self.batch = batch
        shape = (batch, teacher.info.in_channels, canvas, canvas)
        self.state = RegionState.from_noise(shape, self.generator, torch.device("cpu"), self.synth.clamp_min, self.synth.clamp_max)
        self.targets = torch.arange(batch) % teacher.info.num_classes
        self.limit = canvas - crop

    def step(self, offset: tuple[int, int] | None = None, flip: bool | None = None) -> torch.Tensor:
        """One step; returns the loss. Given `offset`/`flip`, every sample uses them."""
        if offset is None:
            offsets = draw_offsets(self.generator, self.batch, self.limit, self.limit, "per_sample")
        else:
            offsets = torch.tensor([offset], dtype=torch.int64).expand(self.batch, 2).contiguous()
        if flip is None:
            flips = (torch.rand(self.batch, generator=self.generator) < 0.5) if self.synth.flip else None
        else:
            flips = torch.full((self.batch,), bool(flip)) if flip else None
        terms, _ = self.synth.step(self.state, self.targets, offsets, flips, LR)
        return terms.total.detach()

    def image(self) -> torch.Tensor:
        return self.state.canvas

    def set_image(self, canvas: torch.Tensor) -> None:
        self.state.canvas.copy_(canvas)


IMPLEMENTATIONS = ("reference", "eager_best", "dfnas_fp32", "dfnas")


def make_loop(name: str, teacher, canvas: int, crop: int, batch: int = BATCH):
    if name.startswith("dfnas"):
        return EngineLoop(teacher, canvas, crop, batch, precision="fp32" if name == "dfnas_fp32" else "auto")
    return EagerLoop(teacher, canvas, crop, reference=name == "reference", batch=batch)
