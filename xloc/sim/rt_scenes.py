"""Looking into Sionna RT scenes (open ground, height maps, base-station sites) and building an indoor one.

Everything here casts rays against the scene's Mitsuba geometry; no paths are solved. Positions are in the scene's
frame [m]; heights are z [m] above the scene origin (ground at z = 0 in the shipped scenes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from xloc.errors import DataValidationError

__all__ = ["clearance_above_m", "height_map_m", "draw_open_users", "place_base_stations", "OfficeLayout",
           "office_shapes", "office_xml", "write_office_xml", "ITU_MATERIALS"]

#: Materials of ITU-R P.2040 that Sionna RT's ``itu-radio-material`` knows and the office uses.
ITU_MATERIALS = ("concrete", "plasterboard", "wood", "glass", "metal")


def _cast(scene: Any, origins_m: np.ndarray, direction: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Distance [m] to the first hit (inf when none) and the hit's z [m] for rays from ``origins_m`` (n, 3)."""
    import mitsuba as mi

    o = np.asarray(origins_m, dtype=np.float64)
    ray = mi.Ray3f(mi.Point3f(o[:, 0], o[:, 1], o[:, 2]), mi.Vector3f(*direction))
    hit = scene.mi_scene.ray_intersect(ray)
    valid = np.asarray(hit.is_valid()).astype(bool)
    return np.where(valid, np.asarray(hit.t), np.inf), np.where(valid, np.asarray(hit.p.z), np.nan)


def clearance_above_m(scene: Any, points_m: np.ndarray) -> np.ndarray:
    """Free height [m] straight above each point (inf under open sky): 0-ish inside walls and furniture."""
    return _cast(scene, points_m, (0.0, 0.0, 1.0))[0]


def height_map_m(scene: Any, xs_m: np.ndarray, ys_m: np.ndarray, *, below_m: float | None = None) -> np.ndarray:
    """Height [m] of the highest surface at every (y, x) grid node (NaN where nothing is below), shape (ny, nx);
    with ``below_m`` only surfaces below that height count (indoors: look under the ceiling)."""
    gx, gy = np.meshgrid(xs_m, ys_m)
    top = float(np.asarray(scene.mi_scene.bbox().max)[2]) + 10.0 if below_m is None else below_m
    origins = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, top)])
    return _cast(scene, origins, (0.0, 0.0, -1.0))[1].reshape(gx.shape)


def draw_open_users(scene: Any, area_m: tuple[float, float, float, float], n: int, rng: np.random.Generator, *,
                    height_m: float, min_clearance_m: float = np.inf) -> np.ndarray:
    """``n`` users (n, 3) [m] uniform over ``area_m`` (x0, x1, y0, y1) at ``height_m``, kept only where the free
    height above is at least ``min_clearance_m`` (inf: open sky, i.e. outdoors and not under a car or roof;
    indoors: below the ceiling, not inside a wall or a cabinet)."""
    x0, x1, y0, y1 = area_m
    found: list[np.ndarray] = []
    count, tries = 0, 0
    while count < n:
        tries += 1
        if tries > 50:
            raise DataValidationError(f"could not place {n} users with {min_clearance_m} m clearance in {area_m}: "
                                      f"found {count}; the area is almost all covered")
        cand = np.column_stack([rng.uniform(x0, x1, 4 * n), rng.uniform(y0, y1, 4 * n), np.full(4 * n, height_m)])
        ok = cand[clearance_above_m(scene, cand) >= min_clearance_m]
        found.append(ok)
        count += len(ok)
    return np.concatenate(found)[:n]


@dataclass(frozen=True)
class Site:
    """A base-station site: position (3,) [m] and array yaw [deg] (broadside towards the area centre)."""

    position_m: tuple[float, float, float]
    yaw_deg: float


