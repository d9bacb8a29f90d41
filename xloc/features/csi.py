"""CSI transforms: network inputs and the angle-delay domain.

* :func:`csi_features` -- one real vector per sample: the CSI scaled to unit RMS amplitude (real and imaginary
  parts, all BSs, antennas and subcarriers) followed by its mean power in dB / 20. Normalising the shape keeps
  inputs in range across scenarios whose path gains differ by orders of magnitude; the power term keeps what
  the amplitude says about distance.
* :func:`csi_channels` -- the same normalised CSI as image channels ``(n, 2 B, antennas, subcarriers)``.
* :func:`angle_delay_features` -- one real vector per sample: the angle-delay magnitudes (below) flattened,
  followed by the mean power in dB / 20. Magnitudes drop the carrier phase, which turns over every few
  centimetres of path length, and keep the angles and delays, which change smoothly with position.
* :func:`angle_delay` -- AD_CNN's input: the 2-D DFT over (antenna, subcarrier) of the normalised CSI, i.e. the
  angle-delay domain, as magnitudes ``(n, B, antennas, subcarriers)``.
"""

from __future__ import annotations

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["csi_features", "csi_channels", "angle_delay", "angle_delay_features", "normalise_csi", "POWER_SCALE_DB",
           "FEATURES", "vector_features"]

POWER_SCALE_DB = 20.0


def _check(csi: np.ndarray) -> np.ndarray:
    h = np.asarray(csi)
    if h.ndim != 4 or not np.iscomplexobj(h):
        raise DataValidationError(f"CSI must be complex (n, bs, antennas, subcarriers), got {h.dtype} {h.shape}")
    return h


def normalise_csi(csi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSI scaled to unit RMS amplitude per sample, and each sample's mean power [dB]."""
    h = _check(csi)
    power = (np.abs(h) ** 2).reshape(len(h), -1).mean(1)
    scale = np.sqrt(np.maximum(power, 1e-30))
    return h / scale[:, None, None, None], 10 * np.log10(np.maximum(power, 1e-30))


def csi_features(csi: np.ndarray) -> np.ndarray:
    """``(n, 2 B M K + 1)`` float32 features (see module docstring)."""
    h, power_db = normalise_csi(csi)
    flat = h.reshape(len(h), -1)
    return np.concatenate([flat.real, flat.imag, (power_db / POWER_SCALE_DB)[:, None]], axis=1).astype(np.float32)


def csi_channels(csi: np.ndarray) -> np.ndarray:
    """``(n, 2 B, M, K)`` float32: real and imaginary parts of the normalised CSI as channels."""
    h, _ = normalise_csi(csi)
    return np.concatenate([h.real, h.imag], axis=1).astype(np.float32)


def angle_delay(csi: np.ndarray) -> np.ndarray:
    """``(n, B, M, K)`` float32 magnitudes of the 2-D DFT over antennas and subcarriers (angle-delay domain)."""
    h, _ = normalise_csi(csi)
    return np.abs(np.fft.fft2(h, axes=(-2, -1), norm="ortho")).astype(np.float32)


def angle_delay_features(csi: np.ndarray) -> np.ndarray:
    """``(n, B M K + 1)`` float32: flattened angle-delay magnitudes and the mean power [dB] / 20."""
    _, power_db = normalise_csi(csi)
    ad = angle_delay(csi).reshape(len(power_db), -1)
    return np.concatenate([ad, (power_db / POWER_SCALE_DB)[:, None].astype(np.float32)], axis=1)


#: name -> transform of complex CSI ``(n, bs, antennas, subcarriers)`` into one feature vector per sample
FEATURES = {"csi": csi_features, "angle_delay": angle_delay_features}


def vector_features(csi: np.ndarray, kind: str) -> np.ndarray:
    """The ``kind`` feature vectors (``"csi"`` or ``"angle_delay"``) of complex CSI."""
    if kind not in FEATURES:
        raise DataValidationError(f"CSI feature kind must be one of {sorted(FEATURES)}, got {kind!r}")
    return FEATURES[kind](csi)
