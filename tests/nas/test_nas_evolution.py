"""The SPOS evolution's bookkeeping and the evaluator's calibration batches, each rule checked
exactly: the tries per wanted child, the FLOPs limit's boundary, generation numbering, progress,
seeded randomness that ignores the global RNG, and state round trips. These tests were written to
kill the mutants mutmut left alive in `evolution.py` and `evaluator.py` (docs/testing.md,
"Mutation testing")."""
from __future__ import annotations

import pytest
import torch

from dfnas.data.images import ImageSet
from dfnas.nas.strategies.evaluator import PathEvaluator, calibration_batches
from dfnas.nas.strategies.evolution import Evolution, EvolutionConfig

LAYERS, CHOICES = 10, 4  # 4^10 paths: a random draw practically never repeats one


def score(path) -> float:
    """Deterministic and distinct per path."""
    return sum(g * CHOICES ** i for i, g in enumerate(path)) / CHOICES ** len(path)


def free(path) -> float:
    return float(sum(path))


def test_config_rules_and_their_messages():
    """Guards against: top_k == population refused; mutations - crossovers compared with the population."""
    EvolutionConfig(population=4, top_k=4, mutations=2, crossovers=2).check()  # the limits themselves are fine
    with pytest.raises(ValueError, match=r"^top_k must be in 1..population \(4\), got 5$"):
        EvolutionConfig(population=4, top_k=5, mutations=0, crossovers=0).check()
    with pytest.raises(ValueError, match="^mutations \\+ crossovers must not exceed the population$"):
        EvolutionConfig(population=4, top_k=2, mutations=3, crossovers=3).check()


def test_each_generation_is_numbered_full_and_reported():
    """Guards against: generation numbers off by one, one generation too many or too few, a short
    first population, progress not counted one per candidate, `candidates` not emptied at the end."""
    config = EvolutionConfig(population=8, top_k=3, generations=3, mutations=4, crossovers=4)
    evolution = Evolution(config, LAYERS, CHOICES, free, None, seed=0)
    for generation in range(config.generations):
        assert len(evolution.candidates) == len(set(evolution.candidates)) == config.population
        ticks = []
        evaluated = evolution.evaluate_generation(score, ticks.append)
        assert [e.generation for e in evaluated] == [generation] * config.population
        assert ticks == [1] * config.population
        assert all(e.fitness == score(e.path) and e.mflops == free(e.path) for e in evaluated)
    assert evolution.candidates == [] and evolution.generation == config.generations
    assert len(evolution.archive) == config.generations * config.population
    assert evolution.best().fitness == max(score(p) for p in evolution.archive)


def test_ten_tries_per_wanted_child_then_a_clear_error():
    """Guards against: another number of tries (the reference's 10 per wanted child), endless
    retries, and an impossible limit passing silently."""
    calls = []

    def counted(path):
        calls.append(path)
        return 100.0

    config = EvolutionConfig(population=6, top_k=2, generations=2, mutations=2, crossovers=3)
    evolution = Evolution(config, LAYERS, CHOICES, counted, flops_limit=1.0, seed=0)
    assert evolution.candidates == [] and len(calls) == 10 * config.population
    with pytest.raises(ValueError, match="^no architecture of this space satisfies the FLOPs limit$"):
        evolution.evaluate_generation(score)

    # Breeding when no child is legal: 10 tries per wanted mutation, crossover and random path.
    cost = {"value": 0.0}
    evolution = Evolution(config, LAYERS, CHOICES, lambda path: calls.append(path) or cost["value"], 1.0, seed=0)
    calls.clear()
    cost["value"] = 100.0
    evolution.evaluate_generation(score)
    assert len(calls) == config.population + 10 * (config.mutations + config.crossovers + config.population)
    assert evolution.candidates == []


def test_the_flops_limit_is_inclusive():
    """Guards against: a path exactly at the limit refused (`<` for `<=`)."""
    config = EvolutionConfig(population=20, top_k=2, generations=1, mutations=0, crossovers=0)
    evolution = Evolution(config, 3, 3, free, flops_limit=3.0, seed=0)
    costs = {free(path) for path in evolution.candidates}
    assert max(costs) == 3.0 and costs <= {0.0, 1.0, 2.0, 3.0}


def test_an_exhausted_space_ends_without_error():
    """Guards against: an error (or an endless loop) once every path has been evaluated."""
    config = EvolutionConfig(population=4, top_k=2, generations=3, mutations=1, crossovers=1)
    evolution = Evolution(config, 2, 2, free, None, seed=0)  # 4 paths in all
    assert sorted(evolution.candidates) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(evolution.evaluate_generation(score)) == 4
    assert evolution.candidates == []
    assert evolution.evaluate_generation(score) == [] and evolution.evaluate_generation(score) == []
    assert evolution.generation == 3 and evolution.best().path == (1, 1)


def test_randomness_comes_only_from_the_seed():
    """Guards against: any draw (initial paths, parents, mutation, crossover) from the global RNG."""
    config = EvolutionConfig(population=8, top_k=3, generations=3, mutations=3, crossovers=3)

    def run(seed: int, global_seed: int) -> list:
        torch.manual_seed(global_seed)
        evolution = Evolution(config, LAYERS, CHOICES, free, None, seed=seed)

        def noisy(path):
            torch.rand(3)  # the rest of a search draws from the global RNG in between
            return score(path)
        for _ in range(config.generations):
            evolution.evaluate_generation(noisy)
        return [e.to_dict() for e in evolution.archive.values()]

    first = run(seed=1, global_seed=10)
    assert run(seed=1, global_seed=99) == first
    assert run(seed=2, global_seed=10) != first


