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

    def random(self, rng: np.random.Generator, count: int, n: int) -> np.ndarray:
        """``(count, n)`` indices drawn without replacement within each row."""
        n = min(n, len(self))
        return np.argsort(rng.random((count, len(self))), axis=1)[:, :n]
