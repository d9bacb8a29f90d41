"""Histogram intersection of CSI images (MetaLoc eq. (2)).

Each image's pixels (values 0-255, all channels together) are counted into ``n_bins`` equal-width bins; the
similarity of images ``I`` and ``I'`` is ``Z(I) ∩ Z(I') = sum_j min(Z_j(I), Z_j(I'))`` (larger = more similar;
equal to the pixel count for identical images).
"""

from __future__ import annotations

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["image_histograms", "histogram_intersection"]


def image_histograms(
    images: np.ndarray, n_bins: int = 256, value_range: tuple[float, float] = (0.0, 256.0)
) -> np.ndarray:
    """Pixel-count histograms ``(n, n_bins)`` of images ``(n, ...)`` with values in ``value_range``."""
    x = np.asarray(images)
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataValidationError(f"need a stack of images (n, ...), got shape {x.shape}")
    lo, hi = value_range
    flat = x.reshape(x.shape[0], -1)
    bins = np.clip(((flat - lo) / (hi - lo) * n_bins).astype(np.int64), 0, n_bins - 1)
    offsets = (np.arange(x.shape[0]) * n_bins)[:, None]
    counts = np.bincount((bins + offsets).ravel(), minlength=x.shape[0] * n_bins)
    return counts.reshape(x.shape[0], n_bins)


def histogram_intersection(h_a: np.ndarray, h_b: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Eq. (2) between every row of ``h_a`` ``(n, B)`` and of ``h_b`` ``(m, B)``: ``(n, m)``."""
    a, b = np.asarray(h_a), np.asarray(h_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataValidationError(f"histograms must be (n, B) and (m, B), got {a.shape} and {b.shape}")
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int64)
    for start in range(0, a.shape[0], chunk):
        out[start : start + chunk] = np.minimum(a[start : start + chunk, None, :], b[None, :, :]).sum(-1)
    return out
