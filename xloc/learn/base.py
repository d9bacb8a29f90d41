"""The estimator API every localization method follows (DESIGN.md, "Estimator API").

``fit(sources)`` (meta-)trains on historical environments and returns ``self``; ``adapt(support, steps)``
returns a model specialised to a new environment from its few labelled samples, without changing the
original; ``predict(measurements)`` returns positions [m].
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from xloc.data.fingerprints import Fingerprints, FingerprintSet

__all__ = ["Localizer"]


@runtime_checkable
class Localizer(Protocol):
    """What the evaluation protocols, the CLI and the service need from a method."""

    def fit(self, sources: FingerprintSet | None = None) -> Localizer:
        """Learn from the historical (source) environments; returns ``self``."""
        ...

    def adapt(self, support: Fingerprints, steps: int | None = None) -> Localizer:
        """A copy specialised to the support set's environment (``steps`` gradient steps where it trains)."""
        ...

    def predict(self, measurements: np.ndarray) -> np.ndarray:
        """Positions [m] ``(n, dims)`` for measurements of the adapted environment."""
        ...
