"""Reading synthetic datasets: round trip, held-out split, crops and augmentation, error paths."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dfnas.data.synthetic import (
    ShardEntry,
    SyntheticDataset,
    load_synthetic,
    read_manifest,
    val_mask,
    verify_shard,
)


def _all_shards(root: Path) -> dict[str, torch.Tensor]:
    shards = [load_file(path) for path in sorted(root.glob("shard-*.safetensors"))]
    return {name: torch.cat([shard[name] for shard in shards]) for name in ("images", "soft_labels", "targets")}


def _edit_manifest(root: Path, **changes) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_round_trip_reads_every_image_in_index_order(make_synthetic):
    root = make_synthetic(shard_counts=(7, 5, 3))
    data = load_synthetic(root)
    written = _all_shards(root)
    assert torch.equal(data.images, written["images"]) and data.images.dtype == torch.uint8
    assert torch.equal(data.soft_labels, written["soft_labels"]) and data.soft_labels.dtype == torch.float32
    assert torch.equal(data.targets, written["targets"]) and data.targets.dtype == torch.int64
    assert torch.equal(data.indices, torch.arange(15))
    assert data.teacher.class_names == ("class0", "class1", "class2", "class3")
    assert data.manifest.canvas == (1, 12, 12) and data.manifest.crop == (8, 8)


def test_manifest_fields_and_shard_verification(make_synthetic):
    root = make_synthetic(shard_counts=(4, 4))
    manifest = read_manifest(root)
    assert manifest.complete and manifest.num_images == 8 and manifest.images_written == 8
    assert manifest.teacher.flip_ok is False and manifest.teacher.mean == (0.5,)
    assert len(manifest.shards) == 2 and all(verify_shard(root, entry) for entry in manifest.shards)
    wrong = ShardEntry(file=manifest.shards[0].file, index=0, count=4, sha256="f" * 64)
    assert not verify_shard(root, wrong)
    (root / manifest.shards[1].file).unlink()
    assert not verify_shard(root, manifest.shards[1])


def test_missing_flip_ok_in_manifest_means_no_flip(make_synthetic):
    assert read_manifest(make_synthetic(flip_ok=None)).teacher.flip_ok is False


@pytest.mark.parametrize("val_fraction", [0.1, 0.25, 0.3])
def test_split_is_disjoint_complete_deterministic_and_per_class(make_synthetic, val_fraction):
    root = make_synthetic(shard_counts=(50, 50, 23))  # 123 images over 4 classes: 31, 31, 31, 30
    train = load_synthetic(root, "train", val_fraction=val_fraction)
    val = load_synthetic(root, "val", val_fraction=val_fraction)
    assert set(train.indices.tolist()).isdisjoint(val.indices.tolist())
    assert sorted(train.indices.tolist() + val.indices.tolist()) == list(range(123))
    everything = load_synthetic(root)
    for label in range(4):
        in_class = int((everything.targets == label).sum())
        assert int((val.targets == label).sum()) == int(in_class * val_fraction + 1e-9)
    again = load_synthetic(root, "val", val_fraction=val_fraction)
    assert torch.equal(again.indices, val.indices) and torch.equal(again.images, val.images)
    assert torch.equal(val.images, everything.images[val.indices])
    assert torch.equal(val.soft_labels, everything.soft_labels[val.indices])


def test_split_holds_out_every_tenth_image_of_each_class():
    targets = torch.tensor([0, 1] * 20)  # 20 per class; ranks 9 and 19 are held out
    expected = torch.zeros(40, dtype=torch.bool)
    expected[[18, 19, 38, 39]] = True
    assert torch.equal(val_mask(targets, 2, 0.1), expected)
    assert not val_mask(targets, 2, 0.0).any()
    with pytest.raises(ValueError, match="val_fraction"):
        val_mask(targets, 2, 1.0)


def test_val_dataset_returns_normalized_center_crop(make_synthetic):
    root = make_synthetic(canvas=(3, 12, 10), crop=(8, 6))
    dataset = SyntheticDataset(root, "val")
    data = load_synthetic(root, "val")
    assert len(dataset) == len(data.targets) > 0
    image, soft_label = dataset[1]
    assert image.shape == (3, 8, 6) and image.dtype == torch.float32
    mean = torch.tensor([0.5, 0.25, 0.125]).view(3, 1, 1)
    std = torch.tensor([0.5, 0.5, 0.25]).view(3, 1, 1)
    expected = (data.images[1, :, 2:10, 2:8].float() / 255 - mean) / std
    assert torch.allclose(image, expected)
    assert torch.equal(soft_label, data.soft_labels[1])
    assert torch.equal(dataset[1][0], image), "val must not be random"


def test_train_dataset_random_crops_stay_inside_the_canvas(make_synthetic):
    root = make_synthetic(canvas=(1, 12, 12), crop=(8, 8))
    dataset = SyntheticDataset(root, "train")
    canvas = load_synthetic(root, "train").images[0, 0].float()
    windows = {
        (top, left): (canvas[top : top + 8, left : left + 8] / 255 - 0.5) / 0.5 for top in range(5) for left in range(5)
    }
    torch.manual_seed(0)
    seen = set()
    for _ in range(200):
        image, _ = dataset[0]
        assert image.shape == (1, 8, 8)
        matches = [offset for offset, window in windows.items() if torch.allclose(image[0], window)]
        assert matches, "a train crop must be an unflipped window of the canvas (flip_ok is false)"
        seen.add(matches[0])
    assert len(seen) > 10


def test_train_dataset_flips_only_when_the_teacher_allows_it(make_synthetic):
    root = make_synthetic(flip_ok=True, canvas=(1, 8, 8), crop=(8, 8))  # crop = canvas: only flips vary
    dataset = SyntheticDataset(root, "train")
    torch.manual_seed(0)
    images = {tuple(dataset[0][0].flatten().tolist()) for _ in range(50)}
    plain = SyntheticDataset(root, "train", augment=False)[0][0]
    assert images == {tuple(plain.flatten().tolist()), tuple(plain.flip(-1).flatten().tolist())}


def test_dataset_crop_option_and_errors(make_synthetic):
    root = make_synthetic(canvas=(1, 12, 12), crop=(8, 8))
    assert SyntheticDataset(root, "train", crop=10)[0][0].shape == (1, 10, 10)
    assert SyntheticDataset(root, "val", crop=(12, 6))[0][0].shape == (1, 12, 6)
    with pytest.raises(ValueError, match="does not fit"):
        SyntheticDataset(root, "train", crop=13)
    with pytest.raises(ValueError, match="split"):
        SyntheticDataset(root, "all")
    with pytest.raises(ValueError, match="unknown split"):
        load_synthetic(root, "test")


def test_torch_dataloader_batches(make_synthetic):
    loader = torch.utils.data.DataLoader(SyntheticDataset(make_synthetic(), "train"), batch_size=16)
    images, soft_labels = next(iter(loader))
    assert images.shape == (16, 1, 8, 8) and soft_labels.shape == (16, 4)


def test_missing_directory_and_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_synthetic(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        load_synthetic(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not readable JSON"),
        ("[]", "JSON object"),
        ('{"format": "dfnas-synthetic", "version": 2}', "version 2"),
        ('{"format": "other", "version": 1}', "'other'"),
    ],
)
def test_corrupt_or_unknown_manifest(make_synthetic, text, message):
    root = make_synthetic()
    (root / "manifest.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_manifest(root)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"canvas": [1, 12]}, "canvas"),
        ({"crop": [16, 16]}, "does not fit"),
        ({"complete": "yes"}, "complete"),
        ({"shards": [{"file": "../escape.safetensors", "index": 0, "count": 1, "sha256": "0"}]}, "plain file name"),
        ({"teacher": {"name": "t"}}, "missing"),
    ],
)
def test_invalid_manifest_fields(make_synthetic, changes, message):
    root = make_synthetic()
    _edit_manifest(root, **changes)
    with pytest.raises(ValueError, match=message):
        read_manifest(root)


def test_incomplete_dataset_says_how_to_resume(make_synthetic):
    root = make_synthetic(complete=False)
    with pytest.raises(ValueError, match=r"incomplete \(100 of 100.*--resume"):
        load_synthetic(root)
    root = make_synthetic()
    _edit_manifest(root, num_images=120)
    with pytest.raises(ValueError, match=r"incomplete \(100 of 120"):
        load_synthetic(root)


def test_dataset_without_images(make_synthetic):
    root = make_synthetic()
    _edit_manifest(root, num_images=0, shards=[])
    with pytest.raises(ValueError, match="holds no images"):
        load_synthetic(root)


def test_missing_shard(make_synthetic):
    root = make_synthetic()
    (root / "shard-00001.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001.*missing.*--resume"):
        load_synthetic(root)


def test_sha_mismatch_is_detected_unless_verification_is_off(make_synthetic):
    root = make_synthetic()
    path = root / "shard-00002.safetensors"
    tensors = load_file(path)
    tensors["images"][0, 0, 0, 0] ^= 1  # one bit of one pixel: same shapes, different bytes
    save_file(tensors, path)
    with pytest.raises(ValueError, match="shard-00002.*sha256.*--resume"):
        load_synthetic(root)
    assert len(load_synthetic(root, verify=False).targets) == 100


def test_garbage_shard_and_wrong_tensors(make_synthetic):
    root = make_synthetic()
    (root / "shard-00000.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_synthetic(root, verify=False)
    root = make_synthetic()
    path = root / "shard-00000.safetensors"
    tensors = load_file(path)
    tensors["images"] = tensors["images"].float()
    save_file(tensors, path)
    with pytest.raises(ValueError, match="'images' is torch.float32"):
        load_synthetic(root, verify=False)
