"""Rain attenuation of Recommendation ITU-R P.838-3 (2005).

Specific attenuation ``gamma_R = k R^alpha`` [dB/km] for rain rate ``R`` [mm/h], with ``k`` and ``alpha`` from the
recommendation's regression in ``log10 f`` (f in GHz):

    log10 k = sum_j a_j exp(-((log10 f - b_j) / c_j)^2) + m_k log10 f + c_k
    alpha   = sum_j a_j exp(-((log10 f - b_j) / c_j)^2) + m_a log10 f + c_a

(Tables 1-4 of P.838-3; horizontal and vertical polarisation; paths here are horizontal, so the tilt terms of
the recommendation's eqs. (4)-(5) reduce to the H or V coefficients.) A path of length ``L`` [m] loses
``gamma_R * L / 1000`` dB.
"""

from __future__ import annotations

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["rain_coefficients", "rain_specific_attenuation_db_per_km"]

# (a_j, b_j, c_j, m, c) of Tables 1-4.
_K_H = ([-5.33980, -0.35351, -0.23789, -0.94158], [-0.10008, 1.26970, 0.86036, 0.64552],
        [1.13098, 0.45400, 0.15354, 0.16817], -0.18961, 0.71147)
_K_V = ([-3.80595, -3.44965, -0.39902, 0.50167], [0.56934, -0.22911, 0.73042, 1.07319],
        [0.81061, 0.51059, 0.11899, 0.27195], -0.16398, 0.63297)
_A_H = ([-0.14318, 0.29591, 0.32177, -5.37610, 16.1721], [1.82442, 0.77564, 0.63773, -0.96230, -3.29980],
        [-0.55187, 0.19822, 0.13164, 1.47828, 3.43990], 0.67849, -1.95537)
_A_V = ([-0.07771, 0.56727, -0.20238, -48.2991, 48.5833], [2.33840, 0.95545, 1.14520, 0.791669, 0.791459],
        [-0.76284, 0.54039, 0.26809, 0.116226, 0.116479], -0.053739, 0.83433)


def _regression(log_f: float, table: tuple) -> float:
    a, b, c, m, const = table
    terms = sum(aj * np.exp(-(((log_f - bj) / cj) ** 2)) for aj, bj, cj in zip(a, b, c, strict=True))
    return float(terms + m * log_f + const)


def rain_coefficients(frequency_hz: float, polarization: str = "vertical") -> tuple[float, float]:
    """``(k, alpha)`` of P.838-3 at ``frequency_hz`` [Hz] (valid 1-1000 GHz) for ``horizontal``/``vertical``."""
    f_ghz = frequency_hz / 1e9
    if not 1.0 <= f_ghz <= 1000.0:
        raise DataValidationError(f"P.838-3 covers 1-1000 GHz; got {f_ghz:g} GHz")
    if polarization not in ("horizontal", "vertical"):
        raise DataValidationError(f"polarization must be 'horizontal' or 'vertical', got {polarization!r}")
    log_f = float(np.log10(f_ghz))
    k_table, a_table = (_K_H, _A_H) if polarization == "horizontal" else (_K_V, _A_V)
    return 10.0 ** _regression(log_f, k_table), _regression(log_f, a_table)


def rain_specific_attenuation_db_per_km(
    frequency_hz: float, rain_rate_mm_h: float, polarization: str = "vertical"
) -> float:
    """``gamma_R = k R^alpha`` [dB/km] for rain rate ``rain_rate_mm_h`` [mm/h]."""
    if rain_rate_mm_h < 0:
        raise DataValidationError(f"rain rate must be >= 0 mm/h, got {rain_rate_mm_h}")
    k, alpha = rain_coefficients(frequency_hz, polarization)
    return k * rain_rate_mm_h**alpha
