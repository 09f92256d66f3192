"""The trainer every search strategy shares: loss, precision, device-resident data, checkpoints.

- `LossConfig` / `search_loss`: KL(teacher soft labels || student) at temperature T (times T^2 by
  default), optionally mixed with hard-label cross-entropy; plain cross-entropy for real data
  (batches without soft labels).
- `Precision` / `select_precision`: channels-last and autocast (bf16; fp16 + GradScaler on CUDA
  only), chosen by timing a few training steps of the actual supernet unless the user fixes them.
- `ImageSet` / `BatchStream`: the whole dataset as uint8 tensors on the device, random crops and
  flips done on whole batches there, and an explicit (resumable) shuffling state instead of a
  DataLoader.
- `Trainer`: one optimization step / one evaluation pass under those settings.
- `Checkpointer`, `rng_state`, `set_rng_state`: atomic `torch.save` of plain tensors and dicts,
  read back with `weights_only=True`.
"""
from __future__ import annotations

import copy
import os
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dfnas.files import atomic_open

Forward = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- losses


@dataclass(frozen=True)
class Batch:
    """Normalized images, the teacher's logits (None for real, hard-labelled data) and labels."""

    images: torch.Tensor
    soft_labels: torch.Tensor | None
    targets: torch.Tensor

    @property
    def reference_labels(self) -> torch.Tensor:
        """What "correct" means: the teacher's argmax on synthetic data, the label on real data."""
        return self.targets if self.soft_labels is None else self.soft_labels.argmax(dim=1)


@dataclass(frozen=True)
class LossConfig:
    """`temperature` and `t2_factor` as in Hinton et al.; `hard_weight` w mixes
    (1 - w) * KL + w * CE(targets). `label_smoothing` applies to the cross-entropy terms."""

    temperature: float = 3.0
    t2_factor: bool = True
    hard_weight: float = 0.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.hard_weight <= 1.0:
            raise ValueError(f"hard_weight must be in [0, 1], got {self.hard_weight}")


