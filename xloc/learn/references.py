"""Reference databases and ALLoc's scenario-embedding samplers (neighbourhood, random).

Neighbourhood sampling returns, for a centre point, the indices of the ``n`` database pairs nearest to it in
space (Euclidean, 2-D); in training the centre is the true location, in inference a coarse one. Random sampling
ignores the centre.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError
from xloc.features.csi import vector_features

__all__ = ["ReferenceDB"]


class ReferenceDB:
    """CSI features ``(n, F)`` and positions ``(n, 2)`` [m] of one scenario's labelled pairs."""

    def __init__(self, features: np.ndarray, positions_m: np.ndarray, name: str = "",
                 feature_kind: str | None = None) -> None:
        self.features = np.asarray(features, dtype=np.float32)
        self.positions_m = np.asarray(positions_m, dtype=np.float64)[:, :2]
        if self.features.ndim != 2 or len(self.features) != len(self.positions_m) or len(self.features) < 2:
            raise DataValidationError(
                f"reference database {name!r}: need >= 2 pairs with matching features and positions, got "
                f"{self.features.shape} and {self.positions_m.shape}"
            )
        self.name = name
        self.feature_kind = feature_kind  # how features were made from CSI (None: given directly)
        self._tree = cKDTree(self.positions_m)

    @classmethod
    def from_fingerprints(cls, fp: Fingerprints, features: str = "angle_delay") -> ReferenceDB:
        """Reference pairs of a CSI environment, as ``features`` vectors (see :mod:`xloc.features.csi`)."""
        if fp.environment.kind != "csi":
            raise DataValidationError(f"environment {fp.name!r}: reference pairs need CSI, not {fp.environment.kind}")
        return cls(vector_features(fp.measurements, features), fp.positions_m, fp.name, features)

    def __len__(self) -> int:
        return len(self.features)

    def neighbourhood(self, centres_m: np.ndarray, n: int) -> np.ndarray:
        """Indices ``(T, n)`` of the ``n`` pairs nearest to each centre (nearest first)."""
        n = min(n, len(self))
        _, idx = self._tree.query(np.asarray(centres_m, dtype=np.float64)[:, :2], k=n)
        return np.asarray(idx).reshape(len(centres_m), n)

    def sparse_neighbourhood(self, centres_m: np.ndarray, n: int, pool: np.ndarray,
                             rng: np.random.Generator) -> np.ndarray:
        """Indices ``(T, n)``: for each centre, ``n`` pairs drawn at random among its ``pool[t]`` nearest (at least
        ``n``), i.e. a neighbourhood ``sqrt(pool / n)`` times wider than :meth:`neighbourhood`'s at the same count."""
        n = min(n, len(self))
        pool = np.clip(np.asarray(pool, dtype=np.int64).reshape(-1), n, len(self))
        if (pool == n).all():
            return self.neighbourhood(centres_m, n)
        _, near = self._tree.query(np.asarray(centres_m, dtype=np.float64)[:, :2], k=int(pool.max()))
        near = np.asarray(near).reshape(len(pool), -1)
        keys = rng.random(near.shape)
        keys[np.arange(near.shape[1])[None] >= pool[:, None]] = np.inf  # only the pool[t] nearest can be drawn
        return np.take_along_axis(near, np.argsort(keys, axis=1)[:, :n], 1)

    def count_within(self, centres_m: np.ndarray, radius_m: np.ndarray) -> np.ndarray:
        """How many pairs lie within ``radius_m[t]`` [m] of each centre ``(T,)``."""
        centres = np.asarray(centres_m, dtype=np.float64)[:, :2]
        radius = np.broadcast_to(np.asarray(radius_m, dtype=np.float64), (len(centres),))
        return np.asarray(self._tree.query_ball_point(centres, radius, return_length=True), dtype=np.int64)

    def random(self, rng: np.random.Generator, count: int, n: int) -> np.ndarray:
        """``(count, n)`` indices drawn without replacement within each row."""
        n = min(n, len(self))
        return np.argsort(rng.random((count, len(self))), axis=1)[:, :n]
