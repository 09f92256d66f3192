"""Rank agreement between two accuracy lists over the same architectures, with bootstrap intervals.

- `spearman`, `kendall`: scipy's Spearman rho and Kendall tau-b (ties get average ranks / are
  left out of the pair counts); NaN when either list is constant (no ranking to compare).
- `spearman_rows`, `kendall_rows`: the same statistics for many paired samples at once (one per
  row), for the bootstrap; the tests check them against scipy row by row, ties included.
- `bootstrap_interval`: percentile interval over resampled architectures (pairs drawn with
  replacement, seeded); resamples whose statistic is undefined (a constant list) are left out and
  counted.
- `top_half`: the architectures the reference ranks in its better half, where a search is decided.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

KENDALL_CHUNK = 256  # resamples per block of the pairwise-sign computation (memory ~ chunk * n^2 bytes)


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected two lists of the same length, got shapes {x.shape} and {y.shape}")
    return x, y


def _constant(values: np.ndarray) -> bool:
    return values.size < 2 or bool(np.all(values == values[0]))


def _rank_statistic(test, x, y) -> float:
    x, y = _pair(x, y)
    if _constant(x) or _constant(y):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(test(x, y).statistic)


def spearman(x, y) -> float:
    """Spearman's rho (scipy.stats.spearmanr); NaN for fewer than 2 points or a constant list."""
    return _rank_statistic(stats.spearmanr, x, y)


def kendall(x, y) -> float:
    """Kendall's tau-b (scipy.stats.kendalltau); NaN for fewer than 2 points or a constant list."""
    return _rank_statistic(stats.kendalltau, x, y)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of every row pair of (B, n) arrays: Pearson's r of the average ranks."""
    rx = stats.rankdata(np.asarray(x, dtype=np.float64), axis=1)
    ry = stats.rankdata(np.asarray(y, dtype=np.float64), axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denominator = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / denominator
    rho[denominator == 0] = np.nan
    return np.clip(rho, -1.0, 1.0)


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every row pair of (B, n) arrays:
    (concordant - discordant) / sqrt((pairs - ties in x) * (pairs - ties in y))."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = x.shape[1]
    upper = np.triu_indices(n, k=1)
    pairs = n * (n - 1) // 2
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], KENDALL_CHUNK):
        block = slice(start, start + KENDALL_CHUNK)
        sx = np.sign(x[block, :, None] - x[block, None, :])[:, upper[0], upper[1]]
        sy = np.sign(y[block, :, None] - y[block, None, :])[:, upper[0], upper[1]]
        score = (sx * sy).sum(axis=1)
        denominator = np.sqrt((pairs - (sx == 0).sum(axis=1)) * (pairs - (sy == 0).sum(axis=1)))
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = score / denominator
        tau[denominator == 0] = np.nan
        out[block] = tau
    return np.clip(out, -1.0, 1.0)


ROW_STATISTICS = {"spearman": spearman_rows, "kendall": kendall_rows}


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) indices drawn with replacement from range(n); the same for the same seed."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    valid: int  # resamples with a defined statistic
    resamples: int

    def to_dict(self) -> dict:
        return {"low": _finite(self.low), "high": _finite(self.high), "valid_resamples": self.valid,
                "resamples": self.resamples}


def bootstrap_interval(x, y, statistic: str, indices: np.ndarray, confidence: float = 0.95) -> Interval:
    """Percentile interval of `statistic` ('spearman' or 'kendall') over the resamples `indices`
    (rows of positions into x and y, pairs kept together). NaN when no resample is defined."""
    x, y = _pair(x, y)
    values = ROW_STATISTICS[statistic](x[indices], y[indices])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(math.nan, math.nan, 0, len(indices))
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(float(low), float(high), int(values.size), len(indices))


def top_half(reference) -> np.ndarray:
    """Sorted positions of the ceil(n/2) best entries of `reference` (ties: the earlier position)."""
    reference = np.asarray(reference, dtype=np.float64)
    order = np.argsort(-reference, kind="stable")
    return np.sort(order[: math.ceil(len(reference) / 2)])


@dataclass(frozen=True)
class Agreement:
    """Rank agreement of one source with the reference over `n` architectures."""

    n: int
    rho: float
    tau: float
    rho_interval: Interval
    tau_interval: Interval

    def to_dict(self) -> dict:
        return {"n": self.n, "spearman_rho": _finite(self.rho), "kendall_tau": _finite(self.tau),
                "spearman_interval": self.rho_interval.to_dict(), "kendall_interval": self.tau_interval.to_dict()}


def agreement(reference, other, *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> Agreement:
    """rho and tau of `other` against `reference`, with bootstrap intervals (resampled architectures)."""
    reference, other = _pair(reference, other)
    indices = bootstrap_indices(len(reference), resamples, seed)
    return Agreement(len(reference), spearman(reference, other), kendall(reference, other),
                     bootstrap_interval(reference, other, "spearman", indices, confidence),
                     bootstrap_interval(reference, other, "kendall", indices, confidence))


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined statistic is null."""
    return None if value is None or not math.isfinite(value) else float(value)