def distillation_kl(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), mean over the batch."""
    return F.kl_div(F.log_softmax(logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1),
                    log_target=True, reduction="batchmean")


def search_loss(logits: torch.Tensor, batch: Batch, config: LossConfig) -> torch.Tensor:
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # the softmaxes in float32 whatever the autocast dtype
    hard = F.cross_entropy(logits, batch.targets, label_smoothing=config.label_smoothing)
    if batch.soft_labels is None:
        return hard
    kl = distillation_kl(logits, batch.soft_labels, config.temperature)
    if config.t2_factor:
        kl = kl * config.temperature ** 2
    if config.hard_weight == 0.0:
        return kl
    return (1.0 - config.hard_weight) * kl + config.hard_weight * hard


# ----------------------------------------------------------------------------- precision


@dataclass(frozen=True)
class Precision:
    """Memory format and autocast dtype of the training steps on `device`."""

    device: torch.device
    channels_last: bool = False
    amp_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        if self.amp_dtype == torch.float16 and self.device.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device (use bf16 on CPU)")

    @property
    def name(self) -> str:
        layout = "channels_last" if self.channels_last else "nchw"
        amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        return f"{layout}_{amp}"

    def autocast(self, allow_fp16: bool = True):
        """Autocast context; `allow_fp16=False` runs fp16 configurations in fp32 instead (second
        derivatives and finite differences are unreliable in fp16, Lightning #12600)."""
        if self.amp_dtype is None or (self.amp_dtype == torch.float16 and not allow_fp16):
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def to_dict(self) -> dict:
        return {"channels_last": self.channels_last,
                "amp": {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]}


AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_candidates(device: torch.device, channels_last: str, amp: str) -> list[Precision]:
    """Every combination the user left open ("auto"); fp16 is only tried when asked for."""
    layouts = {"on": [True], "off": [False], "auto": [False, True]}[channels_last]
    if amp == "auto":
        bf16_ok = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
        dtypes = [None, torch.bfloat16] if bf16_ok else [None]
    else:
        dtypes = [AMP_DTYPES[amp]]
    return [Precision(device, layout, dtype) for layout in layouts for dtype in dtypes]


def timed_step(model: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
               images: torch.Tensor, precision: Precision) -> float:
    """Seconds of one forward + backward of `model` (already prepared for `precision`)."""
    sync = torch.cuda.synchronize if precision.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    with precision.autocast():
        logits = forward(model, images)
    logits.float().square().mean().backward()
    sync()
    return time.perf_counter() - start


def time_training_steps(model: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                        images: torch.Tensor, candidates: Sequence[Precision], steps: int = 2) -> dict[str, float]:
    """Median seconds of forward + backward of a copy of `model` under each precision.

    Each candidate runs a warm-up step and `steps` timed steps in a row (so oneDNN's primitive
    cache is warm for it), twice: in order, then in reverse order, so that a burst of load on a
    shared machine is spread over the candidates.
    """
    setups = [(p, p.prepare_model(copy.deepcopy(model)).train(), p.prepare_input(images.to(p.device)))
              for p in candidates]
    timings: dict[str, list[float]] = {p.name: [] for p in candidates}
    for order in (setups, setups[::-1]):
        for precision, model_copy, x in order:
            timed_step(model_copy, forward, x, precision)  # warm-up: caches, allocator, primitives
            timings[precision.name] += [timed_step(model_copy, forward, x, precision) for _ in range(steps)]
    return {name: statistics.median(values) for name, values in timings.items()}


def select_precision(device: torch.device, channels_last: str, amp: str, model: nn.Module,
                     forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                     images: torch.Tensor, min_gain: float = 1.1) -> tuple[Precision, dict[str, float]]:
    """The fastest configuration among `precision_candidates`, by measured step time.

    The first candidate (NCHW, fp32 unless fixed otherwise) stays unless another is at least
    `min_gain` times faster: a lower precision or a layout change must pay for itself. RNG states
    are restored, so measuring does not change the search's random stream.
    """
    candidates = precision_candidates(device, channels_last, amp)
    if len(candidates) == 1:
        return candidates[0], {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        timings = time_training_steps(model, forward, images, candidates)
    best = min(candidates, key=lambda p: timings[p.name])
    if timings[candidates[0].name] < min_gain * timings[best.name]:
        best = candidates[0]
    return best, timings


def select_threads(model: nn.Module, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                   images: torch.Tensor, precision: Precision, rounds: int = 3,
                   min_gain: float = 1.1) -> tuple[int, dict[str, float]]:
    """CPU intra-op threads: torch's default or 1, whichever steps faster (by `min_gain`).

    On a machine shared with other jobs, OpenMP workers spin-waiting for a busy core make small
    convolutions many times slower; one thread then wins. Returns (threads, median seconds).
    """
    default = torch.get_num_threads()
    if precision.device.type != "cpu" or default == 1:
        return default, {}
    model_copy = precision.prepare_model(copy.deepcopy(model)).train()
    x = precision.prepare_input(images)
    timings: dict[str, list[float]] = {str(default): [], "1": []}
    with torch.random.fork_rng(devices=[]):
        try:
            for round_ in range(rounds + 1):
                for threads in (default, 1):
                    torch.set_num_threads(threads)
                    seconds = timed_step(model_copy, forward, x, precision)
                    if round_:
                        timings[str(threads)].append(seconds)
        finally:
            torch.set_num_threads(default)
    medians = {k: statistics.median(v) for k, v in timings.items()}
    return (1 if medians[str(default)] >= min_gain * medians["1"] else default), medians


# ----------------------------------------------------------------------------- data


@dataclass
class ImageSet:
    """A labelled image set kept as uint8 tensors on one device.

    `images` (N, C, H, W) is the stored canvas; batches are `crop` windows of it, normalized with
    `mean`/`std`. Training batches take a uniformly random window of the canvas zero-padded by
    `pad` pixels, mirrored with probability 1/2 when `flip`; evaluation batches take the center
    window (where synthetic soft labels were computed).
    """

    images: torch.Tensor
    soft_labels: torch.Tensor | None
    targets: torch.Tensor
    crop: tuple[int, int]
    mean: Sequence[float]
    std: Sequence[float]
    pad: int = 0
    flip: bool = False

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, indices: torch.Tensor) -> "ImageSet":
        indices = indices.to(self.images.device)
        soft = None if self.soft_labels is None else self.soft_labels[indices]
        return ImageSet(self.images[indices], soft, self.targets[indices], self.crop, self.mean,
                        self.std, self.pad, self.flip)

    def to(self, device: torch.device) -> "ImageSet":
        soft = None if self.soft_labels is None else self.soft_labels.to(device)
        return ImageSet(self.images.to(device), soft, self.targets.to(device), self.crop,
                        self.mean, self.std, self.pad, self.flip)

    def batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        """Images `indices`; random windows/flips drawn from `generator` (CPU), center if None."""
        device = self.images.device
        indices = indices.to(device)
        images = self.images[indices]
        if self.pad:
            images = F.pad(images, (self.pad,) * 4)
        height, width = images.shape[-2:]
        crop_h, crop_w = self.crop
        n = len(indices)
        if generator is None:
            tops = torch.full((n,), (height - crop_h) // 2)
            lefts = torch.full((n,), (width - crop_w) // 2)
            flips = torch.zeros(n, dtype=torch.bool)
        else:
            tops = torch.randint(height - crop_h + 1, (n,), generator=generator)
            lefts = torch.randint(width - crop_w + 1, (n,), generator=generator)
            flips = torch.rand(n, generator=generator) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        rows = (tops[:, None] + torch.arange(crop_h)).to(device)
        cols = torch.arange(crop_w).expand(n, crop_w)
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        cols = (lefts[:, None] + cols).to(device)
        windows = images[torch.arange(n, device=device)[:, None, None, None],
                         torch.arange(images.shape[1], device=device)[None, :, None, None],
                         rows[:, None, :, None], cols[:, None, None, :]]
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        pixels = (windows.float() / 255.0 - mean) / std
        soft = None if self.soft_labels is None else self.soft_labels[indices]
        return Batch(pixels, soft, self.targets[indices])

    def fixed_batches(self, batch_size: int, limit: int | None = None, drop_last: bool = False) -> list[Batch]:
        """Center-window batches in dataset order (the last one may be smaller unless `drop_last`)."""
        starts = range(0, len(self) - batch_size + 1 if drop_last else len(self), batch_size)
        if limit is not None:
            starts = list(starts)[:limit]
        return [self.batch(torch.arange(s, min(s + batch_size, len(self)))) for s in starts]


class BatchStream:
    """Shuffled, augmented mini-batches of an `ImageSet`, epoch after epoch, without a loader.

    Full batches only (the remainder of a permutation is dropped), so every step has the same
    shape. The shuffle order, the position in it and the generator are the whole state, which
    `state_dict` returns for checkpoints.
    """

    def __init__(self, data: ImageSet, batch_size: int, seed: int, augment: bool = True):
        if len(data) < batch_size:
            raise ValueError(f"batch size {batch_size} is larger than the {len(data)} images it draws from")
        self.data = data
        self.batch_size = batch_size
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(data), generator=self.generator)
        self.position = 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.data) // self.batch_size

    def next(self) -> Batch:
        if self.position + self.batch_size > len(self.data):
            self.order = torch.randperm(len(self.data), generator=self.generator)
            self.position = 0
        indices = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return self.data.batch(indices, self.generator if self.augment else None)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])


