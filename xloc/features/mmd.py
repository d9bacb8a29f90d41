"""Maximum mean discrepancy (MetaLoc eq. 16) with a Gaussian kernel.

For samples ``X = {x_i}_{i=1..m}`` and ``Y = {y_j}_{j=1..n}`` the unbiased estimator of the squared MMD
(Gretton et al., JMLR 2012, eq. 3) is

    MMD_u^2 = 1/(m(m-1)) sum_{i != i'} k(x_i, x_i') + 1/(n(n-1)) sum_{j != j'} k(y_j, y_j')
              - 2/(mn) sum_{i,j} k(x_i, y_j),      k(a, b) = exp(-||a - b||^2 / (2 sigma^2)),

with the bandwidth ``sigma`` set by the median heuristic: the median pairwise distance of the pooled samples.
The unbiased estimate can be slightly negative when the distributions agree.
"""

from __future__ import annotations

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["mmd2_unbiased", "median_bandwidth"]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    """Median pairwise Euclidean distance of the pooled samples (off-diagonal), at least 1e-12."""
    z = np.concatenate([x, y]).astype(np.float64)
    d2 = _sq_dists(z, z)
    off = d2[~np.eye(len(z), dtype=bool)]
    return float(max(np.sqrt(np.median(off)), 1e-12))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD between samples ``x`` ``(m, d)`` and ``y`` ``(n, d)`` (Gaussian kernel)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise DataValidationError(f"MMD needs two sample matrices with equal columns, got {x.shape} and {y.shape}")
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise DataValidationError(f"the unbiased MMD needs at least 2 samples on each side, got {m} and {n}")
    sigma = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    gamma = 1.0 / (2.0 * sigma**2)
    kxx = np.exp(-gamma * _sq_dists(x, x))
    kyy = np.exp(-gamma * _sq_dists(y, y))
    kxy = np.exp(-gamma * _sq_dists(x, y))
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )
