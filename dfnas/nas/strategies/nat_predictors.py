"""Accuracy predictors of NAT / MSuNAS: a pool of regressors, the one that ranks best is kept.

An architecture is one-hot encoded per layer (the choices are categories, not magnitudes: block
2 is not "between" blocks 1 and 3). Each model in the pool is scored by Kendall's tau between the
measured targets and its out-of-fold predictions (k-fold cross-validation), and the best is refit
on the whole archive. MSuNAS ranks by mean - std of the per-fold taus; with the few dozen
architectures of a small search a fold holds two or three points, whose tau is +-1 or undefined,
so we pool the out-of-fold predictions of all folds and take one tau over the archive instead.
A model whose predictions are constant has tau undefined; it counts as 0 (no ranking at all).

Pool (names are the `--predictors` values):
- `rbf`: cubic radial basis functions with a linear tail (scipy `RBFInterpolator`; pySOT's
  model in MSuNAS), lightly smoothed so that noisy targets do not blow it up;
- `gp`: Gaussian process, RBF kernel + white noise, normalized targets (scikit-learn);
- `mlp`: two hidden layers (scikit-learn `MLPRegressor`, Adam, early stopping off: the archive
  is too small to split again);
- `trees`: extremely randomized trees (scikit-learn `ExtraTreesRegressor`; MSuNAS's `carts`
  averages trees on random feature subsets, which `max_features` does here).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

PREDICTOR_NAMES = ("rbf", "gp", "mlp", "trees")


class Regressor(Protocol):
    def fit(self, features: np.ndarray, targets: np.ndarray) -> "Regressor": ...

    def predict(self, features: np.ndarray) -> np.ndarray: ...


class RbfRegressor:
    """scipy's `RBFInterpolator` (cubic kernel, linear tail) behind the fit/predict interface.

    The tail's monomials must have full column rank, and one-hot blocks never do (every layer's
    block sums to the constant). So the points are expressed in an orthonormal basis of their own
    affine hull: pairwise distances, all the kernel sees, are unchanged, the tail has full rank,
    and n points always suffice for it (the hull has at most n - 1 dimensions).
    """

    def __init__(self, smoothing: float = 1e-3):
        self.smoothing = smoothing

    def _project(self, features: np.ndarray) -> np.ndarray:
        return (features - self.center) @ self.basis

    def fit(self, features: np.ndarray, targets: np.ndarray) -> "RbfRegressor":
        from scipy.interpolate import RBFInterpolator

        self.center = features.mean(axis=0)
        _, singular, rows = np.linalg.svd(features - self.center, full_matrices=False)
        rank = max(1, int((singular > 1e-9 * max(float(singular.max(initial=0.0)), 1.0)).sum()))
        self.basis = rows[:rank].T
        self.model = RBFInterpolator(self._project(features), targets, kernel="cubic", degree=1,
                                     smoothing=self.smoothing)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.model(self._project(features))


def make_predictor(name: str, seed: int) -> Regressor:
    """A fresh, unfitted model of the pool, seeded (so a resumed search refits identically)."""
    if name == "rbf":
        return RbfRegressor()
    if name == "gp":
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        kernel = ConstantKernel(1.0) * RBF(length_scale=2.0) + WhiteKernel(1e-2)
        return GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed)
    if name == "mlp":
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(hidden_layer_sizes=(64, 64), learning_rate_init=8e-4, max_iter=500, tol=1e-6, random_state=seed)
    if name == "trees":
        from sklearn.ensemble import ExtraTreesRegressor

        return ExtraTreesRegressor(n_estimators=200, max_features=0.5, min_samples_leaf=1, random_state=seed, n_jobs=1)
    raise ValueError(f"unknown predictor {name!r}; expected one of {', '.join(PREDICTOR_NAMES)}")


def one_hot(paths: Sequence[Sequence[int]], num_choices: int | Sequence[int]) -> np.ndarray:
    """(n, sum of the layers' choices) float matrix: per layer a one-hot block of its
    `num_choices` (one count for every layer, or one per layer)."""
    paths = np.asarray(paths, dtype=np.int64).reshape(len(paths), -1)
    counts = np.broadcast_to(np.asarray(num_choices, dtype=np.int64), (paths.shape[1],))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    encoded = np.zeros((len(paths), int(counts.sum())))
    rows = np.repeat(np.arange(len(paths)), paths.shape[1])
    cols = (offsets + paths).ravel()
    encoded[rows, cols] = 1.0
    return encoded


def kendall_tau(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Kendall's tau-b; 0 when undefined (constant predictions or targets)."""
    from scipy.stats import kendalltau

    if len(measured) < 2:
        return 0.0
    tau = kendalltau(measured, predicted).statistic
    return 0.0 if tau is None or not math.isfinite(tau) else float(tau)


def fit(model: Regressor, features: np.ndarray, targets: np.ndarray) -> Regressor:
    """`model.fit`, without scikit-learn's convergence warnings: on a few dozen points the GP's
    noise level sits at its bound and the MLP stops at `max_iter`; the cross-validated tau is
    what judges the model, not the optimizer's convergence."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(features, targets)


def cross_validated_tau(factory: Callable[[], Regressor], features: np.ndarray, targets: np.ndarray,
                        folds: int, seed: int) -> float:
    """Kendall's tau of the pooled out-of-fold predictions of `folds`-fold cross-validation."""
    order = np.random.default_rng(seed).permutation(len(targets))
    predicted = np.empty(len(targets))
    for held_out in np.array_split(order, min(folds, len(targets))):
        kept = np.setdiff1d(order, held_out)
        predicted[held_out] = fit(factory(), features[kept], targets[kept]).predict(features[held_out])
    return kendall_tau(targets, predicted)


@dataclass
class Selection:
    """The chosen model, refit on everything, and every candidate's cross-validated tau."""

    name: str
    model: Regressor
    taus: dict[str, float]

    @property
    def tau(self) -> float:
        return self.taus[self.name]


def select_predictor(features: np.ndarray, targets: np.ndarray, factories: dict[str, Callable[[], Regressor]],
                     folds: int, seed: int) -> Selection:
    """Score every factory's model by cross-validated tau, refit the best (ties: the first listed)
    on all the data. The same fold split for every model, so they are compared on equal terms."""
    if len(targets) < 3:
        raise ValueError(f"predictor selection needs at least 3 evaluated architectures, got {len(targets)}")
    with one_blas_thread():
        taus = {name: cross_validated_tau(factory, features, targets, folds, seed)
                for name, factory in factories.items()}
        best = max(taus, key=lambda name: (taus[name], -list(taus).index(name)))
        return Selection(best, fit(factories[best](), features, targets), taus)


def one_blas_thread():
    """A context with BLAS/OpenMP pools at one thread. The archive's matrices are tiny, and on a
    shared machine the threads' barriers dominate: a GP fit on 40 architectures took 1.3 s with
    the default pool at load ~6 on 2 cores, 0.03 s with one thread."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)
