"""`load_teacher`: turn a teacher spec into a frozen, checked `Teacher`."""
from __future__ import annotations

import importlib
import json
import os
import sys
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfnas.teachers import metadata as meta
from dfnas.teachers.digit_cnn import DigitCNN
from dfnas.teachers.teacher import Teacher
from dfnas.files import sha256_file
from dfnas.teachers.weights import existing_file, load_state_dict_strictly, read_state_dict

BUNDLED_DIR = Path(__file__).resolve().parent
BUNDLED_METADATA = BUNDLED_DIR / "default.json"
DEFAULT_FACTORY = f"{DigitCNN.__module__}:{DigitCNN.__name__}"
_FACTORY_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_SPEC_HELP = "expected 'default', a TorchScript file, 'pkg.module:factory' (with weights=) or 'timm:<name>' (with weights=)"


def load_teacher(
    spec: str | os.PathLike = "default",
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    **metadata_overrides: Any,
) -> Teacher:
    """Load a classifier to synthesize from; it comes back in eval mode with all parameters frozen.

    spec:
      "default"             the bundled digit CNN (`weights=` may replace its bundled weights)
      "path/to/model.pt"    a TorchScript file (it carries its weights; `weights` must be None)
      "pkg.module:factory"  `factory(**factory_kwargs)` builds the model; `weights` is required
      "timm:<name>"         `timm.create_model(name)` with local `weights` (needs timm installed)
    Weights are a .safetensors file or a state dict read with `torch.load(weights_only=True)`.
    Metadata (see `dfnas.teachers.metadata`) comes from the JSON sidecar of the weights (or of the
    TorchScript file), then `metadata_overrides` key by key; the default teacher's comes from the
    bundled default.json. Raises ValueError (one line) when anything does not fit.
    """
    spec, device = os.fspath(spec), torch.device(device)
    factory = None  # what builds the model, where it is rebuildable code
    if spec == "default":
        model, sha256, metadata = _bundled(weights, metadata_overrides)
        factory = DEFAULT_FACTORY
    elif spec.startswith("timm:"):
        model, sha256, metadata = _timm(spec, weights, metadata_overrides)
    elif _FACTORY_SPEC.fullmatch(spec) and not Path(spec).exists():
        model, sha256, metadata = _factory(spec, weights, metadata_overrides)
        factory = spec
    elif Path(spec).is_file() or Path(spec).suffix or "/" in spec:
        model, sha256, metadata = _torchscript(spec, weights, metadata_overrides)
    else:
        raise ValueError(f"unknown teacher spec {spec!r}; {_SPEC_HELP}")

    channels, height, width = meta.input_shape(metadata)
    if not any(_is_batchnorm2d(module) for module in model.modules()):
        raise ValueError(f"teacher {spec!r} has no BatchNorm2d layer; synthesis matches BatchNorm statistics")
    model = model.to(device).eval()
    for parameter in model.parameters():  # per parameter: ScriptModules refuse Module.requires_grad_
        parameter.requires_grad_(False)
    probe_classes = _probe(model, spec, torch.zeros(2, channels, height, width, device=device))
    return Teacher(model=model, info=meta.build_info(spec, sha256, metadata, probe_classes), factory=factory,
                   factory_kwargs=dict(metadata.get("factory_kwargs", {})) if factory else {})


def _bundled(weights: str | os.PathLike | None, overrides: dict[str, Any]) -> tuple[nn.Module, str, dict[str, Any]]:
    bundled = json.loads(BUNDLED_METADATA.read_text())
    metadata = meta.merge_metadata(meta.read_metadata_file(BUNDLED_METADATA), overrides)
    if weights is None:
        path = BUNDLED_DIR / bundled["weights_file"]
        sha256 = sha256_file(existing_file(path, "bundled teacher weights"))
        if sha256 != bundled["sha256"]:
            raise ValueError(
                f"bundled teacher weights {path} do not match the sha256 in {BUNDLED_METADATA}; "
                "reinstall dfnas or re-run `python tools/train_default_teacher.py` from the repository"
            )
    else:
        path = existing_file(weights, "weights file")
        sha256 = sha256_file(path)
    model = DigitCNN(**metadata.get("factory_kwargs", {}))
    load_state_dict_strictly(model, read_state_dict(path), path, "default")
    return model, sha256, metadata


