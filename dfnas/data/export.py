"""Export a synthetic dataset to PNG files in class folders (torchvision ImageFolder layout).

    out_dir/<class_name>/<index>.png   the whole stored canvas; <index> is the zero-padded position
                                       in the dataset, so names sort in dataset order
    out_dir/soft_labels.csv            file,target,split,p_<class_0>,...,p_<class_K-1>

`p_*` are softmax(soft_labels / temperature) in class-index order. ImageFolder numbers classes by
sorted folder name; that equals the class index only when the class names sort in index order (true
for the default teacher's "0".."9"); otherwise take labels from the CSV's `target` column. The
directory is built under a temporary name next to `out_dir` and renamed into place when finished.
"""
from __future__ import annotations

import csv
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfnas.data.synthetic import load_synthetic, val_mask

CSV_NAME = "soft_labels.csv"
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^\w.+-]")


def class_folder_names(class_names: tuple[str, ...]) -> list[str]:
    """File-system-safe, unique, non-hidden folder names, one per class."""
    folders = [_UNSAFE_NAME_CHARACTERS.sub("_", name).lstrip(".") or "_" for name in class_names]
    if len(set(folders)) != len(folders):
        raise ValueError(f"class names {list(class_names)} do not give distinct folder names")
    return folders


def export_png(
    root: str | Path,
    out_dir: str | Path,
    *,
    temperature: float = 1.0,
    val_fraction: float = 0.1,
    verify: bool = True,
    overwrite: bool = False,
) -> int:
    """Write every image of the dataset at `root` to `out_dir`; return the number of images.

    The CSV's `split` column says which split (`load_synthetic(..., val_fraction=...)`) each image
    belongs to. An existing non-empty `out_dir` is an error unless `overwrite`.
    """
    if not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"export target {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"export target {out_dir} is not empty; choose another directory or overwrite it")
    data = load_synthetic(root, "all", verify=verify)
    teacher = data.teacher
    if data.images.shape[1] not in (1, 3):
        raise ValueError(f"PNG export needs 1 or 3 channels, the dataset has {data.images.shape[1]}")
    folders = class_folder_names(teacher.class_names)
    held_out = val_mask(data.targets, teacher.num_classes, val_fraction)
    probabilities = torch.softmax(data.soft_labels / temperature, dim=1)
    digits = len(str(max(len(data.targets) - 1, 0)))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for folder in folders:
            (staging / folder).mkdir()
        rows = []
        for index in range(len(data.targets)):
            target = int(data.targets[index])
            file = f"{folders[target]}/{index:0{digits}d}.png"
            _to_pil(data.images[index]).save(staging / file)
            split = "val" if held_out[index] else "train"
            rows.append([file, target, split, *(f"{p:.8g}" for p in probabilities[index].tolist())])
        with open(staging / CSV_NAME, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["file", "target", "split", *(f"p_{name}" for name in teacher.class_names)])
            writer.writerows(rows)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; an export is meant to be shared
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(data.targets)


def _to_pil(image: torch.Tensor) -> Image.Image:
    array = image.numpy()  # uint8: PIL picks mode "L" for (H, W) and "RGB" for (H, W, 3)
    if array.shape[0] == 1:
        return Image.fromarray(array[0])
    return Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)))


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished export to `out_dir`, replacing an old one only after the new one exists."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.rename(out_dir, retired / "export")
    os.rename(staging, out_dir)
    shutil.rmtree(retired)
