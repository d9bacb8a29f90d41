"""Named, seeded CSI scenario presets (ALLoc's DeepMIMO-like families and MetaLoc's indoor WiFi rooms).

Each preset turns ``(seed, options)`` into one or more environments; the same seed always gives the same
geometry, and users are drawn per environment and split from independent random streams.

| preset | environments | what changes between them |
|---|---|---|
| ``o1`` | 1 | LoS urban road, 3.5 GHz, 40 MHz, ULA 32, 32 subcarriers (like DeepMIMO 'O1', BS3) |
| ``o1b`` | 1 | the same road with large blockers that cut the LoS in sections (like 'O1B') |
| ``mo1`` | 5 cells | a 500 m strip; cells differ in scatterers, BS side/offset/height and array orientation ('MO1') |
| ``o1-rain`` | 1 per rain rate | 'O1' at 60 GHz / 1.6 GHz with ITU-R P.838-3 rain attenuation (0-100 mm/h) |
| ``o2`` | 1 per traffic condition | a road with parked/moving vehicles as scatterers and blockers ('O2') |
| ``city`` | 2 layouts x conditions | an 'o1'-like road served by four BSs at once (layout A, or the unseen |
| | | layout B), vehicles redrawn per condition (LWLM's multi-BS data) |

The indoor WiFi rooms (``hall``, ``lab``) live in :mod:`xloc.sim.csi_images`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError
from xloc.sim.channel import simulate_channels
from xloc.sim.geometry import BaseStation, Scatterer, Scene, Surface, ground, wall
from xloc.sim.impairments import add_awgn

__all__ = ["ScenarioEnvironment", "OUTDOOR_PRESETS", "CITY_LAYOUTS", "build_outdoor", "simulate_outdoor",
           "RAIN_RATES_MM_H"]

RAIN_RATES_MM_H = (0.0, 10.0, 25.0, 50.0, 100.0)
STREET_HALF_WIDTH_M = 12.0
USER_HEIGHT_M = 2.0  # DeepMIMO's user grid height
BS_HEIGHT_M = 6.0


@dataclass(frozen=True)
class ScenarioEnvironment:
    """One environment of a preset: a scene with its serving BS(s) and the rectangle users are drawn in.

    ``user_area_m`` is ``(x_min, x_max, y_min, y_max)`` [m] at height ``user_height_m``.
    """

    name: str
    scene: Scene
    user_area_m: tuple[float, float, float, float]
    user_height_m: float = USER_HEIGHT_M

    def drive(self, spacing_m: float = 0.5, lanes: int = 4) -> np.ndarray:
        """Positions ``(n, 3)`` [m] of a platform driving every ``spacing_m`` along ``lanes`` straight lanes
        across the user area (an unlabelled collection run)."""
        x0, x1, y0, y1 = self.user_area_m
        if spacing_m <= 0 or lanes < 1:
            raise DataValidationError(f"spacing_m must be > 0 and lanes >= 1, got {spacing_m}, {lanes}")
        xs = np.arange(x0, x1 + 1e-9, spacing_m)
        ys = y0 + (np.arange(lanes) + 0.5) * (y1 - y0) / lanes
        xy = np.array([(x, y) for y in ys for x in xs])
        return np.column_stack([xy, np.full(len(xy), self.user_height_m)])

    def draw_users(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x0, x1, y0, y1 = self.user_area_m
        xy = rng.uniform([x0, y0], [x1, y1], size=(n, 2))
        return np.column_stack([xy, np.full(n, self.user_height_m)])


def _street_walls(x0: float, x1: float, rng: np.random.Generator) -> list[Surface]:
    """Building faces on both sides of a street along x: blocks of 15-35 m with 3-8 m gaps, 10-40 m tall."""
    faces: list[Surface] = []
    for side in (-1.0, 1.0):
        x = x0 + rng.uniform(0, 5)
        while x < x1:
            length = rng.uniform(15, 35)
            end = min(x + length, x1)
            y = side * STREET_HALF_WIDTH_M
            faces.append(wall((x, y), (end, y), rng.uniform(10, 40), rng.uniform(4, 9), name=f"building{len(faces)}"))
            x = end + rng.uniform(3, 8)
    return faces


def _street_furniture(x0: float, x1: float, rng: np.random.Generator, count: int) -> list[Scatterer]:
    """Lamp posts, signs and trees along the curbs: small scatterers that do not block."""
    xs = rng.uniform(x0, x1, count)
    ys = rng.choice([-1.0, 1.0], count) * rng.uniform(9.0, 11.0, count)
    return [
        Scatterer([x, y, rng.uniform(2.0, 6.0)], rcs_m2=float(rng.uniform(0.5, 5.0)),
                  phase_rad=float(rng.uniform(0, 2 * np.pi)))
        for x, y in zip(xs, ys, strict=True)
    ]


def _street(length_m: float, rng: np.random.Generator, furniture: int) -> tuple[list[Surface], list[Scatterer]]:
    """A straight street along x over ``[0, length_m]``: building faces, the ground, then street furniture."""
    surfaces = _street_walls(-20.0, length_m + 20.0, rng) + [ground((-40.0, length_m + 40.0), (-15.0, 15.0))]
    return surfaces, _street_furniture(0.0, length_m, rng, furniture)


def _road(seed: int, carrier_hz: float = 3.5e9, bandwidth_hz: float = 40e6, length_m: float = 120.0) -> Scene:
    rng = np.random.default_rng([seed, 1])
    surfaces, furniture = _street(length_m, rng, 10)
    bs = BaseStation([length_m / 2, -STREET_HALF_WIDTH_M + 1.0, BS_HEIGHT_M], orientation_rad=0.0, n_horizontal=32)
    return Scene(carrier_hz, bandwidth_hz, 32, (bs,), tuple(surfaces), tuple(furniture))


def _o1(seed: int, **_options: object) -> list[ScenarioEnvironment]:
    return [ScenarioEnvironment("o1", _road(seed), (10.0, 110.0, -8.0, 8.0))]


def _o1b(seed: int, **_options: object) -> list[ScenarioEnvironment]:
    scene = _road(seed)
    rng = np.random.default_rng([seed, 2])
    blockers = [  # kiosks, bus shelters, parked trucks: tall enough to shadow the 6 m BS from 2 m users
        Scatterer([x, y, 2.5], rcs_m2=float(rng.uniform(5, 20)), radius_m=float(r), height_m=8.0,
                  phase_rad=float(rng.uniform(0, 2 * np.pi)))
        for x, y, r in [(30.0, -7.0, 3.0), (52.0, -5.0, 2.5), (75.0, -6.5, 3.5), (95.0, -4.0, 2.0)]
    ]
    return [ScenarioEnvironment("o1b", replace(scene, scatterers=scene.scatterers + tuple(blockers)),
                                (10.0, 110.0, -8.0, 8.0))]


_MO1_CELLS = (  # (BS x offset in cell [m], side, height [m], array orientation [deg], scatterers)
    (30.0, -1.0, 6.0, 0.0, 6),
    (70.0, 1.0, 8.0, 25.0, 14),
    (50.0, -1.0, 6.0, -20.0, 22),
    (20.0, 1.0, 10.0, 10.0, 10),
    (80.0, -1.0, 7.0, -35.0, 30),
)


def _overlaps(surface: Surface, lo: float, hi: float) -> bool:
    xs = (surface.origin_m[0], surface.origin_m[0] + surface.edge_a_m[0])
    return max(xs) >= lo and min(xs) <= hi


def _mo1(seed: int, **_options: object) -> list[ScenarioEnvironment]:
    rng = np.random.default_rng([seed, 3])
    cell_m = 100.0
    surfaces = _street_walls(-20.0, 5 * cell_m + 20.0, rng) + [ground((-40.0, 5 * cell_m + 40.0), (-15.0, 15.0))]
    scatterers: list[Scatterer] = []
    for c, (_, _, _, _, count) in enumerate(_MO1_CELLS):
        scatterers += _street_furniture(c * cell_m, (c + 1) * cell_m, rng, count)
        # Parked vehicles and kiosks: denser cells have more blockers.
        for _ in range(count // 6):
            scatterers.append(Scatterer(
                [rng.uniform(c * cell_m, (c + 1) * cell_m), rng.choice([-1.0, 1.0]) * rng.uniform(4, 9), 1.2],
                rcs_m2=float(rng.uniform(5, 20)), radius_m=float(rng.uniform(1.0, 2.5)),
                height_m=float(rng.uniform(2.0, 4.0)), phase_rad=float(rng.uniform(0, 2 * np.pi))))
    envs = []
    for c, (x_off, side, height, orient_deg, _) in enumerate(_MO1_CELLS):
        bs = BaseStation([c * cell_m + x_off, side * (STREET_HALF_WIDTH_M - 1.0), height],
                         orientation_rad=float(np.deg2rad(orient_deg)) + (np.pi if side > 0 else 0.0),
                         n_horizontal=32)
        # Keep what lies within 100 m of the cell: farther walls and scatterers only add paths 20-40 dB down
        # and make the image method quadratically slower.
        lo, hi = c * cell_m - 100.0, (c + 1) * cell_m + 100.0
        near = [f for f in surfaces if f.name == "ground" or _overlaps(f, lo, hi)]
        near_scatterers = [sc for sc in scatterers if lo <= sc.position_m[0] <= hi]
        scene = Scene(3.5e9, 40e6, 32, (bs,), tuple(near), tuple(near_scatterers))
        envs.append(ScenarioEnvironment(f"mo1-cell{c + 1}", scene, (c * cell_m + 5, (c + 1) * cell_m - 5, -8.0, 8.0)))
    return envs


def _o1_rain(
    seed: int, rain_rates_mm_h: tuple[float, ...] = RAIN_RATES_MM_H, **_options: object
) -> list[ScenarioEnvironment]:
    base = _road(seed, carrier_hz=60e9, bandwidth_hz=1.6e9)
    return [
        ScenarioEnvironment(f"o1-rain-{rate:g}mmh", replace(base, rain_rate_mm_h=float(rate)), (10.0, 110.0, -8.0, 8.0))
        for rate in rain_rates_mm_h
    ]


def _vehicles(rng: np.random.Generator, density_per_100m: float, length_m: float) -> list[Scatterer]:
    n = rng.poisson(density_per_100m * length_m / 100.0)
    lanes = np.array([-7.5, -2.5, 2.5, 7.5])
    out = []
    for _ in range(n):
        truck = rng.random() < 0.25
        out.append(Scatterer(
            [rng.uniform(0, length_m), rng.choice(lanes) + rng.normal(0, 0.3), 1.8 if truck else 1.0],
            rcs_m2=30.0 if truck else 10.0, radius_m=2.0 if truck else 1.1, height_m=3.6 if truck else 1.5,
            phase_rad=float(rng.uniform(0, 2 * np.pi))))
    return out


def _o2(seed: int, conditions: int = 50, **_options: object) -> list[ScenarioEnvironment]:
    if conditions < 1:
        raise DataValidationError(f"o2 needs conditions >= 1, got {conditions}")
    length_m = 80.0
    rng = np.random.default_rng([seed, 5])
    surfaces, furniture = _street(length_m, rng, 6)
    bs = BaseStation([length_m / 2, -STREET_HALF_WIDTH_M + 1.0, BS_HEIGHT_M], n_horizontal=32)
    envs = []
    for c in range(conditions):
        # Traffic from empty to jammed across conditions; each condition its own vehicle draw.
        density = 40.0 * c / max(conditions - 1, 1)
        cars = _vehicles(np.random.default_rng([seed, 6, c]), density, length_m)
        scene = Scene(3.5e9, 40e6, 32, (bs,), tuple(surfaces), tuple(furniture + cars),
                      attrs={"vehicles": len(cars), "density_per_100m": density})
        envs.append(ScenarioEnvironment(f"o2-cond{c + 1:02d}", scene, (5.0, length_m - 5.0, -10.0, 10.0)))
    return envs


#: (x [m], side, height [m], array orientation [deg]) of the four BSs of each ``city`` layout; B shares no site
#: with A (LWLM's "unseen BS configuration").
CITY_LAYOUTS = {
    "A": ((20.0, -1.0, 6.0, 0.0), (100.0, -1.0, 8.0, 0.0), (45.0, 1.0, 7.0, 0.0), (80.0, 1.0, 6.0, 0.0)),
    "B": ((60.0, -1.0, 10.0, 15.0), (5.0, 1.0, 6.0, -10.0), (115.0, -1.0, 7.0, -20.0), (60.0, 1.0, 9.0, 10.0)),
}


def _city(seed: int, conditions: int = 2, **_options: object) -> list[ScenarioEnvironment]:
    if conditions < 1:
        raise DataValidationError(f"city needs conditions >= 1, got {conditions}")
    length_m = 120.0
    rng = np.random.default_rng([seed, 8])
    surfaces, furniture = _street(length_m, rng, 10)
    envs = []
    for layout, sites in CITY_LAYOUTS.items():
        stations = tuple(
            BaseStation([x, side * (STREET_HALF_WIDTH_M - 1.0), height],
                        orientation_rad=float(np.deg2rad(deg)) + (np.pi if side > 0 else 0.0), n_horizontal=32)
            for x, side, height, deg in sites)
        for c in range(conditions):
            # The same traffic draw for both layouts: a condition is a state of the street, not of the network.
            cars = _vehicles(np.random.default_rng([seed, 9, c]), 15.0, length_m)
            scene = Scene(3.5e9, 40e6, 32, stations, tuple(surfaces), tuple(furniture + cars),
                          attrs={"layout": layout, "condition": c + 1, "vehicles": len(cars)})
            envs.append(ScenarioEnvironment(f"city-{layout}-cond{c + 1}", scene, (10.0, 110.0, -8.0, 8.0)))
    return envs


#: preset name -> (builder, one-line description)
OUTDOOR_PRESETS: dict[str, tuple[Callable[..., list[ScenarioEnvironment]], str]] = {
    "o1": (_o1, "LoS urban road, 3.5 GHz, 40 MHz, ULA 32, 32 subcarriers (DeepMIMO 'O1'-like)"),
    "o1b": (_o1b, "the 'o1' road with blockers cutting the LoS in sections ('O1B'-like)"),
    "mo1": (_mo1, "five-cell strip; cells differ in scatterers, BS placement and array orientation ('MO1'-like)"),
    "o1-rain": (_o1_rain, "'o1' at 60 GHz / 1.6 GHz with ITU-R P.838-3 rain at 0-100 mm/h"),
    "o2": (_o2, "road with vehicles as scatterers/blockers, one environment per traffic condition ('O2'-like)"),
    "city": (_city, "an 'o1'-like road served by 4 BSs (layout A, or unseen layout B), vehicles redrawn per condition"),
}


def build_outdoor(name: str, seed: int, **options: object) -> list[ScenarioEnvironment]:
    """The environments of preset ``name`` for ``seed``."""
    if name not in OUTDOOR_PRESETS:
        raise DataValidationError(f"unknown scenario {name!r}; available: {sorted(OUTDOOR_PRESETS)}")
    return OUTDOOR_PRESETS[name][0](seed, **options)


def simulate_outdoor(
    env: ScenarioEnvironment,
    n_users: int,
    rng: np.random.Generator,
    *,
    preset: str,
    seed: int,
    snr_db: float | None = None,
    progress: bool = False,
    users_m: np.ndarray | None = None,
) -> Fingerprints:
    """``n_users`` random users of one environment (or the users at ``users_m`` ``(n, 3)`` [m], e.g. a
    trajectory) as CSI fingerprints with ground-truth labels."""
    if users_m is not None:
        n_users = len(users_m)
    if n_users < 1:
        raise DataValidationError(f"n_users must be >= 1, got {n_users}")
    users = env.draw_users(n_users, rng) if users_m is None else np.asarray(users_m, dtype=np.float64)
    data = simulate_channels(env.scene, users, progress=progress)
    csi = data.csi if snr_db is None else add_awgn(data.csi, snr_db, rng)
    scene = env.scene
    bs = scene.base_stations
    attrs: dict[str, str | float | int | bool] = {
        "simulator": "geometric", "preset": preset, "seed": int(seed), "n_subcarriers": scene.n_subcarriers,
        "n_antennas": bs[0].n_antennas, "max_order": int(scene.max_order), "rain_rate_mm_h": scene.rain_rate_mm_h,
        "n_surfaces": len(scene.surfaces), "n_scatterers": len(scene.scatterers),
        "bs_orientation_rad": float(bs[0].orientation_rad), "user_height_m": env.user_height_m,
        "bs_orientations_rad": ",".join(f"{b.orientation_rad:.9g}" for b in bs),
        "bs_spacing_wavelengths": float(bs[0].spacing_wavelengths),
        **scene.attrs,
    }
    if snr_db is not None:
        attrs["snr_db"] = float(snr_db)
    meta = EnvironmentMeta(
        name=env.name, kind="csi", ap_ids=tuple(f"BS{i + 1}" for i in range(len(bs))),
        ap_positions_m=np.stack([b.position_m for b in bs]), frequency_hz=scene.carrier_hz,
        bandwidth_hz=scene.bandwidth_hz, attrs=attrs,
    )
    return Fingerprints(meta, csi, users, np.arange(n_users), labels=data.labels())
