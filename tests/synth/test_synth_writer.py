"""The dataset directory: format, atomic shards, resume, corruption, config mismatch, determinism."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dfnas.data.writer import DatasetWriteError, DatasetWriter
from dfnas.files import sha256_file
from dfnas.synth.config import SynthConfig
from dfnas.synth.run import synthesize_dataset

from synth_helpers import make_tiny_teacher

TINY = SynthConfig(num_images=10, batch_size=2, rounds=2, iterations=2, canvas=30)


def shard_bytes(root):
    return {path.name: path.read_bytes() for path in sorted(root.glob("shard-*.safetensors"))}


def test_dataset_follows_the_format(tmp_path):
    result = synthesize_dataset(TINY, tmp_path / "out", teacher=make_tiny_teacher())
    root = tmp_path / "out"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["format"] == "dfnas-synthetic" and manifest["version"] == 1 and manifest["complete"]
    assert manifest["num_images"] == 10 and manifest["canvas"] == [1, 30, 30] and manifest["crop"] == [28, 28]
    assert manifest["config"] == result.config.to_dict() and manifest["config"]["canvas"] == 30
    assert set(manifest["teacher"]) == {"name", "sha256", "num_classes", "class_names", "input_size", "in_channels", "mean", "std", "flip_ok"}
    assert [s["index"] for s in manifest["shards"]] == [0, 1, 2] and sum(s["count"] for s in manifest["shards"]) == 10
    for entry in manifest["shards"]:
        assert sha256_file(root / entry["file"]) == entry["sha256"]
        tensors = load_file(str(root / entry["file"]))
        assert tensors["images"].dtype == torch.uint8 and tensors["images"].shape == (entry["count"], 1, 30, 30)
        assert tensors["soft_labels"].dtype == torch.float32 and tensors["soft_labels"].shape == (entry["count"], 10)
        assert tensors["targets"].dtype == torch.int64
    assert not list(root.glob(".*.tmp"))
    assert {"summary.json", "preview.png", "class_relationships.png"} <= {p.name for p in root.iterdir()}
    summary = json.loads((root / "summary.json").read_text())
    assert sum(summary["target_counts"].values()) == 10 and len(summary["class_relationships"]["matrix"]) == 10


def test_same_seed_and_config_give_the_same_bytes(tmp_path):
    synthesize_dataset(TINY, tmp_path / "a", teacher=make_tiny_teacher())
    synthesize_dataset(TINY, tmp_path / "b", teacher=make_tiny_teacher())
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    synthesize_dataset(TINY.__class__(**{**TINY.to_dict(), "seed": 1}), tmp_path / "c", teacher=make_tiny_teacher())
    assert shard_bytes(tmp_path / "a") != shard_bytes(tmp_path / "c")


def test_corrupted_and_missing_shards_are_regenerated_on_resume(tmp_path):
    root = tmp_path / "out"
    synthesize_dataset(TINY, root, teacher=make_tiny_teacher())
    original = shard_bytes(root)
    corrupted = bytearray((root / "shard-00001.safetensors").read_bytes())
    corrupted[-5] ^= 0xFF
    (root / "shard-00001.safetensors").write_bytes(bytes(corrupted))
    (root / "shard-00002.safetensors").unlink()
    result = synthesize_dataset(TINY, root, resume=True, teacher=make_tiny_teacher())
    assert result.shards_written == [1, 2]
    assert shard_bytes(root) == original
    assert json.loads((root / "manifest.json").read_text())["complete"]


def test_existing_dataset_needs_resume_and_the_same_config(tmp_path):
    root = tmp_path / "out"
    synthesize_dataset(TINY, root, teacher=make_tiny_teacher())
    with pytest.raises(DatasetWriteError, match="--resume"):
        synthesize_dataset(TINY, root, teacher=make_tiny_teacher())
    other = SynthConfig(**{**TINY.to_dict(), "iterations": 3})
    with pytest.raises(DatasetWriteError, match="iterations: 2 on disk vs 3 requested"):
        synthesize_dataset(other, root, resume=True, teacher=make_tiny_teacher())
    # A complete dataset resumed with the same config is verified and left as it is.
    assert synthesize_dataset(TINY, root, resume=True, teacher=make_tiny_teacher()).shards_written == []


def test_partial_manifest_lists_only_finished_shards(tmp_path):
    header = {"num_images": 4, "canvas": [1, 4, 4], "crop": [2, 2], "config": {"seed": 0}, "teacher": {"name": "t"}}
    writer = DatasetWriter(tmp_path, header, [2, 2], resume=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["shards"] == []
    record = writer.write_shard(0, torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64))
    assert json.loads((tmp_path / "manifest.json").read_text())["shards"] == []  # shard first ...
    writer.add([record])  # ... manifest after
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["shards"][0]["sha256"] == record.sha256 and manifest["complete"] is False
    assert writer.pending() == [1]
    with pytest.raises(ValueError, match="must hold 2 images"):
        writer.write_shard(1, torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, 3), torch.zeros(3, dtype=torch.int64))


def test_unwritable_output_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="not writable"):
        synthesize_dataset(TINY, blocker / "out", teacher=make_tiny_teacher())


def test_the_readers_accept_what_the_writer_wrote(tmp_path):
    from dfnas.data.synthetic import SyntheticDataset, read_manifest, verify_shard

    synthesize_dataset(TINY, tmp_path / "out", teacher=make_tiny_teacher())
    manifest = read_manifest(tmp_path / "out")
    assert manifest.shards and all(verify_shard(tmp_path / "out", entry) for entry in manifest.shards)
    image, soft_label = SyntheticDataset(tmp_path / "out", split="train")[0][:2]
    assert image.shape == (1, 28, 28) and soft_label.shape == (10,)
