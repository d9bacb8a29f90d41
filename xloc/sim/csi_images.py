"""MetaLoc's indoor WiFi rooms and their CSI amplitude images (MetaLoc sections II-B, IV-B, Fig. 1 and 7).

Two rooms, each with 3 single-antenna APs at 5 GHz (channel 36, 5.18 GHz), 20 MHz, and the 52 used subcarriers
of a 64-point FFT; 90 grid points:

* ``hall`` -- a nearly empty 14 m x 7 m hall (LOS): 15 x 6 points at 0.6 m, a few pillars;
* ``lab`` -- a cluttered 10 m x 8 m lab (NLOS): desks, cubicle partitions, cabinets and computers; 90 points on a
  grid whose spacing alternates between 0.6 m and 1.2 m.

Each *day* is one environment (``hall-day1`` ... ``hall-day5``): furniture is jittered (and sometimes moved)
and people stand in the room, so the multipath changes from day to day while the APs stay put. A CSI image
``(3 APs, 50 packets, 52 subcarriers)`` stacks 50 packets of one point. Each image adds paths off people
walking nearby (6 Rayleigh paths, 8 dB below the static channel in total, delays up to 150 ns, phases drifting
from packet to packet), so two images of one point differ like measurements taken minutes apart; every packet
gets receiver noise at ``snr_db``, an AGC gain error (std 0.5 dB), a random common phase and a random timing
offset (a linear phase over subcarriers). Pixels map the amplitude [dB] linearly from ``PIXEL_FLOOR_DB`` (0) to
``PIXEL_FLOOR_DB + PIXEL_RANGE_DB`` (255), rounded, like the 0-255 images histogram intersection expects.
"""

from __future__ import annotations

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError
from xloc.sim.channel import simulate_channels
from xloc.sim.geometry import BaseStation, Scatterer, Scene, ground, wall

__all__ = ["ROOMS", "room_scene", "room_points", "simulate_room_day", "csi_to_image", "PACKETS"]

ROOMS = ("hall", "lab")
PACKETS = 50
CARRIER_HZ = 5.18e9
BANDWIDTH_HZ = 20e6
SUBCARRIERS = np.r_[-26:0, 1:27]  # 802.11 20 MHz: 52 used of 64
PIXEL_FLOOR_DB = -110.0
PIXEL_RANGE_DB = 70.0
POINT_HEIGHT_M = 1.0
_ROOM_SIZE = {"hall": (14.0, 7.0, 3.5), "lab": (10.0, 8.0, 3.0)}
_APS = {
    "hall": ([0.5, 0.5, 2.0], [13.5, 0.5, 2.0], [7.0, 6.5, 2.0]),
    "lab": ([0.4, 0.4, 2.0], [9.6, 0.6, 2.0], [5.0, 7.6, 2.0]),
}


def room_points(room: str) -> np.ndarray:
    """The 90 grid points ``(90, 3)`` [m] of a room."""
    if room == "hall":
        xs = 2.8 + 0.6 * np.arange(15)
        ys = 2.0 + 0.6 * np.arange(6)
    elif room == "lab":
        xs = np.array([1.0, 1.6, 2.2, 3.4, 4.0, 4.6, 5.8, 6.4, 7.0, 8.2])
        ys = np.array([1.0, 1.6, 2.8, 3.4, 4.0, 5.2, 5.8, 6.4, 7.0])
    else:
        raise DataValidationError(f"unknown room {room!r}; expected one of {ROOMS}")
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    return np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, POINT_HEIGHT_M)])


