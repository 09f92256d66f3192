"""NAT's Pareto-front helpers: the non-dominated set (pymoo and brute force agree), the
hypervolume against a fixed reference, spread-out picks, and NSGA-II on integer genomes."""
from __future__ import annotations

import numpy as np
import pytest

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


def test_integer_objectives_and_costs_are_treated_as_real_numbers():
    """Guards against (issue 15, mutation testing) normalizing in the input's integer dtype
    (costs such as MACs come as integers: (15 - 10) / 10 would store 0), a single point given as
    a flat row, and integer candidate costs in `spread_picks` (unsigned differences wrap around;
    -inf cannot mark a pick in an integer array)."""
    bounds = ObjectiveBounds(((10.0, 20.0),))
    assert bounds.normalize(np.array([[0, 15], [1, 20]])).tolist() == [[0.0, 0.5], [1.0, 1.0]]
    assert bounds.normalize([0.5, 15.0]).tolist() == [[0.5, 0.5]]
    assert np.isclose(hypervolume(np.array([[0, 15]]), bounds), 1.01 * 0.51)
    costs = np.array([0, 1, 2, 5, 9, 10], dtype=np.uint64)
    assert spread_picks(costs, [0.0], 3) == [5, 3, 2]
    assert spread_picks(costs.astype(np.int64), [], 2) == [0, 5]


def test_edge_cases_of_the_front_and_its_hypervolume():
    """Guards against (issue 15, mutation testing) an empty or one-point archive: the front's
    indices must be int64 (they index the archive; float indices are an error) and a single point
    is its own front; an empty archive has no hypervolume. Cost ranges below 1 are normalized by
    their width (the 1e-12 floor only guards a zero width, where a cost equal to the bound is 0)."""
    empty = non_dominated(np.zeros((0, 2)))
    assert empty.dtype == np.int64 and empty.tolist() == []
    single = non_dominated(np.array([[0.3, 5.0]]))
    assert single.dtype == np.int64 and single.tolist() == [0]
    assert non_dominated(np.array([[0.3, 5.0], [0.2, 6.0], [0.4, 6.0]])).dtype == np.int64
    assert hypervolume(np.zeros((0, 2)), ObjectiveBounds(((10.0, 20.0),))) == 0.0
    assert ObjectiveBounds(((0.1, 0.5),)).normalize([[0.0, 0.3]]).tolist() == [[0.0, pytest.approx(0.5)]]
    assert ObjectiveBounds(((2.0, 2.0),)).normalize([[0.0, 2.0]]).tolist() == [[0.0, 0.0]]


def test_nsga2_starts_from_the_unique_seeds_and_runs_the_configured_search(capsys):
    """Guards against (issue 15, mutation testing; the test above only checked feasibility and
    reproducibility): the seeds not deduplicated or not reshaped to one row per genome, the random
    fill missing choice 0 or sized wrongly, the seeds not used as the first population, a wrong
    gene range (`xl=1`, `xu=num_choices - 2`), a default population size or termination instead
    of the given ones, duplicates kept, objectives not returned for the final genomes, a boolean
    feasibility without constraints, and pymoo's progress table printed."""
    calls = []

    def objectives(genomes):
        calls.append(genomes.copy())
        total = genomes.sum(axis=1).astype(float)
        return np.stack([total, 0.1 * genomes[:, 0] - total], axis=1)  # a front along the whole range

    seeds = np.array([[3, 3, 3, 3, 3], [3, 3, 3, 3, 3], [2, 3, 3, 3, 3], [3, 3, 3, 3, 2.0]])
    population = nsga2(5, 4, objectives, 2, None, 0, seeds.ravel(), 12, 6, seed=1)
    assert capsys.readouterr().out == ""
    assert [len(batch) for batch in calls] == [12] * 6  # the first population, then 5 generations
    first = calls[0]
    assert first[:3].tolist() == [[2, 3, 3, 3, 3], [3, 3, 3, 3, 2], [3, 3, 3, 3, 3]]
    assert set(first[3:].ravel()) == {0, 1, 2, 3}
    offspring = np.concatenate(calls[1:])
    assert offspring.min() == 0 and offspring.max() == 3
    genomes = population.genomes
    assert genomes.dtype == np.int64 and len(genomes) == 12 and len(np.unique(genomes, axis=0)) == 12
    assert np.array_equal(population.objectives, objectives(genomes))
    assert population.feasible.dtype == bool and population.feasible.tolist() == [True] * 12


def test_nsga2_marks_each_architecture_by_all_its_constraints():
    """Guards against the final feasibility ignoring pymoo's constraint violation (everything
    feasible), reading it under another name, or not requiring every constraint row entry <= 0."""

    def objectives(genomes):
        total = genomes.sum(axis=1).astype(float)
        return np.stack([total, -total], axis=1)

    def constraints(genomes):
        return np.stack([genomes[:, 0] - 1.0, genomes[:, 1] - 1.0], axis=1)

    population = nsga2(5, 4, objectives, 2, constraints, 2, np.zeros((1, 5)), 12, 2, seed=0)
    expected = (population.genomes[:, 0] <= 1) & (population.genomes[:, 1] <= 1)
    assert population.feasible.tolist() == expected.tolist()
    assert expected.any() and not expected.all()


def test_bounds_are_reported_with_the_reference_point():
    """Guards against (issue 15, mutation testing) the report of the normalization (the NAT run's
    JSON) losing or mangling its bounds or reference point; no test called `to_dict`."""
    bounds = ObjectiveBounds(((1.0, 2.0), (3.0, 40.0)))
    assert bounds.to_dict() == {"cost_bounds": [[1.0, 2.0], [3.0, 40.0]], "reference_point": [1.01, 1.01, 1.01]}


def test_nsga2_mutation_reaches_both_ends_of_the_gene_range():
    """Guards against (issue 15, mutation testing) the problem's gene bounds narrowed (`xl=1`,
    `xu=num_choices - 2`): from a first population of genes 1 and 2 only, where crossover cannot
    create a 0 or a 3, the mutation must reach both."""
    import itertools

    calls = []

    def objectives(genomes):
        calls.append(genomes.copy())
        total = genomes.sum(axis=1).astype(float)
        return np.stack([total, 0.1 * genomes[:, 0] - total], axis=1)

    seeds = np.array(list(itertools.product([1, 2], repeat=5)))[::2][:12]
    nsga2(5, 4, objectives, 2, None, 0, seeds, 12, 8, seed=1)
    assert set(calls[0].ravel()) == {1, 2}
    offspring = np.concatenate(calls[1:])
    assert offspring.min() == 0 and offspring.max() == 3
