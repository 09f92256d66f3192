"""Writes a synthetic dataset directory (docs/synthetic-format.md, version 1).

Rules: every file goes to a temporary name in the same directory and is renamed into place;
shards are written before the manifest that lists them; the manifest carries each shard's sha256.
While a run is in progress the manifest has `"complete": false` and lists the shards finished so
far, so an interrupted run can be resumed: listed shards whose bytes still match their sha256 are
kept, everything else is (re)generated.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from dfnas.config import UsageError
from dfnas.files import atomic_write_bytes, atomic_write_json, remove_leftover_temporaries, sha256_file

FORMAT = "dfnas-synthetic"
VERSION = 1
MANIFEST = "manifest.json"


class DatasetWriteError(UsageError):
    """The output directory cannot take this dataset (unwritable, other config, unknown format)."""


@dataclass(frozen=True)
class ShardRecord:
    file: str
    index: int
    count: int
    sha256: str


def shard_file_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def shard_bytes(images: torch.Tensor, soft_labels: torch.Tensor, targets: torch.Tensor) -> bytes:
    """The safetensors serialization of one shard, after checking dtypes and shapes."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be uint8 (n, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n = images.shape[0]
    if soft_labels.dtype != torch.float32 or soft_labels.dim() != 2 or soft_labels.shape[0] != n:
        raise ValueError(f"soft_labels must be float32 ({n}, K), got {soft_labels.dtype} {tuple(soft_labels.shape)}")
    if targets.dtype != torch.int64 or tuple(targets.shape) != (n,):
        raise ValueError(f"targets must be int64 ({n},), got {targets.dtype} {tuple(targets.shape)}")
    if not bool(torch.isfinite(soft_labels).all()):
        raise ValueError("soft_labels contain NaN or infinite values; refusing to store them")
    tensors = {"images": images, "soft_labels": soft_labels, "targets": targets}
    return safetensors_bytes({name: t.detach().cpu().contiguous() for name, t in tensors.items()})


def check_writable(root: Path) -> None:
    """Create `root` if needed and prove a file can be created in it; clear error otherwise."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test.", dir=root)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise DatasetWriteError(f"output directory {str(root)!r} is not writable: {error.strerror or error}") from None


def config_differences(existing: dict, requested: dict) -> list[str]:
    keys = sorted(set(existing) | set(requested))
    return [f"{key}: {existing.get(key)!r} on disk vs {requested.get(key)!r} requested"
            for key in keys if existing.get(key) != requested.get(key)]


class DatasetWriter:
    """Owns one dataset directory: plans which shards still need writing and keeps the manifest.

    `header` holds the manifest's fixed fields: num_images, canvas, crop, config, teacher.
    `shard_counts[i]` is the image count shard i must have.
    """

    def __init__(self, root: str | os.PathLike, header: dict, shard_counts: list[int], *, resume: bool,
                 write_manifest: bool = True) -> None:
        self.root = Path(root)
        self.header = json.loads(json.dumps(header))  # plain JSON values, as they will compare on disk
        self.shard_counts = list(shard_counts)
        self.records: dict[int, ShardRecord] = {}
        self.owns_manifest = write_manifest
        self.finished = False
        check_writable(self.root)
        manifest_path = self.root / MANIFEST
        if manifest_path.exists() and not _lists_shards(manifest_path):
            pass  # a run that stopped before its first shard: nothing to keep, start over
        elif manifest_path.exists():
            if not resume:
                raise DatasetWriteError(
                    f"{str(self.root)!r} already holds a synthetic dataset; pass --resume to continue it or choose another --out")
            self._adopt(manifest_path)
            if self.owns_manifest:
                remove_leftover_temporaries(self.root)
        if self.owns_manifest:
            self.write_manifest()

    def _adopt(self, manifest_path: Path) -> None:
        """Keep the verified shards of an existing manifest with the same config and teacher."""
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as error:
            raise DatasetWriteError(f"cannot read {str(manifest_path)!r}: {error}") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise DatasetWriteError(
                f"{str(manifest_path)!r} is not a {FORMAT} version {VERSION} manifest "
                f"(format {manifest.get('format')!r}, version {manifest.get('version')!r})")
        for key in ("config", "teacher"):
            differences = config_differences(manifest.get(key) or {}, self.header[key])
            if differences:
                raise DatasetWriteError(
                    f"cannot resume {str(self.root)!r}: its {key} differs from the requested one ({'; '.join(differences)})")
        for entry in manifest.get("shards", []):
            record = _shard_record(entry, manifest_path)
            if self.verify(record):
                self.records[record.index] = record

    def verify(self, record: ShardRecord) -> bool:
        """True if the shard file exists, has the expected count slot, and matches its sha256."""
        path = self.root / record.file
        return (
            0 <= record.index < len(self.shard_counts)
            and record.file == shard_file_name(record.index)
            and record.count == self.shard_counts[record.index]
            and path.is_file()
            and sha256_file(path) == record.sha256
        )

    def pending(self) -> list[int]:
        """Indices of the shards still to be (re)generated."""
        return [i for i in range(len(self.shard_counts)) if i not in self.records]

    def write_shard(self, index: int, images: torch.Tensor, soft_labels: torch.Tensor, targets: torch.Tensor) -> ShardRecord:
        """Write shard `index` atomically and return its record (the manifest is not touched)."""
        if images.shape[0] != self.shard_counts[index]:
            raise ValueError(f"shard {index} must hold {self.shard_counts[index]} images, got {images.shape[0]}")
        data = shard_bytes(images, soft_labels, targets)
        name = shard_file_name(index)
        atomic_write_bytes(self.root / name, data)
        return ShardRecord(file=name, index=index, count=images.shape[0], sha256=hashlib.sha256(data).hexdigest())

    def add(self, records: list[ShardRecord]) -> None:
        """Record finished shards and, if this writer owns it, rewrite the manifest listing them."""
        for record in records:
            self.records[record.index] = record
        if self.owns_manifest:
            self.write_manifest()

    def write_manifest(self) -> None:
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "complete": self.finished,
            **self.header,
            "shards": [asdict(self.records[i]) for i in sorted(self.records)],
        }
        atomic_write_json(self.root / MANIFEST, manifest)

    def finish(self) -> None:
        """Verify every shard on disk, then write the manifest with `complete: true`."""
        bad = [i for i, record in sorted(self.records.items()) if not self.verify(record)]
        if bad or self.pending():
            raise DatasetWriteError(f"dataset in {str(self.root)!r} is incomplete: missing or corrupt shards {bad or self.pending()}")
        self.finished = True
        self.write_manifest()


def _lists_shards(manifest_path: Path) -> bool:
    """Whether an existing manifest records any shard (an unreadable one counts: never discard it)."""
    try:
        return bool(json.loads(manifest_path.read_text()).get("shards", True))
    except (OSError, ValueError, AttributeError):
        return True


def _shard_record(entry, manifest_path: Path) -> ShardRecord:
    """A manifest's shard entry, checked: the keys and types of `ShardRecord`."""
    types = {"file": str, "index": int, "count": int, "sha256": str}
    if (not isinstance(entry, dict) or set(entry) != set(types)
            or any(not isinstance(entry[k], t) or isinstance(entry[k], bool) for k, t in types.items())):
        raise DatasetWriteError(f"{str(manifest_path)!r} has a malformed shard entry {entry!r}; expected keys "
                                f"{', '.join(types)} with types {', '.join(t.__name__ for t in types.values())}")
    return ShardRecord(**entry)
