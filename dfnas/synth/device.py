"""Device, autocast and layout choices, with 'auto' resolved per device type.

The 'auto' choices were measured (docs/synthesis.md, "Layout and AMP"): on a CPU with native
bfloat16 instructions (AVX512-BF16 or AMX) channels-last + bfloat16 autocast is the fastest
engine step for both the digit teacher and ResNet-18 (oneDNN runs NHWC bf16 convolutions natively;
either choice alone is not reliably faster); without them bf16 is emulated, so fp32 NCHW. On CUDA,
channels-last with bfloat16 autocast is the usual tensor-core configuration.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from dfnas.synth.config import ConfigError, SynthConfig

FAST_LOW_PRECISION = {"amp": "bf16", "channels_last": "on"}
PLAIN = {"amp": "off", "channels_last": "off"}
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ExecutionPlan:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool


def cpu_has_native_bf16() -> bool:
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def auto_choices(device: torch.device) -> dict[str, str]:
    if device.type == "cuda" or cpu_has_native_bf16():
        return FAST_LOW_PRECISION
    return PLAIN


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError as error:
        raise ConfigError(f"device {spec!r} is not a device: {error}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    elif device.type != "cpu":
        raise ConfigError(f"device must be cpu or cuda, got {spec!r}")
    return device


def resolve_execution(config: SynthConfig, local_rank: int = 0) -> tuple[SynthConfig, ExecutionPlan]:
    """Replace 'auto' values by the per-device-type choice; return the config and the plan."""
    device = resolve_device(config.device, local_rank)
    auto = auto_choices(device)
    amp = auto["amp"] if config.amp == "auto" else config.amp
    layout = auto["channels_last"] if config.channels_last == "auto" else config.channels_last
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp 'fp16' needs a CUDA device; use 'bf16' or 'off' on CPU")
    resolved = dataclasses.replace(config, device=device.type, amp=amp, channels_last=layout)
    return resolved, ExecutionPlan(device=device, amp_dtype=AMP_DTYPES.get(amp), channels_last=layout == "on")