def test_state_round_trip_continues_identically():
    """Guards against: state missing from (or misnamed in) `state_dict`, so a resumed evolution differs."""
    config = EvolutionConfig(population=8, top_k=3, generations=4, mutations=3, crossovers=3)
    whole = Evolution(config, LAYERS, CHOICES, free, None, seed=5)
    for _ in range(2):
        whole.evaluate_generation(score)
    state = whole.state_dict()
    assert set(state["archive"][0]) == {"path", "fitness", "mflops", "generation"}
    assert state["generation"] == 2 and len(state["archive"]) == 16
    resumed = Evolution(config, LAYERS, CHOICES, free, None, seed=77)
    resumed.load_state_dict(state)
    assert resumed.generation == 2 and resumed.candidates == whole.candidates
    assert resumed.archive == whole.archive
    for _ in range(2):
        assert resumed.evaluate_generation(score) == whole.evaluate_generation(score)
    assert resumed.archive == whole.archive and resumed.candidates == whole.candidates == []


def test_mutation_changes_a_few_genes_and_crossover_mixes_two_top_parents():
    """Guards against: mutation returning the parent unchanged or a fresh random path; crossover
    returning one parent unchanged."""
    config = EvolutionConfig(population=12, top_k=3, generations=3, mutations=4, crossovers=4, mutation_prob=0.2)
    evolution = Evolution(config, 16, CHOICES, free, None, seed=4)
    made = {"_mutate": [], "_cross": []}
    for name in made:
        make = getattr(evolution, name)

        def spy(parents, make=make, name=name):
            child = make(parents)
            made[name].append((child, list(parents)))
            return child
        setattr(evolution, name, spy)
    for _ in range(config.generations):
        evolution.evaluate_generation(score)

    def distance(a, b) -> int:
        return sum(x != y for x, y in zip(a, b))
    mutated = [min(distance(child, p) for p in parents) for child, parents in made["_mutate"]]
    # Each gene redrawn with p = 0.2 (a redraw keeps it with p = 1/4): ~2.4 of 16 genes change;
    # a random path differs from the nearest of 3 parents in ~10.
    assert len(mutated) >= 8 and any(d > 0 for d in mutated) and sum(mutated) / len(mutated) < 5
    crossed = [(child, parents) for child, parents in made["_cross"]]
    # The same parent is drawn twice 1/3 of the time, and top parents share genes: some children
    # equal a parent, but not all.
    assert len(crossed) >= 8 and sum(child not in parents for child, parents in crossed) >= len(crossed) // 4
    for child, parents in crossed:
        assert all(any(gene == p[i] for p in parents) for i, gene in enumerate(child))


def _numbered(count: int) -> ImageSet:
    """Images whose target is their index, so a batch names the images it holds."""
    images = torch.zeros(count, 1, 4, 4, dtype=torch.uint8)
    return ImageSet(images, None, torch.arange(count), (4, 4), [0.0], [1.0])


def test_calibration_batches_are_full_seeded_and_count_limited():
    """Guards against: the count ignored, a short last batch, the split's own order, or an order
    drawn from the global RNG."""
    images = _numbered(30)
    torch.manual_seed(1)
    batches = calibration_batches(images, 8, 2, seed=3)
    assert [len(b.targets) for b in batches] == [8, 8]
    seen = torch.cat([b.targets for b in batches])
    assert len(seen.unique()) == 16 and not torch.equal(seen, torch.arange(16))
    torch.manual_seed(2)
    again = calibration_batches(images, 8, 2, seed=3)
    assert all(torch.equal(a.targets, b.targets) for a, b in zip(batches, again))
    assert not torch.equal(calibration_batches(images, 8, 2, seed=4)[0].targets, batches[0].targets)
    everything = calibration_batches(images, 8, 10, seed=3)
    assert [len(b.targets) for b in everything] == [8, 8, 8]  # 30 images: the last 6 are dropped
    small = calibration_batches(_numbered(5), 8, 3, seed=3)
    assert len(small) == 1 and sorted(small[0].targets.tolist()) == [0, 1, 2, 3, 4]


def test_path_evaluator_fitness_follows_its_metric():
    """Guards against: fitness always -KL (or always agreement) whatever the metric; a bad metric
    accepted or refused without naming it."""
    from dfnas.data.images import Batch
    from dfnas.device import Precision
    from dfnas.nas.loss import LossConfig
    from dfnas.nas.trainer import Trainer

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3), torch.nn.BatchNorm1d(3))
    trainer = Trainer(LossConfig(), Precision(torch.device("cpu")))
    batches = [Batch(torch.randn(6, 1, 4, 4), torch.randn(6, 3), torch.zeros(6, dtype=torch.long))]
    by_agreement = PathEvaluator(model, trainer, batches, batches)(model)
    assert by_agreement["fitness"] == by_agreement["agreement"] != -by_agreement["kl"]
    by_kl = PathEvaluator(model, trainer, batches, batches, metric="kl")(model)
    assert by_kl["fitness"] == -by_kl["kl"]
    with pytest.raises(ValueError, match=r"fitness metric must be one of \('agreement', 'kl'\), got 'acc'"):
        PathEvaluator(model, trainer, batches, batches, metric="acc")