def place_base_stations(scene: Any, area_m: tuple[float, float, float, float], n_bs: int, *, height_m: float,
                        spacing_m: float, min_clearance_m: float = 6.0, grid_m: float = 2.0) -> list[Site]:
    """``n_bs`` street-level sites at ``height_m`` under open sky, each at least ``spacing_m`` from the others:
    among points with at least ``min_clearance_m`` to the nearest building (capped: wider is no better), the one
    nearest the area centre (the first BS within the central half of the area, the others within its central
    80 %). Deterministic: depends on the scene geometry only."""
    x0, x1, y0, y1 = area_m
    xs, ys = np.arange(x0, x1 + 1e-9, grid_m), np.arange(y0, y1 + 1e-9, grid_m)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, height_m)])
    open_sky = np.isinf(clearance_above_m(scene, pts)).reshape(gx.shape)
    clearance = ndimage.distance_transform_edt(open_sky) * grid_m
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    dist = np.hypot(gx - cx, gy - cy)
    sites: list[Site] = []
    for i in range(n_bs):
        share = 0.25 if i == 0 else 0.4
        allowed = (np.abs(gx - cx) <= (x1 - x0) * share) & (np.abs(gy - cy) <= (y1 - y0) * share) & open_sky
        for s in sites:
            allowed &= np.hypot(gx - s.position_m[0], gy - s.position_m[1]) >= spacing_m
        score = np.where(allowed, np.minimum(clearance, min_clearance_m) - 1e-3 * dist, -np.inf)
        k = int(np.argmax(score))
        if not np.isfinite(score.flat[k]):
            raise DataValidationError(f"no open site for base station {i + 1} in {area_m} (spacing {spacing_m} m)")
        x, y = float(gx.flat[k]), float(gy.flat[k])
        yaw = float(np.degrees(np.arctan2(cy - y, cx - x))) if np.hypot(cx - x, cy - y) > 1.0 else 0.0
        sites.append(Site((x, y, height_m), round(yaw, 1)))
    return sites


@dataclass(frozen=True)
class OfficeLayout:
    """A procedural office floor: ``size_m`` (x, y, z) [m], a corridor along x at ``corridor_y_m`` and rooms of
    ``room_width_m`` on both sides, with doors of ``door_m``."""

    size_m: tuple[float, float, float] = (24.0, 14.0, 3.0)
    corridor_y_m: tuple[float, float] = (6.0, 8.0)
    room_width_m: float = 6.0
    door_m: float = 1.0
    furniture_per_room: int = 3


def _shape_xml(name: str, material: str, lo: Sequence[float], hi: Sequence[float]) -> str:
    """A box, or, when one side has zero extent, a rectangle (a slab of the material's thickness to Sionna RT)."""
    c = [(a + b) / 2 for a, b in zip(lo, hi, strict=True)]
    h = [(b - a) / 2 for a, b in zip(lo, hi, strict=True)]
    flat = [i for i in range(3) if h[i] == 0.0]
    if not flat:
        kind, scale, rotate = "cube", h, ""
    elif flat == [2]:
        kind, scale, rotate = "rectangle", [h[0], h[1], 1.0], ""
    elif flat == [1]:  # wall in the x-z plane: local y becomes world z
        kind, scale, rotate = "rectangle", [h[0], h[2], 1.0], '<rotate x="1" angle="90"/>'
    elif flat == [0]:  # wall in the y-z plane: local x becomes world z
        kind, scale, rotate = "rectangle", [h[2], h[1], 1.0], '<rotate y="1" angle="90"/>'
    else:
        raise DataValidationError(f"shape {name}: at most one side may have zero extent, got {lo} .. {hi}")
    return (f'  <shape type="{kind}" id="{name}"><transform name="to_world"><scale x="{scale[0]:.4f}" '
            f'y="{scale[1]:.4f}" z="{scale[2]:.4f}"/>{rotate}<translate x="{c[0]:.4f}" y="{c[1]:.4f}" '
            f'z="{c[2]:.4f}"/></transform><ref id="{material}" name="bsdf"/></shape>')


