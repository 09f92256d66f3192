"""The picture of a pruning run: what the search saw, and where the distilled networks ended."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from dfnas.files import atomic_write_bytes

COLORS = {"searched": "tab:red", "uniform": "tab:blue"}


def accuracy_vs_macs(path: Path, candidates: Sequence[dict], networks: dict, teacher: dict, budget) -> None:
    """Left: every scored candidate's synthetic val agreement after BN recalibration (before any
    training) against its MACs, the budget band shaded. Right: the distilled networks' real test
    accuracy (or val agreement) against their MACs, with the teacher's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.axvspan(budget.low / 1e6, budget.high / 1e6, color="gray", alpha=0.15, label="MACs budget band")
    left.scatter([c["macs"] / 1e6 for c in candidates], [c["agreement"] for c in candidates], s=8, alpha=0.6,
                 color="tab:gray", label="candidates (BN recalibrated, untrained)")
    for name, network in networks.items():
        left.scatter([network["macs"] / 1e6], [network["before_distillation"]["agreement"]], s=40,
                     color=COLORS.get(name, "tab:green"), label=f"{name} (before distillation)")
    left.set_xlabel("MMACs per image")
    left.set_ylabel("agreement with the teacher (synthetic val)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)

    key = "test_accuracy" if teacher["test_accuracy"] is not None else "val_agreement"
    for name, network in networks.items():
        right.scatter([network["macs"] / 1e6], [network[key]], s=50, color=COLORS.get(name, "tab:green"),
                      label=f"{name}: {network[key]:.3f}")
    if teacher["test_accuracy"] is not None:
        right.scatter([teacher["macs"] / 1e6], [teacher["test_accuracy"]], s=50, marker="*", color="black",
                      label=f"teacher: {teacher['test_accuracy']:.3f}")
    right.set_xlabel("MMACs per image")
    right.set_ylabel("real test accuracy" if key == "test_accuracy" else "synthetic val agreement")
    right.set_title("after distillation on the synthetic set", fontsize=9)
    right.legend(fontsize=8, loc="lower right")
    right.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