def split_indices(count: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of range(count) into (1 - fraction, fraction) parts, both sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be in (0, 1), got {fraction}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    second = max(1, min(count - 1, round(count * fraction)))
    return order[second:].sort().values, order[:second].sort().values


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Loss, optimization step and evaluation of a model `forward` under one `Precision`."""

    def __init__(self, loss: LossConfig, precision: Precision, grad_clip: float | None = None):
        self.loss_config = loss
        self.precision = precision
        self.grad_clip = grad_clip
        self.scaler = precision.grad_scaler()

    def loss(self, forward: Forward, batch: Batch, allow_fp16: bool = True) -> torch.Tensor:
        with self.precision.autocast(allow_fp16):
            logits = forward(self.precision.prepare_input(batch.images))
        return search_loss(logits, batch, self.loss_config)

    def step(self, optimizer: torch.optim.Optimizer, forward: Forward, batch: Batch,
             params: Sequence[torch.Tensor] | None = None) -> float:
        """zero_grad, loss, backward, clip (`params`, when given), step. Returns the loss."""
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss(forward, batch)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        if self.grad_clip and params is not None:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.grad_clip)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self, forward: Forward, batches: Sequence[Batch]) -> dict[str, float]:
        """`agreement`: top-1 vs teacher argmax (or labels); `kl`: teacher KL at T = 1 (or CE)."""
        correct, divergence, count = 0, 0.0, 0
        for batch in batches:
            with self.precision.autocast():
                logits = forward(self.precision.prepare_input(batch.images)).float()
            correct += int((logits.argmax(dim=1) == batch.reference_labels).sum())
            if batch.soft_labels is None:
                divergence += float(F.cross_entropy(logits, batch.targets, reduction="sum"))
            else:
                divergence += float(distillation_kl(logits, batch.soft_labels, 1.0)) * len(logits)
            count += len(logits)
        return {"agreement": correct / count, "kl": divergence / count}

    def state_dict(self) -> dict:
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


# ----------------------------------------------------------------------------- checkpoints


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """One checkpoint file, replaced atomically (temporary file in the same folder + rename)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, state: dict[str, Any]) -> None:
        with atomic_open(self.path) as handle:
            torch.save(state, handle)

    def load(self, map_location: torch.device | str = "cpu") -> dict[str, Any]:
        if not self.exists():
            raise FileNotFoundError(f"no checkpoint at {self.path} to resume from")
        try:
            return torch.load(self.path, map_location=map_location, weights_only=True)
        except Exception as error:  # torch raises several types for truncated/corrupt files
            raise ValueError(f"checkpoint {self.path} is unreadable ({error}); delete it to start over") from None
