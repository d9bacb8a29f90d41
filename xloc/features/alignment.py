"""Distribution alignment of real features to synthetic ones (AGML, meta-test).

A model meta-trained on a digital twin's synthetic fingerprints sees real fingerprints whose statistics differ
(gains, noise, missing APs). Before adaptation, real features are transformed to the synthetic statistics:

* ``"moments"`` -- per feature: ``x' = (x - mu_r) / sigma_r * sigma_s + mu_s``;
* ``"coral"`` -- CORAL (Sun et al., 2016): whiten with the real covariance, re-colour with the synthetic one,
  ``x' = (x - mu_r) C_r^{-1/2} C_s^{1/2} + mu_s`` with ``C + eps I`` for stability.

Both are fitted on unlabelled features only (no locations), so they may use every real fingerprint available.
"""

from __future__ import annotations

import numpy as np

from xloc.errors import DataValidationError, NotFittedError

__all__ = ["Alignment", "ALIGNMENTS"]

ALIGNMENTS = ("none", "moments", "coral")


def _matrix_power(cov: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.maximum(values, 1e-12) ** power) @ vectors.T


class Alignment:
    """``fit(real, synthetic)`` on feature matrices ``(n, F)``; ``transform(real)`` maps them to ``(n, F)``."""

    def __init__(self, method: str = "coral", eps: float = 1.0, min_std: float = 1e-3) -> None:
        if method not in ALIGNMENTS:
            raise DataValidationError(f"alignment must be one of {ALIGNMENTS}, got {method!r}")
        self.method = method
        self.eps = eps
        self.min_std = min_std

    @staticmethod
    def _check(x: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
        """Finite ``(n, F)`` features; fitting needs ``n >= 2`` (covariances), mapping one fingerprint is fine."""
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or len(a) < min_rows or not np.isfinite(a).all():
            raise DataValidationError(f"alignment: {name} features must be finite (n >= {min_rows}, F), got "
                                      f"{a.shape}")
        return a

    def fit(self, real: np.ndarray, synthetic: np.ndarray) -> Alignment:
        r, s = self._check(real, "real"), self._check(synthetic, "synthetic")
        if r.shape[1] != s.shape[1]:
            raise DataValidationError(f"alignment: real has {r.shape[1]} features, synthetic {s.shape[1]}")
        self.mean_real_, self.mean_syn_ = r.mean(0), s.mean(0)
        if self.method == "moments":
            # A feature constant in the real data (an AP never heard) is only shifted: dividing by its ~0 std
            # would blow any later variation up by orders of magnitude.
            real_std = r.std(0)
            self.scale_ = np.where(real_std > self.min_std, s.std(0) / np.maximum(real_std, self.min_std), 1.0)
        elif self.method == "coral":
            eye = self.eps * np.eye(r.shape[1])
            self.matrix_ = _matrix_power(np.cov(r, rowvar=False) + eye, -0.5) @ _matrix_power(
                np.cov(s, rowvar=False) + eye, 0.5)
        return self

    def transform(self, real: np.ndarray) -> np.ndarray:
        if self.method == "none":
            return np.asarray(real, dtype=np.float32)
        if not hasattr(self, "mean_real_"):
            raise NotFittedError("alignment is not fitted: call fit(real, synthetic) first")
        r = self._check(real, "real", min_rows=1)
        centred = r - self.mean_real_
        out = centred * self.scale_ if self.method == "moments" else centred @ self.matrix_
        return (out + self.mean_syn_).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (for saving with safetensors)."""
        names = {"none": (), "moments": ("mean_real_", "mean_syn_", "scale_"),
                 "coral": ("mean_real_", "mean_syn_", "matrix_")}[self.method]
        return {n: np.ascontiguousarray(getattr(self, n)) for n in names if hasattr(self, n)}

    @classmethod
    def from_arrays(cls, method: str, arrays: dict[str, np.ndarray]) -> Alignment:
        obj = cls(method)
        for name, value in arrays.items():
            setattr(obj, name, np.asarray(value, dtype=np.float64))
        return obj
