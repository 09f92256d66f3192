"""What a finished dataset looks like: summary.json, class_relationships.png, preview.png.

Read back from the files on disk (not from memory), so the report describes exactly what was
stored, whichever process or run wrote each shard.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from dfnas.data.writer import MANIFEST
from dfnas.files import atomic_write_bytes, atomic_write_json

PREVIEW_IMAGES = 64

WEAK_CLASS = 0.9  # per-class agreement below this is reported as a failing class


def load_shards(root: Path) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    manifest = json.loads((root / MANIFEST).read_text())
    shards = [load_file(str(root / entry["file"])) for entry in manifest["shards"]]
    images = torch.cat([s["images"] for s in shards])
    soft_labels = torch.cat([s["soft_labels"] for s in shards])
    targets = torch.cat([s["targets"] for s in shards])
    return manifest, images, soft_labels, targets


def summarize(manifest: dict, soft_labels: torch.Tensor, targets: torch.Tensor) -> dict:
    """Teacher confidence, agreement with the targets, per-class counts, mean soft label per target class."""
    class_names = manifest["teacher"]["class_names"]
    num_classes = len(class_names)
    probabilities = torch.softmax(soft_labels.double(), dim=1)
    confidence, predicted = probabilities.max(dim=1)
    relationships = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    relationships.index_add_(0, targets, probabilities)
    target_counts = torch.bincount(targets, minlength=num_classes)
    relationships /= target_counts.clamp(min=1).unsqueeze(1)
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, targets, (predicted == targets).double())
    class_agreement = hits / target_counts.clamp(min=1)
    return {
        "num_images": int(targets.numel()),
        "mean_teacher_confidence": float(confidence.mean()),
        "agreement_with_targets": float((predicted == targets).double().mean()),
        "class_agreement": {name: round(float(v), 6) for name, v in zip(class_names, class_agreement)},
        "class_self_probability": {name: round(float(relationships[i, i]), 6) for i, name in enumerate(class_names)},
        "target_counts": dict(zip(class_names, target_counts.tolist())),
        "predicted_counts": dict(zip(class_names, torch.bincount(predicted, minlength=num_classes).tolist())),
        "class_relationships": {
            "rows": "target class",
            "columns": "mean teacher probability",
            "matrix": [[round(v, 6) for v in row] for row in relationships.tolist()],
        },
    }


def weak_classes(summary: dict, threshold: float = WEAK_CLASS) -> dict[str, float]:
    """Classes whose images the teacher assigns to their target less often than `threshold`."""
    return {name: value for name, value in summary["class_agreement"].items() if value < threshold}


def _save_figure(figure, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def plot_relationships(summary: dict, class_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    matrix = summary["class_relationships"]["matrix"]
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size * 0.85))
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0)
    axes.set_xticks(range(len(class_names)), class_names, rotation=90 if len(class_names) > 12 else 0)
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("teacher class (mean soft label)")
    axes.set_ylabel("target class")
    axes.set_title("class relationships in the soft labels")
    figure.colorbar(image, ax=axes)
    _save_figure(figure, path)
    plt.close(figure)


def plot_preview(images: torch.Tensor, soft_labels: torch.Tensor, targets: torch.Tensor, class_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    count = min(PREVIEW_IMAGES, images.shape[0])
    columns = min(8, count)
    rows = math.ceil(count / columns)
    probabilities = torch.softmax(soft_labels[:count].double(), dim=1)
    figure, grid = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows), squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for i in range(count):
        axes = grid.flat[i]
        picture = images[i].permute(1, 2, 0).numpy()
        if picture.shape[2] == 1:
            axes.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            axes.imshow(picture)
        confidence, top = probabilities[i].max(dim=0)
        axes.set_title(f"{class_names[int(top)]} {confidence:.2f}\n(target {class_names[int(targets[i])]})", fontsize=7)
    _save_figure(figure, path)
    plt.close(figure)


def write_report(root: Path) -> dict:
    """Write summary.json, class_relationships.png and preview.png into `root`; return the summary."""
    manifest, images, soft_labels, targets = load_shards(root)
    class_names = [str(name) for name in manifest["teacher"]["class_names"]]
    summary = summarize(manifest, soft_labels, targets)
    atomic_write_json(root / "summary.json", summary)
    plot_relationships(summary, class_names, root / "class_relationships.png")
    plot_preview(images, soft_labels, targets, class_names, root / "preview.png")
    return summary