def _furniture(room: str, rng: np.random.Generator) -> list[tuple[np.ndarray, float, float, float]]:
    """Base furniture as (position, rcs, radius, height)."""
    items: list[tuple[np.ndarray, float, float, float]] = []
    if room == "hall":
        for x, y in [(4.0, 1.2), (10.0, 1.2), (4.0, 5.8), (10.0, 5.8)]:  # pillars
            items.append((np.array([x, y, 1.5]), 3.0, 0.35, 3.5))
        items.append((np.array([13.9, 3.5, 1.2]), 8.0, 0.0, 0.0))  # elevator door (metal)
    else:
        for x in (1.3, 3.7, 6.1, 8.5):
            for y in (2.2, 4.6, 6.7):
                items.append((np.array([x + rng.normal(0, 0.1), y, 0.75]), 2.0, 0.55, 0.75))  # desks
                items.append((np.array([x + 0.5, y + 0.3, 1.1]), 1.0, 0.0, 0.0))  # monitors / computers
        for x in (2.8, 5.2, 7.6):
            for y in (2.2, 4.6, 6.7):
                items.append((np.array([x, y, 0.9]), 0.5, 0.4, 1.8))  # cubicle partitions (block)
        for x, y in [(0.6, 4.0), (9.4, 4.5), (5.0, 0.4)]:
            items.append((np.array([x, y, 1.0]), 6.0, 0.5, 2.0))  # metal cabinets
    return items


def room_scene(room: str, seed: int, day: int) -> Scene:
    """The scene of ``room`` on ``day`` (1-based): furniture jittered per day, people placed per day."""
    if room not in ROOMS:
        raise DataValidationError(f"unknown room {room!r}; expected one of {ROOMS}")
    width, depth, height = _ROOM_SIZE[room]
    base_rng = np.random.default_rng([seed, 11, ROOMS.index(room)])
    day_rng = np.random.default_rng([seed, 12, ROOMS.index(room), day])
    walls = [
        wall((0.0, 0.0), (width, 0.0), height, 7.0, "south"),
        wall((width, 0.0), (width, depth), height, 7.0, "east"),
        wall((width, depth), (0.0, depth), height, 7.0, "north"),
        wall((0.0, depth), (0.0, 0.0), height, 7.0, "west"),
        ground((0.0, width), (0.0, depth), 0.0, 9.0, "floor"),
        ground((0.0, width), (0.0, depth), height, 11.0, "ceiling"),
    ]
    scatterers = []
    for pos, rcs, radius, h in _furniture(room, base_rng):
        p = pos.copy()
        if room == "lab" and day_rng.random() < 0.2:  # moved to another spot
            p[:2] = day_rng.uniform([0.5, 0.5], [width - 0.5, depth - 0.5])
        else:
            p[:2] += day_rng.normal(0, 0.15, 2)
        p[:2] = np.clip(p[:2], 0.2, [width - 0.2, depth - 0.2])
        scatterers.append(Scatterer(p, rcs, radius, h, float(day_rng.uniform(0, 2 * np.pi))))
    for _ in range(day_rng.poisson(4 if room == "hall" else 3)):  # people
        p = np.r_[day_rng.uniform([0.5, 0.5], [width - 0.5, depth - 0.5]), 1.2]
        scatterers.append(Scatterer(p, 0.5, 0.25, 1.75, float(day_rng.uniform(0, 2 * np.pi))))
    aps = tuple(BaseStation(pos, n_horizontal=1) for pos in _APS[room])
    return Scene(CARRIER_HZ, BANDWIDTH_HZ, SUBCARRIERS.size, aps, tuple(walls), tuple(scatterers),
                 subcarrier_indices=SUBCARRIERS, fft_size=64, attrs={"room": room, "day": int(day)})


def _dynamic_multipath(
    h: np.ndarray, rng: np.random.Generator, packets: int, relative_power_db: float, n_paths: int = 6
) -> np.ndarray:
    """Paths off moving people ``(N, A, packets, K)``: Rayleigh gains with total power ``relative_power_db``
    below the static channel, delays U[0, 150 ns], phases drifting over the 50 packets (people move)."""
    n, n_ap, _, n_sc = h.shape
    freqs = SUBCARRIERS[:n_sc] * (BANDWIDTH_HZ / 64)
    power = (np.abs(h) ** 2).mean(axis=-1, keepdims=True)  # (N, A, 1, 1)
    amp = np.sqrt(power * 10 ** (relative_power_db / 10) / n_paths / 2)
    gains = amp[..., None] * (rng.standard_normal((n, n_ap, 1, 1, n_paths))
                              + 1j * rng.standard_normal((n, n_ap, 1, 1, n_paths)))
    drift = np.cumsum(rng.normal(0, 0.15, (n, n_ap, packets, 1, n_paths)), axis=2)
    delays = rng.uniform(0, 150e-9, (n, n_ap, 1, 1, n_paths))
    # sum_p g_p exp(-j 2 pi f tau_p) exp(j drift_p(t)): the phase factors separate into a subcarrier part and a
    # packet part, so the sum is a batched (packets x paths) @ (paths x subcarriers) product, not N A T K P exps
    per_subcarrier = (gains * np.exp(-2j * np.pi * freqs[None, None, None, :, None] * delays))[:, :, 0]  # (N,A,K,P)
    per_packet = np.exp(1j * drift[:, :, :, 0, :])  # (N, A, T, P)
    return per_packet @ per_subcarrier.transpose(0, 1, 3, 2)  # (N, A, T, K)


