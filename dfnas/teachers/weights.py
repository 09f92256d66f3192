"""Reading weight files safely: safetensors, or a state dict through `torch.load(weights_only=True)`."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from dfnas.teachers.metadata import first_line

# Training checkpoints often nest the state dict one level down under one of these keys.
_NESTED_STATE_KEYS = ("state_dict", "model", "model_state_dict")


def existing_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a torch.save'd state dict (never arbitrary objects)."""
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" not in str(error):  # torch says this when it refuses an object type
            raise ValueError(f"weights file {path} is corrupt or not a weights file: {first_line(error)}") from None
        # torch's message advises weights_only=False, which dfnas never does
        raise ValueError(f"weights file {path} holds pickled Python objects besides tensors, which dfnas does not "
                         f"load (unsafe); save a plain state dict (torch.save(model.state_dict(), ...)) or "
                         f"safetensors") from None
    except Exception as error:  # any parse failure (truncated, wrong format, pickled objects) means unusable
        raise ValueError(f"weights file {path} is corrupt or not a weights file: {first_line(error)}") from None
    if isinstance(loaded, dict):
        for key in _NESTED_STATE_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"weights file {path} does not hold a state dict (a mapping of names to tensors)")
    return loaded


def load_state_dict_strictly(model: nn.Module, state: dict[str, torch.Tensor], path: Path, spec: str) -> None:
    """`model.load_state_dict(state)` with every mismatch reported on one line."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        name for name in set(expected) & set(state) if tuple(expected[name].shape) != tuple(state[name].shape)
    )
    problems = [
        f"{label} {names[:3]}{' ...' if len(names) > 3 else ''} ({len(names)})"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if names
    ]
    if problems:
        raise ValueError(f"weights {path} do not match the model of {spec!r}: " + "; ".join(problems))
    model.load_state_dict(state)
