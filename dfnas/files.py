"""Files every stage writes: atomic replacement (temporary file in the same folder, fsync, rename,
fsync of the folder, so a reader never sees half a file and a killed run leaves the old one),
content hashes, and the exclusive hold a run takes on its output directory."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary handle whose contents replace `path` when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(path: str | os.PathLike) -> None:
    """Make the renames in `path` durable (a crash right after could otherwise undo them)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_leftover_temporaries(directory: str | os.PathLike) -> int:
    """Delete the temporary files `atomic_open` leaves when a run is killed mid-write."""
    leftovers = [p for p in Path(directory).glob(".*.tmp") if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


LOCK_NAME = ".lock"


class DirectoryInUse(ValueError):
    """The output directory cannot be held: another process holds it, or it cannot be created."""


@contextlib.contextmanager
def exclusive_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Hold `path` (created if needed) exclusively for the block: a second holder, in this or
    another process, gets `DirectoryInUse` at once. The hold is an advisory `flock` on
    `path/.lock`, released by the kernel when the process dies, so a killed run never leaves a
    stale lock. If the block fails and leaves nothing in a directory it created, the directory is
    removed again, so a failed start does not block the rerun."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output {path} exists and is not a directory")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise DirectoryInUse(f"output directory {path} is not writable: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise DirectoryInUse(f"{path} is in use by another dfnas run; wait for it or choose another output "
                                 f"directory") from None
        try:
            yield path
        except BaseException:
            if created and {p.name for p in path.iterdir()} <= {LOCK_NAME}:
                shutil.rmtree(path, ignore_errors=True)
            raise
    finally:
        os.close(descriptor)
