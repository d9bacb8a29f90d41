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

#: Queries per distance block: bounds memory at CHUNK x n_ref float32 distances, small enough to stay in cache
#: for the top-k that reads them.
_CHUNK = 512
#: Candidates re-ranked in float64 for a query whose k-th and (k+1)-th float32 distances are closer than the
#: float32 error bound (a near-tie the float32 search could have swapped).
_MARGIN = 16
#: Relative error bound of a float32 squared distance as computed here (a dot product of a few hundred centred
#: terms and two squared norms), with a wide safety factor: 64 units in the last place.
_F32_TOLERANCE = 64 * 2.0**-23


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
    centre_dbm_ : ``(n_ap,)``
        Mean of the radio map per AP; the float32 search runs on centred values (smaller norms, smaller errors).
    radio_map32_, radio_map_sq32_ : tensors ``(n_ref, n_ap)``, ``(n_ref,)``
        The centred radio map in float32 and its squared norms, for the neighbour search.
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
        self.centre_dbm_ = self.radio_map_dbm_.mean(0)
        centred = self.radio_map_dbm_ - self.centre_dbm_
        self.radio_map32_ = torch.from_numpy(centred.astype(np.float32))
        self.radio_map_sq32_ = torch.from_numpy((centred**2).sum(1).astype(np.float32))
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
        n_ref = ref.shape[0]
        k = min(int(self.k), n_ref)
        max_sq = float(self.radio_map_sq32_.max())
        out = np.empty((q.shape[0], self.positions_m_.shape[1]))
        spread = np.empty(q.shape[0])
        for start in range(0, q.shape[0], _CHUNK):
            sl = slice(start, start + _CHUNK)
            q64 = fill_not_heard(q[sl], self.floor_dbm)
            qc = q64 - self.centre_dbm_
            # Search in float32: one BLAS product gives |r|^2 - 2 q.r (|q|^2 is constant per row), torch.topk the
            # k + 1 smallest (multi-threaded, where numpy's argpartition is not).
            partial = torch.from_numpy((-2.0 * qc).astype(np.float32)) @ self.radio_map32_.T
            partial += self.radio_map_sq32_  # in place: addmm first copied the broadcast norms into a whole block
            # (2000 queries x 5000 references x 200 APs: 80 -> 51 ms)
            values, found = torch.topk(partial, min(k + 1, n_ref), dim=1, largest=False)
            idx = found[:, :k].numpy()
            if n_ref > k:  # a near-tie at the k-th place: re-rank more candidates by exact float64 distances
                tolerance = _F32_TOLERANCE * ((qc**2).sum(1) + max_sq)
                ties = np.flatnonzero((values[:, k] - values[:, k - 1]).numpy() <= tolerance)
                if ties.size:
                    wide = torch.topk(partial[ties], min(k + _MARGIN, n_ref), dim=1, largest=False)[1].numpy()
                    exact = ((ref[wide] - q64[ties, None, :]) ** 2).sum(-1)
                    idx[ties] = np.take_along_axis(wide, np.argsort(exact, axis=1, kind="stable")[:, :k], 1)
            # exact float64 distances of the k neighbours give the weights and the spread
            d = np.sqrt(((ref[idx] - q64[:, None, :]) ** 2).sum(-1))
            neighbours = self.positions_m_[idx]  # (b, k, dims)
            w = 1.0 / (d + self.eps) if self.weighted else np.ones(idx.shape)
            out[sl] = (w[..., None] * neighbours).sum(1) / w.sum(1, keepdims=True)
            spread[sl] = np.sqrt((w * ((neighbours - out[sl, None]) ** 2).sum(-1)).sum(1) / w.sum(1))
        return out, spread

    def __repr__(self) -> str:
        name = "WKNN" if self.weighted else "KNN"
        return f"KNNLocalizer({name}, k={self.k}, floor_dbm={self.floor_dbm})"
