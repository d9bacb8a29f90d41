"""Path-loss digital twins of surveyed buildings (AGML's synthetic labelled augmentation).

A twin knows what an operator knows without surveying: the access points' positions, floors and bands, and the
building's footprint. Received power follows a multi-band log-distance model with a linear excess loss (a
stand-in for walls when no floor plan is available) and a floor attenuation factor:

    RSS [dBm] = P0_b - 10 n_b log10(max(d, 1 m)) - alpha_b d - FAF |floor_ap - floor_user| + X

with ``d`` the 3-D distance [m] (floors ``FLOOR_HEIGHT_M`` apart), ``b`` the band (2.4 / 5 GHz) and ``X`` the
shadowing [dB]. :func:`fit_pathloss_twin` fits ``P0_b, n_b, alpha_b >= 0, FAF >= 0`` by bounded linear least
squares on the point-mean RSS of *source* environments only; :func:`simulate_twins` draws several perturbed
copies of a target site on a grid over its footprint (per-AP power offsets, exponent, excess and floor loss
jitter, shadowing, a detection threshold), the "slightly perturbed synthetic datasets" AGML meta-trains on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError

__all__ = ["PathLossTwin", "fit_pathloss_twin", "simulate_twins", "site_twins", "FLOOR_HEIGHT_M", "BANDS_HZ"]

FLOOR_HEIGHT_M = 4.0
BANDS_HZ = (2.4e9, 5.0e9)  # split at 3.5 GHz
SENSITIVITY_DBM = -100.0


def _band(meta: EnvironmentMeta) -> np.ndarray:
    """0 for 2.4 GHz APs, 1 for 5 GHz ones."""
    if meta.ap_frequency_hz is None:
        raise DataValidationError(f"environment {meta.name!r}: a twin needs each AP's frequency")
    f = np.asarray(meta.ap_frequency_hz, dtype=np.float64)
    if not np.isfinite(f).all():
        raise DataValidationError("twin: every access point needs a known frequency")
    return (f > 3.5e9).astype(int)


def _ap_floors(meta: EnvironmentMeta, ap_floors: Mapping[str, Mapping[str, int]]) -> np.ndarray:
    floors = ap_floors.get(meta.name, {})
    missing = [a for a in meta.ap_ids if a not in floors]
    if missing:
        raise DataValidationError(f"environment {meta.name!r}: no floor known for APs {missing[:5]}")
    return np.asarray([floors[a] for a in meta.ap_ids], dtype=np.float64)


def _geometry(meta: EnvironmentMeta, ap_floor: np.ndarray, positions_m: np.ndarray,
              floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances [m] ``(n, n_ap)`` and floor differences ``(n_ap,)``."""
    if meta.ap_positions_m is None or not np.isfinite(meta.ap_positions_m).all():
        raise DataValidationError(f"environment {meta.name!r}: a twin needs every AP position")
    dz = (ap_floor - floor) * FLOOR_HEIGHT_M
    d = np.sqrt(((positions_m[:, None, :2] - meta.ap_positions_m[None, :, :2]) ** 2).sum(-1) + dz[None] ** 2)
    return d, np.abs(ap_floor - floor)


@dataclass(frozen=True)
class PathLossTwin:
    """Fitted parameters: per band ``p0_dbm``, ``exponent``, ``excess_db_per_m``; ``floor_loss_db``; residual std."""

    p0_dbm: tuple[float, float]
    exponent: tuple[float, float]
    excess_db_per_m: tuple[float, float]
    floor_loss_db: float
    residual_db: float

    def rss_dbm(self, meta: EnvironmentMeta, ap_floor: np.ndarray, positions_m: np.ndarray,
                floor: float) -> np.ndarray:
        """Noise-free RSS [dBm] ``(n, n_ap)`` at ``positions_m`` on ``floor``."""
        d, df = _geometry(meta, ap_floor, positions_m, floor)
        b = _band(meta)
        p0, n, a = (np.asarray(v)[b] for v in (self.p0_dbm, self.exponent, self.excess_db_per_m))
        return p0 - 10 * n * np.log10(np.maximum(d, 1.0)) - a * d - self.floor_loss_db * df


def _design(meta: EnvironmentMeta, ap_floor: np.ndarray, positions_m: np.ndarray,
            floor: float) -> np.ndarray:
    """Rows of the linear model for every (position, AP) pair: columns P0_24, P0_5, n_24, n_5, a_24, a_5, FAF."""
    d, df = _geometry(meta, ap_floor, positions_m, floor)
    b = np.broadcast_to(_band(meta), d.shape)
    cols = np.zeros(d.shape + (7,))
    for band in (0, 1):
        on = b == band
        cols[..., band] = on
        cols[..., 2 + band] = -10 * np.log10(np.maximum(d, 1.0)) * on
        cols[..., 4 + band] = -d * on
    cols[..., 6] = -np.broadcast_to(df, d.shape)
    return cols.reshape(-1, 7)


