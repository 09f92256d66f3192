"""Where and in what precision a command runs: device names, layout + autocast (`Precision`).

Every command takes `--device auto|cpu|cuda|cuda:N` and resolves it here. `Precision` is the
memory format and autocast dtype of a model's steps. `auto_precision` is the per-device-type
choice measured for synthesis (docs/synthesis.md, "Layout and AMP"): on a CPU with native bfloat16
instructions (AVX512-BF16 or AMX) channels-last + bf16 autocast is the fastest step (oneDNN runs
NHWC bf16 convolutions natively; either choice alone is not reliably faster); without them bf16 is
emulated, so fp32 NCHW; on CUDA channels-last + bf16 is the usual tensor-core configuration. The
search supernets differ (many small convolutions), so the search times its candidates instead
(`dfnas.nas.tuning`).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from dfnas.config import UsageError

DEVICE_HELP = "'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'"
AMP_CHOICES = ("auto", "off", "bf16", "fp16")
LAYOUT_CHOICES = ("auto", "on", "off")
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_NAMES = {dtype: name for name, dtype in AMP_DTYPES.items()}


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """`spec` as a usable device; a bare 'cuda' means this process's local rank's GPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}; expected {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {spec!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    elif device.type != "cpu":
        raise UsageError(f"device must be cpu or cuda, got {spec!r}")
    return device


@dataclass(frozen=True)
class Precision:
    """Memory format and autocast dtype of the steps of a model on `device`."""

    device: torch.device
    channels_last: bool = False
    amp_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        if self.amp_dtype == torch.float16 and self.device.type != "cuda":
            raise UsageError("fp16 autocast needs a CUDA device (use bf16 or off on CPU)")

    @classmethod
    def from_names(cls, device: torch.device, channels_last: str, amp: str) -> "Precision":
        """From the flag values ('on'/'off', 'off'/'bf16'/'fp16'); 'auto' is `auto_precision`'s."""
        auto = auto_precision(device)
        layout = auto.channels_last if channels_last == "auto" else channels_last == "on"
        dtype = auto.amp_dtype if amp == "auto" else AMP_DTYPES[amp]
        return cls(device, layout, dtype)

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
        return {"channels_last": self.channels_last, "amp": AMP_NAMES[self.amp_dtype]}

    @classmethod
    def from_dict(cls, device: torch.device, values: dict) -> "Precision":
        return cls(device, bool(values["channels_last"]), AMP_DTYPES[values["amp"]])


def cpu_has_native_bf16() -> bool:
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def auto_precision(device: torch.device) -> Precision:
    """The per-device-type default: channels-last + bf16 on CUDA and on CPUs with native bf16."""
    if device.type == "cuda" or cpu_has_native_bf16():
        return Precision(device, True, torch.bfloat16)
    return Precision(device)
