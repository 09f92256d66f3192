"""The synthesis configuration: one typed dataclass, every value with its default and meaning.

Defaults follow the reference implementations (DeepInversion / Data-Free NAS, see
docs/synthesis.md) except where noted. `None` / `"auto"` values are resolved against the teacher
(`resolve_geometry`) and the device (`resolve_execution`); the resolved config is what the manifest
records. Flags, TOML keys, help and value checks all come from the `option` declarations
(dfnas.config).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dfnas.config import UsageError, check, option
from dfnas.device import AMP_CHOICES, AMP_NAMES, DEVICE_HELP, LAYOUT_CHOICES, Precision, resolve_device

OFFSET_MODES = ("per_sample", "shared")
MAX_IMAGES = 10**8  # far beyond any run (1e8 28x28 images are 80 GB); catches typos such as 1e15
MAX_SIDE = 4096


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the synthesized bytes (plus the device choices that run it)."""

    teacher: str = option("default", "teacher spec: 'default' (the bundled digit teacher), 'pkg.module:factory' or 'timm:<name>'")
    weights: str | None = option(None, "weights file for the teacher (safetensors or a plain state dict)")
    num_images: int = option(2048, "images to synthesize in total (all rounds together)", min=1, max=MAX_IMAGES)
    batch_size: int = option(64, "images optimized together; one shard holds one batch through all rounds", min=1, max=65536)
    iterations: int = option(200, "optimizer steps per batch and round (0: unoptimized noise labelled by the teacher)",
                            min=0, max=10**7)
    rounds: int = option(2, "label-calibration rounds K: round 0 hard labels, round k>0 soft labels of round k-1", min=1, max=100)
    canvas: int | None = option(None, "canvas side in pixels (default: crop + ceil(crop / 7), e.g. 32 for 28)", min=1, max=MAX_SIDE)
    crop: int | None = option(None, "side of the window the teacher sees (default: the teacher's input size)", min=1, max=MAX_SIDE)
    seed: int = option(0, "random seed; shard i depends only on (seed, i)", min=0, max=2**63 - 1)
    lr: float = option(0.25, "Adam learning rate (peak of the schedule)", above=0)
    beta1: float = option(0.5, "Adam beta1", min=0, max=0.999999)
    beta2: float = option(0.9, "Adam beta2", min=0, max=0.999999)
    eps: float = option(1e-8, "Adam epsilon", above=0)
    warmup_fraction: float = option(0.05, "fraction of iterations with linear LR warm-up (reference: 100 of 2000)", min=0, max=0.999)
    # Not the ImageNet reference's 0.01: on a small-BN teacher that leaves the BN term negligible and the images
    # fool the teacher off the data manifold (student 0.33 vs 0.89 real accuracy at 3; docs/results.md).
    r_feature: float = option(3.0, "weight of the BN-statistics loss (reference: 0.01 ImageNet, 10 CIFAR)", min=0)
    first_bn_multiplier: float = option(10.0, "extra weight of the first BatchNorm layer's statistics loss", min=0)
    tv_l2: float = option(1e-4, "weight of the L2 total-variation prior", min=0)
    tv_l1: float = option(0.0, "weight of the L1 total-variation prior", min=0)
    l2: float = option(1e-5, "weight of the mean per-image L2 norm prior", min=0)
    calibration_temperature: float = option(1.0, "softmax temperature of the calibrated soft targets of rounds k>0 "
                                                 "(not the distillation temperature of search and training)", above=0)
    offsets: str = option("per_sample", "crop offsets: one per image, or one per batch (as the reference)", choices=OFFSET_MODES)
    flip: bool = option(True, "random horizontal flip of the crop (only where the teacher allows it)")
    device: str = option("auto", DEVICE_HELP)
    amp: str = option("auto", "autocast dtype: 'auto' (bf16 on CUDA and on CPUs with native bf16, else off)", choices=AMP_CHOICES)
    channels_last: str = option("auto", "teacher in channels-last layout: 'auto' (with bf16 autocast), 'on', 'off'", choices=LAYOUT_CHOICES)
    threads: str = option("auto", "CPU threads for torch: a number, or auto: torch's default or 1, whichever runs the "
                                  "teacher's forward + backward faster here (on a busy machine one thread can be many "
                                  "times faster)")

    def check(self) -> None:
        """The rules between fields (each field's own range is checked by dfnas.config.check)."""
        if self.canvas is not None and self.crop is not None and self.crop > self.canvas:
            raise UsageError(f"crop ({self.crop}) must not be larger than canvas ({self.canvas})")
        if self.threads != "auto" and (not self.threads.isdigit() or int(self.threads) < 1):
            raise UsageError(f"threads must be a positive number or auto, got {self.threads!r}")

    def validate(self) -> None:
        """Raise UsageError naming the first value that cannot work."""
        check(self)

    @property
    def shard_size(self) -> int:
        """Images per shard: one batch of chains through every round."""
        return self.batch_size * self.rounds

    def shard_counts(self) -> list[int]:
        """Image count of each shard; only the last one may be short."""
        full, rest = divmod(self.num_images, self.shard_size)
        return [self.shard_size] * full + ([rest] if rest else [])

    def to_dict(self) -> dict:
        """The settings the dataset depends on (its manifest's `config`): not the thread count, so a
        run may resume with another."""
        settings = dataclasses.asdict(self)
        del settings["threads"]
        return settings


def default_canvas(crop: int) -> int:
    """Canvas side for a crop side: 28 -> 32, 224 -> 256 (the reference's 256/224 ratio)."""
    return crop + math.ceil(crop / 7)


def resolve_geometry(config: SynthConfig, input_size: tuple[int, int]) -> SynthConfig:
    """Fill crop/canvas from the teacher's input size; check crop <= canvas."""
    crop = config.crop if config.crop is not None else max(input_size)
    canvas = config.canvas if config.canvas is not None else default_canvas(crop)
    resolved = dataclasses.replace(config, crop=crop, canvas=canvas)
    resolved.validate()
    return resolved


def resolve_execution(config: SynthConfig, local_rank: int = 0) -> tuple[SynthConfig, Precision]:
    """Replace 'auto' device, layout and autocast by what will run; return the config and precision."""
    device = resolve_device(config.device, local_rank)
    precision = Precision.from_names(device, config.channels_last, config.amp)
    resolved = dataclasses.replace(config, device=device.type, amp=AMP_NAMES[precision.amp_dtype],
                                   channels_last="on" if precision.channels_last else "off")
    return resolved, precision