def _heard_means(fp: Fingerprints) -> tuple[np.ndarray, np.ndarray]:
    """Per reference point: mean RSS [dBm] over the samples that heard each AP (NaN if none) and the position."""
    ids, inverse = np.unique(fp.point_ids, return_inverse=True)
    heard = np.isfinite(fp.measurements)
    sums = np.zeros((len(ids), fp.measurements.shape[1]))
    counts = np.zeros_like(sums)
    np.add.at(sums, inverse, np.where(heard, fp.measurements, 0.0))
    np.add.at(counts, inverse, heard)
    positions = np.zeros((len(ids), 2))
    np.add.at(positions, inverse, fp.positions_m[:, :2])
    positions /= np.bincount(inverse)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan), positions


def fit_pathloss_twin(sources: FingerprintSet, ap_floors: Mapping[str, Mapping[str, int]]) -> PathLossTwin:
    """Least-squares twin parameters from the point-mean RSS of ``sources`` (never the target);
    ``ap_floors[environment][ap_id]`` is each AP's floor."""
    rows, targets = [], []
    for fp in sources.values():
        if fp.environment.kind != "rss":
            raise DataValidationError(f"environment {fp.name!r}: a path-loss twin fits RSS, not {fp.environment.kind}")
        rss, positions = _heard_means(fp)
        floor = float(fp.environment.attrs.get("floor", 0))
        x = _design(fp.environment, _ap_floors(fp.environment, ap_floors), positions, floor)
        y = rss.reshape(-1)
        ok = np.isfinite(y)
        rows.append(x[ok])
        targets.append(y[ok])
    a, y = np.concatenate(rows), np.concatenate(targets)
    lower = [-np.inf, -np.inf, 1.0, 1.0, 0.0, 0.0, 0.0]
    upper = [np.inf, np.inf, 6.0, 6.0, 2.0, 2.0, 30.0]
    sol = lsq_linear(a, y, bounds=(lower, upper))
    p = sol.x
    residual = float(np.sqrt(np.mean((a @ p - y) ** 2)))
    return PathLossTwin((p[0], p[1]), (p[2], p[3]), (p[4], p[5]), float(p[6]), residual)


def simulate_twins(
    target: EnvironmentMeta, ap_floors: Mapping[str, Mapping[str, int]], twin: PathLossTwin,
    footprint_m: tuple[float, ...],
    *, copies: int = 8, spacing_m: float = 1.5, seed: int = 0, ap_offset_db: float = 3.0,
    shadowing_db: float | None = None,
) -> FingerprintSet:
    """``copies`` perturbed synthetic datasets of ``target`` on a grid over ``footprint_m`` = (x0, x1, y0, y1).

    Each copy draws per-AP power offsets ~ N(0, ap_offset_db), exponents +- 0.2, excess loss x U(0.8, 1.2),
    floor loss +- 3 dB, and per-sample shadowing ~ N(0, shadowing_db) (default: the fit's residual); values below
    -100 dBm become "not heard" (NaN), as in a real survey.
    """
    x0, x1, y0, y1 = footprint_m
    if not (x1 > x0 and y1 > y0) or copies < 1 or spacing_m <= 0:
        raise DataValidationError(f"twin: need x1 > x0, y1 > y0, copies >= 1, spacing > 0; got {footprint_m}")
    gx, gy = np.meshgrid(np.arange(x0, x1 + 1e-9, spacing_m), np.arange(y0, y1 + 1e-9, spacing_m))
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    floor = float(target.attrs.get("floor", 0))
    ap_floor = _ap_floors(target, ap_floors)
    sigma = twin.residual_db if shadowing_db is None else shadowing_db
    out = []
    for c in range(copies):
        rng = np.random.default_rng([seed, 41, c])
        jitter = PathLossTwin(
            twin.p0_dbm, tuple(float(n + rng.uniform(-0.2, 0.2)) for n in twin.exponent),  # type: ignore[arg-type]
            tuple(float(a * rng.uniform(0.8, 1.2)) for a in twin.excess_db_per_m),  # type: ignore[arg-type]
            max(0.0, twin.floor_loss_db + rng.uniform(-3, 3)), twin.residual_db,
        )
        rss = jitter.rss_dbm(target, ap_floor, grid, floor) + rng.normal(0, ap_offset_db, len(target.ap_ids))
        rss = rss + rng.normal(0, sigma, rss.shape)
        rss[rss < SENSITIVITY_DBM] = np.nan
        meta = EnvironmentMeta(
            name=f"{target.name}-twin{c}", kind="rss", ap_ids=target.ap_ids, ap_positions_m=target.ap_positions_m,
            ap_frequency_hz=target.ap_frequency_hz, frequency_hz=target.frequency_hz,
            attrs={**target.attrs, "twin_of": target.name, "twin_copy": c},
        )
        out.append(Fingerprints(meta, rss, grid, np.arange(len(grid))))
    return FingerprintSet(out)


def site_twins(target: Fingerprints, sources: FingerprintSet, ap_floors: Mapping[str, Mapping[str, int]],
               *, copies: int = 8, seed: int = 0) -> FingerprintSet:
    """Twins of ``target``'s site: the path-loss model fitted on ``sources`` (never the target's RSS), drawn over the
    target's footprint (the bounding box of its reference positions, what a floor plan gives) with its APs."""
    twin = fit_pathloss_twin(sources, ap_floors)
    lo, hi = target.positions_m[:, :2].min(0), target.positions_m[:, :2].max(0)
    return simulate_twins(target.environment, ap_floors, twin, (lo[0], hi[0], lo[1], hi[1]), copies=copies,
                          seed=seed)
