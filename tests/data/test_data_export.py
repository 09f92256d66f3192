"""PNG export: ImageFolder layout, CSV of soft labels, atomic replace, CLI exit codes."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from dfnas.cli.export import main as export_main
from dfnas.data.export import class_folder_names, export_png
from dfnas.data.synthetic import load_synthetic


def _rows(out) -> list[dict[str, str]]:
    with open(out / "soft_labels.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_export_writes_class_folders_pngs_and_csv(make_synthetic, tmp_path):
    root = make_synthetic(shard_counts=(6, 6))
    out = tmp_path / "png"
    assert export_png(root, out, temperature=2.0, val_fraction=0.5) == 12
    data = load_synthetic(root)
    assert sorted(path.name for path in out.iterdir()) == ["class0", "class1", "class2", "class3", "soft_labels.csv"]
    rows = _rows(out)
    assert list(rows[0]) == ["file", "target", "split", "p_class0", "p_class1", "p_class2", "p_class3"]
    assert [row["file"] for row in rows] == [f"class{i % 4}/{i:02d}.png" for i in range(12)]
    expected_probabilities = torch.softmax(data.soft_labels / 2.0, dim=1)
    val_indices = set(load_synthetic(root, "val", val_fraction=0.5).indices.tolist())
    for index, row in enumerate(rows):
        assert int(row["target"]) == int(data.targets[index])
        assert row["split"] == ("val" if index in val_indices else "train")
        probabilities = torch.tensor([float(row[f"p_class{k}"]) for k in range(4)])
        assert torch.allclose(probabilities, expected_probabilities[index], atol=1e-7)
        pixels = np.array(Image.open(out / row["file"]))
        assert pixels.dtype == np.uint8 and np.array_equal(pixels, data.images[index, 0].numpy())


def test_rgb_export_round_trips_pixels(make_synthetic, tmp_path):
    root = make_synthetic(shard_counts=(3,), canvas=(3, 10, 9), crop=(8, 8))
    export_png(root, tmp_path / "png")
    pixels = np.array(Image.open(tmp_path / "png" / "class2" / "2.png"))
    assert pixels.shape == (10, 9, 3)
    assert np.array_equal(pixels, load_synthetic(root).images[2].permute(1, 2, 0).numpy())


def test_existing_export_is_kept_unless_overwrite(make_synthetic, tmp_path):
    out = tmp_path / "png"
    export_png(make_synthetic(shard_counts=(4,)), out)
    with pytest.raises(ValueError, match="not empty"):
        export_png(make_synthetic(shard_counts=(8,)), out)
    assert len(_rows(out)) == 4
    export_png(make_synthetic(shard_counts=(8,)), out, overwrite=True)
    assert len(_rows(out)) == 8
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == [], "no staging left behind"


def test_failed_export_leaves_nothing(make_synthetic, tmp_path):
    root = make_synthetic()
    (root / "shard-00001.safetensors").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="sha256"):
        export_png(root, tmp_path / "png")
    assert not (tmp_path / "png").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_class_folder_names_are_safe_and_distinct():
    assert class_folder_names(("cat", "../dog", ".hidden", "a b")) == ["cat", "_dog", "hidden", "a_b"]
    with pytest.raises(ValueError, match="distinct"):
        class_folder_names(("a/b", "a_b"))


def test_cli_exports_and_reports(make_synthetic, tmp_path, capsys):
    root = make_synthetic(shard_counts=(5,))
    assert export_main([str(root), str(tmp_path / "png"), "--temperature", "3"]) == 0
    assert "wrote 5 images" in capsys.readouterr().out
    assert len(_rows(tmp_path / "png")) == 5


@pytest.mark.parametrize(
    "argv_tail",
    [["--temperature", "0"], ["--temperature", "nan"], ["--val-fraction", "1.5"]],
)
def test_cli_bad_input_exits_2_with_one_line(make_synthetic, tmp_path, capsys, argv_tail):
    root = make_synthetic(shard_counts=(5,))
    assert export_main([str(root), str(tmp_path / "png"), *argv_tail]) == 2
    error = capsys.readouterr().err
    assert error.startswith("dfnas-export: error:") and error.count("\n") == 1
    assert not (tmp_path / "png").exists()


def test_cli_missing_dataset_exits_2(tmp_path, capsys):
    assert export_main([str(tmp_path / "nothing"), str(tmp_path / "png")]) == 2
    assert "does not exist" in capsys.readouterr().err
