"""The training curve of a retraining (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from dfnas.files import atomic_write_bytes


def training_curve(path: Path, losses: Sequence[float], epochs: Sequence[dict], loss_name: str,
                   teacher_accuracy: float | None, title: str) -> None:
    """Left: the training loss per step (and its running mean over ~an epoch). Right: after each
    epoch, the real test accuracy and / or the synthetic val agreement, and the teacher's test
    accuracy as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = range(1, len(losses) + 1)
    left.plot(steps, losses, lw=0.6, alpha=0.45, color="tab:blue", label="per step")
    window = max(1, epochs[0]["step"] if epochs else 1)
    smoothed, total = [], 0.0
    for i, value in enumerate(losses):
        total += value - (losses[i - window] if i >= window else 0.0)
        smoothed.append(total / min(i + 1, window))
    left.plot(steps, smoothed, lw=1.5, color="tab:blue", label=f"mean of {window} steps")
    left.set_xlabel("step")
    left.set_ylabel(f"training loss ({loss_name})")
    left.set_yscale("log" if losses and min(losses) > 0 else "linear")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)

    for key, label, color in (("test_accuracy", "real test accuracy", "tab:green"),
                              ("val_agreement", "synthetic val agreement", "tab:orange")):
        scored = [record for record in epochs if record.get(key) is not None]  # evaluated epochs only
        if scored:
            right.plot([r["step"] for r in scored], [r[key] for r in scored], marker="o", ms=3, color=color,
                       label=label)
    if teacher_accuracy is not None:
        right.axhline(teacher_accuracy, ls="--", color="gray", label=f"teacher test accuracy {teacher_accuracy:.3f}")
    right.set_xlabel("step")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=8, loc="lower right")
    right.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
