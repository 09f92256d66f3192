"""MACs ("FLOPs" as the NAS papers count them), parameters and latency.

Two ways to cost an architecture, which the tests hold equal:
- `count_macs` / `count_params` measure a built model (forward hooks on convs and linears);
- `cost_table(space, config, metric)` lists, from the space's layout, the fixed cost plus the cost
  of every candidate of every slot; `CostTable.cost(selection)` then costs an architecture without
  building it, and `CostTable.expected(probs)` gives the expectation under per-slot probabilities,
  differentiable w.r.t. them (the ProxylessNAS latency/FLOPs loss).

`build_latency_table` measures each fixed part and each candidate op on the current device and
returns a `CostTable` in milliseconds; `save`/`load` keep it as a JSON file (written atomically).
MACs count multiplies of conv and linear layers only (BN folds into the conv; pooling,
activations and additions are not counted), as SPOS, ProxylessNAS and DARTS report them.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch import nn

from dfnas.files import atomic_write_json
from dfnas.nas.spaces import get_space
from dfnas.nas.spaces.base import Layout, Part
from dfnas.nas.spaces.darts import cell_kinds

TABLE_FORMAT = "dfnas-cost-table"
TABLE_VERSION = 1
METRICS = ("macs", "params", "latency_ms")


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of one sample of shape (C, H, W), in eval mode
    (so training-only branches such as the DARTS auxiliary head are not counted)."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        per_pixel = module.weight[0].numel()  # (C_in / groups) * kh * kw
        total += output.numel() * per_pixel

    def linear_hook(module: nn.Linear, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    param = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def count_params(model: nn.Module, exclude_prefixes: Sequence[str] = ("auxiliary",)) -> int:
    """Parameters used at inference. The DARTS auxiliary head is excluded by default, as the
    reference's `count_parameters_in_MB` does."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not any(name.startswith(prefix) for prefix in exclude_prefixes))


@dataclass
class CostTable:
    """Per-part costs of one space at one config, in one metric.

    `fixed` maps fixed part names to their cost; `slots[i]` maps slot i's candidate names (in the
    supernet's order) to their cost.
    """

    space: str
    config: dict
    metric: str
    fixed: dict[str, float]
    slots: list[dict[str, float]]
    slot_names: list[str]
    device: str | None = None

    @property
    def fixed_total(self) -> float:
        return float(sum(self.fixed.values()))

    def cost(self, selection: Sequence[int | None]) -> float:
        """Cost of an architecture given as the chosen candidate index per slot (None = unused);
        see `SearchSpace.selection`."""
        if len(selection) != len(self.slots):
            raise ValueError(f"{self.space}: selection has {len(selection)} slots, table has {len(self.slots)}")
        total = self.fixed_total
        for slot, index in zip(self.slots, selection):
            if index is not None:
                total += list(slot.values())[index]
        return total

    def expected(self, probs: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """`fixed + sum_i sum_k probs[i][k] * cost[i][k]`, differentiable w.r.t. `probs`.

        `probs[i]` holds slot i's candidate probabilities in the supernet's order (for DARTS see
        `darts_slot_probabilities`).
        """
        if len(probs) != len(self.slots):
            raise ValueError(f"{self.space}: got probabilities for {len(probs)} slots, table has {len(self.slots)}")
        total = None
        for index, (p, slot) in enumerate(zip(probs, self.slots)):
            if p.shape[-1] != len(slot):
                raise ValueError(f"{self.space}: slot {index} has {len(slot)} candidates, "
                                 f"got {p.shape[-1]} probabilities")
            costs = torch.tensor(list(slot.values()), dtype=p.dtype, device=p.device)
            term = (p * costs).sum()
            total = term if total is None else total + term
        return total + self.fixed_total

    def to_dict(self) -> dict:
        return {"format": TABLE_FORMAT, "version": TABLE_VERSION, "space": self.space,
                "config": self.config, "metric": self.metric, "device": self.device,
                "fixed": self.fixed,
                "slots": [{"name": n, "candidates": s} for n, s in zip(self.slot_names, self.slots)]}

    @classmethod
    def from_dict(cls, data: Any) -> "CostTable":
        if not isinstance(data, dict):
            raise ValueError(f"a cost table must be a JSON object, got {type(data).__name__}")
        if data.get("format") != TABLE_FORMAT or data.get("version") != TABLE_VERSION:
            raise ValueError(f"not a {TABLE_FORMAT} v{TABLE_VERSION} file "
                             f"(format={data.get('format')!r}, version={data.get('version')!r})")
        if data.get("metric") not in METRICS:
            raise ValueError(f"cost table metric must be one of {METRICS}, got {data.get('metric')!r}")
        missing = [key for key in ("space", "config", "fixed", "slots") if key not in data]
        if missing:
            raise ValueError(f"cost table lacks {', '.join(missing)}")
        get_space(data["space"])
        try:
            fixed = {str(k): _finite_cost(v) for k, v in data["fixed"].items()}
            slots = [{str(k): _finite_cost(v) for k, v in slot["candidates"].items()} for slot in data["slots"]]
            names = [str(slot["name"]) for slot in data["slots"]]
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"cost table is malformed ({type(error).__name__}: {error}); expected 'fixed' "
                             f"{{name: cost}} and 'slots' [{{name, candidates: {{name: cost}}}}]") from None
        return cls(data["space"], data["config"], data["metric"], fixed, slots, names, data.get("device"))

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CostTable":
        """Read a table file; every problem is a `ValueError` that names the file."""
        try:
            with open(path) as handle:
                return cls.from_dict(json.load(handle))
        except FileNotFoundError:
            raise ValueError(f"cost table {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cost table {path} is not readable JSON: {error}") from None
        except ValueError as error:
            raise ValueError(f"cost table {path}: {error}") from None


