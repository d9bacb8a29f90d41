"""Model-based channel estimators: ToA, AoA and position without any training (LWLM's classical baselines).

* :func:`toa_first_peak` -- the power delay profile ``p[n] = sum_m |IDFT_K'(H[m, :])[n]|^2`` (zero-padded to
  ``K' = oversample * K`` taps of ``1 / (K' df)`` s) and the first local maximum within ``threshold_db`` of its
  peak. -12 dB sits just above the -13.3 dB first sidelobe of the rectangular frequency window, so sidelobes of
  a stronger later path are not taken for an earlier one.
* :func:`aoa_beam_scan` -- a DFT beam scan of the ULA snapshot at the first-path delay tap,
  ``P(u) = |a(u)^H y|^2`` with ``a_m(u) = exp(j 2 pi s (m - (M-1)/2) u)`` and ``u = cos(el) sin(az)``; the azimuth
  is ``arcsin(u* / cos(el))`` (pass the elevation when the geometry gives it, e.g. from heights and range).
* :func:`single_bs_position` -- range ``c * tau`` and bearing from one BS.
* :func:`multi_bs_position` -- least squares over all BSs' ranges and bearings (bearing residuals in metres of
  arc, Huber-weighted Gauss-Newton), started from the median of the single-BS fixes.

Units: delays [s], angles [rad] from the array broadside (positive towards the array axis), positions [m].
"""

from __future__ import annotations

import numpy as np

from xloc.errors import DataValidationError
from xloc.learn.channel_tasks import SPEED_OF_LIGHT_M_S

__all__ = ["toa_first_peak", "aoa_beam_scan", "single_bs_position", "multi_bs_position", "bs_axes",
           "model_based_positions"]


def _channels(csi: np.ndarray) -> np.ndarray:
    h = np.asarray(csi)
    if h.ndim != 3 or not np.iscomplexobj(h):
        raise DataValidationError(f"channels must be complex (n, antennas, subcarriers), got {h.dtype} {h.shape}")
    return h


def toa_first_peak(csi: np.ndarray, subcarrier_spacing_hz: float, *, oversample: int = 8,
                   threshold_db: float = -12.0) -> np.ndarray:
    """First-path delay [s] ``(n,)`` of channels ``(n, M, K)`` with subcarriers ``subcarrier_spacing_hz`` apart."""
    h = _channels(csi)
    if subcarrier_spacing_hz <= 0 or oversample < 1 or threshold_db >= 0:
        raise DataValidationError("subcarrier_spacing_hz > 0, oversample >= 1 and threshold_db < 0 required")
    taps = h.shape[-1] * oversample
    pdp = (np.abs(np.fft.ifft(h, n=taps, axis=-1)) ** 2).sum(1)  # (n, taps)
    left, right = np.roll(pdp, 1, axis=1), np.roll(pdp, -1, axis=1)
    peak = (pdp >= left) & (pdp >= right) & (pdp >= pdp.max(1, keepdims=True) * 10 ** (threshold_db / 10))
    first = np.argmax(peak, axis=1)  # every row has its global maximum, so at least one candidate
    return first / (taps * subcarrier_spacing_hz)


def aoa_beam_scan(csi: np.ndarray, toa_s: np.ndarray, subcarrier_spacing_hz: float, *,
                  spacing_wavelengths: float = 0.5, elevation_rad: np.ndarray | float = 0.0,
                  grid: int = 2001) -> np.ndarray:
    """Azimuth [rad] ``(n,)`` of the path arriving at ``toa_s`` ``(n,)``, from ULA channels ``(n, M, K)``."""
    h = _channels(csi)
    toa = np.asarray(toa_s, dtype=np.float64)
    if toa.shape != (len(h),):
        raise DataValidationError(f"toa_s must be ({len(h)},), got {toa.shape}")
    k = np.arange(h.shape[-1])
    # Matched filter at the first-path delay: y_m = sum_k H[m, k] exp(+j 2 pi k df tau).
    steer_delay = np.exp(2j * np.pi * k[None, :] * subcarrier_spacing_hz * toa[:, None])
    y = np.einsum("nmk,nk->nm", h, steer_delay)
    m = np.arange(h.shape[1]) - (h.shape[1] - 1) / 2
    u = np.linspace(-1.0, 1.0, grid)
    steering = np.exp(2j * np.pi * spacing_wavelengths * m[None, :] * u[:, None])  # (grid, M)
    spectrum = np.abs(y @ steering.conj().T) ** 2
    u_best = u[np.argmax(spectrum, axis=1)]
    cos_el = np.maximum(np.cos(np.broadcast_to(np.asarray(elevation_rad, dtype=np.float64), u_best.shape)), 1e-6)
    return np.arcsin(np.clip(u_best / cos_el, -1.0, 1.0))


