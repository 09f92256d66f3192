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


# ----------------------------------------------------------------- found by mutation testing (issue 15)


def test_two_points_already_have_a_ranking():
    assert spearman([1, 2], [1, 2]) == pytest.approx(1.0)
    assert kendall([1, 2], [2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall([3], [3])) and math.isnan(spearman([], []))


def test_only_two_flat_lists_of_the_same_length_are_accepted():
    with pytest.raises(ValueError, match=r"^expected two lists of the same length, got shapes \(2, 2\) and \(2, 2\)$"):
        spearman([[1, 2], [3, 4]], [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="same length"):
        kendall([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        agreement([1, 2, 3], [1, 2], resamples=10)


def test_row_statistics_stay_within_minus_one_and_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 9))
    for rows in (spearman_rows, kendall_rows):
        assert np.all(rows(x, x) <= 1.0) and np.all(rows(x, -x) >= -1.0)
        assert np.allclose(rows(x, x), 1.0) and np.allclose(rows(x, -x), -1.0)


def test_kendall_rows_agree_with_scipy_across_chunks():
    """More rows than one block of the pairwise computation: every block is filled, in order."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=(600, 6)).astype(float)
    y = x + rng.integers(-2, 3, size=(600, 6))
    tau = kendall_rows(x, y)
    for i in (0, 255, 256, 257, 511, 512, 599):
        expected = kendall(x[i], y[i])
        assert (math.isnan(tau[i]) and math.isnan(expected)) or tau[i] == pytest.approx(expected, abs=1e-12), i


def test_bootstrap_indices_cover_every_position_and_only_those():
    indices = bootstrap_indices(5, 400, seed=0)
    assert indices.shape == (400, 5)
    assert set(np.unique(indices).tolist()) == {0, 1, 2, 3, 4}
    assert not np.array_equal(indices, bootstrap_indices(5, 400, seed=1))


def test_bootstrap_interval_is_the_percentile_interval_of_the_defined_resamples():
    rng = np.random.default_rng(2)
    x = rng.normal(size=12)
    y = x + rng.normal(size=12)
    indices = bootstrap_indices(12, 300, seed=4)
    for statistic, single in (("spearman", spearman), ("kendall", kendall)):
        values = np.array([single(x[i], y[i]) for i in indices])
        values = values[np.isfinite(values)]
        for confidence in (0.9, 0.5):
            interval = bootstrap_interval(x, y, statistic, indices, confidence)
            tail = 100 * (1 - confidence) / 2
            assert interval.low == pytest.approx(np.percentile(values, tail), abs=1e-12)
            assert interval.high == pytest.approx(np.percentile(values, 100 - tail), abs=1e-12)
            assert interval.valid == len(values) and interval.resamples == 300
        default = bootstrap_interval(x, y, statistic, indices)
        assert default.low == pytest.approx(np.percentile(values, 2.5), abs=1e-12)
        assert default.high == pytest.approx(np.percentile(values, 97.5), abs=1e-12)


def test_agreement_defaults_and_its_report():
    x = [0.9, 0.7, 0.8, 0.2, 0.4, 0.5]
    y = [0.8, 0.75, 0.6, 0.3, 0.5, 0.1]
    result = agreement(x, y)
    indices = bootstrap_indices(6, 2000, seed=0)
    assert result.n == 6
    assert result.rho == pytest.approx(spearman(x, y)) and result.tau == pytest.approx(kendall(x, y))
    assert result.rho_interval == bootstrap_interval(x, y, "spearman", indices, 0.95)
    assert result.tau_interval == bootstrap_interval(x, y, "kendall", indices, 0.95)
    report = result.to_dict()
    assert report == {"n": 6, "spearman_rho": result.rho, "kendall_tau": result.tau,
                      "spearman_interval": {"low": result.rho_interval.low, "high": result.rho_interval.high,
                                            "valid_resamples": result.rho_interval.valid, "resamples": 2000},
                      "kendall_interval": {"low": result.tau_interval.low, "high": result.tau_interval.high,
                                           "valid_resamples": result.tau_interval.valid, "resamples": 2000}}
    other = agreement(x, y, resamples=100, confidence=0.5, seed=3)
    assert other.rho_interval == bootstrap_interval(x, y, "spearman", bootstrap_indices(6, 100, 3), 0.5)
    assert other.tau_interval == bootstrap_interval(x, y, "kendall", bootstrap_indices(6, 100, 3), 0.5)


def test_undefined_statistics_are_reported_as_null():
    report = agreement([1, 1, 1], [1, 2, 3], resamples=20).to_dict()
    assert report["spearman_rho"] is None and report["kendall_tau"] is None
    assert report["spearman_interval"] == {"low": None, "high": None, "valid_resamples": 0, "resamples": 20}


def test_integer_inputs_are_ranked_as_numbers():
    """Unsigned integers would wrap around in the pairwise differences and the negation."""
    x = np.array([[0, 5, 3, 9], [7, 1, 1, 0]], dtype=np.uint8)
    y = np.array([[1, 2, 3, 4], [4, 3, 2, 1]], dtype=np.uint8)
    expected = [kendall(a.astype(float), b.astype(float)) for a, b in zip(x, y)]
    np.testing.assert_allclose(kendall_rows(x, y), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(spearman_rows(x, y), [spearman(a, b) for a, b in zip(x, y)], rtol=0, atol=1e-12)
    assert top_half(np.array([0, 5, 3], dtype=np.uint8)).tolist() == [1, 2]


def test_two_points_per_row_are_a_ranking_too():
    assert kendall_rows(np.array([[1.0, 2.0]]), np.array([[1.0, 2.0]])).tolist() == [1.0]
    assert kendall_rows(np.array([[1.0, 2.0]]), np.array([[2.0, 1.0]])).tolist() == [-1.0]


def test_top_half_breaks_ties_by_position_in_long_lists():
    reference = np.random.default_rng(0).integers(0, 3, size=200).astype(float)
    expected = sorted(sorted(range(200), key=lambda i: (-reference[i], i))[:100])
    assert top_half(reference).tolist() == expected


def test_undefined_statistics_are_silent():
    """A constant list or resample is NaN by definition, not a warning in the user's output."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(kendall([1, 2, 3], [2, 2, 2]))
        constant = np.ones((3, 4))
        varied = np.arange(12.0).reshape(3, 4)
        assert np.isnan(spearman_rows(constant, varied)).all() and np.isnan(kendall_rows(varied, constant)).all()
        interval = bootstrap_interval([1, 1, 1], [1, 2, 3], "kendall", bootstrap_indices(3, 30, 0))
    assert math.isnan(interval.low) and math.isnan(interval.high) and interval.resamples == 30
