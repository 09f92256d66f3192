"""Pareto fronts of minimized objectives: the non-dominated set, hypervolume, spread-out picks.

Every objective is minimized (error = 1 - accuracy, costs). The hypervolume is taken on
objectives normalized by `ObjectiveBounds` (error as is, each cost to [0, 1] between the cheapest
architecture of the space and the upper bound: the constraint if set, else the dearest
architecture) against the fixed reference point 1.01 on every axis (the 1% margin of MSuNAS, so
that the bounds' own corners still count). The bounds come from the space and the constraints,
never from the archive, so the hypervolume of one run is comparable across its iterations and
across runs with the same space and constraints.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

REFERENCE_MARGIN = 1.01


def non_dominated(objectives: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the rows no other row dominates (pymoo's non-dominated sorting;
    identical rows are all kept)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    objectives = np.asarray(objectives, dtype=float)
    if len(objectives) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(NonDominatedSorting().do(objectives, only_non_dominated_front=True)).astype(np.int64)


@dataclass(frozen=True)
class ObjectiveBounds:
    """Per cost objective the (lowest, upper) values that normalize it; the error's are (0, 1)."""

    costs: tuple[tuple[float, float], ...]

    def normalize(self, objectives: np.ndarray) -> np.ndarray:
        objectives = np.array(objectives, dtype=float, ndmin=2)
        for column, (low, high) in enumerate(self.costs, start=1):
            objectives[:, column] = (objectives[:, column] - low) / max(high - low, 1e-12)
        return objectives

    @property
    def reference_point(self) -> list[float]:
        return [REFERENCE_MARGIN] * (1 + len(self.costs))

    def to_dict(self) -> dict:
        return {"cost_bounds": [list(b) for b in self.costs], "reference_point": self.reference_point}


def hypervolume(objectives: np.ndarray, bounds: ObjectiveBounds) -> float:
    """Hypervolume dominated by `objectives` (raw units) after normalization, against the
    fixed reference point; points beyond it on some axis contribute nothing."""
    from pymoo.indicators.hv import HV

    if len(objectives) == 0:
        return 0.0
    normalized = bounds.normalize(objectives)
    inside = np.all(normalized < REFERENCE_MARGIN, axis=1)
    if not inside.any():
        return 0.0
    return float(HV(ref_point=np.array(bounds.reference_point))(normalized[inside]))


def spread_picks(candidate_costs: Sequence[float], anchor_costs: Sequence[float], count: int) -> list[int]:
    """Indices of `count` candidates spread along one cost axis: greedily the candidate farthest
    from everything already there (the anchors, e.g. the archive's front, and earlier picks);
    ties go to the earlier candidate. MSuNAS evens out the gaps with a small GA; the greedy
    max-min rule has the same aim in a few lines."""
    costs = np.asarray(candidate_costs, dtype=float)
    taken = list(np.asarray(anchor_costs, dtype=float))
    picks: list[int] = []
    for _ in range(min(count, len(costs))):
        if taken:
            distance = np.min(np.abs(costs[:, None] - np.asarray(taken)[None, :]), axis=1)
        else:
            distance = np.zeros(len(costs))
        distance[picks] = -np.inf
        best = int(np.argmax(distance))
        picks.append(best)
        taken.append(costs[best])
    return picks
