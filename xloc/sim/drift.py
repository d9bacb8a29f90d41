"""One site surveyed twice: an RSS survey at t0 and a later collection at t1 after the site drifted.

The site: ``n_aps`` APs at random in a ``room_size_m`` room; the received power of AP ``a`` at point ``x`` is

    r_a(x) = P_a + G - PL(d_a(x)) + S_a(x) + D_a(x)            [dBm]

with the log-distance path loss ``PL(d) = PL_0(1 m) + 10 n log10(d)`` (``n = path_loss_exponent``, free-space
``PL_0`` at the carrier) and a **spatially correlated** shadowing field ``S_a(x)`` of std ``shadowing_db`` and
Gaussian correlation ``exp(-|x - x'|^2 / (2 l^2))`` (``l = correlation_m``; sum of 64 random sinusoids, so it can
be evaluated at any point and is the same at t0 and t1 — the walls do not move). Every sample adds
``measurement_noise_db`` of white noise; samples below ``sensitivity_dbm`` are "not heard" (NaN).

What changes between t0 and t1 (``kind``):

* ``none``: nothing — a fresh collection of the same site (the negative for drift detection);
* ``device``: another phone: ``r' = device_gain * r + device_offset_db`` for every AP;
* ``aps``: ``ap_power_fraction`` of the APs re-powered by ±U(3, ``ap_power_change_db``) dB, one AP removed (never
  heard at t1) and one installed (never heard at t0: its column is NaN in the t0 survey);
* ``furniture``: people and furniture: ``D_a(x)``, a second correlated field of std ``furniture_db`` and mean
  ``-furniture_loss_db`` (extra attenuation);
* ``all``: all of the above.

t0 is a survey of the reference grid (``samples_per_point`` samples each); t1 has the same grid (where the k
labelled points are drawn from) and its own random test points. Environments are named ``<site>-t0`` and
``<site>-t1-<kind>``; AP ids are shared, so one file holds them side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.sim.geometry import SPEED_OF_LIGHT_M_S

__all__ = ["DRIFT_KINDS", "DriftConfig", "simulate_drift_site", "through_device"]

DRIFT_KINDS = ("none", "device", "aps", "furniture", "all")
_SINUSOIDS = 64


@dataclass(frozen=True)
class DriftConfig:
    """The site and the size of each drift (see the module text; powers in dB / dBm, lengths in m)."""

    n_aps: int = 16
    room_size_m: tuple[float, float] = (30.0, 20.0)
    grid_spacing_m: float = 2.0
    samples_per_point: int = 3
    n_test_points: int = 300
    frequency_hz: float = 2.44e9
    tx_power_dbm: float = 20.0
    path_loss_exponent: float = 3.0
    ap_height_m: float = 3.0
    shadowing_db: float = 6.0
    correlation_m: float = 3.0
    measurement_noise_db: float = 2.0
    sensitivity_dbm: float = -95.0
    device_gain: float = 0.9
    device_offset_db: float = -12.0
    ap_power_fraction: float = 0.35
    ap_power_change_db: float = 8.0
    furniture_db: float = 4.0
    furniture_loss_db: float = 2.0

    def __post_init__(self) -> None:
        checks = {"n_aps": self.n_aps >= 3, "room_size_m": min(self.room_size_m) > 0,
                  "grid_spacing_m": self.grid_spacing_m > 0, "samples_per_point": self.samples_per_point >= 1,
                  "n_test_points": self.n_test_points >= 1, "correlation_m": self.correlation_m > 0,
                  "device_gain": self.device_gain > 0, "ap_power_change_db": self.ap_power_change_db >= 3}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise DataValidationError(f"DriftConfig: invalid {', '.join(bad)} ({ {k: getattr(self, k) for k in bad} })")


def through_device(rss_dbm: np.ndarray, gain: float = 1.0, offset_db: float = 0.0, *,
                   sensitivity_dbm: float = -95.0) -> np.ndarray:
    """What another phone reports: ``r' = gain * r + offset_db`` [dBm] for every AP, NaN ("not heard") below
    ``sensitivity_dbm``; NaN stays NaN."""
    rss = gain * np.asarray(rss_dbm, dtype=np.float64) + offset_db
    with np.errstate(invalid="ignore"):
        return np.where(rss < sensitivity_dbm, np.nan, np.clip(rss, -150.0, 30.0))


class _Field:
    """Gaussian random fields over the plane, one per AP: std 1, correlation exp(-r^2 / (2 l^2))."""

    def __init__(self, n_fields: int, correlation_m: float, rng: np.random.Generator) -> None:
        self.k = rng.normal(0.0, 1.0 / correlation_m, (n_fields, _SINUSOIDS, 2))
        self.phase = rng.uniform(0.0, 2 * np.pi, (n_fields, _SINUSOIDS))

    def __call__(self, points_m: np.ndarray) -> np.ndarray:
        """``(n_points, n_fields)``."""
        arg = np.einsum("pd,fsd->pfs", points_m[:, :2], self.k) + self.phase[None]
        return np.sqrt(2.0 / _SINUSOIDS) * np.cos(arg).sum(-1)


def _grid(room: tuple[float, float], spacing: float) -> np.ndarray:
    xs = np.arange(spacing / 2, room[0], spacing)
    ys = np.arange(spacing / 2, room[1], spacing)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def simulate_drift_site(config: DriftConfig, seed: int, kinds: tuple[str, ...] = DRIFT_KINDS,
                        *, site: str | None = None) -> tuple[FingerprintSet, FingerprintSet]:
    """``(reference, test)`` sets holding ``<site>-t0`` and one ``<site>-t1-<kind>`` per kind; the same seed gives
    the same site and the same drifts."""
    unknown = [k for k in kinds if k not in DRIFT_KINDS]
    if unknown or not kinds:
        raise DataValidationError(f"drift kinds must be among {DRIFT_KINDS}, got {list(kinds)}")
    site = site or f"site{seed}"
    rng = np.random.default_rng([seed, 0])
    width, depth = config.room_size_m
    n = config.n_aps
    # one AP more than the t0 survey knows: the one installed between t0 and t1
    aps = rng.uniform([0.0, 0.0], [width, depth], size=(n + 1, 2))
    shadowing = _Field(n + 1, config.correlation_m, rng)
    furniture = _Field(n + 1, config.correlation_m, rng)
    power_change = np.where(rng.random(n + 1) < config.ap_power_fraction,
                            rng.choice([-1.0, 1.0], n + 1) * rng.uniform(3.0, config.ap_power_change_db, n + 1), 0.0)
    removed = int(rng.integers(n))
    pl0 = 20 * np.log10(4 * np.pi * config.frequency_hz / SPEED_OF_LIGHT_M_S)
    grid = _grid(config.room_size_m, config.grid_spacing_m)

    def mean_rss(points: np.ndarray, kind: str) -> np.ndarray:
        d2d = np.linalg.norm(points[:, None, :2] - aps[None], axis=-1)
        d3d = np.maximum(np.sqrt(d2d**2 + (config.ap_height_m - 1.0) ** 2), 1.0)
        rss = config.tx_power_dbm - pl0 - 10 * config.path_loss_exponent * np.log10(d3d)
        rss = rss + config.shadowing_db * shadowing(points)
        if kind in ("aps", "all"):
            rss = rss + power_change
        if kind in ("furniture", "all"):
            rss = rss + config.furniture_db * furniture(points) - config.furniture_loss_db
        return rss

    def collect(points: np.ndarray, kind: str, stream: int, samples: int) -> np.ndarray:
        noise_rng = np.random.default_rng([seed, stream])
        rss = np.repeat(mean_rss(points, kind), samples, axis=0)
        rss = rss + config.measurement_noise_db * noise_rng.standard_normal(rss.shape)
        device = (config.device_gain, config.device_offset_db) if kind in ("device", "all") else (1.0, 0.0)
        rss = through_device(rss, *device, sensitivity_dbm=config.sensitivity_dbm)
        if kind == "t0":
            rss[:, n] = np.nan  # not installed yet
        elif kind in ("aps", "all"):
            rss[:, removed] = np.nan
        else:
            rss[:, n] = np.nan  # the new AP exists only where the APs changed
        return rss.astype(np.float32)

    attrs: dict[str, Any] = {"simulator": "drift", "seed": int(seed), "site": site}
    for key, value in asdict(config).items():
        if key == "room_size_m":
            attrs["room_width_m"], attrs["room_depth_m"] = map(float, value)
        else:
            attrs[key] = value
    reference, test = [], []
    for i, kind in enumerate(("t0", *kinds)):
        name = f"{site}-t0" if kind == "t0" else f"{site}-t1-{kind}"
        meta = EnvironmentMeta(name=name, kind="rss", ap_ids=tuple(f"AP{j + 1:02d}" for j in range(n + 1)),
                               ap_positions_m=aps, frequency_hz=config.frequency_hz,
                               grid_spacing_m=config.grid_spacing_m,
                               attrs={**attrs, "drift": "none" if kind == "t0" else kind,
                                      "collection": "t0" if kind == "t0" else "t1"})
        reps = config.samples_per_point
        ref = collect(grid, kind, 10 + 2 * i, reps)
        reference.append(Fingerprints(meta, ref, np.repeat(grid, reps, 0), np.repeat(np.arange(len(grid)), reps)))
        points = np.random.default_rng([seed, 11 + 2 * i]).uniform([0.0, 0.0], [width, depth],
                                                                  (config.n_test_points, 2))
        test.append(Fingerprints(meta, collect(points, kind, 12 + 2 * i, 1), points,
                                 np.arange(config.n_test_points)))
    return FingerprintSet(reference), FingerprintSet(test)
