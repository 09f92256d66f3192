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
    # Genomes that arrive as floats (issue 15: they must still index the blocks).
    assert one_hot(np.array([[0.0, 3.0], [2.0, 1.0]]), 4).tolist() == encoded.tolist()


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


def cubic_rbf_reference(features, targets, smoothing, queries):
    """The smoothed cubic RBF interpolant with a linear tail, solved directly on the one-hot
    features: [[K + s I, P], [P^T, 0]] [w; c] = [y; 0] with K = |x_i - x_j|^3, P = [1, x]. The tail
    is rank-deficient on one-hot blocks, so least squares picks one of the equivalent c; P c is
    the same for all of them on the points' affine hull."""
    from scipy.spatial.distance import cdist

    n, tail = len(features), np.hstack([np.ones((len(features), 1)), features])
    system = np.block([[cdist(features, features) ** 3 + smoothing * np.eye(n), tail],
                       [tail.T, np.zeros((tail.shape[1], tail.shape[1]))]])
    solution = np.linalg.lstsq(system, np.concatenate([targets, np.zeros(tail.shape[1])]), rcond=None)[0]
    weights, coefficients = solution[:n], solution[n:]
    return cdist(queries, features) ** 3 @ weights + np.hstack([np.ones((len(queries), 1)), queries]) @ coefficients


def test_rbf_is_the_smoothed_cubic_interpolant_with_a_linear_tail():
    """Guards against (issue 15, mutation testing) the RBF model losing its cubic kernel, its
    smoothing or its linear tail, and its projection onto the points' affine hull changing the
    pairwise distances (a wrong centre, rank or threshold): the predictions must equal the
    interpolant solved directly. Archives of 2 and 3 points (a hull of 1 and 2 dimensions) must fit
    and be interpolated."""
    rng = np.random.default_rng(3)
    features, targets = one_hot(rng.integers(0, 4, size=(30, 5)), 4), rng.normal(size=30)
    unseen = one_hot(rng.integers(0, 4, size=(6, 5)), 4)
    model = make_predictor("rbf", 0).fit(features, targets)
    from scipy.spatial.distance import pdist

    np.testing.assert_allclose(pdist(model._project(features)), pdist(features), atol=1e-12)
    np.testing.assert_allclose(model.predict(unseen), cubic_rbf_reference(features, targets, 1e-3, unseen),
                               rtol=1e-9, atol=1e-9)
    for count in (2, 3):
        small = make_predictor("rbf", 0).fit(features[:count], targets[:count])
        np.testing.assert_allclose(small.predict(features[:count]), targets[:count], atol=1e-2)


def test_the_pool_is_configured_as_documented_and_seeded():
    """Guards against (issue 15, mutation testing) a changed setting of the pool's models (the
    module docstring's list: GP with an RBF kernel plus white noise on normalized targets, MLP with
    two hidden layers of 64, extremely randomized trees on half the features) and a model not
    seeded (a resumed search would refit differently), plus the refusal's message."""
    gp = make_predictor("gp", 7).get_params()
    assert repr(gp["kernel"]) == "1**2 * RBF(length_scale=2) + WhiteKernel(noise_level=0.01)"
    assert gp["normalize_y"] is True and gp["random_state"] == 7
    mlp = make_predictor("mlp", 7).get_params()
    assert (mlp["hidden_layer_sizes"], mlp["learning_rate_init"], mlp["max_iter"], mlp["tol"], mlp["random_state"]) \
        == ((64, 64), 8e-4, 500, 1e-6, 7)
    trees = make_predictor("trees", 7).get_params()
    assert (trees["n_estimators"], trees["max_features"], trees["min_samples_leaf"], trees["random_state"],
            trees["n_jobs"]) == (200, 0.5, 1, 7, 1)
    with pytest.raises(ValueError) as error:
        make_predictor("svm", 0)
    assert str(error.value) == "unknown predictor 'svm'; expected one of rbf, gp, mlp, trees"


def test_three_architectures_suffice_and_blas_runs_one_thread():
    """Guards against the minimum archive of 3 being refused (`<= 3`, `< 4`) and the BLAS / OpenMP
    pools not limited to one thread during selection."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from dfnas.nas.strategies.nat_predictors import one_blas_thread

    features, targets = _benchmark(count=3)
    selection = select_predictor(features, targets, {"constant": Constant}, folds=3, seed=0)
    assert selection.name == "constant"
    with threadpool_limits(limits=2), one_blas_thread():  # from 2 threads, whatever OMP_NUM_THREADS says
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())


def test_kendall_tau_of_two_points_ties_go_first_and_only_convergence_warnings_are_hidden():
    """Guards against `kendall_tau` treating two points as too few (their tau is +-1) or scoring
    a single point 1, a tie between models going to the later one (the docstring: the first
    listed), and `fit` hiding every warning instead of only scikit-learn's convergence warnings."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from dfnas.nas.strategies.nat_predictors import fit

    assert kendall_tau(np.array([1.0, 2.0]), np.array([5.0, 3.0])) == -1.0
    assert kendall_tau(np.array([1.0]), np.array([2.0])) == 0.0
    features, targets = _benchmark()
    selection = select_predictor(features, targets, {"first": Constant, "second": Constant}, folds=5, seed=0)
    assert selection.name == "first"

    class Warns(Constant):
        def fit(self, features, targets):
            warnings.warn("not converged", ConvergenceWarning)
            warnings.warn("something else", UserWarning)
            return self

    with pytest.warns(UserWarning, match="something else") as caught:
        fit(Warns(), features, targets)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
