"""Radio-map correction: the stale survey of a site, transformed by what a few fresh labelled points measure.

For each fresh labelled point ``q`` (position ``p_q``, fresh values ``y_q``) the stale map's value there,
``s_q = sum_i w_i m_i / sum_i w_i`` over the ``K`` stale reference points nearest to ``p_q`` in space
(``w_i = 1 / d_i^2``; a reference point at the same spot is taken as is), is compared with ``y_q`` per feature
(AP) ``a``:

* with at least ``min_pairs_affine`` points where both are heard, stale values that spread more than
  ``min_spread`` and a least-squares gain ``g_a`` that differs from 1 by more than twice its standard error —
  ``y = g_a s + b_a`` with ``g_a`` clipped to ``gain_range``;
* otherwise an offset only, ``g_a = 1``, ``b_a = mean(y - s) (1 - se^2 / mean^2)+`` — shrunk by its standard
  error ``se`` so that a few noisy points do not move the map (one point: the plain difference);
* with no such point — unchanged.

An AP the stale map hears well (above ``gone_level`` at the point) at ``min_gone_points`` fresh points or more
that none of them hears is *gone*: its column becomes "not heard". A feature the stale map never hears but the
fresh points do (a new AP) is left out of the distances. The corrected map is ``g_a m_ia + b_a``; entries at the
fresh points' spots are replaced by the fresh values, other fresh points are appended. What the per-AP correction
leaves at the fresh points (local changes: furniture, people) is spread over the map around them
(:func:`smooth_residuals`).

A pure per-AP offset or gain (a new phone, re-powered APs) is undone exactly when the fresh points lie on stale
reference points and each AP has two distinct stale values among them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from xloc.errors import DataValidationError

__all__ = ["MapCorrection", "interpolate_map", "fit_map_correction", "merge_fresh_points", "smooth_residuals"]


def interpolate_map(map_values: np.ndarray, map_positions_m: np.ndarray, query_positions_m: np.ndarray,
                    neighbours: int = 4) -> np.ndarray:
    """Inverse-distance-squared interpolation of ``map_values`` ``(n_ref, d)`` (NaN = not heard) at the query
    positions ``(n_q, 2|3)`` [m] from the ``neighbours`` nearest reference points; NaN where none of them hears."""
    ref = np.asarray(map_positions_m, dtype=np.float64)[:, :2]
    query = np.asarray(query_positions_m, dtype=np.float64)[:, :2]
    k = min(neighbours, len(ref))
    dist, idx = cKDTree(ref).query(query, k=k)
    dist, idx = dist.reshape(len(query), k), idx.reshape(len(query), k)
    weights = 1.0 / np.maximum(dist, 1e-9) ** 2
    exact = dist[:, 0] < 1e-6
    weights[exact] = 0.0
    weights[exact, 0] = 1.0
    values = map_values[idx]  # (n_q, k, d)
    heard = ~np.isnan(values)
    w = weights[..., None] * heard
    total = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (w * np.nan_to_num(values)).sum(1) / total
    return np.where(total > 0, out, np.nan)


@dataclass(frozen=True)
class MapCorrection:
    """Per-feature ``gain`` and ``offset`` ``(d,)``, and which features are ``gone`` / ``new`` ``(d,)`` bool."""

    gain: np.ndarray
    offset: np.ndarray
    gone: np.ndarray
    new: np.ndarray

    def apply(self, map_values: np.ndarray) -> np.ndarray:
        """The corrected map (NaN stays "not heard"; gone features become NaN)."""
        out = self.gain * map_values + self.offset
        out[:, self.gone] = np.nan
        return out


def fit_map_correction(stale_at_fresh: np.ndarray, fresh: np.ndarray, *, min_pairs_affine: int = 5,
                       min_spread: float = 3.0, gain_range: tuple[float, float] = (0.5, 1.5),
                       gone_level: float = -80.0, min_gone_points: int = 2) -> MapCorrection:
    """Per-feature correction from the stale values at the fresh points ``(k, d)`` and the fresh values
    ``(k, d)`` (NaN = not heard), as in the module text."""
    s, y = np.asarray(stale_at_fresh, dtype=np.float64), np.asarray(fresh, dtype=np.float64)
    if s.shape != y.shape or s.ndim != 2:
        raise DataValidationError(f"stale and fresh values must have one shape (k, d), got {s.shape}, {y.shape}")
    # every feature at once (CSI maps have thousands): statistics over each column's pairs heard in both
    both = ~np.isnan(s) & ~np.isnan(y)
    count = both.sum(0)
    seen = count > 0
    n = np.maximum(count, 1)
    sa, ya = np.where(both, s, 0.0), np.where(both, y, 0.0)
    mean_s, mean_y = sa.sum(0) / n, ya.sum(0) / n
    dev_s, dev_y = np.where(both, s - mean_s, 0.0), np.where(both, y - mean_y, 0.0)
    var_s = (dev_s**2).sum(0) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (dev_s * dev_y).sum(0) / n / var_s
        residual = np.where(both, dev_y - g * dev_s, 0.0)
        var_r = (residual**2).sum(0) / n - ((residual.sum(0) / n) ** 2)
        se_gain = np.sqrt(var_r * n / np.maximum(n - 2, 1) / (n * var_s))
        # a gain only where the points show one
        affine = seen & (count >= min_pairs_affine) & (np.sqrt(var_s) > min_spread) & (np.abs(g - 1.0) > 2.0 * se_gain)
    gain = np.where(affine, np.clip(np.nan_to_num(g, nan=1.0), *gain_range), 1.0)
    # elsewhere an offset shrunk by its own uncertainty (b (1 - se^2 / b^2)+): a few noisy points move the map little
    diff = np.where(both, y - s, 0.0)
    b = diff.sum(0) / n
    dev_d = np.where(both, diff - b, 0.0)
    se2 = np.where(count > 1, (dev_d**2).sum(0) / np.maximum(count - 1, 1) / n, np.inf)
    shrunk = np.where(np.isfinite(se2), b * np.maximum(0.0, 1.0 - se2 / np.maximum(b * b, 1e-12)), b)
    offset = np.where(affine, mean_y - gain * mean_s, np.where(seen, shrunk, 0.0))
    strong = ~np.isnan(s) & (s > gone_level)
    gone = (strong.sum(0) >= min_gone_points) & np.isnan(y).all(0)
    new = np.asarray(np.isnan(s).all(0) & ~np.isnan(y).all(0))
    return MapCorrection(gain, offset, gone, new)


def merge_fresh_points(map_values: np.ndarray, map_positions_m: np.ndarray, fresh_values: np.ndarray,
                       fresh_positions_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map with entries at a fresh point's spot (within 1 mm) replaced by it and other fresh points appended."""
    values, positions = np.array(map_values, copy=True), np.array(map_positions_m, dtype=np.float64, copy=True)
    dims = min(positions.shape[1], fresh_positions_m.shape[1])
    dist, idx = cKDTree(positions[:, :dims]).query(np.asarray(fresh_positions_m, dtype=np.float64)[:, :dims])
    same = dist < 1e-3
    values[idx[same]] = fresh_values[same]
    extra_pos = np.zeros((int((~same).sum()), positions.shape[1]))
    extra_pos[:, :dims] = fresh_positions_m[~same, :dims]
    return np.concatenate([values, fresh_values[~same]]), np.concatenate([positions, extra_pos])


def smooth_residuals(residuals: np.ndarray, fresh_positions_m: np.ndarray, map_positions_m: np.ndarray,
                     length_m: float, prior_weight: float = 1.0) -> np.ndarray:
    """What the per-AP correction left at the fresh points, ``r`` ``(k, d)`` (NaN where unknown), spread over the
    map: ``sum_q w_q r_q / (sum_q w_q + prior_weight)`` with ``w_q = exp(-|x - p_q|^2 / (2 length^2))`` — local
    changes (furniture, people) near the fresh points, fading to no change away from them. ``(n_map, d)``."""
    d2 = ((np.asarray(map_positions_m)[:, None, :2] - np.asarray(fresh_positions_m)[None, :, :2]) ** 2).sum(-1)
    w = np.exp(-d2 / (2 * length_m**2))  # (n_map, k)
    known = ~np.isnan(residuals)
    num = w @ np.where(known, residuals, 0.0)
    den = w @ known.astype(np.float64) + prior_weight
    return num / den
