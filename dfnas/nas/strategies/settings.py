"""Building a strategy config from layers: preset, then a TOML file, then command-line flags.

`preset` "reference" keeps the dataclass defaults (the published hyperparameters, reference-size
space); "tiny" applies the strategy's `*_TINY` overrides and the tiny space. Nested dataclasses
(SPOS `evolution`) are TOML tables and `--evolution-<field>` flags.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PRESETS = ("tiny", "reference")


def read_toml(path: str | Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"config file {path} is not valid TOML: {error}") from None


def field_kind(field: dataclasses.Field) -> tuple[type, int | None, bool]:
    """(element type, tuple length or None, optional) of a config field, from its annotation."""
    annotation = str(field.type).replace(" ", "")
    optional = annotation.endswith("|None")
    annotation = annotation.removesuffix("|None")
    if annotation.startswith("tuple["):
        parts = annotation[len("tuple["):-1].split(",")
        return {"float": float, "int": int}[parts[0]], len(parts), optional
    return {"int": int, "float": float, "str": str, "bool": bool}.get(annotation, object), None, optional


def _coerce(value: Any, field: dataclasses.Field, where: str) -> Any:
    kind, length, optional = field_kind(field)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where}: {field.name} cannot be empty")
    if length is not None:
        if not isinstance(value, (list, tuple)) or len(value) != length:
            raise ValueError(f"{where}: {field.name} must be a list of {length} numbers, got {value!r}")
        return tuple(_scalar(v, kind, field.name, where) for v in value)
    return _scalar(value, kind, field.name, where)


def _scalar(value: Any, kind: type, name: str, where: str) -> Any:
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ValueError(f"{where}: {name} = {value!r} should be a {kind.__name__}")
    return value


def apply(config: Any, values: dict, where: str) -> Any:
    """A copy of dataclass `config` with `values` (nested dicts for nested dataclasses) applied."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise ValueError(f"{where}: unknown setting {key!r}; expected some of {sorted(fields)}")
        current = getattr(config, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {key} must be a table of settings")
            changes[name] = apply(current, value, f"{where} [{key}]")
        else:
            changes[name] = _coerce(value, fields[name], where)
    return dataclasses.replace(config, **changes)


def build_config(config_type: type, tiny: dict, preset: str, file_values: dict, flag_values: dict) -> Any:
    """Preset, then the TOML values, then the flags (only those given on the command line)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    config = config_type()
    if preset == "tiny":
        config = apply(config, {**tiny, "space_preset": "tiny"}, "tiny preset")
    else:
        config = apply(config, {"space_preset": "reference"}, "reference preset")
    config = apply(config, file_values, "config file")
    config = apply(config, flag_values, "command line")
    config.check()
    return config