def csi_to_image(
    csi: np.ndarray, rng: np.random.Generator, *, packets: int = PACKETS, snr_db: float = 25.0,
    dynamic_power_db: float = -8.0,
) -> np.ndarray:
    """CSI images ``(N, n_ap, packets, n_sc)`` (pixels 0-255) from complex CSI ``(N, n_ap, n_sc)``."""
    h = np.asarray(csi)[:, :, None, :]  # (N, A, 1, K)
    n, n_ap, _, n_sc = h.shape
    shape = (n, n_ap, packets, n_sc)
    h = h + _dynamic_multipath(h, rng, packets, dynamic_power_db)
    gain_db = rng.normal(0.0, 0.5, (n, n_ap, packets, 1))
    common = rng.uniform(0, 2 * np.pi, (n, n_ap, packets, 1))
    timing = rng.normal(0.0, 0.05, (n, n_ap, packets, 1)) * np.arange(n_sc)  # linear phase, rad per subcarrier
    power = (np.abs(h) ** 2).mean(axis=-1, keepdims=True)
    sigma = np.sqrt(power / 10.0 ** (snr_db / 10.0) / 2.0)
    noise = sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    packets_csi = h * 10.0 ** (gain_db / 20.0) * np.exp(1j * (common + timing)) + noise
    amp_db = 20.0 * np.log10(np.maximum(np.abs(packets_csi), 1e-12))
    pixels = np.clip(np.round((amp_db - PIXEL_FLOOR_DB) * 255.0 / PIXEL_RANGE_DB), 0, 255) + 0.0  # no -0.0
    return pixels.astype(np.float32)


def simulate_room_day(
    room: str, day: int, images_per_point: int, seed: int, rng: np.random.Generator, *, snr_db: float = 25.0
) -> Fingerprints:
    """``images_per_point`` CSI images at each of the room's 90 points on one day."""
    if images_per_point < 1:
        raise DataValidationError(f"images_per_point must be >= 1, got {images_per_point}")
    scene = room_scene(room, seed, day)
    points = room_points(room)
    data = simulate_channels(scene, points)
    csi = data.csi[:, :, 0, :]  # single-antenna APs: (90, 3, 52)
    rep = np.repeat(np.arange(points.shape[0]), images_per_point)
    images = csi_to_image(csi[rep], rng, snr_db=snr_db)
    meta = EnvironmentMeta(
        name=f"{room}-day{day}", kind="csi_image", ap_ids=("AP1", "AP2", "AP3"),
        ap_positions_m=np.stack([b.position_m for b in scene.base_stations]), frequency_hz=CARRIER_HZ,
        bandwidth_hz=BANDWIDTH_HZ, grid_spacing_m=0.6,
        attrs={"simulator": "geometric-room", "preset": room, "seed": int(seed), "day": int(day),
               "packets": PACKETS, "snr_db": float(snr_db), "pixel_floor_db": PIXEL_FLOOR_DB,
               "pixel_range_db": PIXEL_RANGE_DB, "n_scatterers": len(scene.scatterers)},
    )
    labels = {k: v[rep] for k, v in data.labels().items()}
    return Fingerprints(meta, images, points[rep], rep, device=np.full(rep.size, "nexus5", dtype=object),
                        labels=labels)