def _factory(spec: str, weights: str | os.PathLike | None, overrides: dict[str, Any]) -> tuple[nn.Module, str, dict[str, Any]]:
    if weights is None:
        raise ValueError(f"teacher spec {spec!r} needs a weights file (weights=...); dfnas never uses random teachers")
    path = existing_file(weights, "weights file")
    metadata = _metadata_for(path, spec, overrides)
    module_name, factory_name = spec.split(":")
    try:
        factory = getattr(import_from_working_directory(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import the factory of teacher spec {spec!r}: {meta.first_line(error)}") from None
    model = _build(factory, spec, metadata.get("factory_kwargs", {}))
    load_state_dict_strictly(model, read_state_dict(path), path, spec)
    return model, sha256_file(path), metadata


def import_from_working_directory(module_name: str):
    """Import `module_name` as `python -m` would: the working directory first on the path, so
    `--teacher mymodel:build` finds ./mymodel.py without setting PYTHONPATH."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    finally:
        if added:
            sys.path.remove(cwd)


def _timm(spec: str, weights: str | os.PathLike | None, overrides: dict[str, Any]) -> tuple[nn.Module, str, dict[str, Any]]:
    try:
        import timm
    except ImportError:
        raise ValueError(f"teacher spec {spec!r} needs the timm package: pip install timm") from None
    if weights is None:
        raise ValueError(f"teacher spec {spec!r} needs a local weights file (weights=...); dfnas never downloads")
    path = existing_file(weights, "weights file")
    metadata = _metadata_for(path, spec, overrides, check=False)
    model_name = spec.removeprefix("timm:")
    model = _build(
        lambda **kwargs: timm.create_model(model_name, pretrained=False, **kwargs), spec, metadata.get("factory_kwargs", {})
    )
    # timm models describe their expected input; the sidecar and overrides still win.
    config = getattr(model, "pretrained_cfg", None) or {}
    from_timm = {}
    if "input_size" in config:
        from_timm = {"in_channels": config["input_size"][0], "input_size": list(config["input_size"][1:])}
    from_timm.update({key: list(config[key]) for key in ("mean", "std") if key in config})
    metadata = {**from_timm, **metadata}
    meta.check_required(metadata, spec, meta.sidecar_path(path))
    load_state_dict_strictly(model, read_state_dict(path), path, spec)
    return model, sha256_file(path), metadata


def _torchscript(spec: str, weights: str | os.PathLike | None, overrides: dict[str, Any]) -> tuple[nn.Module, str, dict[str, Any]]:
    if weights is not None:
        raise ValueError(f"TorchScript teacher {spec} carries its own weights; do not pass weights=")
    path = existing_file(spec, "TorchScript file")
    metadata = _metadata_for(path, spec, overrides)
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # torch.jit.load raises RuntimeError or ValueError depending on the damage
        raise ValueError(f"TorchScript file {path} is corrupt or not TorchScript: {meta.first_line(error)}") from None
    return model, sha256_file(path), metadata


def _metadata_for(path: Path, spec: str, overrides: dict[str, Any], *, check: bool = True) -> dict[str, Any]:
    sidecar = meta.sidecar_path(path)
    metadata = meta.merge_metadata(meta.read_metadata_file(sidecar), overrides)
    if check:
        meta.check_required(metadata, spec, sidecar)
    return metadata


def _build(factory: Any, spec: str, factory_kwargs: dict[str, Any]) -> nn.Module:
    if not isinstance(factory_kwargs, dict):
        raise ValueError(f"teacher metadata factory_kwargs must be a JSON object, got {factory_kwargs!r}")
    try:
        model = factory(**factory_kwargs)
    except Exception as error:  # a user factory can fail in any way; report it as a bad spec
        raise ValueError(f"the factory of teacher spec {spec!r} failed: {meta.first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"the factory of teacher spec {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _is_batchnorm2d(module: nn.Module) -> bool:
    # Submodules of a loaded TorchScript model are RecursiveScriptModules that keep their class name.
    return isinstance(module, nn.BatchNorm2d) or getattr(module, "original_name", None) == "BatchNorm2d"


def _probe(model: nn.Module, spec: str, probe: torch.Tensor) -> int:
    """Number of classes the model outputs on a zero batch of 2; ValueError unless (2, K)."""
    try:
        with torch.no_grad():
            output = model(probe)
    except Exception as error:  # shape/channel mismatches surface as RuntimeError deep inside the model
        raise ValueError(
            f"teacher {spec!r} failed on a probe input of shape {tuple(probe.shape)}: {meta.first_line(error)}"
        ) from None
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"teacher {spec!r} output on a probe input of batch 2 is {shape}; expected (2, num_classes)")
    return int(output.shape[1])
