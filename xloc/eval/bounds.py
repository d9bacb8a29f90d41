"""Cramér–Rao bounds for single-BS positioning from one line-of-sight path (issue 21, item 6), and the level a
masked channel model can reach by linear prediction (:func:`masked_patch_lmmse`, item 3).

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

__all__ = ["SPEED_OF_LIGHT_M_S", "range_bearing_crb", "position_crb_m", "masked_patch_lmmse"]

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


def _unit_rms(channels: np.ndarray, where: str) -> np.ndarray:
    h = np.asarray(channels)
    if h.ndim != 3 or not np.iscomplexobj(h):
        raise DataValidationError(f"{where}: channels must be complex (n, antennas, subcarriers), got {h.dtype} "
                                  f"{h.shape}")
    power = (np.abs(h) ** 2).mean(axis=(1, 2))
    return (h / np.sqrt(np.maximum(power, 1e-30))[:, None, None]).reshape(len(h), -1)


def masked_patch_lmmse(train: np.ndarray, test: np.ndarray, masks: np.ndarray, patch: tuple[int, int], *,
                       ridge: float = 1e-3) -> float:
    """The masked-patch MSE of the best *linear* reconstruction: SF-MCM's level to reach.

    Every channel is scaled to unit RMS (as LWLM's encoder sees it); the second moment ``R = E[h h^H]`` of the
    flattened ``train`` channels ``(n, M, K)`` gives, for each ``test`` channel and its patch mask ``masks[i]``
    ``(T,)`` over the ``(M / pa) x (K / pk)`` grid (row-major, antenna blocks outer), the prediction
    ``h_m = R_mv (R_vv + ridge I)^-1 h_v`` of the masked elements from the visible ones. Returns the mean squared
    error per real component over masked elements -- the unit of
    :func:`~xloc.learn.lwlm.masked_reconstruction_loss`, where predicting zero scores 0.5.
    """
    tr, te = _unit_rms(train, "train"), _unit_rms(test, "test")
    shape = np.asarray(test).shape[1:]
    if np.asarray(train).shape[1:] != shape:
        raise DataValidationError(f"train channels {np.asarray(train).shape[1:]} and test channels {shape} differ")
    pa, pk = patch
    if shape[0] % pa or shape[1] % pk:
        raise DataValidationError(f"patch {patch} must divide the channel grid {shape[0]} x {shape[1]}")
    ga, gk = shape[0] // pa, shape[1] // pk
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != (len(te), ga * gk):
        raise DataValidationError(f"masks must be (n_test, {ga * gk}) for a {ga} x {gk} patch grid, got {masks.shape}")
    second_moment = tr.T @ tr.conj() / len(tr)
    errors, counts = 0.0, 0
    for h, patch_mask in zip(te, masks, strict=True):
        masked = np.repeat(np.repeat(patch_mask.reshape(ga, gk), pa, 0), pk, 1).reshape(-1)
        visible = ~masked
        r_vv = second_moment[np.ix_(visible, visible)] + ridge * np.eye(int(visible.sum()))
        predicted = second_moment[np.ix_(masked, visible)] @ np.linalg.solve(r_vv, h[visible])
        errors += float((np.abs(predicted - h[masked]) ** 2).sum())
        counts += int(masked.sum())
    return errors / max(counts, 1) / 2
