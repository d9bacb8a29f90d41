"""RSS fingerprint environments from the five path-loss families of MetaLoc (JSAC 2023, section IV-A).

Received power of AP ``j`` at a point ``i`` is

    RSS_ij [dBm] = P_t [dBm] + G [dB] - PL(d_ij, f, state_ij) [dB] - X_ij,   X_ij ~ N(0, sigma_state^2),

with ``d_ij`` the 3-D distance [m] (AP height ``ap_height_m``, receiver height ``ut_height_m``, clipped to the
models' 1 m lower validity limit), ``state_ij`` LOS or NLOS drawn per link from the family's LOS probability,
and ``X`` log-normal shadowing drawn once per (point, AP) link, so repeated samples at a point share it.
``f_GHz`` below is the carrier in GHz and ``FSPL(f, 1 m) = 20 log10(4 pi f / c)``.

Families (letters as in the paper):

(a) ``log_distance`` -- MetaLoc eq. (1) (Bose & Foh 2007): ``PL = 10 n log10(d) - G + 20 log10(4 pi / lambda)``;
    the antenna gain ``G`` enters through the link budget above.
(b) ``mall_nlos_dual_slope`` -- shopping mall, all links NLOS, dual-slope ABG model (Haneda et al., ICC-W
    2016, eq. (7)): ``PL = 10 a1 log10(d) + b + 10 g log10(f_GHz)`` for ``d <= d_BP`` and
    ``10 a1 log10(d_BP) + b + 10 g log10(f_GHz) + 10 a2 log10(d / d_BP)`` beyond.
(c) ``office_mixed_single_slope`` -- 3GPP TR 38.901 Table 7.4.1-1 InH-Office:
    ``PL_LOS = 32.4 + 17.3 log10(d) + 20 log10(f_GHz)`` (sigma 3 dB),
    ``PL_NLOS = max(PL_LOS, 38.3 log10(d) + 17.30 + 24.9 log10(f_GHz))`` (sigma 8.03 dB),
    LOS probability of Table 7.4.2-1 Indoor-MixedOffice.
(d) ``office_freq_dependent`` -- office, close-in model with a frequency-dependent path-loss exponent (CIF,
    Haneda eq. (2)): ``PL = FSPL(f, 1 m) + 10 n (1 + b (f - f0) / f0) log10(d)``; LOS n = 1.73, b = 0
    (sigma 3.02 dB), NLOS n = 3.19, b = 0.06, f0 = 24.2 GHz (sigma 8.29 dB); Indoor-MixedOffice LOS probability.
(e) ``mall_mixed_dual_slope`` -- shopping mall, LOS close-in n = 1.73 (sigma 2.01 dB) and NLOS dual-slope CIF
    (Haneda eq. (8)): ``FSPL + 10 n1 (1 + b1 (f - f0)/f0) log10(d)`` up to ``d_BP`` and
    ``+ 10 n2 (1 + b2 (f - f0)/f0) log10(d / d_BP)`` beyond; n1 = 2.43, b1 = -0.01, n2 = 8.36, b2 = 0.39,
    f0 = 39.5 GHz, d_BP = 110 m (sigma 6.26 dB). The paper gives no LOS probability for malls; we use
    TR 38.901 Indoor-OpenOffice (large open halls), a choice documented in ``docs/pathloss.md``.

The office constants of (c) were checked against the ``tr3gpp`` package's copy of TR 38.901 v19.4.0; the
mall and CIF constants are those of the 5GCM white paper's InH tables that Haneda et al. summarise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError

__all__ = [
    "FAMILIES",
    "FAMILY_LETTERS",
    "PathLossConfig",
    "path_loss_db",
    "los_probability",
    "simulate_rss_dbm",
    "simulate_pathloss_environment",
]

SPEED_OF_LIGHT_M_S = 299_792_458.0
#: Family name by the paper's letter.
FAMILY_LETTERS = {
    "a": "log_distance",
    "b": "mall_nlos_dual_slope",
    "c": "office_mixed_single_slope",
    "d": "office_freq_dependent",
    "e": "mall_mixed_dual_slope",
}
FAMILIES = tuple(FAMILY_LETTERS.values())

# Shadowing standard deviations [dB] per family and state (LOS, NLOS).
_SIGMA_DB: dict[str, tuple[float, float]] = {
    "log_distance": (4.0, 4.0),
    "mall_nlos_dual_slope": (6.36, 6.36),
    "office_mixed_single_slope": (3.0, 8.03),
    "office_freq_dependent": (3.02, 8.29),
    "mall_mixed_dual_slope": (2.01, 6.26),
}


def _fspl_1m_db(frequency_hz: float) -> float:
    """Free-space path loss at 1 m [dB]: ``20 log10(4 pi f / c)``."""
    return float(20.0 * np.log10(4.0 * np.pi * frequency_hz / SPEED_OF_LIGHT_M_S))


def _cif_exponent(n: float, b: float, frequency_hz: float, f0_hz: float) -> float:
    return n * (1.0 + b * (frequency_hz - f0_hz) / f0_hz)


def los_probability(family: str, d2d_m: np.ndarray) -> np.ndarray:
    """Probability that a link is LOS, from the 2-D distance [m] (TR 38.901 Table 7.4.2-1).

    ``log_distance`` has no LOS/NLOS distinction (returns 1); ``mall_nlos_dual_slope`` is all NLOS (0).
    """
    family = _family(family)
    d = np.asarray(d2d_m, dtype=np.float64)
    if family == "log_distance":
        return np.ones_like(d)
    if family == "mall_nlos_dual_slope":
        return np.zeros_like(d)
    if family == "mall_mixed_dual_slope":  # Indoor-OpenOffice
        return np.where(
            d <= 5.0,
            1.0,
            np.where(d <= 49.0, np.exp(-(d - 5.0) / 70.8), np.exp(-(d - 49.0) / 211.7) * 0.54),
        )
    # Indoor-MixedOffice
    return np.where(
        d <= 1.2,
        1.0,
        np.where(d < 6.5, np.exp(-(d - 1.2) / 4.7), np.exp(-(d - 6.5) / 32.6) * 0.32),
    )


def path_loss_db(
    family: str,
    d3d_m: np.ndarray,
    frequency_hz: float,
    los: np.ndarray | bool,
    *,
    path_loss_exponent: float = 3.0,
) -> np.ndarray:
    """Mean path loss [dB] of a family at 3-D distance ``d3d_m`` [m] (>= 1 m) and carrier ``frequency_hz`` [Hz].

    ``los`` selects the LOS or NLOS formula per link (ignored by families with a single state).
    ``path_loss_exponent`` is ``n`` of family (a). The antenna gain is not included (see the link budget).
    """
    family = _family(family)
    d = np.asarray(d3d_m, dtype=np.float64)
    if (d < 1.0).any():
        raise DataValidationError("path_loss_db: distances must be >= 1 m (the models' validity range)")
    los_arr = np.broadcast_to(np.asarray(los, dtype=bool), d.shape)
    f_ghz = frequency_hz / 1e9
    log_d = np.log10(d)
    if family == "log_distance":
        wavelength_m = SPEED_OF_LIGHT_M_S / frequency_hz
        return 10.0 * path_loss_exponent * log_d + 20.0 * np.log10(4.0 * np.pi / wavelength_m)
    if family == "mall_nlos_dual_slope":
        a1, beta, gamma, d_bp, a2 = 2.9, 22.17, 2.24, 147.0, 11.47
        near = 10.0 * a1 * log_d + beta + 10.0 * gamma * np.log10(f_ghz)
        far = 10.0 * a1 * np.log10(d_bp) + beta + 10.0 * gamma * np.log10(f_ghz) + 10.0 * a2 * np.log10(d / d_bp)
        return np.where(d <= d_bp, near, far)
    if family == "office_mixed_single_slope":
        pl_los = 32.4 + 17.3 * log_d + 20.0 * np.log10(f_ghz)
        pl_nlos = np.maximum(pl_los, 38.3 * log_d + 17.30 + 24.9 * np.log10(f_ghz))
        return np.where(los_arr, pl_los, pl_nlos)
    fspl = _fspl_1m_db(frequency_hz)
    if family == "office_freq_dependent":
        n_nlos = _cif_exponent(3.19, 0.06, frequency_hz, 24.2e9)
        return np.where(los_arr, fspl + 10.0 * 1.73 * log_d, fspl + 10.0 * n_nlos * log_d)
    # mall_mixed_dual_slope
    n1 = _cif_exponent(2.43, -0.01, frequency_hz, 39.5e9)
    n2 = _cif_exponent(8.36, 0.39, frequency_hz, 39.5e9)
    d_bp = 110.0
    nlos = np.where(
        d <= d_bp,
        fspl + 10.0 * n1 * log_d,
        fspl + 10.0 * n1 * np.log10(d_bp) + 10.0 * n2 * np.log10(d / d_bp),
    )
    return np.where(los_arr, fspl + 10.0 * 1.73 * log_d, nlos)


def _family(name: str) -> str:
    name = FAMILY_LETTERS.get(name, name)
    if name not in FAMILIES:
        raise DataValidationError(
            f"unknown path-loss family {name!r}; expected one of {list(FAMILY_LETTERS)} or {list(FAMILIES)}"
        )
    return name


@dataclass(frozen=True)
class PathLossConfig:
    """Settings of one simulated RSS environment (defaults: MetaLoc's 24 APs at 2440 MHz).

    Parameters
    ----------
    family : str
        One of :data:`FAMILIES` or its letter ``a``-``e``.
    n_aps : int
        Number of APs, placed uniformly at random in the room.
    frequency_hz : float
        Carrier [Hz].
    room_size_m : (float, float)
        Width and depth of the rectangular area [m].
    tx_power_dbm : float
        AP transmit power [dBm].
    antenna_gain_db : float
        Combined antenna gain ``G`` [dB].
    ap_height_m, ut_height_m : float
        AP and receiver heights [m] (TR 38.901 InH defaults 3 m and 1 m).
    grid_spacing_m : float
        Spacing of the reference-point grid [m]; RPs cover the room on this grid.
    n_test_points : int
        Test points, uniform at random in the room.
    samples_per_point : int
        Samples at each point; they share the link's shadowing and differ by ``measurement_noise_db``.
    measurement_noise_db : float
        Per-sample Gaussian noise [dB] on top of the shadowing.
    sigma_los_db, sigma_nlos_db : float or None
        Shadowing std [dB]; None uses the family's value.
    path_loss_exponent : float
        ``n`` of family (a).
    sensitivity_dbm : float or None
        Receiver sensitivity [dBm]; weaker samples become NaN ("not heard"). None keeps all.
    """

    family: str = "log_distance"
    n_aps: int = 24
    frequency_hz: float = 2.44e9
    room_size_m: tuple[float, float] = (20.0, 20.0)
    tx_power_dbm: float = 20.0
    antenna_gain_db: float = 0.0
    ap_height_m: float = 3.0
    ut_height_m: float = 1.0
    grid_spacing_m: float = 2.0
    n_test_points: int = 1000
    samples_per_point: int = 1
    measurement_noise_db: float = 0.0
    sigma_los_db: float | None = None
    sigma_nlos_db: float | None = None
    path_loss_exponent: float = 3.0
    sensitivity_dbm: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", _family(self.family))
        checks = {
            "n_aps": self.n_aps >= 1,
            "frequency_hz": self.frequency_hz >= 1e6,
            "room_size_m": len(self.room_size_m) == 2 and min(self.room_size_m) > 0,
            "grid_spacing_m": self.grid_spacing_m > 0,
            "n_test_points": self.n_test_points >= 1,
            "samples_per_point": self.samples_per_point >= 1,
            "measurement_noise_db": self.measurement_noise_db >= 0,
            "ap_height_m": self.ap_height_m >= 0,
            "ut_height_m": self.ut_height_m >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise DataValidationError(f"PathLossConfig: invalid {name}={getattr(self, name)!r}")
        for name in ("sigma_los_db", "sigma_nlos_db"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise DataValidationError(f"PathLossConfig: {name} must be >= 0, got {v}")

    @property
    def sigma_db(self) -> tuple[float, float]:
        """Shadowing std [dB] for (LOS, NLOS) links."""
        los, nlos = _SIGMA_DB[self.family]
        return (
            los if self.sigma_los_db is None else self.sigma_los_db,
            nlos if self.sigma_nlos_db is None else self.sigma_nlos_db,
        )

    def with_(self, **changes: Any) -> PathLossConfig:
        """A copy with some settings changed."""
        return replace(self, **changes)


def simulate_rss_dbm(
    config: PathLossConfig,
    ap_positions_m: np.ndarray,
    points_m: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RSS [dBm] of every AP at every point, one sample per point.

    Returns
    -------
    rss_dbm : ``(n_points, n_aps)``; los : ``(n_points, n_aps)`` bool; mean_rss_dbm : ``(n_points, n_aps)``
        (the received power without shadowing, for checking against the formula).
    """
    diff = points_m[:, None, :2] - ap_positions_m[None, :, :2]
    d2d = np.sqrt((diff**2).sum(-1))
    dh = config.ap_height_m - config.ut_height_m
    d3d = np.maximum(np.sqrt(d2d**2 + dh**2), 1.0)
    los = rng.random(d2d.shape) < los_probability(config.family, d2d)
    pl = path_loss_db(config.family, d3d, config.frequency_hz, los, path_loss_exponent=config.path_loss_exponent)
    mean_rss = config.tx_power_dbm + config.antenna_gain_db - pl
    sigma_los, sigma_nlos = config.sigma_db
    sigma = np.where(los, sigma_los, sigma_nlos)
    return mean_rss - sigma * rng.standard_normal(d2d.shape), los, mean_rss


def _grid(room: tuple[float, float], spacing: float) -> np.ndarray:
    xs = np.arange(0.0, room[0] + 1e-9, spacing)
    ys = np.arange(0.0, room[1] + 1e-9, spacing)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def simulate_pathloss_environment(
    config: PathLossConfig, seed: int, name: str | None = None
) -> tuple[Fingerprints, Fingerprints]:
    """Simulate one environment: reference points on a grid (survey) and random test points.

    The same seed gives the same environment. Returns ``(reference, test)`` fingerprints that share one
    :class:`EnvironmentMeta` whose ``attrs`` record the full configuration and seed.
    """
    rng = np.random.default_rng(seed)
    width, depth = config.room_size_m
    aps = rng.uniform([0.0, 0.0], [width, depth], size=(config.n_aps, 2))
    attrs: dict[str, Any] = {"simulator": "pathloss", "seed": int(seed)}
    for key, value in asdict(config).items():
        if key == "extra":
            attrs.update({f"extra_{k}": v for k, v in value.items()})
        elif key == "room_size_m":
            attrs["room_width_m"], attrs["room_depth_m"] = map(float, value)
        elif value is not None:
            attrs[key] = value
    meta = EnvironmentMeta(
        name=name or f"{config.family}-s{seed}",
        kind="rss",
        ap_ids=tuple(f"AP{j + 1:02d}" for j in range(config.n_aps)),
        ap_positions_m=aps,
        frequency_hz=config.frequency_hz,
        grid_spacing_m=config.grid_spacing_m,
        attrs=attrs,
    )
    ref_points = _grid(config.room_size_m, config.grid_spacing_m)
    test_points = rng.uniform([0.0, 0.0], [width, depth], size=(config.n_test_points, 2))
    out = []
    for points in (ref_points, test_points):
        rss, _, _ = simulate_rss_dbm(config, aps, points, rng)
        reps = config.samples_per_point
        rss = np.repeat(rss, reps, axis=0)
        if config.measurement_noise_db > 0:
            rss = rss + config.measurement_noise_db * rng.standard_normal(rss.shape)
        if config.sensitivity_dbm is not None:
            rss = np.where(rss < config.sensitivity_dbm, np.nan, rss)
        # Clip to the plausible dBm range so extreme draws stay valid RSS.
        rss = np.clip(rss, -150.0, 30.0)
        out.append(
            Fingerprints(
                meta,
                rss,
                np.repeat(points, reps, axis=0),
                np.repeat(np.arange(points.shape[0]), reps),
            )
        )
    return out[0], out[1]
