"""NAT's Pareto-front helpers: the non-dominated set (pymoo and brute force agree), the
hypervolume against a fixed reference, spread-out picks, and NSGA-II on integer genomes."""
from __future__ import annotations

import numpy as np

from dfnas.nas.strategies.nat_front import ObjectiveBounds, hypervolume, non_dominated, spread_picks
from dfnas.nas.strategies.nat_nsga import nsga2


def brute_force_front(objectives: np.ndarray) -> list[int]:
    """O(n^2): rows that no other row is <= on every objective and < on one."""
    def dominates(a, b):
        return bool(np.all(a <= b) and np.any(a < b))

    return [i for i, row in enumerate(objectives)
            if not any(dominates(other, row) for j, other in enumerate(objectives) if j != i)]


def test_non_dominated_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(20):
        # Few distinct values, so ties and exact duplicates occur.
        objectives = rng.integers(0, 6, size=(30, 2 + trial % 2)).astype(float)
        assert non_dominated(objectives).tolist() == brute_force_front(objectives)
    assert non_dominated(np.zeros((0, 2))).tolist() == []


def test_hypervolume_uses_the_fixed_reference_point():
    bounds = ObjectiveBounds(((10.0, 20.0),))  # cost normalized to (c - 10) / 10
    assert bounds.reference_point == [1.01, 1.01]
    one = np.array([[0.5, 15.0]])  # normalized (0.5, 0.5)
    assert np.isclose(hypervolume(one, bounds), 0.51 * 0.51)
    # A dominated point adds nothing; a non-dominated one adds its own rectangle.
    assert np.isclose(hypervolume(np.array([[0.5, 15.0], [0.6, 16.0]]), bounds), 0.51 * 0.51)
    two = np.array([[0.5, 15.0], [0.2, 18.0]])  # (0.2, 0.8) adds 0.3 * 0.21
    assert np.isclose(hypervolume(two, bounds), 0.51 * 0.51 + 0.3 * 0.21)
    # Beyond the reference on an axis: no contribution, no error.
    assert hypervolume(np.array([[0.5, 40.0]]), bounds) == 0.0


def test_spread_picks_fill_the_largest_gaps():
    costs = [0.0, 1.0, 2.0, 5.0, 9.0, 10.0]
    assert spread_picks(costs, [0.0], 2) == [5, 3]  # 10 is farthest from 0, then 5 halves the gap
    assert spread_picks(costs, [], 3)[0] == 0
    assert sorted(spread_picks(costs, [0.0], 10)) == list(range(6))  # never more than there are


def test_nsga2_on_integer_genomes_is_feasible_and_reproducible():
    slot_costs = np.array([[1.0, 2.0, 3.0, 4.0]] * 5)

    def cost(genomes):
        return slot_costs[np.arange(5), genomes].sum(axis=1)

    def objectives(genomes):
        assert genomes.dtype == np.int64
        return np.stack([1.0 / cost(genomes), cost(genomes)], axis=1)  # more cost, less error

    def constraint(genomes):
        return (cost(genomes) - 12.0)[:, None]

    runs = [nsga2(5, 4, objectives, 2, constraint, 1, np.zeros((1, 5)), 16, 8, seed=3) for _ in range(2)]
    assert np.array_equal(runs[0].genomes, runs[1].genomes)
    population = runs[0]
    assert population.genomes.min() >= 0 and population.genomes.max() <= 3
    assert population.feasible.all()
    assert cost(population.genomes).max() <= 12.0
    assert cost(population.genomes).max() == 12.0  # it reached the constraint from the cheap seed
