"""The two NAT plots: the final front over the archive, and hypervolume / predictor tau per iteration."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dfnas.nas.strategies.plots import _pyplot


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def front_plot(path: Path, costs: Sequence[float], scores: Sequence[float], iterations: Sequence[int],
               front: Sequence[int], chosen: int, limit: float | None, xlabel: str, ylabel: str) -> None:
    """Every archive member (colour: the iteration that added it; 0 = initial sample), the front
    as a step line, the chosen member as a star, the constraint as a dashed line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    points = ax.scatter(costs, scores, c=iterations, cmap="viridis", s=18, alpha=0.8)
    fig.colorbar(points, ax=ax, label="iteration (0: initial sample)", ticks=_integer_ticks())
    ax.step([costs[i] for i in front], [scores[i] for i in front], where="post", color="tab:red",
            marker="o", markersize=4, label=f"Pareto front ({len(front)})")
    ax.scatter([costs[chosen]], [scores[chosen]], marker="*", s=220, color="tab:orange", zorder=3,
               label="architecture.json")
    if limit is not None:
        ax.axvline(limit, color="gray", linestyle="--", label="constraint")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("NAT: archive and final front (exact evaluations)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def progress_plot(path: Path, iterations: Sequence[int], hypervolume: Sequence[float],
                  taus: Sequence[float | None]) -> None:
    """Hypervolume of the archive (left axis) and the chosen predictor's cross-validated Kendall
    tau (right axis) per iteration; iteration 0 is the initial sample (no predictor yet)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(iterations, hypervolume, marker="o", color="tab:blue", label="hypervolume")
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel("hypervolume (normalized objectives)", color="tab:blue")
    twin = ax.twinx()
    fitted = [(i, t) for i, t in zip(iterations, taus) if t is not None]
    twin.plot([i for i, _ in fitted], [t for _, t in fitted], marker="s", color="tab:green",
              label="predictor Kendall tau (CV)")
    twin.set_ylabel("Kendall tau", color="tab:green")
    twin.set_ylim(-1.05, 1.05)
    ax.set_title("NAT: hypervolume and predictor quality")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
