"""NAT's predictor selection: cross-validated Kendall tau picks the model that ranks well."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from dfnas.nas.strategies.nat_predictors import (PREDICTOR_NAMES, cross_validated_tau, kendall_tau,
                                                 make_predictor, one_hot, select_predictor)


def _benchmark(count: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Architectures of 5 layers x 4 choices; the score is a step function of two layers' choices
    (an interaction a tree splits exactly), so the ranking is known."""
    rng = np.random.default_rng(seed)
    paths = rng.integers(0, 4, size=(count, 5))
    score = 0.5 * (paths[:, 0] >= 2) + 0.3 * ((paths[:, 1] == 3) & (paths[:, 0] >= 2)) + 0.01 * paths[:, 4]
    return one_hot(paths, 4), score


def test_one_hot_blocks():
    encoded = one_hot([[0, 3], [2, 1]], 4)
    assert encoded.tolist() == [[1, 0, 0, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 1, 0, 0]]


class Constant:
    def fit(self, features, targets):
        return self

    def predict(self, features):
        return np.full(len(features), 0.5)


def test_selection_prefers_the_tree_over_constants():
    features, targets = _benchmark()
    factories = {"constant": Constant, "mean": DummyRegressor, "trees": lambda: make_predictor("trees", 0)}
    selection = select_predictor(features, targets, factories, folds=5, seed=0)
    assert selection.name == "trees"
    assert selection.taus["constant"] == 0.0  # constant predictions rank nothing
    # Each fold's training mean differs a little, so pooled it is not constant, but no better.
    assert selection.taus["mean"] < 0.1
    assert selection.tau > 0.6
    # The refit model ranks unseen architectures of the same benchmark.
    unseen, truth = _benchmark(seed=1)
    assert kendall_tau(truth, selection.model.predict(unseen)) > 0.6


def test_selection_keeps_the_best_of_the_whole_pool():
    features, targets = _benchmark()
    factories = {name: (lambda name=name: make_predictor(name, 0)) for name in PREDICTOR_NAMES}
    selection = select_predictor(features, targets, factories, folds=5, seed=0)
    assert set(selection.taus) == set(PREDICTOR_NAMES)
    assert selection.tau == max(selection.taus.values())
    # Deterministic: the same folds and seeds give the same taus (a resumed search refits alike).
    again = select_predictor(features, targets, {"gp": factories["gp"], "mlp": factories["mlp"]}, folds=5, seed=0)
    assert again.taus == {"gp": selection.taus["gp"], "mlp": selection.taus["mlp"]}


def test_cross_validation_is_out_of_fold():
    """A model that memorizes (1-nearest neighbour on exact matches) ranks perfectly in-sample but
    not out of fold on noise: the tau must come from held-out predictions."""
    rng = np.random.default_rng(2)
    features, targets = one_hot(rng.integers(0, 4, size=(30, 5)), 4), rng.normal(size=30)

    class Lookup:
        def fit(self, x, y):
            self.table = {tuple(row): value for row, value in zip(x, y)}
            return self

        def predict(self, x):
            return np.array([self.table.get(tuple(row), 0.0) for row in x])

    assert kendall_tau(targets, Lookup().fit(features, targets).predict(features)) == pytest.approx(1.0)
    assert cross_validated_tau(Lookup, features, targets, folds=5, seed=0) == 0.0


def test_too_small_an_archive_is_refused():
    features, targets = _benchmark(count=2)
    with pytest.raises(ValueError, match="at least 3"):
        select_predictor(features, targets, {"trees": lambda: make_predictor("trees", 0)}, folds=5, seed=0)