def office_shapes(layout: OfficeLayout, day: int, seed: int = 0) -> list[tuple[str, str, tuple, tuple]]:
    """(name, ITU material, low corner, high corner) [m] of every surface. Walls, floor, ceiling and desk tops
    are flat (zero extent across; Sionna RT treats them as slabs of the material's thickness, one interaction
    per crossing); metal cabinets are boxes. Furniture positions depend on ``day``; walls never move."""
    sx, sy, sz = layout.size_m
    c0, c1 = layout.corridor_y_m
    shapes: list[tuple[str, str, tuple, tuple]] = [
        ("floor", "concrete", (0, 0, 0), (sx, sy, 0)), ("ceiling", "concrete", (0, 0, sz), (sx, sy, sz)),
        ("wall-s", "concrete", (0, 0, 0), (sx, 0, sz)), ("wall-n", "concrete", (0, sy, 0), (sx, sy, sz)),
        ("wall-w", "concrete", (0, 0, 0), (0, sy, sz)), ("wall-e", "concrete", (sx, 0, 0), (sx, sy, sz)),
    ]
    n_rooms = int(round(sx / layout.room_width_m))
    for side, (y_lo, y_hi, wall_y) in enumerate(((0.0, c0, c0), (c1, sy, c1))):
        material = "plasterboard" if side == 0 else "glass"  # the north rooms have glass fronts
        for r in range(n_rooms):
            x_lo, x_hi = r * layout.room_width_m, (r + 1) * layout.room_width_m
            door_x = x_lo + layout.room_width_m / 2
            shapes.append((f"cw{side}{r}a", material, (x_lo, wall_y, 0), (door_x - layout.door_m / 2, wall_y, sz)))
            shapes.append((f"cw{side}{r}b", material, (door_x + layout.door_m / 2, wall_y, 0), (x_hi, wall_y, sz)))
            if r > 0:
                shapes.append((f"rw{side}{r}", "plasterboard", (x_lo, y_lo, 0), (x_lo, y_hi, sz)))
            rng = np.random.default_rng([seed, side, r, day])
            for f in range(layout.furniture_per_room):
                cabinet = f == 0
                dx, dy = (0.5, 1.0) if cabinet else (1.6, 0.8)
                if rng.random() < 0.5:
                    dx, dy = dy, dx
                margin = 0.3
                fx = rng.uniform(x_lo + margin, x_hi - margin - dx)
                fy = rng.uniform(y_lo + margin, y_hi - margin - dy)
                if cabinet:
                    shapes.append((f"f{side}{r}{f}", "metal", (fx, fy, 0), (fx + dx, fy + dy, 2.0)))
                else:
                    shapes.append((f"f{side}{r}{f}", "wood", (fx, fy, 0.75), (fx + dx, fy + dy, 0.75)))
    return shapes


def office_xml(layout: OfficeLayout, day: int, seed: int = 0) -> str:
    """Mitsuba XML of the office on ``day`` (ITU materials; thicknesses in metres)."""
    thickness = {"concrete": 0.25, "plasterboard": 0.1, "wood": 0.04, "glass": 0.01, "metal": 0.002}
    lines = ['<scene version="2.1.0">']
    for m in ITU_MATERIALS:
        lines.append(f'  <bsdf type="itu-radio-material" id="{m}"><string name="type" value="{m}"/>'
                     f'<float name="thickness" value="{thickness[m]}"/></bsdf>')
    lines += [_shape_xml(*b) for b in office_shapes(layout, day, seed)]
    lines.append("</scene>")
    return "\n".join(lines) + "\n"


def write_office_xml(folder: str | Path, layout: OfficeLayout, day: int, seed: int = 0) -> Path:
    """Write (atomically) and return ``folder/office-day{day}.xml``."""
    from xloc.io import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"office-s{seed}-day{day}.xml"
    atomic_write_text(path, office_xml(layout, day, seed))
    return path
