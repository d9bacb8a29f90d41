"""Measurement impairments and the coarse-location generator.

* :func:`add_awgn` -- receiver noise at a set SNR: ``H + W``, ``W ~ CN(0, P / 10^(SNR/10))`` with ``P`` the mean
  power of that sample's channel to that BS (so every sample sees the same SNR).
* :func:`multiplicative_disturbance` -- ALLoc's robustness test: ``H_dis = H ⊙ N``, ``N ~ CN(1, sigma^2)``
  (or real ``N(1, sigma^2)`` as in the paper's text, with ``complex_noise=False``).
* :func:`coarse_locations` -- ALLoc eq. (11): ``x' = x + Δx``, each coordinate of ``Δx`` uniform in ``[-l, l]``.
* :func:`gnss_fixes` -- GNSS-like coarse fixes: a spatially correlated error, larger where the sky is blocked.
"""

from __future__ import annotations

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["add_awgn", "multiplicative_disturbance", "coarse_locations", "gnss_fixes"]


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


#: GNSS-like coarse fixes (:func:`gnss_fixes`): per-axis std [m] in the open (GPS.gov: 4.9 m horizontal at 95 % for
#: smartphones under open sky, i.e. 2.45 sigma) and where the sky is blocked (Merry & Bettinger 2019, PLOS ONE:
#: 7-13 m mean horizontal error of a phone in an urban environment; 8 m per axis gives a 10 m mean), and the
#: correlation length [m] of the error field (multipath and satellite geometry change slowly along a street).
GNSS_OPEN_SKY_SIGMA_M = 2.0
GNSS_BLOCKED_SIGMA_M = 8.0
GNSS_CORRELATION_M = 15.0


def gnss_fixes(positions_m: np.ndarray, blocked: np.ndarray, rng: np.random.Generator, *,
               open_sky_sigma_m: float = GNSS_OPEN_SKY_SIGMA_M, blocked_sigma_m: float = GNSS_BLOCKED_SIGMA_M,
               correlation_m: float = GNSS_CORRELATION_M, white_fraction: float = 0.3,
               n_waves: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """GNSS-like coarse positions [m] ``(n, 2)`` and their per-axis std [m] ``(n,)``.

    The error of user i is ``sigma_i (sqrt(1 - w^2) b(x_i) + w z_i)`` per axis: ``b`` a unit-variance Gaussian
    random field over the plane with squared-exponential correlation of length ``correlation_m`` (random Fourier
    features), so that nearby users -- and a track's consecutive fixes -- share a bias, as multipath gives them;
    ``z`` white noise; ``w = white_fraction``; ``sigma_i`` the open-sky or the blocked std as ``blocked[i]`` says
    (street canyons and NLoS; the caller decides what blocks the sky, e.g. no line of sight to the base station).
    """
    pos = np.asarray(positions_m, dtype=np.float64)[:, :2]
    blocked = np.asarray(blocked, dtype=bool).reshape(-1)
    if blocked.shape[0] != pos.shape[0]:
        raise DataValidationError(f"blocked must give one flag per position ({pos.shape[0]}), got {blocked.shape}")
    for name, value in (("open_sky_sigma_m", open_sky_sigma_m), ("blocked_sigma_m", blocked_sigma_m),
                        ("correlation_m", correlation_m)):
        if not value > 0:
            raise DataValidationError(f"{name} must be > 0 m, got {value}")
    if not 0 <= white_fraction <= 1:
        raise DataValidationError(f"white_fraction must lie in [0, 1], got {white_fraction}")
    omega = rng.normal(0.0, 1.0 / correlation_m, (2, n_waves, 2))  # per axis: wave vectors [rad/m]
    phase = rng.uniform(0, 2 * np.pi, (2, n_waves))
    field = np.sqrt(2.0 / n_waves) * np.cos(np.einsum("akd,nd->nak", omega, pos) + phase).sum(-1)  # (n, 2)
    sigma_m = np.where(blocked, blocked_sigma_m, open_sky_sigma_m)
    error = np.sqrt(1 - white_fraction**2) * field + white_fraction * rng.normal(size=pos.shape)
    return pos + sigma_m[:, None] * error, sigma_m
