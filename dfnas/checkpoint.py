"""Checkpoints of resumable runs: atomic `torch.save` of plain tensors and dicts, read back with
`weights_only=True`, and the global RNG state they carry."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from dfnas.config import UsageError
from dfnas.files import atomic_open


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_digest(state: Any) -> str:
    """sha256 of a nested state (dicts, lists, tensors, numbers, strings): equal digests mean
    equal states, bit for bit (the processes of a torchrun search compare theirs)."""
    digest = hashlib.sha256()

    def add(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                digest.update(repr(key).encode())
                add(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"[{len(value)}".encode())
            for item in value:
                add(item)
        else:
            digest.update(repr(value).encode())

    add(state)
    return digest.hexdigest()


class Checkpointer:
    """One checkpoint file, replaced atomically (temporary file in the same folder + rename)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, state: dict[str, Any]) -> None:
        with atomic_open(self.path) as handle:
            torch.save(state, handle)

    def load(self, map_location: torch.device | str = "cpu") -> dict[str, Any]:
        if not self.exists():
            raise FileNotFoundError(f"no checkpoint at {self.path} to resume from")
        try:
            return torch.load(self.path, map_location=map_location, weights_only=True)
        except Exception as error:  # torch raises several types for truncated/corrupt files
            raise ValueError(f"checkpoint {self.path} is unreadable ({error}); delete it to start over") from None


def differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two nested dicts (a checkpoint's settings
    and the requested ones: a resume under other settings is refused, naming them)."""
    changed = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed


def check_same_settings(saved: dict, current: dict, path: str | os.PathLike) -> None:
    """Refuse to resume from checkpoint `path` made under other settings, naming those that differ."""
    changed = differences(saved, current)
    if changed:
        raise UsageError(f"{path} was made with different settings ({', '.join(changed)}); resume with the "
                         f"original ones or use another --out")
