"""PNG plots of a search (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(path: Path, panels: dict[str, torch.Tensor], row_labels: Sequence[str] | None,
            col_labels: Sequence[str], title: str) -> None:
    """One heat map per panel (rows x columns of probabilities), side by side, on a colour scale
    spanning the values (a short search stays close to uniform; [0, 1] would hide it)."""
    plt = _pyplot()
    rows = max(len(p) for p in panels.values())
    values_all = torch.cat([p.flatten() for p in panels.values()])
    values_all = values_all[~values_all.isnan()]
    low, high = float(values_all.min()), float(values_all.max())
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 1.0 + 0.3 * rows), squeeze=False)
    for ax, (name, values) in zip(axes[0], panels.items()):
        image = ax.imshow(values.numpy(), vmin=low, vmax=max(high, low + 1e-6), cmap="viridis", aspect="auto")
        ax.set_title(name)
        ax.set_xticks(range(len(col_labels)), col_labels, rotation=60, ha="right", fontsize=7)
        labels = row_labels if row_labels is not None else [str(i) for i in range(len(values))]
        ax.set_yticks(range(len(values)), labels[:len(values)], fontsize=7)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def pareto_scatter(path: Path, flops: Sequence[float], fitness: Sequence[float],
                   generation: Sequence[int], best: tuple[float, float] | None,
                   flops_limit: float | None, ylabel: str, title: str) -> None:
    """Evaluated candidates: MFLOPs vs fitness, coloured by generation; the non-dominated front
    (fewer FLOPs, higher fitness) as a line, the chosen one as a star."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    points = ax.scatter(flops, fitness, c=generation, cmap="viridis", s=18, alpha=0.8)
    fig.colorbar(points, ax=ax, label="generation", ticks=sorted(set(generation)))
    front, best_so_far = [], float("-inf")
    for f, y in sorted(zip(flops, fitness), key=lambda item: (item[0], -item[1])):
        if y > best_so_far:
            front.append((f, y))
            best_so_far = y
    if front:
        ax.step([f for f, _ in front], [y for _, y in front], where="post", color="tab:red",
                label="Pareto front")
    if best is not None:
        ax.scatter([best[0]], [best[1]], marker="*", s=200, color="tab:orange", label="chosen")
    if flops_limit is not None:
        ax.axvline(flops_limit, color="gray", linestyle="--", label="FLOPs limit")
    ax.set_xlabel("MFLOPs (multiply-accumulates)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
