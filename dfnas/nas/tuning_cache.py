"""Measured speed choices (precision, CPU threads) remembered per machine and configuration, so a
repeated search skips the timing runs of `dfnas.nas.tuning`.

One small JSON file, `tuning.json`, in `$DFNAS_CACHE_DIR`, else `$XDG_CACHE_HOME/dfnas`, else
`~/.cache/dfnas`; deleting it makes the next search measure again. Entries are keyed by everything
that changes which choice is fastest: torch and dfnas versions, CPU model, device, strategy,
space preset, batch size, input size, the user's layout / autocast / thread settings and torch's
thread count. A file that cannot be read or parsed counts as empty (it is a cache).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import torch

import dfnas
from dfnas.files import atomic_write_json

CACHE_ENV = "DFNAS_CACHE_DIR"
FILE_NAME = "tuning.json"


def cache_path() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / FILE_NAME
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dfnas" / FILE_NAME


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; `platform.processor()` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tuning_key(device: torch.device, **configuration: object) -> str:
    """A stable key for `configuration` (JSON-able values) on this machine and software."""
    machine = {"torch": torch.__version__, "dfnas": dfnas.__version__, "cpu": cpu_model(),
               "device": str(device), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    text = json.dumps({**machine, **configuration}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _entries() -> dict:
    try:
        entries = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def load_choice(key: str) -> dict | None:
    """The stored choice for `key`, or None."""
    entry = _entries().get(key)
    return entry if isinstance(entry, dict) else None


def store_choice(key: str, choice: dict) -> None:
    """Remember `choice` (JSON-able) under `key`; a cache directory that cannot be written is skipped."""
    entries = _entries()
    entries[key] = choice
    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache_path(), entries)
    except OSError:
        pass
