"""Positions propagated over a signal graph: the harmonic solution, the prior's pull, unreached components."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from xloc.errors import DataValidationError
from xloc.learn.propagation import propagate_positions, signal_graph


def _chain(n: int) -> sparse.csr_matrix:
    w = sparse.diags([np.ones(n - 1), np.ones(n - 1)], [-1, 1], shape=(n, n))
    return sparse.csr_matrix(w)


def test_harmonic_positions_on_a_chain_interpolate_between_its_labelled_ends():
    positions = propagate_positions(_chain(5), np.array([0, 4]), np.array([[0.0, 0.0], [8.0, 4.0]]), order=1)
    np.testing.assert_allclose(positions, np.array([[0, 0], [2, 1], [4, 2], [6, 3], [8, 4]]), atol=1e-4)


def test_second_order_extrapolates_beyond_the_labels_where_the_harmonic_solution_stays_flat():
    y = np.array([[1.0, 0.0], [2.0, 0.0]])
    harmonic = propagate_positions(_chain(6), np.array([1, 2]), y, order=1)[:, 0]
    curvature = propagate_positions(_chain(6), np.array([1, 2]), y, order=2)[:, 0]
    np.testing.assert_allclose(harmonic[3:], 2.0, atol=1e-4)
    assert np.all(np.diff(curvature) > 0) and curvature[5] > 3.0 and curvature[0] < 1.0


def test_the_prior_pull_moves_unlabelled_nodes_towards_the_prior_and_not_the_labelled_ones():
    prior = np.full((5, 2), 10.0)
    labelled = np.array([0, 4])
    y = np.array([[0.0, 0.0], [8.0, 4.0]])
    weak = propagate_positions(_chain(5), labelled, y, prior, 0.01, order=1)
    strong = propagate_positions(_chain(5), labelled, y, prior, 100.0, order=1)
    np.testing.assert_allclose(strong[labelled], y)
    assert np.abs(strong[1:4] - 10.0).max() < 0.1
    assert np.abs(weak[2] - [4.0, 2.0]).max() < 0.5  # near the harmonic value, far from the prior 10


def test_a_component_no_labelled_node_reaches_takes_the_prior_mean_or_the_labelled_mean():
    w = sparse.block_diag([_chain(3), _chain(2)]).tocsr()  # nodes 3, 4 are cut off from the labels
    y = np.array([[0.0, 0.0], [4.0, 0.0]])
    no_prior = propagate_positions(w, np.array([0, 2]), y, order=1)
    np.testing.assert_allclose(no_prior[3:], [[2.0, 0.0], [2.0, 0.0]], atol=1e-4)
    prior = np.array([[0, 0], [0, 0], [0, 0], [7.0, 7.0], [9.0, 9.0]])
    with_prior = propagate_positions(w, np.array([0, 2]), y, prior, 0.0, order=1)
    np.testing.assert_allclose(with_prior[3:], [[8, 8], [8, 8]], atol=1e-3)


def test_signal_graph_is_symmetric_with_weights_in_0_1_and_joins_near_fingerprints():
    x = np.array([[0.0], [1.0], [2.0], [50.0], [51.0]])
    w = signal_graph(x, 1)
    assert (w != w.T).nnz == 0
    assert w.max() <= 1.0 and w.min() >= 0.0
    assert w[0, 1] > 0 and w[3, 4] > 0 and w[0, 3] == 0


def test_bad_input_is_named():
    with pytest.raises(DataValidationError, match="labelled"):
        propagate_positions(_chain(3), np.array([0, 0]), np.zeros((2, 2)))
    with pytest.raises(DataValidationError, match="prior_m"):
        propagate_positions(_chain(3), np.array([0]), np.zeros((1, 2)), None, 1.0)
    with pytest.raises(DataValidationError, match="order"):
        propagate_positions(_chain(3), np.array([0]), np.zeros((1, 2)), order=4)
    with pytest.raises(DataValidationError, match="n >= 2"):
        signal_graph(np.zeros((1, 3)), 2)