def _finite_cost(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"cost {value!r} is not a non-negative number")
    return float(value)


def _config_dict(config: Any) -> dict:
    return json.loads(json.dumps(asdict(config)))


def _table(space: str, config: Any, metric: str, layout: Layout, value) -> CostTable:
    return CostTable(
        space=space, config=_config_dict(config), metric=metric,
        fixed={part.name: value(part) for part in layout.fixed},
        slots=[{name: value(part) for name, part in slot.candidates.items()} for slot in layout.slots],
        slot_names=[slot.name for slot in layout.slots],
    )


def cost_table(space: str, config: Any, metric: str = "macs") -> CostTable:
    """Analytic MACs or parameter table of `space` at `config` (no module is built)."""
    if metric not in ("macs", "params"):
        raise ValueError(f"cost_table computes 'macs' or 'params'; use build_latency_table for latency, got {metric!r}")
    layout = get_space(space).layout(config)
    return _table(space, config, metric, layout, lambda part: float(getattr(part.cost, metric)))


def arch_cost(space: str, config: Any, choices: Any) -> tuple[int, int]:
    """(MACs, params) of an architecture from the space's layout, without building it."""
    entry = get_space(space)
    layout = entry.layout(config)
    total = layout.fixed_cost
    for slot, index in zip(layout.slots, entry.selection(config, choices)):
        if index is not None:
            total = total + list(slot.candidates.values())[index].cost
    return total.macs, total.params


def _time_part(part: Part, device: torch.device, batch_size: int, warmup: int, repeats: int,
               channels_last: bool, autocast_dtype: torch.dtype | None) -> float:
    module = part.build().to(device).eval()
    if isinstance(module, nn.Linear):
        x = torch.randn(batch_size, part.input_shape[0], device=device)
    else:
        x = torch.randn(batch_size, *part.input_shape, device=device)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else nullcontext())
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    timings = []
    with torch.no_grad(), autocast:
        for step in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            module(x)
            sync()
            if step >= warmup:
                timings.append((time.perf_counter() - start) * 1e3)
    return statistics.median(timings)


def build_latency_table(space: str, config: Any, device: str | torch.device = "cpu",
                        batch_size: int = 1, warmup: int = 3, repeats: int = 10,
                        channels_last: bool = False,
                        autocast_dtype: torch.dtype | None = None) -> CostTable:
    """Measure every fixed part and candidate op of `space` at `config` on `device` (median of
    `repeats` forward passes after `warmup`, inference mode). Ops of identical structure and input
    shape are measured once. Node additions and concatenations are not timed."""
    device = torch.device(device)
    layout = get_space(space).layout(config)
    measured: dict[tuple[str, tuple[int, ...]], float] = {}

    def value(part: Part) -> float:
        key = (repr(part.build()), part.input_shape)
        if key not in measured:
            measured[key] = _time_part(part, device, batch_size, warmup, repeats, channels_last,
                                       autocast_dtype)
        return measured[key]

    table = _table(space, config, "latency_ms", layout, value)
    table.device = f"{device} ({torch.get_num_threads()} threads)" if device.type == "cpu" else str(device)
    return table


def darts_slot_probabilities(config: Any, alphas_normal: torch.Tensor,
                             alphas_reduce: torch.Tensor) -> list[torch.Tensor]:
    """Softmax probabilities per DARTS layout slot (cell by cell, 14 edges each)."""
    normal, reduce = torch.softmax(alphas_normal, -1), torch.softmax(alphas_reduce, -1)
    return [row for reduction in cell_kinds(config) for row in (reduce if reduction else normal)]
