"""scikit-learn's manners: clone, get/set_params, score (minus the mean error [m]), fit(X, y) for the methods that
learn from one environment, and model selection with cross_val_score and GridSearchCV."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from xloc.errors import DataValidationError
from xloc.methods import create


def room(n=160, seed=0):
    rng = np.random.default_rng(seed)
    aps = np.array([[0, 0], [20, 0], [0, 20], [20, 20], [10, 10]])
    pos = rng.uniform(0, 20, (n, 2))
    d = np.linalg.norm(pos[:, None] - aps[None], axis=-1) + 1
    return (-40 - 30 * np.log10(d) + rng.normal(0, 2, d.shape)).astype(np.float32), pos


def test_clone_keeps_hyper_parameters_and_method_but_no_fitted_state():
    X, y = room()
    est = create("mlp", hidden=(16, 16), steps=20).fit(X, y)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and twin.method_name == "mlp"
    assert not hasattr(twin, "engine_") and hasattr(est, "engine_")
    assert clone(create("wknn")).get_params()["weighted"] is True


def test_score_is_minus_the_mean_error_and_beats_the_centroid():
    X, y = room()
    est = create("wknn").fit(X[:120], y[:120])
    error = np.linalg.norm(est.predict(X[120:]) - y[120:], axis=1).mean()
    assert est.score(X[120:], y[120:]) == pytest.approx(-error)
    centroid = np.linalg.norm(y[:120].mean(0) - y[120:], axis=1).mean()
    assert -est.score(X[120:], y[120:]) < 0.6 * centroid


def test_cross_val_score_and_grid_search():
    X, y = room()
    scores = cross_val_score(create("wknn"), X, y, cv=KFold(4, shuffle=True, random_state=0))
    assert scores.shape == (4,) and (scores < 0).all()
    search = GridSearchCV(create("knn"), {"k": [1, 3, 9]}, cv=KFold(3, shuffle=True, random_state=0)).fit(X, y)
    assert search.best_params_["k"] in (3, 9)  # one neighbour is the noisiest choice here
    assert search.best_estimator_.method_name == "knn" and search.best_estimator_.predict(X[:5]).shape == (5, 2)


def test_methods_that_need_environments_say_so_for_arrays():
    X, y = room()
    with pytest.raises(DataValidationError, match="learns from environments: give it a FingerprintSet.*knn, wknn, mlp"):
        create("maml-dg").fit(X)
    with pytest.raises(DataValidationError, match=r"y must be positions \(160, 2\|3\)"):
        create("wknn").fit(X, y[:10])
