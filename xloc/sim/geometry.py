"""Scene description for the geometric channel model: base stations with arrays, reflecting rectangles and
scatterers/blockers. Everything is in metres in one right-handed frame with z up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["BaseStation", "Surface", "Scatterer", "Scene", "wall", "ground"]

SPEED_OF_LIGHT_M_S = 299_792_458.0
#: A point or vector [m]: any 3-element array-like at construction, a float64 ``(3,)`` array afterwards.
Vec3 = Any


def _vec3(value: object, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise DataValidationError(f"{name} must be 3 finite numbers [m], got {value!r}")
    return arr


@dataclass(frozen=True)
class BaseStation:
    """A base station or AP with a uniform linear (``ny = 1``) or planar array.

    Parameters
    ----------
    position_m : (3,)
        Array centre [m].
    orientation_rad : float
        Azimuth of the array's horizontal axis [rad] (0 = along +x); broadside faces ``orientation + pi/2``.
    n_horizontal, n_vertical : int
        Elements along the horizontal axis and along z (a ULA has ``n_vertical = 1``).
    spacing_wavelengths : float
        Element spacing in carrier wavelengths (0.5 = half-wavelength).
    """

    position_m: Vec3
    orientation_rad: float = 0.0
    n_horizontal: int = 32
    n_vertical: int = 1
    spacing_wavelengths: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _vec3(self.position_m, "BaseStation.position_m"))
        if self.n_horizontal < 1 or self.n_vertical < 1:
            raise DataValidationError("BaseStation needs at least one antenna element per axis")
        if self.spacing_wavelengths <= 0:
            raise DataValidationError("BaseStation.spacing_wavelengths must be > 0")

    @property
    def n_antennas(self) -> int:
        return self.n_horizontal * self.n_vertical

    @property
    def axis(self) -> np.ndarray:
        """Unit vector of the horizontal array axis."""
        return np.array([np.cos(self.orientation_rad), np.sin(self.orientation_rad), 0.0])

    @property
    def broadside(self) -> np.ndarray:
        """Unit vector the array faces (horizontal, perpendicular to the axis)."""
        return np.array([-np.sin(self.orientation_rad), np.cos(self.orientation_rad), 0.0])

    def element_offsets_wavelengths(self) -> np.ndarray:
        """Element positions relative to the centre, in wavelengths, ``(n_antennas, 3)`` (horizontal index fastest)."""
        h = (np.arange(self.n_horizontal) - (self.n_horizontal - 1) / 2) * self.spacing_wavelengths
        v = (np.arange(self.n_vertical) - (self.n_vertical - 1) / 2) * self.spacing_wavelengths
        hh, vv = np.meshgrid(h, v, indexing="xy")
        return hh.reshape(-1, 1) * self.axis + vv.reshape(-1, 1) * np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Surface:
    """A reflecting rectangle ``origin + s * edge_a + t * edge_b`` for ``s, t`` in [0, 1].

    Parameters
    ----------
    origin_m, edge_a_m, edge_b_m : (3,)
        Corner and two perpendicular edges [m].
    reflection_loss_db : float
        Loss of one specular bounce [dB]; the reflection coefficient is ``-10**(-loss/20)`` (phase pi).
    name : str
        Label for plots.
    """

    origin_m: Vec3
    edge_a_m: Vec3
    edge_b_m: Vec3
    reflection_loss_db: float = 6.0
    name: str = ""

    def __post_init__(self) -> None:
        for attr in ("origin_m", "edge_a_m", "edge_b_m"):
            object.__setattr__(self, attr, _vec3(getattr(self, attr), f"Surface.{attr}"))
        if abs(float(self.edge_a_m @ self.edge_b_m)) > 1e-6 * np.linalg.norm(self.edge_a_m) * np.linalg.norm(
            self.edge_b_m
        ):
            raise DataValidationError(f"surface {self.name!r}: edges must be perpendicular")
        if np.linalg.norm(np.cross(self.edge_a_m, self.edge_b_m)) == 0:
            raise DataValidationError(f"surface {self.name!r}: degenerate rectangle")
        if self.reflection_loss_db < 0:
            raise DataValidationError(f"surface {self.name!r}: reflection_loss_db must be >= 0")

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.edge_a_m, self.edge_b_m)
        return n / np.linalg.norm(n)

    @property
    def reflection_coefficient(self) -> float:
        return -(10.0 ** (-self.reflection_loss_db / 20.0))


def wall(
    start_xy_m: tuple[float, float],
    end_xy_m: tuple[float, float],
    height_m: float,
    reflection_loss_db: float = 6.0,
    name: str = "",
) -> Surface:
    """A vertical wall from ``start`` to ``end`` (x, y [m]) between z = 0 and ``height_m``."""
    a = np.array([end_xy_m[0] - start_xy_m[0], end_xy_m[1] - start_xy_m[1], 0.0])
    return Surface(np.array([start_xy_m[0], start_xy_m[1], 0.0]), a, np.array([0.0, 0.0, height_m]),
                   reflection_loss_db, name)


def ground(
    x_range_m: tuple[float, float], y_range_m: tuple[float, float], z_m: float = 0.0,
    reflection_loss_db: float = 8.0, name: str = "ground",
) -> Surface:
    """A horizontal rectangle (ground or ceiling) at height ``z_m``."""
    return Surface(
        np.array([x_range_m[0], y_range_m[0], z_m]),
        np.array([x_range_m[1] - x_range_m[0], 0.0, 0.0]),
        np.array([0.0, y_range_m[1] - y_range_m[0], 0.0]),
        reflection_loss_db,
        name,
    )


@dataclass(frozen=True)
class Scatterer:
    """A point scatterer that may also block: a vertical cylinder of ``radius_m`` and ``height_m``.

    Parameters
    ----------
    position_m : (3,)
        Scattering centre [m].
    rcs_m2 : float
        Bistatic radar cross-section [m^2]; 0 makes a pure blocker.
    radius_m, height_m : float
        Blocking cylinder standing on z = 0 around the scatterer's (x, y); 0 makes a pure scatterer.
    phase_rad : float
        Phase of the scattering coefficient [rad], fixed so channels stay spatially consistent.
    """

    position_m: Vec3
    rcs_m2: float = 1.0
    radius_m: float = 0.0
    height_m: float = 0.0
    phase_rad: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_m", _vec3(self.position_m, "Scatterer.position_m"))
        if self.rcs_m2 < 0 or self.radius_m < 0 or self.height_m < 0:
            raise DataValidationError("Scatterer rcs_m2, radius_m and height_m must be >= 0")


@dataclass(frozen=True)
class Scene:
    """Everything the path solver needs.

    Parameters
    ----------
    carrier_hz, bandwidth_hz : float
        Carrier and signal bandwidth [Hz].
    n_subcarriers : int
        Subcarriers, evenly spaced over the bandwidth and centred on the carrier.
    base_stations, surfaces, scatterers
        The scene's contents.
    subcarrier_indices : array or None
        Explicit subcarrier indices (spacing ``bandwidth / fft_size``), e.g. WiFi's 52 used of 64; None uses
        ``n_subcarriers`` evenly spaced.
    fft_size : int or None
        FFT size that ``subcarrier_indices`` refer to.
    max_order : {0, 1, 2}
        Highest number of specular bounces.
    rain_rate_mm_h : float
        Rain rate [mm/h]; attenuation of ITU-R P.838-3 applied per path length.
    """

    carrier_hz: float
    bandwidth_hz: float
    n_subcarriers: int
    base_stations: tuple[BaseStation, ...]
    surfaces: tuple[Surface, ...] = ()
    scatterers: tuple[Scatterer, ...] = ()
    subcarrier_indices: np.ndarray | None = None
    fft_size: int | None = None
    max_order: Literal[0, 1, 2] = 2
    rain_rate_mm_h: float = 0.0
    polarization: Literal["horizontal", "vertical"] = "vertical"
    attrs: dict[str, str | float | int | bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.carrier_hz < 1e6 or self.bandwidth_hz <= 0:
            raise DataValidationError("Scene carrier_hz must be >= 1 MHz and bandwidth_hz > 0 (both in Hz)")
        if not self.base_stations:
            raise DataValidationError("Scene needs at least one base station")
        if self.rain_rate_mm_h < 0:
            raise DataValidationError("rain_rate_mm_h must be >= 0")
        object.__setattr__(self, "base_stations", tuple(self.base_stations))
        object.__setattr__(self, "surfaces", tuple(self.surfaces))
        object.__setattr__(self, "scatterers", tuple(self.scatterers))
        if self.subcarrier_indices is not None:
            idx = np.asarray(self.subcarrier_indices, dtype=np.float64)
            if idx.size != self.n_subcarriers or self.fft_size is None:
                raise DataValidationError("subcarrier_indices needs n_subcarriers entries and an fft_size")
            object.__setattr__(self, "subcarrier_indices", idx)

    @property
    def wavelength_m(self) -> float:
        return SPEED_OF_LIGHT_M_S / self.carrier_hz

    def subcarrier_offsets_hz(self) -> np.ndarray:
        """Baseband frequency of each subcarrier relative to the carrier [Hz]."""
        if self.subcarrier_indices is not None:
            assert self.fft_size is not None
            return self.subcarrier_indices * (self.bandwidth_hz / self.fft_size)
        spacing = self.bandwidth_hz / self.n_subcarriers
        return (np.arange(self.n_subcarriers) - (self.n_subcarriers - 1) / 2) * spacing
