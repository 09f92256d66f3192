"""Exact costs of NAT's architectures (SPOS or ProxylessNAS space): objectives, constraints and
the hypervolume bounds.

Costs are additive over the layout (fixed parts + one candidate per layer), so each objective is
a (fixed, layers x choices) matrix and a batch of genomes is costed with one gather, which
NSGA-II calls for every population. A ProxylessNAS block without a shortcut has no `zero`, one
choice fewer than the others: its row is padded with NaN, which no valid genome gathers and the
extremes skip. Units are `nat_archive.COST_UNITS`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from dfnas.nas.profile import CostTable, build_latency_table, cost_table
from dfnas.nas.strategies.nat_archive import COST_UNITS
from dfnas.nas.strategies.nat_front import ObjectiveBounds

SCALES = {"macs": 1e-6, "params": 1e-6, "latency": 1.0}  # table units -> COST_UNITS


def latency_table(path: str | None, space: str, space_config: Any, device: torch.device) -> CostTable:
    """The table file at `path` (checked to be of this space and size), or one measured here."""
    if path is None:
        return build_latency_table(space, space_config, device)
    table = CostTable.load(path)
    expected = cost_table(space, space_config)
    if table.space != space or table.metric != "latency_ms" or table.config != expected.config:
        raise ValueError(f"latency table {path} is for {table.space}/{table.metric} at another size; make one "
                         f"with dfnas.nas.profile.build_latency_table({space!r}, ...)")
    return table


def slot_matrix(slots: list[dict[str, float]]) -> np.ndarray:
    """(layers, most choices) costs per layer and candidate, NaN past a layer's last candidate."""
    matrix = np.full((len(slots), max(len(slot) for slot in slots)), np.nan)
    for layer, slot in enumerate(slots):
        matrix[layer, :len(slot)] = list(slot.values())
    return matrix


class Costs:
    """Every cost of the space (`macs`, `params`, and `latency` when a table is given), the
    constraints `limits` {name: largest allowed} and the bounds of the `objectives`."""

    def __init__(self, space: str, space_config: Any, objectives: tuple[str, ...], limits: dict[str, float],
                 latency: CostTable | None):
        self.space = space
        self.objectives = objectives
        self.limits = limits
        self.latency = latency
        tables = {"macs": cost_table(space, space_config, "macs"), "params": cost_table(space, space_config, "params")}
        if latency is not None:
            tables["latency"] = latency
        self.matrices = {name: (table.fixed_total * SCALES[name], slot_matrix(table.slots) * SCALES[name])
                         for name, table in tables.items()}
        for name, limit in limits.items():
            low, high = self.extreme(name, min), self.extreme(name, max)
            if limit < low:
                raise ValueError(f"max_{name} {limit:.4g} {COST_UNITS[name]} is impossible: this space's "
                                 f"architectures have {low:.4g} to {high:.4g} {COST_UNITS[name]}")
        self.bounds = ObjectiveBounds(tuple((self.extreme(c, min), limits.get(c, self.extreme(c, max)))
                                            for c in objectives))

    @property
    def names(self) -> list[str]:
        return list(self.matrices)

    def of(self, genomes: np.ndarray, name: str) -> np.ndarray:
        fixed, slots = self.matrices[name]
        genomes = np.asarray(genomes, dtype=np.int64).reshape(-1, slots.shape[0])
        return fixed + slots[np.arange(slots.shape[0]), genomes].sum(axis=1)

    def extreme(self, name: str, pick: Callable) -> float:
        """The cost of the cheapest (`pick` min) or dearest (max) architecture."""
        fixed, slots = self.matrices[name]
        return float(fixed + sum(pick(row[~np.isnan(row)]) for row in slots))

    def extreme_path(self, name: str, pick: Callable) -> tuple[int, ...]:
        """That architecture (`pick` np.argmin or np.argmax per layer; padding comes last, so
        indices into the valid prefix are the genome's)."""
        return tuple(int(pick(row[~np.isnan(row)])) for row in self.matrices[name][1])

    def violations(self, genomes: np.ndarray) -> np.ndarray:
        """(n, constraints): cost - limit per constraint, feasible where <= 0."""
        return np.stack([self.of(genomes, n) - v for n, v in self.limits.items()], axis=1)

    def feasible(self, path: tuple[int, ...]) -> bool:
        return not self.limits or bool((self.violations(np.array([path])) <= 0).all())

    def of_path(self, path: tuple[int, ...]) -> dict[str, float]:
        return {name: float(self.of(np.array([path]), name)[0]) for name in self.matrices}
