"""The broad learning system behind ILCL: incremental enhancement nodes equal refitting from scratch."""

from __future__ import annotations

import numpy as np
import pytest

from xloc.baselines.bls import BroadLearningSystem
from xloc.errors import DataValidationError, NotFittedError


@pytest.mark.parametrize("n", [300, 60])  # more rows than nodes, and fewer
def test_incremental_enhancement_nodes_equal_refitting_from_scratch(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 12))
    y = np.c_[np.sin(x[:, 0]) + x[:, 1], x[:, 2] * x[:, 3]]
    ridge = 1e-2
    bls = BroadLearningSystem(feature_groups=3, nodes_per_group=4, enhancement_nodes=10, ridge=ridge, seed=1).fit(x, y)
    for _ in range(10):  # ILCL's 10 incremental steps
        bls.add_enhancement_nodes(8)
    a = bls.nodes(x)
    assert a.shape == (n, 12 + 10 + 80)
    # the same nodes, output weights solved from scratch
    refit = np.linalg.solve(ridge * np.eye(a.shape[1]) + a.T @ a, a.T @ y)
    assert np.allclose(bls.w_out_, refit, atol=1e-6)
    assert np.allclose(bls.predict(x), a @ refit, atol=1e-6)


def test_the_ridge_path_gives_each_ridge_the_weights_of_a_fit_at_that_ridge():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 5))
    y = np.c_[x[:, 0] ** 2, np.sin(x[:, 1])]
    grown = BroadLearningSystem(feature_groups=2, nodes_per_group=4, enhancement_nodes=10, ridge=1e-3, seed=2).fit(x, y)
    for _ in range(3):
        grown.add_enhancement_nodes(5)
    ridges = [1e-3, 1e-1, 10.0]
    path = grown.ridge_path(ridges)
    assert path.shape == (3, 2 * 4 + 25, 2)
    a = grown.nodes(x)
    for w, ridge in zip(path, ridges, strict=True):
        assert np.allclose(w, np.linalg.solve(ridge * np.eye(a.shape[1]) + a.T @ a, a.T @ y), atol=1e-6)
    assert np.allclose(path[0], grown.w_out_, atol=1e-6)  # the ridge it was fitted at
    with pytest.raises(DataValidationError, match="ridges"):
        grown.ridge_path([0.0])


def test_more_enhancement_nodes_fit_the_training_data_better_and_beat_the_mean():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 6))
    y = np.c_[np.tanh(x[:, 0] * x[:, 1]), np.cos(x[:, 2])]
    bls = BroadLearningSystem(feature_groups=2, nodes_per_group=5, enhancement_nodes=5, seed=0).fit(x, y)
    before = np.mean((bls.predict(x) - y) ** 2)
    for _ in range(10):
        bls.add_enhancement_nodes(10)
    after = np.mean((bls.predict(x) - y) ** 2)
    assert after < before < np.mean((y - y.mean(0)) ** 2)


def test_bls_errors_are_clear():
    with pytest.raises(NotFittedError):
        BroadLearningSystem().predict(np.zeros((1, 3)))
    with pytest.raises(DataValidationError, match="ridge must be > 0"):
        BroadLearningSystem(ridge=0.0).fit(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(DataValidationError, match="same n"):
        BroadLearningSystem().fit(np.zeros((3, 2)), np.zeros((4, 2)))
