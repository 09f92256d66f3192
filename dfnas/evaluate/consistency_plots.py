"""Figures of the consistency study (matplotlib, Agg backend): one scatter per source, one summary."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from dfnas.files import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def source_scatter(path: Path, rows: Sequence[dict], source: str, in_top_half: Sequence[bool], stats: dict,
                   reference: str = "real") -> None:
    """Accuracy on `source` (y) against accuracy on `reference` (x), one labelled point per
    architecture; the reference's top half filled, the rest hollow."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(5.2, 4.4))
    for row, top in zip(rows, in_top_half):
        x, y = row["accuracy"][reference], row["accuracy"][source]
        axis.scatter([x], [y], s=36, color="tab:blue", facecolors="tab:blue" if top else "none", zorder=3)
        axis.annotate(row["id"], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color="0.35")
    a, t = stats["all"], stats["top_half"]
    axis.set_title(f"{source} vs {reference}: rho {_number(a['spearman_rho'])}, tau {_number(a['kendall_tau'])}"
                   f"\ntop half (filled): rho {_number(t['spearman_rho'])}, tau {_number(t['kendall_tau'])}",
                   fontsize=9)
    axis.set_xlabel(f"real test accuracy after training on {reference}")
    axis.set_ylabel(f"real test accuracy after training on {source}")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def agreement_chart(path: Path, stats: dict, names: Sequence[str]) -> None:
    """Spearman rho per source with its interval, over all architectures and over the top half."""
    plt = _pyplot()
    shown = [n for n in names if "all" in stats["sources"][n]]
    fig, axis = plt.subplots(figsize=(max(4.5, 1.1 * len(shown) + 1.5), 3.8))
    for offset, subset, color in ((-0.17, "all", "tab:blue"), (0.17, "top_half", "tab:orange")):
        for i, name in enumerate(shown):
            entry = stats["sources"][name][subset]
            rho, interval = entry["spearman_rho"], entry["spearman_interval"]
            if rho is None:
                continue
            low = interval["low"] if interval["low"] is not None else rho
            high = interval["high"] if interval["high"] is not None else rho
            axis.errorbar([i + offset], [rho], yerr=[[rho - low], [high - rho]], fmt="o", color=color, capsize=3,
                          label=("all" if subset == "all" else "top half") if i == 0 else None)
    axis.axhline(0, color="0.5", lw=0.8)
    axis.set_xticks(range(len(shown)), shown, rotation=20)
    axis.set_ylim(-1.05, 1.05)
    axis.set_ylabel(f"Spearman rho vs {stats['reference']}")
    axis.grid(alpha=0.3, axis="y")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    _save(fig, path)
