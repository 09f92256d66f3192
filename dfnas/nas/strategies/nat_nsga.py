"""NSGA-II over integer architecture genomes with pymoo 0.6 (the MSuNAS inner search).

The genome is one integer per layer in 0..num_choices-1 (one count for every layer, or one per
layer: a ProxylessNAS block without a shortcut has no `zero`). Operators as MSuNAS: two-point
crossover (keeps integers as they are) and polynomial mutation with eta 1.0 rounded back to
integers (`RoundingRepair`), duplicates eliminated. The first population is the given seeds (the
archive's non-dominated architectures) filled up with uniform random genomes. Objectives and
constraints are batch functions of the (n, layers) int64 genome matrix; a constraint row is
feasible when every entry is <= 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Batch = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Population:
    """The final NSGA-II population: genomes, objectives, and which meet every constraint."""

    genomes: np.ndarray  # (n, layers) int64
    objectives: np.ndarray  # (n, objectives)
    feasible: np.ndarray  # (n,) bool


def nsga2(num_layers: int, num_choices: int | Sequence[int], objectives: Batch, num_objectives: int,
          constraints: Batch | None, num_constraints: int, seeds: np.ndarray, population: int,
          generations: int, seed: int) -> Population:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.pntx import TwoPointCrossover
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.optimize import minimize

    class ArchitectureProblem(Problem):
        def __init__(self):
            super().__init__(n_var=num_layers, n_obj=num_objectives, n_ieq_constr=num_constraints,
                             xl=0, xu=np.broadcast_to(np.asarray(num_choices), (num_layers,)) - 1, vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            genomes = np.rint(x).astype(np.int64)
            out["F"] = objectives(genomes)
            if num_constraints:
                out["G"] = constraints(genomes)

    rng = np.random.default_rng(seed)
    seeds = np.unique(np.asarray(seeds, dtype=np.int64).reshape(-1, num_layers), axis=0)[:population]
    fill = rng.integers(0, num_choices, (population - len(seeds), num_layers))
    initial = np.concatenate([seeds, fill]).astype(np.int64)
    algorithm = NSGA2(pop_size=population, sampling=initial, crossover=TwoPointCrossover(),
                      mutation=PM(eta=1.0, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    result = minimize(ArchitectureProblem(), algorithm, ("n_gen", generations), seed=seed, verbose=False)
    final = result.pop
    violation = final.get("CV")
    feasible = np.ones(len(final), bool) if violation is None else (violation.reshape(len(final), -1) <= 0).all(1)
    return Population(np.rint(final.get("X")).astype(np.int64), np.asarray(final.get("F"), float), feasible)
