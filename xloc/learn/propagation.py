"""Positions propagated over a signal-space graph of one environment's fingerprints (semi-supervised learning).

The nodes are fingerprints of one environment, a few labelled (position known) and the rest unlabelled. Edges join
each node to its ``n_neighbours`` nearest nodes in signal space, weighted by a Gaussian of their distance,

    W_ij = exp(-||x_i - x_j||^2 / sigma^2),   sigma^2 = mean over nodes of the squared n-th neighbour distance,

symmetrised (``max(W, W^T)``). With the graph Laplacian ``L = D - W`` and ``M = L^p`` (``p = order``), the
unlabelled nodes' positions ``f_u`` minimise the graph energy plus a pull towards a prior guess ``g_u`` (e.g. a
meta-learned model's estimate) weighted by ``mu``:

    min_f  tr(f^T M f) + mu sum_u M_uu ||f_u - g_u||^2,   f_l = y_l
    =>  (M_uu + mu diag(M)_uu) f_u = -M_ul y_l + mu diag(M)_uu g_u.

``order = 1`` is Zhu, Ghahramani and Lafferty's harmonic solution (ICML 2003): each unlabelled position is a
weighted mean of its neighbours', so it stays inside the labelled points' convex hull, and with few labels on a
2-D floor it goes flat -- most nodes end near the labelled mean with spikes at the labels (Nadler, Srebro and Zhou,
NIPS 2009). ``order = 2`` penalises the curvature instead (Zhou and Belkin, AISTATS 2011, higher-order
regularisation): positions vary linearly along the fingerprint manifold and extrapolate beyond the labels. A larger
``mu`` trusts the prior more. A connected component that holds no labelled node takes the (weighted) mean of the
prior over it, or the labelled points' mean when there is no prior (a tiny pull, ``1e-6 diag(M)``, keeps the system
regular).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve
from sklearn.neighbors import NearestNeighbors

from xloc.errors import DataValidationError

__all__ = ["signal_graph", "propagate_positions"]

#: Pull towards the prior (or the labelled mean) that keeps components without a labelled node determined.
_REGULARISER = 1e-6


def signal_graph(features: np.ndarray, n_neighbours: int) -> sparse.csr_matrix:
    """Symmetric k-nearest-neighbour graph ``(n, n)`` with Gaussian weights over ``features (n, d)``."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise DataValidationError(f"signal_graph: need features of shape (n >= 2, d), got {x.shape}")
    if n_neighbours < 1:
        raise DataValidationError(f"signal_graph: n_neighbours must be >= 1, got {n_neighbours}")
    k = min(n_neighbours, len(x) - 1)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    dist, idx = dist[:, 1:], idx[:, 1:]  # drop each node itself
    sigma2 = max(float(np.mean(dist[:, -1] ** 2)), 1e-12)
    rows = np.repeat(np.arange(len(x)), k)
    w = sparse.csr_matrix((np.exp(-(dist.ravel() ** 2) / sigma2), (rows, idx.ravel())), shape=(len(x), len(x)))
    return w.maximum(w.T).tocsr()


def propagate_positions(graph: sparse.csr_matrix, labelled: np.ndarray, positions_m: np.ndarray,
                        prior_m: np.ndarray | None = None, prior_weight: float = 0.0, order: int = 2) -> np.ndarray:
    """Positions [m] ``(n, d)`` of every node: the labelled ones as given, the others by the module's equation.

    ``labelled`` holds node indices ``(n_l,)``, ``positions_m`` their positions ``(n_l, d)``; ``prior_m (n, d)`` is
    the prior guess for every node (rows of labelled nodes are ignored), needed when ``prior_weight > 0``.
    """
    n = graph.shape[0]
    labelled = np.asarray(labelled, dtype=np.int64)
    y = np.asarray(positions_m, dtype=np.float64)
    if labelled.size == 0 or y.shape[0] != labelled.size or len(np.unique(labelled)) != labelled.size:
        raise DataValidationError(f"propagate_positions: need distinct labelled nodes with one position each, got "
                                  f"{labelled.size} nodes and positions of shape {y.shape}")
    if order not in (1, 2, 3):
        raise DataValidationError(f"propagate_positions: order must be 1, 2 or 3, got {order}")
    if prior_weight < 0:
        raise DataValidationError(f"propagate_positions: prior_weight must be >= 0, got {prior_weight}")
    if prior_weight > 0 and (prior_m is None or np.shape(prior_m) != (n, y.shape[1])):
        raise DataValidationError(f"propagate_positions: prior_weight > 0 needs prior_m of shape {(n, y.shape[1])}")
    unl = np.setdiff1d(np.arange(n), labelled)
    out = np.empty((n, y.shape[1]))
    out[labelled] = y
    if unl.size == 0:
        return out
    g = np.asarray(prior_m, dtype=np.float64)[unl] if prior_m is not None else np.repeat(y.mean(0, keepdims=True),
                                                                                           unl.size, 0)
    laplacian = (sparse.diags(np.asarray(graph.sum(axis=1)).ravel()) - graph).tocsr()
    energy = laplacian
    for _ in range(order - 1):
        energy = (energy @ laplacian).tocsr()
    rows = energy[unl]
    diag = np.asarray(rows[:, unl].diagonal())
    pull = (prior_weight + _REGULARISER) * np.maximum(diag, 1e-12)
    system = rows[:, unl] + sparse.diags(pull)
    rhs = -(rows[:, labelled] @ y) + pull[:, None] * g
    solved = spsolve(system.tocsc(), rhs)
    out[unl] = solved.reshape(unl.size, y.shape[1])
    return out
