"""Cramér–Rao bounds for single-BS positioning from one line-of-sight path (issue 21, item 6).

Model: one BS with an ``M``-element ULA (element spacing ``d`` wavelengths) measures ``K`` subcarriers at
offsets ``f_k`` from the carrier; a user in line of sight at range ``r`` and azimuth ``theta`` from broadside
(elevation ``el``) gives

    y[m, k] = a exp(j 2 pi d m u) exp(-j 2 pi f_k tau) + n[m, k],     u = cos(el) sin(theta),  tau = r / c,

with complex gain ``a`` (unknown: amplitude and phase are nuisance parameters) and white complex Gaussian noise of
variance ``sigma^2`` per element. With the element and subcarrier indices centred, the Fisher information of
``(tau, u)`` decouples from the phase and from each other, and

    var(tau) >= 1 / (8 pi^2 SNR sum_k (f_k - mean f)^2 M),     var(u) >= 1 / (8 pi^2 d^2 SNR K sum_m (m - mean m)^2),

``SNR = |a|^2 / sigma^2`` per element and subcarrier. The range and bearing bounds follow
(``sigma_r = c sigma_tau``, ``sigma_theta = sigma_u / (cos(el) |cos(theta)|)``), and the horizontal position
error of a range-and-bearing fix is at least ``sqrt(sigma_r^2 + (r sigma_theta)^2)`` (the two are orthogonal).

The bound is local: it says how precisely an unbiased estimator can place a user whose *first path is the direct
one*. In NLoS the first path is a reflection, a range-and-bearing fix is biased by the detour and the bound does
not apply; there the position is only recoverable through the multipath map a learnt model holds.
"""

from __future__ import annotations

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["SPEED_OF_LIGHT_M_S", "range_bearing_crb", "position_crb_m"]

SPEED_OF_LIGHT_M_S = 299_792_458.0


def range_bearing_crb(n_antennas: int, subcarrier_offsets_hz: np.ndarray, snr_db: float | np.ndarray, *,
                      spacing_wavelengths: float = 0.5, aoa_rad: float | np.ndarray = 0.0,
                      elevation_rad: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviation bounds ``(sigma_range_m, sigma_bearing_rad)`` of one LoS path (module docstring) for a
    per-element SNR ``snr_db`` [dB] (arrays broadcast)."""
    f = np.asarray(subcarrier_offsets_hz, dtype=np.float64)
    if n_antennas < 2 or f.ndim != 1 or len(f) < 2:
        raise DataValidationError(f"need >= 2 antennas and >= 2 subcarriers, got {n_antennas} and {f.shape}")
    snr = 10 ** (np.asarray(snr_db, dtype=np.float64) / 10)
    m = np.arange(n_antennas, dtype=np.float64)
    freq_spread = ((f - f.mean()) ** 2).sum()  # sum_k (f_k - mean f)^2 [Hz^2]
    element_spread = ((m - m.mean()) ** 2).sum()
    var_tau = 1.0 / (8 * np.pi**2 * snr * freq_spread * n_antennas)
    var_u = 1.0 / (8 * np.pi**2 * spacing_wavelengths**2 * snr * len(f) * element_spread)
    projection = np.cos(np.asarray(elevation_rad)) * np.abs(np.cos(np.asarray(aoa_rad)))
    return SPEED_OF_LIGHT_M_S * np.sqrt(var_tau), np.sqrt(var_u) / np.maximum(projection, 1e-9)


def position_crb_m(range_m: np.ndarray, n_antennas: int, subcarrier_offsets_hz: np.ndarray,
                   snr_db: float | np.ndarray, *, spacing_wavelengths: float = 0.5, aoa_rad: float | np.ndarray = 0.0,
                   elevation_rad: float | np.ndarray = 0.0) -> np.ndarray:
    """Lower bound [m] on the RMS horizontal error of a single-BS range-and-bearing fix at ``range_m``."""
    sigma_r, sigma_theta = range_bearing_crb(n_antennas, subcarrier_offsets_hz, snr_db,
                                             spacing_wavelengths=spacing_wavelengths, aoa_rad=aoa_rad,
                                             elevation_rad=elevation_rad)
    return np.sqrt(sigma_r**2 + (np.asarray(range_m, dtype=np.float64) * sigma_theta) ** 2)
