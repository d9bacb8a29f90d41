"""K-nearest-neighbour fingerprinting in signal space (KNN and its distance-weighted variant WKNN).

For a query RSS vector ``r`` the ``k`` reference fingerprints ``r_i`` closest in Euclidean distance
``d_i = ||r - r_i||_2`` [dB] are found and the position estimate is

    KNN:  p = (1/k) sum_i p_i            WKNN: p = sum_i w_i p_i / sum_i w_i,  w_i = 1 / (d_i + eps)

(MetaLoc section IV-C uses KNN with K = 5). "Not heard" (NaN) is replaced by ``floor_dbm`` before distances.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError, NotFittedError
from xloc.features.signal import fill_not_heard

__all__ = ["KNNLocalizer"]

_CHUNK = 4096  # queries per distance block: bounds memory at CHUNK x n_ref floats


class KNNLocalizer:
    """KNN / WKNN localizer fitted per environment on whatever support set it is given.

    Parameters
    ----------
    k : int
        Neighbours; if the support has fewer reference fingerprints, all are used.
    weighted : bool
        False: KNN (plain mean); True: WKNN (inverse-distance weights).
    floor_dbm : float
        Value [dBm] that stands for "not heard" in distances.
    average_points : bool
        Average the samples of each reference point into one radio-map entry (classic radio map) before
        matching; False matches against individual samples.
    eps : float
        Regulariser [dB] of the WKNN weights.

    Attributes
    ----------
    radio_map_dbm_ : ``(n_ref, n_ap)``
        Reference fingerprints [dBm], NaN replaced by ``floor_dbm``.
    positions_m_ : ``(n_ref, dims)``
        Their positions [m].
    n_features_in_ : int
        Number of APs seen at ``adapt``.
    """

    def __init__(
        self,
        k: int = 5,
        *,
        weighted: bool = False,
        floor_dbm: float = -105.0,
        average_points: bool = True,
        eps: float = 1e-6,
    ) -> None:
        self.k = k
        self.weighted = weighted
        self.floor_dbm = floor_dbm
        self.average_points = average_points
        self.eps = eps

    def _check_params(self) -> None:
        if not isinstance(self.k, int | np.integer) or self.k < 1:
            raise DataValidationError(f"KNNLocalizer: k must be an integer >= 1, got {self.k!r}")
        if not np.isfinite(self.floor_dbm):
            raise DataValidationError(f"KNNLocalizer: floor_dbm must be finite, got {self.floor_dbm}")
        if self.eps <= 0:
            raise DataValidationError(f"KNNLocalizer: eps must be > 0, got {self.eps}")

    def fit(self, sources: FingerprintSet | None = None) -> KNNLocalizer:
        """Nothing is learned across environments; kept so KNN plugs into every protocol."""
        self._check_params()
        return self

    def adapt(self, support: Fingerprints, steps: int | None = None) -> KNNLocalizer:
        """A copy fitted on the support set of one environment (``steps`` is ignored: no training)."""
        if support.environment.kind != "rss":
            raise DataValidationError(f"KNNLocalizer needs RSS fingerprints, got {support.environment.kind}")
        if self.average_points:
            rss, pos, _ = support.point_means(self.floor_dbm)
        else:
            rss, pos = support.measurements, support.positions_m
        return copy.copy(self).fit_arrays(rss, pos)

    def fit_arrays(self, rss_dbm: np.ndarray, positions_m: np.ndarray) -> KNNLocalizer:
        """Fit on raw arrays: RSS [dBm] ``(n, n_ap)`` with NaN for not heard, positions [m] ``(n, dims)``."""
        self._check_params()
        rss = np.asarray(rss_dbm, dtype=np.float64)
        pos = np.asarray(positions_m, dtype=np.float64)
        if rss.ndim != 2 or pos.ndim != 2 or rss.shape[0] != pos.shape[0] or rss.shape[0] == 0:
            raise DataValidationError(
                f"KNNLocalizer.fit_arrays: need rss (n, n_ap) and positions (n, dims) with n >= 1, "
                f"got {rss.shape} and {pos.shape}"
            )
        if not np.isfinite(pos).all():
            raise DataValidationError("KNNLocalizer.fit_arrays: positions must be finite")
        self.radio_map_dbm_ = fill_not_heard(rss, self.floor_dbm)
        self.positions_m_ = pos
        self.n_features_in_ = rss.shape[1]
        return self

    def predict(self, rss_dbm: np.ndarray) -> np.ndarray:
        """Positions [m] ``(n, dims)`` for RSS queries [dBm] ``(n, n_ap)``."""
        return self.predict_with_spread(rss_dbm)[0]

    def predict_with_spread(self, rss_dbm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions [m] ``(n, dims)`` and the (weighted) RMS distance [m] ``(n,)`` of the k neighbours from them,
        ``sqrt(sum_i w_i ||p_i - p||^2 / sum_i w_i)`` -- a spread the service reports as uncertainty."""
        if not hasattr(self, "radio_map_dbm_"):
            raise NotFittedError("KNNLocalizer is not fitted: call adapt(support) or fit_arrays() first")
        q = np.asarray(rss_dbm, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != self.n_features_in_:
            raise DataValidationError(
                f"KNNLocalizer.predict: expected RSS of shape (n, {self.n_features_in_}), got {q.shape}"
            )
        if np.isinf(q).any():
            raise DataValidationError("KNNLocalizer.predict: RSS holds infinite values; use NaN for not heard")
        ref = self.radio_map_dbm_
        k = min(int(self.k), ref.shape[0])
        # Squared distances |q|^2 + |r|^2 - 2 q.r by one BLAS product and the k smallest by torch.topk: both
        # multi-threaded, where numpy's argpartition is single-threaded and was half the time (perf bench).
        ref_t = torch.from_numpy(ref)
        ref_sq = (ref_t**2).sum(1)
        out = np.empty((q.shape[0], self.positions_m_.shape[1]))
        spread = np.empty(q.shape[0])
        for start in range(0, q.shape[0], _CHUNK):
            sl = slice(start, start + _CHUNK)
            qt = torch.from_numpy(fill_not_heard(q[sl], self.floor_dbm))
            # |r|^2 - 2 q.r in one fused BLAS call; |q|^2 is constant per row, so it is added to the k kept only.
            partial = torch.addmm(ref_sq[None, :].expand(len(qt), -1), qt, ref_t.T, alpha=-2.0)
            part_k, idx_t = torch.topk(partial, k, dim=1, largest=False)
            idx = idx_t.numpy()
            d = np.sqrt(np.maximum(part_k.numpy() + (qt**2).sum(1, keepdim=True).numpy(), 0.0))
            neighbours = self.positions_m_[idx]  # (b, k, dims)
            w = 1.0 / (d + self.eps) if self.weighted else np.ones(idx.shape)
            out[sl] = (w[..., None] * neighbours).sum(1) / w.sum(1, keepdims=True)
            spread[sl] = np.sqrt((w * ((neighbours - out[sl, None]) ** 2).sum(-1)).sum(1) / w.sum(1))
        return out, spread

    def __repr__(self) -> str:
        name = "WKNN" if self.weighted else "KNN"
        return f"KNNLocalizer({name}, k={self.k}, floor_dbm={self.floor_dbm})"
