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
