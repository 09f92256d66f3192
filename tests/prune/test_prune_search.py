"""The ratio evolution and the candidate score, with stand-in MACs and scores where the maths is
what is tested, and a real BatchNorm network for the recalibration."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dfnas.data.images import ImageSet
from dfnas.prune.score import CandidateScorer, Score, recalibrate_batchnorm
from dfnas.prune.search import Budget, RatioEvolution, uniform_ratio

GRID = tuple(round(0.1 + 0.1 * i, 2) for i in range(10))  # 0.1 .. 1.0
WEIGHTS = (5.0, 3.0, 8.0, 1.0, 2.0)  # MACs of each gene's layer at ratio 1 (x1000)


def stand_in_macs(ratios) -> int:
    """Each layer's MACs ~ its ratio times the previous one's (as conv MACs are c_in x c_out)."""
    total, previous = 0.0, 1.0
    for weight, ratio in zip(WEIGHTS, ratios):
        total += weight * 1000 * ratio * previous
        previous = ratio
    return int(total)


def stand_in_score(ratios) -> Score:
    """Agreement rises with the first two genes; the KL falls with the last."""
    return Score(agreement=round(0.5 * ratios[0] + 0.4 * ratios[1], 6), kl=1.0 - ratios[-1])


def _evolution(seed=0, budget=Budget(4000, 5000), **kwargs):
    settings = dict(population=12, parents=4, mutation_prob=0.2, seed=seed)
    settings.update(kwargs)
    return RatioEvolution(GRID, len(WEIGHTS), budget, stand_in_macs, stand_in_score, **settings)


def test_every_scored_candidate_lies_in_the_budget_band():
    evolution = _evolution()
    for _ in range(5):
        evolution.step()
    assert len(evolution.archive) >= 30
    assert all(4000 <= c.macs <= 5000 and c.macs == stand_in_macs(c.ratios) for c in evolution.archive.values())


def test_evolution_improves_on_its_random_start():
    evolution = _evolution()
    first = evolution.step()
    for _ in range(6):
        evolution.step()
    assert evolution.top(1)[0].score.fitness > max(c.score.fitness for c in first)


def test_children_are_bred_from_the_top_k_only():
    """top-k: children carry only genes of the top-k, never of the rest of the archive."""
    evolution = _evolution(mutation_prob=1e-9)  # children are crossovers of parents
    evolution.step()
    evolution.random_genome = lambda: None  # no random fill: every child is bred
    top = evolution.top(4)
    rest = [c for c in evolution.archive.values() if c not in top]
    parent_genes = [{p.genome[i] for p in top} for i in range(len(WEIGHTS))]
    assert any(c.genome[i] not in parent_genes[i] for c in rest for i in range(len(WEIGHTS)))
    children = evolution.next_generation()
    assert children
    for genome in children:
        assert all(genome[i] in parent_genes[i] for i in range(len(WEIGHTS)))


def test_a_resumed_search_ends_where_an_uninterrupted_one_does():
    whole = _evolution(seed=3)
    for _ in range(5):
        whole.step()
    first = _evolution(seed=3)
    for _ in range(2):
        first.step()
    state = first.state_dict()
    resumed = _evolution(seed=3)
    resumed.load_state_dict(state)
    for _ in range(3):
        resumed.step()
    assert resumed.generations == whole.generations
    assert resumed.archive == whole.archive


def test_an_unreachable_band_is_refused():
    with pytest.raises(ValueError, match="reaches the MACs band"):
        _evolution(budget=Budget(10, 20)).step()


def test_uniform_ratio_is_the_largest_that_fits():
    budget = Budget(0, 6000)
    ratio = uniform_ratio(len(WEIGHTS), stand_in_macs, budget)
    assert stand_in_macs([ratio] * 5) <= 6000 < stand_in_macs([ratio + 2e-4] * 5)
    assert uniform_ratio(len(WEIGHTS), stand_in_macs, Budget(0, 10**9)) == 1.0


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(3, 2))


def test_recalibration_sets_the_exact_statistics_of_the_batches():
    """recalibration: the running statistics become the average over the given batches."""
    model = _bn_net()
    batches = [torch.randn(4, 1, 6, 6) * (i + 1) + i for i in range(3)]
    recalibrate_batchnorm(model, batches)
    with torch.no_grad():
        features = [model[0](b) for b in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean)
    torch.testing.assert_close(model[1].running_var, var)
    assert not model.training and model[1].momentum == 0.1


def test_candidates_are_scored_after_recalibration_on_a_class_mixed_sample():
    """scoring: stale statistics would misjudge the candidate; the calibration sample is shuffled."""
    generator = torch.Generator().manual_seed(0)
    count = 64
    targets = torch.arange(count) // 32  # stored sorted by class
    images = torch.randint(0, 256, (count, 1, 6, 6), generator=generator, dtype=torch.uint8)
    images[targets == 1] //= 4  # class 1 is darker
    soft = torch.nn.functional.one_hot(targets, 2).float() * 5
    data = ImageSet(images, soft, targets, (6, 6), [0.5], [0.25])
    scorer = CandidateScorer(data, data, batches=1, batch_size=32, seed=0)
    calibration = torch.cat(scorer.calibration)
    # A class-sorted first batch would hold class 0 only; the seeded sample mixes both.
    assert calibration.mean() < data.fixed_batches(32, limit=1)[0].images.mean()
    model = _bn_net()
    model[1].running_mean.fill_(100.0)  # stale
    score = scorer(model)
    assert model[1].running_mean.abs().max() < 50
    assert score.kl > 0
    with torch.no_grad():
        logits = model(torch.cat([b.images for b in data.fixed_batches(500)]))
    assert score.agreement == pytest.approx(float((logits.argmax(1) == targets).float().mean()))


# ----------------------------------------------------------------- found by mutation testing (issue 15)


def test_the_budget_band_includes_both_ends():
    band = Budget(4000, 5000)
    assert band.holds(4000) and band.holds(5000) and band.holds(4500)
    assert not band.holds(3999.5) and not band.holds(5000.5)


def test_random_genomes_are_scaled_into_the_band_from_a_shape_on_the_grid():
    """random_genome: bisection on the scale lands in the band; it gives up (None) after 30 halvings."""
    evolution = _evolution(seed=1)
    genomes = [evolution.random_genome() for _ in range(30)]
    assert all(g is not None and 4000 <= stand_in_macs(evolution.ratios(g)) <= 5000 for g in genomes)
    assert len(set(genomes)) == 30  # random shapes, not one fixed answer
    calls = []
    never = _evolution(budget=Budget(10, 20))  # nothing reaches it
    never.macs_of = lambda ratios: calls.append(1) or stand_in_macs(ratios)
    assert never.random_genome() is None
    assert 1 <= len(calls) <= 30 and len(never._macs) == len(calls)


def test_random_genome_bisection_moves_the_scale_the_right_way():
    """Too many MACs shrinks the scale, too few grows it: low, middle and high bands are all reached."""
    macs_of = lambda ratios: int(1000 * sum(ratios) + 0.5)  # noqa: E731  monotone in the scale
    for band in (Budget(1000, 1100), Budget(1950, 2050), Budget(2950, 3050)):
        evolution = RatioEvolution(GRID, 5, band, macs_of, stand_in_score, population=4, parents=2,
                                   mutation_prob=0.2, seed=0)
        found = [evolution.random_genome() for _ in range(30)]
        assert sum(g is not None for g in found) >= 20, band
        assert all(band.holds(macs_of(evolution.ratios(g))) for g in found if g is not None), band


def test_random_genomes_reach_both_ends_of_the_grid():
    """Ratios are snapped to the nearest grid value: a low band uses index 0, a high one index 9."""
    low = _evolution(seed=1, budget=Budget(300, 800))
    genes = [g for _ in range(30) for g in (low.random_genome() or ())]
    assert genes and min(genes) == 0
    high = _evolution(seed=1, budget=Budget(9000, 10000))
    genes = [g for _ in range(30) for g in (high.random_genome() or ())]
    assert genes and max(genes) == 9


def test_mutation_redraws_genes_with_the_given_probability():
    evolution = _evolution(mutation_prob=0.0)
    genome = (3, 3, 3, 3, 3)
    assert all(evolution.mutate(genome) == genome for _ in range(50))
    evolution = _evolution(mutation_prob=1.0)
    drawn = [g for _ in range(100) for g in evolution.mutate(genome)]
    assert set(drawn) == set(range(len(GRID)))  # every gene redrawn over the whole grid
    evolution = _evolution(mutation_prob=0.3, seed=5)
    changed = sum(a != b for _ in range(400) for a, b in zip(evolution.mutate(genome), genome))
    assert 0.3 * 0.9 * 2000 * 0.8 < changed < 0.3 * 0.9 * 2000 * 1.2  # redrawn 30%, 9 in 10 land elsewhere


def test_crossover_takes_each_gene_from_either_parent_evenly():
    evolution = _evolution(seed=4)
    a, b = (0,) * 5, (9,) * 5
    children = [evolution.crossover(a, b) for _ in range(400)]
    from_a = sum(g == 0 for c in children for g in c)
    assert all(g in (0, 9) for c in children for g in c)
    assert 800 < from_a < 1200


def test_a_draw_makes_fifty_tries_per_wanted_genome_and_stops_when_it_has_them():
    evolution = _evolution()
    calls = []
    assert evolution._draw(lambda: calls.append(1), 3, set()) == []
    assert len(calls) == 3 * 50
    fresh = iter(range(10**6))
    genomes = [(9, 9, 9, 9, i % 10) for i in range(20)]
    calls.clear()
    evolution = _evolution(budget=Budget(0, 10**9))
    found = evolution._draw(lambda: calls.append(1) or genomes[next(fresh)], 4, {genomes[0]})
    assert found == genomes[1:5] and len(calls) == 5  # the taken one is skipped, then it stops


def test_a_draw_skips_genomes_outside_the_band():
    evolution = _evolution()
    inside, outside = (3, 3, 3, 3, 3), (9, 9, 9, 9, 9)
    assert 4000 <= stand_in_macs(evolution.ratios(inside)) <= 5000 < stand_in_macs(evolution.ratios(outside))
    draws = iter([outside, None, inside])
    assert evolution._draw(lambda: next(draws, None), 1, set()) == [inside]


def test_top_is_best_first_and_breaks_agreement_ties_by_lower_kl():
    assert Score(0.5, 0.1).fitness > Score(0.5, 0.2).fitness > Score(0.4, 0.0).fitness
    evolution = _evolution()
    for _ in range(2):
        evolution.step()
    fitness = [c.score.fitness for c in evolution.top(len(evolution.archive))]
    assert fitness == sorted(fitness, reverse=True)
    assert len(evolution.top(3)) == 3 and evolution.top(1)[0].score.fitness == max(fitness)


def test_a_generation_is_half_mutations_the_rest_crossovers_then_random_fill():
    evolution = _evolution(population=7)
    evolution.step()
    made = {"mutate": 0, "cross": 0, "random": 0}
    fresh = iter((a, b, c, 4, 4) for a in range(10) for b in range(10) for c in range(10))

    def counted(kind, result=None):
        def make(*_):
            made[kind] += 1
            return next(fresh) if result is None else result
        return make
    evolution.budget = Budget(0, 10**9)
    evolution.mutate, evolution.crossover = counted("mutate"), counted("cross")
    evolution.random_genome = counted("random")
    assert len(evolution.next_generation()) == 7
    assert made == {"mutate": 3, "cross": 4, "random": 0}
    # crossovers that never give a new genome leave their places to random ones
    made.update(mutate=0, cross=0, random=0)
    evolution.crossover = counted("cross", result=evolution.top(1)[0].genome)
    assert len(evolution.next_generation()) == 7
    assert made["mutate"] == 3 and made["random"] == 4 and made["cross"] == 4 * 50


def test_a_generation_that_finds_nothing_new_is_empty_not_an_error():
    evolution = _evolution()
    evolution.step()
    evolution.mutate = evolution.crossover = lambda *_: None
    evolution.random_genome = lambda: None
    assert evolution.step() == []
    assert evolution.generations[-1] == [] and len(evolution.generations) == 2


def test_step_archives_each_candidate_with_its_ratios_macs_and_score():
    evolution = _evolution()
    scored = evolution.step()
    assert evolution.generations == [[c.genome for c in scored]] and len(scored) == 12
    for candidate in scored:
        assert evolution.archive[candidate.genome] is candidate
        assert candidate.ratios == tuple(GRID[g] for g in candidate.genome)
        assert candidate.macs == stand_in_macs(candidate.ratios)
        assert candidate.score == stand_in_score(candidate.ratios)


def test_a_checkpoint_is_plain_data_and_a_resume_measures_nothing_again():
    evolution = _evolution(seed=2)
    evolution.step()
    state = evolution.state_dict()
    assert set(state) == {"archive", "generations", "rng"}
    first = state["archive"][0]
    assert set(first) == {"genome", "ratios", "macs", "agreement", "kl"}
    assert isinstance(first["genome"], list) and isinstance(state["rng"][1], list)
    calls = []
    resumed = _evolution(seed=2)
    resumed.macs_of = lambda ratios: calls.append(1) or stand_in_macs(ratios)
    resumed.load_state_dict(state)
    assert all(resumed.macs(g) == c.macs for g, c in resumed.archive.items()) and calls == []
    assert resumed.archive == evolution.archive and resumed.generations == evolution.generations
    assert resumed.rng.random() == evolution.rng.random()


def test_uniform_ratio_keeps_the_whole_network_when_it_fits_exactly_and_refuses_an_impossible_budget():
    full = stand_in_macs([1.0] * 5)
    assert uniform_ratio(5, stand_in_macs, Budget(0, full)) == 1.0
    with pytest.raises(ValueError, match="even one channel per layer needs more than 1 MACs"):
        uniform_ratio(5, lambda ratios: 10, Budget(0, 1))
    ratio = uniform_ratio(5, stand_in_macs, Budget(0, 6000))
    assert stand_in_macs([ratio] * 5) <= 6000 and 6000 - stand_in_macs([ratio] * 5) < 6000 * 1e-3
    seen = []
    with pytest.raises(ValueError):
        uniform_ratio(5, lambda r: seen.append(r[0]) or 10, Budget(0, 5))
    assert min(seen) > 0  # a ratio of exactly 0 is never asked for


def test_a_scorer_samples_whole_calibration_batches_and_judges_every_validation_image():
    generator = torch.Generator().manual_seed(1)
    count = 1200  # more than one validation batch of 500
    images = torch.randint(0, 256, (count, 1, 6, 6), generator=generator, dtype=torch.uint8)
    soft = torch.randn(count, 2, generator=generator)
    targets = torch.randint(0, 2, (count,), generator=generator)
    data = ImageSet(images, soft, targets, (6, 6), [0.5], [0.25])
    scorer = CandidateScorer(data, data, batches=3, batch_size=16, seed=7)
    assert [len(b) for b in scorer.calibration] == [16, 16, 16]
    again = CandidateScorer(data, data, batches=3, batch_size=16, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(scorer.calibration, again.calibration))
    other = CandidateScorer(data, data, batches=3, batch_size=16, seed=8)
    assert not torch.equal(scorer.calibration[0], other.calibration[0])
    model = _bn_net()
    score = scorer(model)
    with torch.no_grad():
        logits = model(torch.cat([b.images for b in data.fixed_batches(500)])).double()
    teacher = torch.log_softmax(soft.double(), 1)
    kl = (teacher.exp() * (teacher - torch.log_softmax(logits, 1))).sum() / count
    assert score.agreement == pytest.approx(float((logits.argmax(1) == soft.argmax(1)).double().mean()))
    assert score.kl == pytest.approx(float(kl), rel=1e-4)


def test_a_scorer_without_soft_labels_judges_by_the_targets_with_zero_kl():
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (40, 1, 6, 6), generator=generator, dtype=torch.uint8)
    targets = torch.randint(0, 2, (40,), generator=generator)
    data = ImageSet(images, None, targets, (6, 6), [0.5], [0.25])
    model = _bn_net()
    score = CandidateScorer(data, data, batches=2, batch_size=8, seed=0)(model)
    with torch.no_grad():
        logits = model(torch.cat([b.images for b in data.fixed_batches(500)]))
    assert score.kl == 0.0
    assert score.agreement == pytest.approx(float((logits.argmax(1) == targets).float().mean()))


def test_recalibration_restores_each_norms_own_momentum_and_touches_only_norms():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, momentum=0.3), nn.Conv2d(2, 2, 1),
                          nn.BatchNorm2d(2, momentum=0.05))
    weight = model[0].weight.clone()
    recalibrate_batchnorm(model, [torch.randn(2, 1, 5, 5)])
    assert model[1].momentum == 0.3 and model[3].momentum == 0.05
    assert torch.equal(model[0].weight, weight) and not model.training
    assert int(model[1].num_batches_tracked) == 1


def test_a_draw_never_returns_the_same_genome_twice():
    evolution = _evolution(budget=Budget(0, 10**9))
    same = (1, 2, 3, 4, 5)
    assert evolution._draw(lambda: same, 3, set()) == [same]


def test_random_genome_gives_up_after_thirty_halvings():
    evolution = _evolution(budget=Budget(10, 20))
    asked = []
    evolution.macs = lambda genome: asked.append(genome) or 10**9  # always too many MACs
    assert evolution.random_genome() is None and len(asked) == 30


def test_uniform_ratio_accepts_a_ratio_whose_macs_equal_the_budget():
    # the first bisection point 0.5 costs exactly the budget: it is the answer (nothing above fits)
    assert uniform_ratio(1, lambda r: r[0] * 1024, Budget(0, 512)) == 0.5


def test_an_unreachable_band_is_refused_with_advice():
    with pytest.raises(ValueError, match="^no channel-ratio vector reaches the MACs band; widen --band or change "
                                         "the budget$"):
        _evolution(budget=Budget(10, 20)).step()
