"""The retraining configuration of `dfnas-train`: one typed dataclass, every value with its meaning.

Flags, TOML keys, help and range checks all come from the `option` declarations (dfnas.config).
The defaults are measured choices (docs/train.md): SGD with Nesterov momentum and a cosine
schedule trains the small searched networks further in a few hundred steps than AdamW did.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from dfnas.config import UsageError, option
from dfnas.device import AMP_CHOICES, DEVICE_HELP, LAYOUT_CHOICES

OPTIMIZERS = ("sgd", "adamw")
EXPORT_FORMATS = ("torchscript", "onnx")
# Settings that do not change the trained weights: a resumed run may differ in them.
NOT_TRAINING = ("export", "latency_runs", "evaluations")  # they change no weight


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights, plus how the result is exported."""

    data: str | None = option(None, "training data: a synthetic dataset directory (dfnas-synth) or 'mnist' (the real digits)")
    teacher: str | None = option(None, "distill online: this teacher labels every augmented batch ('default' = the bundled "
                                       "MNIST teacher, or a spec as in dfnas.teachers.load_teacher)")
    weights: str | None = option(None, "weights file of --teacher")
    steps: int = option(600, "optimizer steps in total (an epoch is one pass over the training split and ends with a "
                             "checkpoint)", min=1, max=10**8)
    evaluations: int = option(10, "evaluations (real test accuracy, synthetic val agreement) spread over the epochs; "
                                  "the last epoch is always evaluated", min=1, max=10**6)
    batch_size: int = option(64, "training batch size", min=1, max=65536)
    optimizer: str = option("sgd", "sgd (Nesterov momentum) or adamw", choices=OPTIMIZERS)
    lr: float = option(0.1, "peak learning rate (after the warm-up; cosine decay to 0 at the last step)", above=0, max=100)
    momentum: float = option(0.9, "SGD momentum / AdamW beta1", min=0, max=0.9999)
    weight_decay: float = option(5e-4, "weight decay of conv and linear weights (not of BN parameters and biases)",
                                 min=0, max=1)
    warmup_steps: int = option(30, "linear learning-rate warm-up steps", min=0, max=10**8)
    grad_clip: float = option(5.0, "gradient-norm clip (0: off)", min=0)
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy (hard labels)", min=0, max=0.99)
    temperature: float = option(3.0, "distillation temperature T of the KL to soft labels", above=0, max=1000)
    t2_factor: bool = option(True, "multiply the KL by T^2 (Hinton et al.)")
    hard_weight: float = option(0.0, "weight w of the hard-label CE in distillation: (1 - w) KL + w CE", min=0, max=1)
    augment: bool = option(True, "random windows / shifts (and flips where the data allows them) of training batches")
    aux_weight: float = option(0.4, "DARTS networks with an auxiliary head: weight of its loss", min=0)
    drop_path: float = option(0.0, "DARTS networks: drop-path probability, ramped linearly over the epochs", min=0, max=0.99)
    val_fraction: float = option(0.1, "synthetic data: fraction held out to measure agreement with the teacher",
                                 above=0, max=0.9)
    seed: int = option(0, "random seed of the weights, the batch order and the augmentation", min=0, max=2**63 - 1)
    device: str = option("auto", DEVICE_HELP)
    threads: int = option(0, "CPU threads for torch (0: torch's default); small networks often train faster on 1",
                          min=0, max=4096)
    amp: str = option("off", "autocast dtype: off, bf16, fp16 (CUDA), or auto (bf16 on CUDA / native-bf16 CPUs)",
                      choices=AMP_CHOICES)
    channels_last: str = option("off", "channels-last layout: off, on, or auto (with bf16 autocast)", choices=LAYOUT_CHOICES)
    export: str = option("torchscript,onnx", "comma-separated export formats (torchscript, onnx), or 'none'")
    latency_runs: int = option(20, "batch-1 CPU forwards timed for the latency (median)", min=1, max=100000)

    def check(self) -> None:
        """Rules between fields (each field's own range is checked by dfnas.config.check)."""
        if not self.data:
            raise UsageError("--data is required: a synthetic dataset directory or 'mnist'")
        if self.weights is not None and self.teacher is None:
            raise UsageError("--weights is given without --teacher")
        self.export_formats()

    def export_formats(self) -> tuple[str, ...]:
        parts = [p.strip() for p in self.export.split(",") if p.strip()]
        if parts == ["none"]:
            return ()
        unknown = [p for p in parts if p not in EXPORT_FORMATS]
        if unknown or not parts:
            raise UsageError(f"export must list some of {', '.join(EXPORT_FORMATS)} (comma-separated) or be 'none'; "
                             f"got {self.export!r}")
        return tuple(dict.fromkeys(parts))

    def to_dict(self) -> dict:
        return asdict(self)

    def training_dict(self) -> dict:
        """The settings a resumed run must share with the checkpoint it continues."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_TRAINING}
