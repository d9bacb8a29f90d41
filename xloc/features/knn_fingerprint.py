"""MetaLoc's RSS fingerprint (Fig. 3): the K nearest reference points in signal space.

For a sample with RSS vector ``r`` and a database of reference points (RPs) with radio-map vectors ``r_j`` and
positions ``L_j``, the fingerprint holds the K smallest signal distances ``RSS_dis_i = ||r - r_(i)||_2`` and the
coordinates ``L_(i)`` of those RPs. Because it is built from distances and RP coordinates only, environments
with different AP sets give inputs of the same size.

Normalisation (our choice; the paper is silent): with ``c`` the centroid of the K RP coordinates and
``s = sqrt(mean_i ||L_(i) - c||^2) + 1 m`` their spread, the feature is

    [ RSS_dis_1 .. RSS_dis_K ] / (10 dB * sqrt(n_AP)),   (L_(1) - c) / s, ..., (L_(K) - c) / s

and the regression target is ``(p - c) / s``; a prediction ``y`` maps back to ``c + s y``. Distances per AP and
positions relative to the local neighbourhood make the input comparable across buildings whose coordinate
frames and sizes differ (SODIndoorLoc: 160 m² floors and a 4800 m² mall). A network that outputs 0 predicts
the neighbours' centroid, i.e. KNN.

A labelled sample at one of the database RPs must not see its own RP (its distance would be ~0 and its
coordinates the label): ``exclude_ids`` removes it. With fewer than K usable RPs the last one is repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xloc.errors import DataValidationError
from xloc.features.signal import signal_distances_db

__all__ = ["KnnFeatures", "knn_rp_features", "feature_dim"]

_SCALE_FLOOR_M = 1.0


@dataclass
class KnnFeatures:
    """Features ``(n, 3K)`` float32, and the centroid ``(n, 2)`` [m] and scale ``(n,)`` [m] to undo them."""

    features: np.ndarray
    centroid_m: np.ndarray
    scale_m: np.ndarray

    def targets(self, positions_m: np.ndarray) -> np.ndarray:
        """Normalised regression targets ``(p - c) / s`` ``(n, 2)``."""
        return ((positions_m[:, :2] - self.centroid_m) / self.scale_m[:, None]).astype(np.float32)

    def positions(self, outputs: np.ndarray) -> np.ndarray:
        """Positions [m] ``c + s y`` from network outputs ``y`` ``(n, 2)``."""
        return self.centroid_m + self.scale_m[:, None] * np.asarray(outputs, dtype=np.float64)


def feature_dim(k_neighbors: int) -> int:
    """Length of the fingerprint: K distances and K 2-D coordinates."""
    return 3 * k_neighbors


def knn_rp_features(
    rss_dbm: np.ndarray,
    db_rss_dbm: np.ndarray,
    db_positions_m: np.ndarray,
    k_neighbors: int,
    floor_dbm: float,
    *,
    db_ids: np.ndarray | None = None,
    exclude_ids: np.ndarray | None = None,
) -> KnnFeatures:
    """K-nearest-RP fingerprints of samples ``rss_dbm`` ``(n, A)`` against a database ``(R, A)`` at ``(R, 2|3)`` m.

    ``exclude_ids[i]`` (with ``db_ids``) is the RP sample ``i`` was taken at, left out of its neighbours.
    """
    q = np.asarray(rss_dbm)
    db = np.asarray(db_rss_dbm)
    pos = np.asarray(db_positions_m, dtype=np.float64)[:, :2]
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1] or pos.shape[0] != db.shape[0]:
        raise DataValidationError(
            f"knn_rp_features: samples {q.shape}, database {db.shape} and positions {pos.shape} do not match"
        )
    if db.shape[0] < 1 or k_neighbors < 1:
        raise DataValidationError("knn_rp_features needs at least one reference point and k_neighbors >= 1")
    dist = signal_distances_db(q, db, floor_dbm)
    if exclude_ids is not None:
        if db_ids is None:
            raise DataValidationError("exclude_ids needs db_ids")
        dist = np.where(np.asarray(exclude_ids)[:, None] == np.asarray(db_ids)[None, :], np.inf, dist)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k_neighbors]
    # Pad by repeating the last usable neighbour when the database is small (or all but one were excluded).
    usable = np.isfinite(np.take_along_axis(dist, order, 1))
    if not usable[:, 0].all():
        raise DataValidationError("knn_rp_features: a sample has no reference point left after exclusion")
    n_usable = usable.sum(1)
    col = np.minimum(np.arange(k_neighbors)[None, :], n_usable[:, None] - 1)
    if order.shape[1] < k_neighbors:
        order = np.pad(order, ((0, 0), (0, k_neighbors - order.shape[1])), mode="edge")
    order = np.take_along_axis(order, col, 1)
    d = np.take_along_axis(dist, order, 1)
    coords = pos[order]  # (n, K, 2)
    centroid = coords.mean(1)
    rel = coords - centroid[:, None, :]
    scale = np.sqrt((rel**2).sum(-1).mean(1)) + _SCALE_FLOOR_M
    feats = np.concatenate(
        [d / (10.0 * np.sqrt(db.shape[1])), (rel / scale[:, None, None]).reshape(len(q), -1)], axis=1
    )
    return KnnFeatures(feats.astype(np.float32), centroid, scale)
