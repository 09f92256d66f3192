"""The architecture file: one JSON schema for every space, plus converters and a model builder.

```json
{"space": "spos", "version": 1,
 "config": {... the space's config dataclass ...},
 "choices": [2, 1, 0, ...],
 "derived": {"flops": 322918720, "params": 3558464, "latency_ms": 12.3}}
```

`choices` is, per space: `darts` -> `{"normal": [[op, input], x8], "normal_concat": [2,3,4,5],
"reduce": ..., "reduce_concat": ...}` (the reference `Genotype`); `spos` -> one int in 0..3 per
layer; `proxyless` -> one op name per searchable block (`"5x5_MBConv6"`, `"zero"`).
`derived.flops` are multiply-accumulates of one sample, `derived.params` the inference
parameters; both are recomputed on load and must match. `latency_ms` is optional (measured or
from a latency table; it is not checked).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from torch import nn

from dfnas.files import atomic_write_json
from dfnas.nas.profile import CostTable, arch_cost
from dfnas.nas.spaces import SPACE_NAMES, get_space
from dfnas.nas.spaces.darts import DartsConfig, Genotype, as_genotype
from dfnas.nas.spaces.proxyless_netconfig import from_net_config, to_net_config
from dfnas.nas.spaces.spos import SposConfig

FORMAT_VERSION = 1
_TOP_KEYS = ("space", "version", "config", "choices", "derived")


@dataclass(frozen=True)
class Architecture:
    """A validated architecture: space name, config dataclass, choices, derived costs."""

    space: str
    config: Any
    choices: Any
    derived: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        entry = get_space(self.space)
        return {"space": self.space, "version": FORMAT_VERSION,
                "config": json.loads(json.dumps(dataclasses.asdict(self.config))),
                "choices": entry.choices_to_json(self.choices), "derived": dict(self.derived)}

    @classmethod
    def from_dict(cls, data: Any) -> "Architecture":
        """Validate an architecture dict; raises `ValueError` naming the first problem."""
        if not isinstance(data, dict):
            raise ValueError(f"architecture must be a JSON object, got {type(data).__name__}")
        missing = [k for k in _TOP_KEYS if k not in data]
        if missing:
            raise ValueError(f"architecture is missing {missing}")
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise ValueError(f"architecture has unknown keys {unknown}; expected {list(_TOP_KEYS)}")
        if data["space"] not in SPACE_NAMES:
            raise ValueError(f"unknown search space {data['space']!r}; expected one of {list(SPACE_NAMES)}")
        if data["version"] != FORMAT_VERSION:
            raise ValueError(f"unsupported architecture version {data['version']!r}; this dfnas reads {FORMAT_VERSION}")
        entry = get_space(data["space"])
        config = config_from_dict(entry.config_type, data["config"], data["space"])
        try:
            choices = entry.choices_from_json(data["choices"])
        except TypeError as err:
            raise ValueError(f"{data['space']}: malformed choices: {err}") from None
        entry.check_choices(config, choices)
        arch = cls(data["space"], config, choices, _check_derived(data["derived"]))
        expected = derive(arch.space, arch.config, arch.choices)
        for key in ("flops", "params"):
            if arch.derived[key] != expected[key]:
                raise ValueError(f"derived.{key} is {arch.derived[key]} but the architecture has {expected[key]}")
        return arch

    def build(self) -> nn.Module:
        """The standalone network (freshly initialized)."""
        return get_space(self.space).build_network(self.config, self.choices)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Architecture":
        with open(path) as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON: {err}") from None
        return cls.from_dict(data)


def config_from_dict(config_type: type, data: Any, space: str) -> Any:
    """Build a config dataclass from JSON, checking keys and value types against the defaults."""
    if not isinstance(data, dict):
        raise ValueError(f"{space}: config must be an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ValueError(f"{space}: unknown config keys {unknown}; expected some of {list(fields)}")
    for key, value in data.items():
        default = fields[key].default
        ok = {
            bool: lambda v: isinstance(v, bool),
            int: lambda v: isinstance(v, int) and not isinstance(v, bool),
            float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            str: lambda v: isinstance(v, str),
            tuple: lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
        }[type(default)](value)
        if not ok:
            raise ValueError(f"{space}: config.{key} = {value!r} should be like {default!r}")
    try:
        return config_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except TypeError as err:
        raise ValueError(f"{space}: invalid config: {err}") from None


def _check_derived(derived: Any) -> dict:
    if not isinstance(derived, dict):
        raise ValueError(f"derived must be an object, got {type(derived).__name__}")
    for key in ("flops", "params"):
        value = derived.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"derived.{key} must be a non-negative int, got {value!r}")
    unknown = [k for k in derived if k not in ("flops", "params", "latency_ms")]
    if unknown:
        raise ValueError(f"derived has unknown keys {unknown}; expected flops, params, latency_ms")
    latency = derived.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float))
                                or not math.isfinite(latency) or latency < 0):
        raise ValueError(f"derived.latency_ms must be a non-negative number, got {latency!r}")
    return dict(derived)


def derive(space: str, config: Any, choices: Any, latency_table: CostTable | None = None) -> dict:
    """The `derived` block: table-based MACs and params, and latency if a table is given."""
    macs, params = arch_cost(space, config, choices)
    derived: dict = {"flops": macs, "params": params}
    if latency_table is not None:
        derived["latency_ms"] = latency_table.cost(get_space(space).selection(config, choices))
    return derived


def make_architecture(space: str, config: Any, choices: Any,
                      latency_table: CostTable | None = None) -> Architecture:
    """Validate `choices` in `space` at `config` and fill in `derived`."""
    entry = get_space(space)
    if not isinstance(config, entry.config_type):
        raise ValueError(f"{space}: config must be a {entry.config_type.__name__}, got {type(config).__name__}")
    entry.check_choices(config, choices)
    return Architecture(space, config, choices, derive(space, config, choices, latency_table))


def from_genotype(genotype: Any, config: DartsConfig | None = None) -> Architecture:
    """A DARTS genotype as an architecture (default: the 20-cell, 36-channel CIFAR network)."""
    return make_architecture("darts", config or DartsConfig.cifar_eval(), as_genotype(genotype))


def to_genotype(arch: Architecture) -> Genotype:
    _expect_space(arch, "darts")
    return as_genotype(arch.choices)


def from_spos_tuple(choice: Sequence[int], config: SposConfig | None = None) -> Architecture:
    """An SPOS choice tuple as an architecture (default: the 20-layer ImageNet network)."""
    return make_architecture("spos", config or SposConfig.imagenet(), tuple(choice))


def to_spos_tuple(arch: Architecture) -> tuple[int, ...]:
    _expect_space(arch, "spos")
    return tuple(arch.choices)


def from_proxyless_net_config(net_config: dict, input_size: int = 224) -> Architecture:
    config, choices = from_net_config(net_config, input_size)
    return make_architecture("proxyless", config, choices)


def to_proxyless_net_config(arch: Architecture) -> dict:
    _expect_space(arch, "proxyless")
    return to_net_config(arch.config, arch.choices)


def _expect_space(arch: Architecture, space: str) -> None:
    if arch.space != space:
        raise ValueError(f"expected a {space} architecture, got {arch.space}")


def as_architecture(value: Any) -> Architecture:
    """Any supported form: an `Architecture`, an architecture dict, a DARTS `Genotype`, an SPOS
    tuple/list of ints, or a Proxyless net.config dict."""
    if isinstance(value, Architecture):
        return value
    if isinstance(value, Genotype):
        return from_genotype(value)
    if isinstance(value, dict):
        if "space" in value:
            return Architecture.from_dict(value)
        if "blocks" in value:
            return from_proxyless_net_config(value)
        raise ValueError("dict is neither an architecture (no 'space') nor a net.config (no 'blocks')")
    if isinstance(value, (tuple, list)) and all(isinstance(k, int) for k in value):
        return from_spos_tuple(value)
    raise ValueError(f"cannot read an architecture from {type(value).__name__}")


def build_model(value: Any) -> nn.Module:
    """The standalone network of any form `as_architecture` accepts."""
    return as_architecture(value).build()
