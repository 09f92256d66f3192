"""Teacher metadata: the JSON sidecar next to a weights file, keyword overrides, validation.

A teacher's metadata is a flat JSON object. Keys read (all others are ignored, so a sidecar may
carry provenance such as training details):

    name          str             defaults to the spec
    class_names   [str, ...]      defaults to "0".."K-1", K from the output on a probe input
    num_classes   int             checked against class_names and the probe output
    input_size    [h, w] or int   required
    in_channels   int             required
    mean, std     [float, ...]    required, one per input channel; pixels in [0, 1]
    flip_ok       bool            horizontal flip valid for the data; defaults to False
    factory_kwargs {str: value}   keyword arguments for a "pkg.module:factory" / timm factory

The sidecar of `weights.safetensors` (or `model.pt`) is `weights.json` (`model.json`) in the same
directory. Keyword overrides given to `load_teacher` win over the sidecar, key by key.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dfnas.data.teacher_record import TeacherInfo

METADATA_KEYS = frozenset(
    {"name", "class_names", "num_classes", "input_size", "in_channels", "mean", "std", "flip_ok", "factory_kwargs"}
)
REQUIRED_KEYS = ("input_size", "in_channels", "mean", "std")


def sidecar_path(weights_path: Path) -> Path:
    return weights_path.with_suffix(".json")


def read_metadata_file(path: Path) -> dict[str, Any]:
    """The metadata keys of a JSON file; {} when the file does not exist."""
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"teacher metadata {path} is not readable JSON: {first_line(error)}") from None
    if not isinstance(content, dict):
        raise ValueError(f"teacher metadata {path} must hold a JSON object, not {type(content).__name__}")
    return {key: value for key, value in content.items() if key in METADATA_KEYS}


def merge_metadata(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - METADATA_KEYS)
    if unknown:
        raise ValueError(f"unknown teacher metadata keyword(s) {unknown}; known: {sorted(METADATA_KEYS)}")
    return {**base, **overrides}


def check_required(metadata: dict[str, Any], spec: str, sidecar: Path | None) -> None:
    """Fail early (before building a model) when the input contract is incomplete."""
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        where = f"in {sidecar} or " if sidecar is not None else ""
        raise ValueError(f"teacher {spec!r} lacks metadata {missing}; give them {where}as keyword arguments to load_teacher")


def input_shape(metadata: dict[str, Any]) -> tuple[int, int, int]:
    """(in_channels, height, width) of one input image, validated."""
    return (_positive_int(metadata["in_channels"], "in_channels"), *_input_size(metadata["input_size"]))


def build_info(name: str, sha256: str, metadata: dict[str, Any], probe_classes: int) -> TeacherInfo:
    """Validate `metadata` against the model's probe output width and freeze it into a TeacherInfo."""
    in_channels, *input_size = input_shape(metadata)
    mean = _per_channel(metadata["mean"], "mean", in_channels)
    std = _per_channel(metadata["std"], "std", in_channels)
    if any(value <= 0 for value in std):
        raise ValueError(f"teacher metadata std must be positive, got {list(std)}")
    num_classes = _positive_int(metadata.get("num_classes", probe_classes), "num_classes")
    class_names = tuple(str(label) for label in metadata.get("class_names", range(num_classes)))
    if len(class_names) != num_classes:
        raise ValueError(f"teacher metadata has {len(class_names)} class_names but num_classes {num_classes}")
    if num_classes != probe_classes:
        raise ValueError(f"teacher outputs {probe_classes} classes but its metadata says {num_classes}")
    flip_ok = metadata.get("flip_ok", False)
    if not isinstance(flip_ok, bool):
        raise ValueError(f"teacher metadata flip_ok must be true or false, got {flip_ok!r}")
    return TeacherInfo(
        name=str(metadata.get("name", name)),
        sha256=sha256,
        num_classes=num_classes,
        class_names=class_names,
        input_size=(input_size[0], input_size[1]),
        in_channels=in_channels,
        mean=mean,
        std=std,
        flip_ok=flip_ok,
    )


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"teacher metadata {key} must be a positive integer, got {value!r}")
    return value


def _input_size(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"teacher metadata input_size must be [height, width] or one int, got {value!r}")
    return (_positive_int(value[0], "input_size"), _positive_int(value[1], "input_size"))


def _per_channel(value: Any, key: str, in_channels: int) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != in_channels
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"teacher metadata {key} must be {in_channels} number(s), one per input channel, got {value!r}")
    return tuple(float(v) for v in value)


def first_line(error: BaseException) -> str:
    """A library's error message cut to one line, for our one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