def bs_axes(orientation_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal (array axis, broadside) unit vectors of a BS whose axis points at azimuth ``orientation_rad``."""
    return (np.array([np.cos(orientation_rad), np.sin(orientation_rad)]),
            np.array([-np.sin(orientation_rad), np.cos(orientation_rad)]))


def _horizontal_range(toa_s: np.ndarray, height_difference_m: float) -> np.ndarray:
    r = SPEED_OF_LIGHT_M_S * np.asarray(toa_s, dtype=np.float64)
    return np.sqrt(np.maximum(r**2 - height_difference_m**2, 0.0))


def single_bs_position(toa_s: np.ndarray, aoa_rad: np.ndarray, bs_position_m: np.ndarray, bs_orientation_rad: float,
                       user_height_m: float) -> np.ndarray:
    """Positions ``(n, 2)`` [m] from one BS's delays [s] and azimuths [rad] ``(n,)``."""
    b = np.asarray(bs_position_m, dtype=np.float64)
    axis, broadside = bs_axes(bs_orientation_rad)
    rho = _horizontal_range(toa_s, user_height_m - b[2])
    az = np.asarray(aoa_rad, dtype=np.float64)
    direction = np.sin(az)[:, None] * axis + np.cos(az)[:, None] * broadside
    return b[:2] + rho[:, None] * direction


def _residuals(p: np.ndarray, bs: np.ndarray, axes: np.ndarray, broadsides: np.ndarray, height_m: float,
               rho: np.ndarray, az: np.ndarray) -> np.ndarray:
    """Range and arc residuals [m] ``(n, 2B)`` of candidate positions ``p`` ``(n, 2)``."""
    d = p[:, None, :] - bs[None, :, :2]  # (n, B, 2)
    dz = height_m - bs[:, 2]
    horizontal = np.sqrt((d**2).sum(-1))
    r_range = np.sqrt(horizontal**2 + dz**2) - np.sqrt(rho**2 + dz**2)
    bearing = np.arctan2((d * axes).sum(-1), (d * broadsides).sum(-1))
    r_arc = horizontal * ((bearing - az + np.pi) % (2 * np.pi) - np.pi)
    return np.concatenate([r_range, r_arc], axis=1)


def multi_bs_position(toa_s: np.ndarray, aoa_rad: np.ndarray, bs_positions_m: np.ndarray,
                      bs_orientations_rad: np.ndarray, user_height_m: float, *, iterations: int = 20,
                      huber_m: float = 5.0) -> np.ndarray:
    """Positions ``(n, 2)`` [m] fusing delays [s] and azimuths [rad] ``(n, B)`` of ``B`` BSs (least squares)."""
    toa, az = np.asarray(toa_s, np.float64), np.asarray(aoa_rad, np.float64)
    bs = np.asarray(bs_positions_m, np.float64)
    orient = np.asarray(bs_orientations_rad, np.float64)
    if toa.shape != az.shape or toa.ndim != 2 or bs.shape != (toa.shape[1], 3) or orient.shape != (toa.shape[1],):
        raise DataValidationError(f"need toa_s and aoa_rad (n, B), bs_positions_m (B, 3), bs_orientations_rad (B,); "
                                  f"got {toa.shape}, {az.shape}, {bs.shape}, {orient.shape}")
    axes = np.stack([bs_axes(o)[0] for o in orient])
    broadsides = np.stack([bs_axes(o)[1] for o in orient])
    rho = np.stack([_horizontal_range(toa[:, j], user_height_m - bs[j, 2]) for j in range(len(bs))], axis=1)
    singles = np.stack([single_bs_position(toa[:, j], az[:, j], bs[j], orient[j], user_height_m)
                        for j in range(len(bs))], axis=1)
    p = np.median(singles, axis=1)
    eps = 1e-3
    for _ in range(iterations):
        r = _residuals(p, bs, axes, broadsides, user_height_m, rho, az)
        jac = np.stack([(_residuals(p + eps * e, bs, axes, broadsides, user_height_m, rho, az) - r) / eps
                        for e in np.eye(2)], axis=-1)  # (n, 2B, 2)
        w = np.where(np.abs(r) <= huber_m, 1.0, huber_m / np.maximum(np.abs(r), 1e-12))
        jtw = jac.transpose(0, 2, 1) * w[:, None, :]
        normal = jtw @ jac + 1e-6 * np.eye(2)
        step = np.linalg.solve(normal, -(jtw @ r[..., None]))[..., 0]
        p = p + step
    return p


def model_based_positions(csi: np.ndarray, bs_positions_m: np.ndarray, bs_orientations_rad: np.ndarray,
                          subcarrier_spacing_hz: float, user_height_m: float, *,
                          spacing_wavelengths: float = 0.5) -> np.ndarray:
    """Positions ``(n, 2)`` [m] of complex CSI ``(n, B, M, K)`` with no learning: first-peak ToA and beam-scan AoA
    per BS (elevation from the known heights and the estimated range), fused by :func:`multi_bs_position`
    (:func:`single_bs_position` for one BS)."""
    csi = np.asarray(csi)
    bs = np.asarray(bs_positions_m, dtype=np.float64)
    toa = np.stack([toa_first_peak(csi[:, j], subcarrier_spacing_hz) for j in range(len(bs))], axis=1)
    slant = np.maximum(SPEED_OF_LIGHT_M_S * toa, 1e-3)
    elevation = np.arcsin(np.clip((bs[None, :, 2] - user_height_m) / slant, -1, 1))
    aoa = np.stack([aoa_beam_scan(csi[:, j], toa[:, j], subcarrier_spacing_hz, spacing_wavelengths=spacing_wavelengths,
                                  elevation_rad=elevation[:, j]) for j in range(len(bs))], axis=1)
    if len(bs) == 1:
        return single_bs_position(toa[:, 0], aoa[:, 0], bs[0], float(bs_orientations_rad[0]), user_height_m)
    return multi_bs_position(toa, aoa, bs, np.asarray(bs_orientations_rad, dtype=np.float64), user_height_m)
