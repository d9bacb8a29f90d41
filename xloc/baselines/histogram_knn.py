"""KNN for CSI images by histogram intersection (MetaLoc eq. (2); the paper's KNN baseline for CSI).

The ``k`` reference points whose support images have the largest mean histogram intersection with a test image
are found; the estimate is the mean of their coordinates (``k = 1``: the most similar RP).
"""

from __future__ import annotations

import copy

import numpy as np

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError, NotFittedError
from xloc.features.histogram import image_histograms
from xloc.learn.image_tasks import nearest_rps

__all__ = ["HistogramKNN"]


class HistogramKNN:
    """KNN on CSI images with histogram-intersection similarity.

    Parameters
    ----------
    k : int
        Reference points averaged.
    """

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def fit(self, sources: FingerprintSet | None = None) -> HistogramKNN:
        if not isinstance(self.k, int) or self.k < 1:
            raise DataValidationError(f"HistogramKNN: k must be an integer >= 1, got {self.k!r}")
        return self

    def adapt(self, support: Fingerprints, steps: int | None = None) -> HistogramKNN:
        """A copy holding the support images' histograms and their reference points' mean positions."""
        if support.environment.kind != "csi_image":
            raise DataValidationError(f"environment {support.name!r}: HistogramKNN needs CSI images")
        out = copy.copy(self).fit()
        out._set_support(support)
        return out

    def _set_support(self, support: Fingerprints) -> None:
        self.rp_ids_, self.rp_of_image_ = np.unique(support.point_ids, return_inverse=True)
        pos = np.zeros((self.rp_ids_.size, support.dims))
        np.add.at(pos, self.rp_of_image_, support.positions_m)
        self.rp_positions_m_ = pos / np.bincount(self.rp_of_image_)[:, None]
        self.hist_ = image_histograms(support.measurements)
        self.image_shape_ = support.measurements.shape[1:]

    def predict(self, measurements: np.ndarray) -> np.ndarray:
        if not hasattr(self, "hist_"):
            raise NotFittedError("HistogramKNN is not fitted: call adapt(support) first")
        x = np.asarray(measurements)
        if x.ndim != 4 or x.shape[1:] != self.image_shape_:
            raise DataValidationError(f"expected CSI images of shape (n, {self.image_shape_}), got {x.shape}")
        k = min(self.k, self.rp_ids_.size)
        cand = nearest_rps(image_histograms(x), self.hist_, self.rp_of_image_, self.rp_ids_.size, k)
        return self.rp_positions_m_[cand].mean(1)
