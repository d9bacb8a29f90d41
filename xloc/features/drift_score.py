"""Has a site drifted? A score from unlabelled fingerprints of now against the site's survey.

The statistic is the unbiased squared MMD (:mod:`xloc.features.mmd`, Gaussian kernel, median bandwidth) between
the survey's fingerprints ``X`` and the recent ones ``Y`` (RSS [dBm] with "not heard" at ``floor_dbm``; CSI:
its feature vectors), calibrated by a permutation test: the pooled samples are relabelled ``permutations`` times
and the score is the statistic's distance from the permutation mean in permutation standard deviations,

    z = (MMD_u^2(X, Y) - mean_pi MMD_u^2) / std_pi MMD_u^2,      p = (1 + #{pi: MMD_pi >= MMD}) / (1 + P),

so one threshold serves every site whatever its AP count or signal levels. Beside it, what a technician reads:
the median over APs heard in both of the absolute change of the mean level [dB], the APs the survey heard in
at least ``heard_fraction`` of its scans that no recent scan hears (gone) and the reverse (new).

The test assumes both sets sample the same area alike: recent traffic that keeps to a corridor of a surveyed
floor differs from the survey without any drift, and scores as drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xloc.errors import DataValidationError
from xloc.features.mmd import _sq_dists, median_bandwidth

__all__ = ["DriftScore", "drift_score", "roc_auc"]


@dataclass(frozen=True)
class DriftScore:
    """A site's drift score (see the module text)."""

    #: MMD^2 in standard deviations of its permutation null
    z: float
    #: permutation p-value of MMD^2
    p_value: float
    #: the unbiased squared MMD itself
    mmd2: float
    #: median over APs heard in both of |mean level now - mean level at the survey| [dB] (NaN: none shared)
    mean_shift_db: float
    #: indices of APs the survey heard that no recent scan hears
    gone: tuple[int, ...]
    #: indices of APs recent scans hear that the survey never heard
    new: tuple[int, ...]

    def drifted(self, alpha: float = 0.01) -> bool:
        """Whether the change is significant at level ``alpha``."""
        return self.p_value < alpha


def drift_score(survey: np.ndarray, recent: np.ndarray, *, floor_dbm: float = -105.0, permutations: int = 200,
                max_samples: int = 400, heard_fraction: float = 0.2, seed: int = 0) -> DriftScore:
    """Score ``recent`` fingerprints ``(m, d)`` against the ``survey``'s ``(n, d)`` (NaN = not heard); each side is
    subsampled to ``max_samples`` scans (seeded) to bound the ``(n + m)^2`` kernel."""
    x, y = np.asarray(survey, dtype=np.float64), np.asarray(recent, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise DataValidationError(f"drift score needs (n, d) survey and (m, d) recent fingerprints with the same "
                                  f"columns, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise DataValidationError(f"drift score needs at least 2 scans on each side, got {len(x)} and {len(y)}")
    if permutations < 20:
        raise DataValidationError(f"permutations must be >= 20, got {permutations}")
    rng = np.random.default_rng(seed)
    if len(x) > max_samples:
        x = x[np.sort(rng.choice(len(x), max_samples, replace=False))]
    if len(y) > max_samples:
        y = y[np.sort(rng.choice(len(y), max_samples, replace=False))]
    heard_x, heard_y = ~np.isnan(x), ~np.isnan(y)
    gone = np.flatnonzero((heard_x.mean(0) >= heard_fraction) & ~heard_y.any(0))
    new = np.flatnonzero(~heard_x.any(0) & heard_y.any(0))
    shared = heard_x.any(0) & heard_y.any(0)
    with np.errstate(invalid="ignore"):
        shifts = np.abs(np.nanmean(y[:, shared], 0) - np.nanmean(x[:, shared], 0)) if shared.any() else np.array([])
    fx, fy = np.where(heard_x, x, floor_dbm), np.where(heard_y, y, floor_dbm)
    pooled = np.concatenate([fx, fy])
    bandwidth = median_bandwidth(fx, fy)
    kernel = np.exp(-_sq_dists(pooled, pooled) / (2 * bandwidth**2))
    np.fill_diagonal(kernel, 0.0)
    m, n = len(fx), len(fy)
    labels = np.zeros((permutations + 1, m + n))
    labels[0, :m] = 1.0
    for i in range(1, permutations + 1):
        labels[i, rng.permutation(m + n)[:m]] = 1.0
    other = 1.0 - labels
    kxx = np.einsum("pi,ij,pj->p", labels, kernel, labels)
    kyy = np.einsum("pi,ij,pj->p", other, kernel, other)
    kxy = np.einsum("pi,ij,pj->p", labels, kernel, other)
    stats = kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - 2 * kxy / (m * n)
    observed, null = float(stats[0]), stats[1:]
    z = float((observed - null.mean()) / max(null.std(ddof=1), 1e-12))
    p_value = float((1 + (null >= observed).sum()) / (1 + permutations))
    return DriftScore(z=z, p_value=p_value, mmd2=observed,
                      mean_shift_db=float(np.median(shifts)) if shifts.size else float("nan"),
                      gone=tuple(int(i) for i in gone), new=tuple(int(i) for i in new))


def roc_auc(scores_negative: np.ndarray, scores_positive: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a positive scores above a negative (ties count half),
    the Mann-Whitney statistic."""
    neg, pos = np.asarray(scores_negative, dtype=np.float64), np.asarray(scores_positive, dtype=np.float64)
    if neg.size == 0 or pos.size == 0:
        raise DataValidationError("ROC AUC needs at least one negative and one positive score")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))
