"""The Synthesizer: optimizes canvases so the frozen teacher's BN statistics and predictions match.

One shard = one batch of chains taken through every label-calibration round. Round 0 starts each
chain from noise towards a hard label; round k starts again from fresh noise towards the teacher's
soft prediction on the chain's round k-1 image. A step: crop a window per sample
(`crop_windows`), maybe mirror it, run the teacher (BN hooks collect the statistics loss), add the
class loss and image priors, backward into the crop only, then `region_adam_` on the windows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from dfnas.synth.calibration import balanced_labels, calibrated_targets, target_classes
from dfnas.config import RunFailed, UsageError
from dfnas.device import Precision
from dfnas.synth.config import SynthConfig, resolve_execution, resolve_geometry
from dfnas.synth.hooks import BNStatHooks
from dfnas.synth.losses import LossTerms, LossWeights, synthesis_loss
from dfnas.ops import crop_windows, region_adam_
from dfnas.data.pixels import center_crop, from_uint8, to_uint8, valid_range
from dfnas.synth.region import RegionState, draw_flips, draw_offsets, flip_where
from dfnas.synth.schedule import warmup_cosine_lr, warmup_iterations
from dfnas.synth.seeding import shard_generator

# fp16 autocast: a static loss scale keeps small input gradients out of fp16's subnormal range
# (there is no optimizer to skip steps for, so a dynamic scaler buys nothing here).
FP16_LOSS_SCALE = 2.0**12
LOG_EVERY = 10


class NonFiniteLossError(RunFailed):
    """The synthesis loss became NaN or infinite; the message names shard, round and iteration."""


@dataclass(frozen=True)
class Progress:
    """What the engine reports every LOG_EVERY iterations and at the end of each round."""

    shard: int
    round: int
    iteration: int  # 1-based count of finished iterations in this round
    iterations: int
    losses: dict[str, float]
    agreement: float  # fraction of the batch whose teacher top-1 on the crop equals the target class


@dataclass(frozen=True)
class RoundStats:
    bn_start: float
    bn_end: float
    agreement_end: float


@dataclass(frozen=True)
class ShardImages:
    """A synthesized shard, on the CPU, in storage order (round-major: round 0 chains, round 1 ...)."""

    images: Tensor  # uint8 (n, C, H, W)
    soft_labels: Tensor  # float32 (n, K) teacher logits on the stored image's center crop
    targets: Tensor  # int64 (n,) round-0 hard label of each image's chain
    round_targets: list[Tensor]  # the targets each round optimized for (int64 labels or probabilities)
    round_stats: list[RoundStats]


def prepare_teacher(model: nn.Module, precision: Precision) -> nn.Module:
    """Frozen teacher: eval mode, no parameter gradients (backward computes input gradients only)."""
    return precision.prepare_model(model.eval().requires_grad_(False))


class Synthesizer:
    """Synthesizes shards for `teacher` (an object with `.model` and `.info`) under `config`."""

    def __init__(self, teacher, config: SynthConfig, local_rank: int = 0) -> None:
        config.validate()
        if isinstance(teacher.model, torch.jit.ScriptModule):
            raise UsageError("a TorchScript teacher cannot be synthesized from: synthesis hooks its BatchNorm "
                             "layers, which TorchScript modules do not allow; give it as 'pkg.module:factory' "
                             "with a weights file (docs/teachers.md)")
        self.info = teacher.info
        config = resolve_geometry(config, tuple(self.info.input_size))
        self.config, self.precision = resolve_execution(config, local_rank)
        self.model = prepare_teacher(teacher.model, self.precision)
        self.hooks = BNStatHooks(self.model, self.config.first_bn_multiplier)
        clamp_min, clamp_max = valid_range(self.info.mean, self.info.std)
        self.clamp_min, self.clamp_max = clamp_min.to(self.precision.device), clamp_max.to(self.precision.device)
        self.flip = self.config.flip and bool(self.info.flip_ok)
        self.weights = LossWeights(self.config.r_feature, self.config.tv_l2, self.config.tv_l1, self.config.l2)
        self.canvas_shape = (int(self.info.in_channels), self.config.canvas, self.config.canvas)

    @torch.no_grad()
    def check_teacher_input(self) -> None:
        """Run the teacher once on a crop-sized input: a crop its head cannot take (a fixed-size
        linear layer) is a one-line error before anything is written."""
        crop = self.config.crop
        probe = torch.zeros(2, self.canvas_shape[0], crop, crop, device=self.precision.device)
        self.hooks.enabled = False
        try:
            with self.precision.autocast():
                logits = self.model(self.precision.prepare_input(probe))
        except RuntimeError as error:
            raise UsageError(f"the teacher cannot take a {crop}x{crop} crop (--crop): "
                             f"{str(error).splitlines()[0]}") from None
        finally:
            self.hooks.enabled = True
        if tuple(logits.shape) != (2, self.info.num_classes):
            raise UsageError(f"on a {crop}x{crop} crop the teacher outputs shape {tuple(logits.shape)}, not "
                             f"(2, {self.info.num_classes}); choose the crop it was made for")

    # ----------------------------------------------------------------------------------------
    # One optimization step
    def step(self, state: RegionState, targets: Tensor, offsets: Tensor, flips: Tensor | None, lr: float) -> tuple[LossTerms, Tensor]:
        """One regional update of `state`; returns the loss terms and the teacher's logits."""
        crop_size = self.config.crop
        crop = crop_windows(state.canvas, offsets, crop_size, crop_size).requires_grad_()
        x = flip_where(crop, flips) if flips is not None else crop
        with self.precision.autocast():
            logits = self.model(self.precision.prepare_input(x))
        terms = synthesis_loss(logits, targets, self.hooks.weighted_sum(), x, self.weights)
        if self.precision.amp_dtype is torch.float16:
            (terms.total * FP16_LOSS_SCALE).backward()
            grad = crop.grad.div_(FP16_LOSS_SCALE)
        else:
            terms.total.backward()
            grad = crop.grad
        state.step += 1
        cfg = self.config
        region_adam_(state.canvas, grad, state.exp_avg, state.exp_avg_sq, offsets, step=state.step, lr=lr,
                     beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps, clamp_min=self.clamp_min, clamp_max=self.clamp_max)
        return terms, logits.detach()

    # ----------------------------------------------------------------------------------------
    # Rounds and shards
    @torch.no_grad()
    def teacher_logits(self, images: Tensor) -> Tensor:
        """float32 logits (CPU) of the teacher on the center crop of stored uint8 images, in fp32."""
        x = center_crop(from_uint8(images.to(self.precision.device), self.info.mean, self.info.std), self.config.crop, self.config.crop)
        self.hooks.enabled = False
        try:
            return self.model(self.precision.prepare_input(x)).float().cpu()
        finally:
            self.hooks.enabled = True

    def _check_finite(self, terms: LossTerms, shard: int, round_index: int, iteration: int) -> None:
        if bool(torch.isfinite(terms.total)):
            return
        values = ", ".join(f"{name}={value:.4g}" for name, value in terms.as_floats().items())
        raise NonFiniteLossError(
            f"non-finite synthesis loss at shard (batch) {shard}, round {round_index}, "
            f"iteration {iteration + 1}/{self.config.iterations}: {values}"
        )

    def run_round(self, targets: Tensor, generator: torch.Generator, shard: int, round_index: int,
                  progress: Callable[[Progress], None] | None = None) -> tuple[Tensor, RoundStats]:
        """Optimize a fresh canvas batch towards `targets`; return its uint8 images and stats."""
        cfg, device = self.config, self.precision.device
        batch = targets.shape[0]
        state = RegionState.from_noise((batch, *self.canvas_shape), generator, device, self.clamp_min, self.clamp_max)
        targets = targets.to(device)
        classes = target_classes(targets)
        if cfg.iterations == 0:  # unoptimized noise: the stored soft labels are the teacher's on it
            stats = self._unoptimized_stats(state.canvas, classes)
            return to_uint8(state.canvas, self.info.mean, self.info.std).cpu(), stats
        max_offset = cfg.canvas - cfg.crop
        warmup = warmup_iterations(cfg.iterations, cfg.warmup_fraction)
        # On the CPU reading the loss is free; on a GPU it is a sync, so it waits for log points.
        check_every = 1 if device.type == "cpu" else LOG_EVERY
        pending_checks: list[tuple[int, LossTerms]] = []
        bn_start = math.nan
        for iteration in range(cfg.iterations):
            offsets = draw_offsets(generator, batch, max_offset, max_offset, cfg.offsets).to(device)
            flips = draw_flips(generator, batch).to(device) if self.flip else None
            lr = warmup_cosine_lr(cfg.lr, iteration, cfg.iterations, warmup)
            terms, logits = self.step(state, targets, offsets, flips, lr)
            pending_checks.append((iteration, terms))
            done = iteration + 1
            is_log_point = done % LOG_EVERY == 0 or done == cfg.iterations or iteration == 0
            if done % check_every == 0 or is_log_point:
                for checked_iteration, checked_terms in pending_checks:
                    self._check_finite(checked_terms, shard, round_index, checked_iteration)
                pending_checks.clear()
            if is_log_point:
                losses = terms.as_floats()
                agreement = float((logits.argmax(1) == classes).float().mean())
                if iteration == 0:
                    bn_start = losses["bn"]
                if progress is not None:
                    progress(Progress(shard, round_index, done, cfg.iterations, losses, agreement))
        stats = RoundStats(bn_start=bn_start, bn_end=losses["bn"], agreement_end=agreement)
        return to_uint8(state.canvas, self.info.mean, self.info.std).cpu(), stats

    @torch.no_grad()
    def _unoptimized_stats(self, canvas: Tensor, classes: Tensor) -> RoundStats:
        """BN loss and target agreement of the teacher on the center crop of an untouched canvas."""
        x = center_crop(canvas, self.config.crop, self.config.crop)
        with self.precision.autocast():
            logits = self.model(self.precision.prepare_input(x))
        bn = float(self.hooks.weighted_sum())
        agreement = float((logits.argmax(1) == classes).float().mean())
        return RoundStats(bn_start=bn, bn_end=bn, agreement_end=agreement)

    def synthesize_shard(self, index: int, progress: Callable[[Progress], None] | None = None) -> ShardImages:
        """Shard `index`: depends only on (config, seed, index), whatever ran before."""
        cfg = self.config
        count = cfg.shard_counts()[index]
        chains = math.ceil(count / cfg.rounds)
        generator = shard_generator(cfg.seed, index)
        hard_labels = balanced_labels(index * cfg.batch_size, chains, int(self.info.num_classes))
        targets: Tensor = hard_labels
        images, logits, round_targets, round_stats = [], [], [], []
        for round_index in range(cfg.rounds):
            round_images, stats = self.run_round(targets, generator, index, round_index, progress)
            round_logits = self.teacher_logits(round_images)
            images.append(round_images)
            logits.append(round_logits)
            round_targets.append(targets)
            round_stats.append(stats)
            targets = calibrated_targets(round_logits, cfg.calibration_temperature)
        return ShardImages(
            images=torch.cat(images)[:count].contiguous(),
            soft_labels=torch.cat(logits)[:count].contiguous(),
            targets=hard_labels.repeat(cfg.rounds)[:count].contiguous(),
            round_targets=round_targets,
            round_stats=round_stats,
        )

    def close(self) -> None:
        self.hooks.remove()
