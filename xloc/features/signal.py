"""Distances between RSS fingerprints in signal space."""

from __future__ import annotations

import numpy as np

__all__ = ["fill_not_heard", "signal_distances_db"]


def fill_not_heard(rss_dbm: np.ndarray, floor_dbm: float) -> np.ndarray:
    """RSS [dBm] as float64 with NaN ("not heard") replaced by ``floor_dbm``."""
    rss = np.asarray(rss_dbm, dtype=np.float64)
    return np.where(np.isnan(rss), floor_dbm, rss)


def signal_distances_db(queries_dbm: np.ndarray, references_dbm: np.ndarray, floor_dbm: float) -> np.ndarray:
    """Euclidean distances [dB] ``(n_queries, n_refs)`` between RSS vectors, NaN counted as ``floor_dbm``.

    Computed as ``|q|^2 + |r|^2 - 2 q.r`` (one matrix product), clipped at 0 against round-off.
    """
    q = fill_not_heard(queries_dbm, floor_dbm)
    r = fill_not_heard(references_dbm, floor_dbm)
    d2 = (q**2).sum(1)[:, None] + (r**2).sum(1)[None, :] - 2.0 * q @ r.T
    return np.sqrt(np.maximum(d2, 0.0))
