"""Measurement impairments and the coarse-location generator.

* :func:`add_awgn` -- receiver noise at a set SNR: ``H + W``, ``W ~ CN(0, P / 10^(SNR/10))`` with ``P`` the mean
  power of that sample's channel to that BS (so every sample sees the same SNR).
* :func:`multiplicative_disturbance` -- ALLoc's robustness test: ``H_dis = H ⊙ N``, ``N ~ CN(1, sigma^2)``
  (or real ``N(1, sigma^2)`` as in the paper's text, with ``complex_noise=False``).
* :func:`coarse_locations` -- ALLoc eq. (11): ``x' = x + Δx``, each coordinate of ``Δx`` uniform in ``[-l, l]``.
"""

from __future__ import annotations

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["add_awgn", "multiplicative_disturbance", "coarse_locations"]


def add_awgn(csi: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``csi`` ``(N, B, ...)`` plus complex Gaussian noise at ``snr_db`` [dB] per (sample, BS)."""
    h = np.asarray(csi)
    if not np.iscomplexobj(h) or h.ndim < 2:
        raise DataValidationError("add_awgn needs complex CSI of shape (N, B, ...)")
    axes = tuple(range(2, h.ndim))
    power = (np.abs(h) ** 2).mean(axis=axes, keepdims=True)
    sigma = np.sqrt(power / 10.0 ** (snr_db / 10.0) / 2.0)
    noise = sigma * (rng.standard_normal(h.shape) + 1j * rng.standard_normal(h.shape))
    return (h + noise).astype(h.dtype)


def multiplicative_disturbance(
    csi: np.ndarray, sigma: float, rng: np.random.Generator, *, complex_noise: bool = True
) -> np.ndarray:
    """``H ⊙ N`` with ``N ~ CN(1, sigma^2)`` elementwise (``N(1, sigma^2)`` if ``complex_noise`` is False)."""
    if sigma < 0:
        raise DataValidationError(f"sigma must be >= 0, got {sigma}")
    h = np.asarray(csi)
    if complex_noise:
        n = 1.0 + sigma * (rng.standard_normal(h.shape) + 1j * rng.standard_normal(h.shape)) / np.sqrt(2.0)
    else:
        n = 1.0 + sigma * rng.standard_normal(h.shape)
    return (h * n).astype(h.dtype)


def coarse_locations(positions_m: np.ndarray, error_m: float, rng: np.random.Generator, dims: int = 2) -> np.ndarray:
    """Coarse positions [m]: the first ``dims`` coordinates moved by independent U[-error_m, error_m]."""
    if error_m < 0:
        raise DataValidationError(f"error_m (l) must be >= 0, got {error_m}")
    pos = np.array(positions_m, dtype=np.float64, copy=True)
    pos[:, :dims] += rng.uniform(-error_m, error_m, size=(pos.shape[0], dims))
    return pos
