"""The synthesis configuration: one typed dataclass, every value with its default and meaning.

Defaults follow the reference implementations (DeepInversion / Data-Free NAS, see
docs/synthesis.md) except where noted. `None` / `"auto"` values are resolved against the teacher
and the device by `resolve()`; the resolved config is what the manifest records.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

OFFSET_MODES = ("per_sample", "shared")
AMP_MODES = ("auto", "off", "bf16", "fp16")
LAYOUT_MODES = ("auto", "on", "off")


class ConfigError(ValueError):
    """A synthesis config value is invalid (bad user input, reported in one line)."""


def _option(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the synthesized bytes (plus the device choices that run it)."""

    teacher: str = _option("default", "teacher spec: 'default', a TorchScript file, 'pkg.module:factory', 'timm:<name>'")
    weights: str | None = _option(None, "weights file for the teacher (safetensors or a plain state dict)")
    num_images: int = _option(1024, "images to synthesize in total (all rounds together)")
    batch_size: int = _option(64, "images optimized together; one shard holds one batch through all rounds")
    iterations: int = _option(200, "optimizer steps per batch and round")
    rounds: int = _option(2, "label-calibration rounds K: round 0 hard labels, round k>0 soft labels of round k-1")
    canvas: int | None = _option(None, "canvas side in pixels (default: crop + ceil(crop / 7), e.g. 32 for 28)")
    crop: int | None = _option(None, "side of the window the teacher sees (default: the teacher's input size)")
    seed: int = _option(0, "random seed; shard i depends only on (seed, i)")
    lr: float = _option(0.25, "Adam learning rate (peak of the schedule)")
    beta1: float = _option(0.5, "Adam beta1")
    beta2: float = _option(0.9, "Adam beta2")
    eps: float = _option(1e-8, "Adam epsilon")
    warmup_fraction: float = _option(0.05, "fraction of iterations with linear LR warm-up (reference: 100 of 2000)")
    r_feature: float = _option(0.01, "weight of the BN-statistics loss")
    first_bn_multiplier: float = _option(10.0, "extra weight of the first BatchNorm layer's statistics loss")
    tv_l2: float = _option(1e-4, "weight of the L2 total-variation prior")
    tv_l1: float = _option(0.0, "weight of the L1 total-variation prior")
    l2: float = _option(1e-5, "weight of the mean per-image L2 norm prior")
    temperature: float = _option(1.0, "softmax temperature of the calibrated soft targets (rounds k>0)")
    offsets: str = _option("per_sample", "crop offsets: 'per_sample' or 'shared' (one per batch, as the reference)", choices=OFFSET_MODES)
    flip: bool = _option(True, "random horizontal flip of the crop (only where the teacher allows it)")
    device: str = _option("auto", "'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'")
    amp: str = _option("auto", "autocast dtype: 'auto' (per device type), 'off', 'bf16', 'fp16'", choices=AMP_MODES)
    channels_last: str = _option("auto", "teacher in channels-last layout: 'auto' (per device type), 'on', 'off'", choices=LAYOUT_MODES)

    def validate(self) -> None:
        """Raise ConfigError naming the first value that cannot work."""
        for name in ("num_images", "batch_size", "iterations", "rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        for name in ("canvas", "crop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.canvas is not None and self.crop is not None and self.crop > self.canvas:
            raise ConfigError(f"crop ({self.crop}) must not be larger than canvas ({self.canvas})")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"Adam betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        for name in ("eps", "r_feature", "first_bn_multiplier", "tv_l2", "tv_l1", "l2"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {getattr(self, f.name)!r}")

    @property
    def shard_size(self) -> int:
        """Images per shard: one batch of chains through every round."""
        return self.batch_size * self.rounds

    def shard_counts(self) -> list[int]:
        """Image count of each shard; only the last one may be short."""
        full, rest = divmod(self.num_images, self.shard_size)
        return [self.shard_size] * full + ([rest] if rest else [])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SynthConfig:
        """Build from plain values (TOML, JSON); unknown keys are an error, '-' may stand for '_'."""
        names = {f.name for f in dataclasses.fields(cls)}
        normalized = {key.replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(normalized) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        for f in dataclasses.fields(cls):
            if f.name in normalized and not _has_type(normalized[f.name], f.type):
                raise ConfigError(f"{f.name} must be {f.type}, got {normalized[f.name]!r}")
        return cls(**normalized)


def _has_type(value, annotation: str) -> bool:
    if value is None:
        return annotation.endswith("| None")
    base = annotation.split(" | ")[0]
    if base == "bool" or isinstance(value, bool):
        return base == "bool" and isinstance(value, bool)
    if base == "float":
        return isinstance(value, (int, float))
    return isinstance(value, {"int": int, "str": str}[base])


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
