"""Rank statistics of the consistency study: against scipy (ties included) and bootstrap coverage."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dfnas.evaluate.rank_stats import (agreement, bootstrap_indices, bootstrap_interval, kendall, kendall_rows,
                                       spearman, spearman_rows, top_half)


def test_known_values_by_hand():
    # One swapped pair of three: rho = 1 - 6 * 2 / (3 * 8) = 0.5; tau = (2 - 1) / 3.
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert kendall([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    # A tie in x: one pair tied, two concordant: tau-b = 2 / sqrt((3 - 1) * (3 - 0)).
    assert kendall([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    # Average ranks (1.5, 1.5, 3) against (1, 2, 3): Pearson of the ranks.
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1])
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)


def test_constant_or_tiny_lists_have_no_rank_correlation():
    assert math.isnan(spearman([0.5, 0.5, 0.5], [1, 2, 3]))
    assert math.isnan(kendall([1, 2, 3], [0.1, 0.1, 0.1]))
    assert math.isnan(spearman([1], [2]))
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2, 3], [1, 2])


@pytest.mark.parametrize("n", [3, 7, 12])
def test_row_statistics_equal_scipy_with_ties(n):
    rng = np.random.default_rng(n)
    x = rng.integers(0, 4, size=(200, n)).astype(float)  # few values: many ties
    y = x + rng.integers(-2, 3, size=(200, n))
    x[0] = 1.0  # a constant row: undefined
    rho, tau = spearman_rows(x, y), kendall_rows(x, y)
    for i in range(len(x)):
        assert (math.isnan(rho[i]) and math.isnan(spearman(x[i], y[i]))) or rho[i] == pytest.approx(
            stats.spearmanr(x[i], y[i]).statistic, abs=1e-12)
        assert (math.isnan(tau[i]) and math.isnan(kendall(x[i], y[i]))) or tau[i] == pytest.approx(
            stats.kendalltau(x[i], y[i]).statistic, abs=1e-12)
    assert math.isnan(rho[0]) and math.isnan(tau[0])


def test_bootstrap_intervals_cover_the_population_value():
    """Bivariate normal with correlation r: Spearman's rho_s = 6/pi asin(r/2), Kendall's tau = 2/pi asin(r)."""
    r, n, trials = 0.6, 40, 20
    true_rho, true_tau = 6 / math.pi * math.asin(r / 2), 2 / math.pi * math.asin(r)
    covered_rho = covered_tau = 0
    for seed in range(trials):
        rng = np.random.default_rng(1000 + seed)
        x, y = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=n).T
        result = agreement(x, y, resamples=400, seed=seed)
        covered_rho += result.rho_interval.low <= true_rho <= result.rho_interval.high
        covered_tau += result.tau_interval.low <= true_tau <= result.tau_interval.high
        assert result.rho_interval.low < result.rho < result.rho_interval.high
    # 95% intervals: about 19 of 20 expected; 15 leaves room for the percentile method's small bias.
    assert covered_rho >= 15 and covered_tau >= 15, (covered_rho, covered_tau)


def test_bootstrap_is_seeded_and_skips_undefined_resamples():
    x, y = [0.1, 0.2, 0.3, 0.4], [0.2, 0.1, 0.4, 0.3]
    indices = bootstrap_indices(4, 300, seed=3)
    assert np.array_equal(indices, bootstrap_indices(4, 300, seed=3))
    first, second = (bootstrap_interval(x, y, "kendall", indices) for _ in range(2))
    assert first == second and first.valid < 300  # some resamples draw one architecture 4 times
    none = bootstrap_interval([1, 1, 1], [1, 2, 3], "spearman", bootstrap_indices(3, 50, 0))
    assert none.valid == 0 and math.isnan(none.low)


def test_top_half_takes_the_best_ceil_half_and_breaks_ties_by_position():
    assert top_half([0.9, 0.5, 0.7, 0.8]).tolist() == [0, 3]
    assert top_half([0.1, 0.9, 0.5, 0.7, 0.3]).tolist() == [1, 2, 3]
    assert top_half([0.5, 0.5, 0.5, 0.1]).tolist() == [0, 1]
