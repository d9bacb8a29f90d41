"""Regression tasks for RSS fingerprints (MetaLoc sections II-C1, III-B).

A task in environment ``e`` mimics deployment in a new building: a database of ``R`` reference points (RPs)
is drawn from ``e``'s radio map; the **support** set is samples taken at database RPs (their K-nearest-RP
fingerprints computed without their own RP) and the **query** set is samples at other RPs (fingerprints
against the whole database), i.e. exactly what adaptation and prediction see at meta-test.
``R`` is drawn uniformly from ``db_points`` per task so one model serves every support size k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError
from xloc.features.knn_fingerprint import KnnFeatures, knn_rp_features

__all__ = ["RadioMap", "RSSTaskSampler", "support_features"]


@dataclass
class RadioMap:
    """Mean RSS [dBm] ``(R, A)``, positions [m] ``(R, dims)`` and ids ``(R,)`` of reference points."""

    rss_dbm: np.ndarray
    positions_m: np.ndarray
    point_ids: np.ndarray

    @classmethod
    def from_fingerprints(cls, fp: Fingerprints, floor_dbm: float) -> RadioMap:
        rss, pos, ids = fp.point_means(floor_dbm)
        return cls(rss, pos, ids)

    def __len__(self) -> int:
        return int(self.point_ids.size)


def support_features(
    support: Fingerprints, radio_map: RadioMap, k_neighbors: int, floor_dbm: float
) -> tuple[KnnFeatures, np.ndarray]:
    """Fingerprints of the support samples (each without its own RP) and their targets ``(n, 2)``."""
    if len(radio_map) < 2:
        raise DataValidationError(
            f"environment {support.name!r}: the support set needs at least 2 reference points, got {len(radio_map)}"
        )
    feats = knn_rp_features(
        support.measurements, radio_map.rss_dbm, radio_map.positions_m, k_neighbors, floor_dbm,
        db_ids=radio_map.point_ids, exclude_ids=support.point_ids,
    )
    return feats, feats.targets(support.positions_m)


class RSSTaskSampler:
    """Draws equally shaped regression tasks from one environment (so a meta-batch can be vmapped)."""

    def __init__(
        self,
        env: Fingerprints,
        *,
        k_neighbors: int,
        floor_dbm: float,
        db_points: tuple[int, int] = (5, 50),
        n_support: int = 32,
        n_query: int = 32,
    ) -> None:
        if env.environment.kind != "rss":
            raise DataValidationError(f"environment {env.name!r}: RSS tasks need RSS data, not {env.environment.kind}")
        self.env = env
        self.k_neighbors = k_neighbors
        self.floor_dbm = floor_dbm
        self.n_support = n_support
        self.n_query = n_query
        self.map = RadioMap.from_fingerprints(env, floor_dbm)
        if len(self.map) < 4:
            raise DataValidationError(f"environment {env.name!r} has {len(self.map)} reference points; tasks need 4")
        hi = min(db_points[1], len(self.map) - 2)
        self.db_points = (min(db_points[0], hi), hi)
        # Rows of self.map for each sample, to split samples into database / non-database points.
        self._row_of_sample = np.searchsorted(self.map.point_ids, env.point_ids)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One task: ``x_s (n_s, 3K)``, ``y_s (n_s, 2)``, ``x_q (n_q, 3K)``, ``y_q (n_q, 2)`` (float32)."""
        n_rp = len(self.map)
        r = int(rng.integers(self.db_points[0], self.db_points[1] + 1))
        in_db = np.zeros(n_rp, dtype=bool)
        in_db[rng.choice(n_rp, size=r, replace=False)] = True
        sample_in_db = in_db[self._row_of_sample]
        sup = rng.choice(np.flatnonzero(sample_in_db), size=self.n_support, replace=True)
        qry = rng.choice(np.flatnonzero(~sample_in_db), size=self.n_query, replace=True)
        db_rss, db_pos, db_ids = self.map.rss_dbm[in_db], self.map.positions_m[in_db], self.map.point_ids[in_db]
        rss, pos = self.env.measurements, self.env.positions_m
        fs = knn_rp_features(rss[sup], db_rss, db_pos, self.k_neighbors, self.floor_dbm,
                             db_ids=db_ids, exclude_ids=self.env.point_ids[sup])
        fq = knn_rp_features(rss[qry], db_rss, db_pos, self.k_neighbors, self.floor_dbm)
        return fs.features, fs.targets(pos[sup]), fq.features, fq.targets(pos[qry])

    def sample_batch(self, rng: np.random.Generator, n_tasks: int) -> tuple[np.ndarray, ...]:
        """``n_tasks`` tasks stacked along a new first axis."""
        tasks = [self.sample(rng) for _ in range(n_tasks)]
        return tuple(np.stack(parts) for parts in zip(*tasks, strict=True))
