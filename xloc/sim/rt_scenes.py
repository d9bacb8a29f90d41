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

__all__ = ["clearance_above_m", "height_map_m", "draw_open_users", "misplaced_users", "grid_users", "walk_users",
           "place_base_stations", "OfficeLayout", "office_shapes", "office_xml", "write_office_xml", "CityLayout",
           "city_shapes", "city_xml", "write_city_xml", "ITU_MATERIALS", "CITY_MATERIALS"]

#: Materials of ITU-R P.2040 that Sionna RT's ``itu-radio-material`` knows and the office uses.
ITU_MATERIALS = ("concrete", "plasterboard", "wood", "glass", "metal")
#: Facade materials a procedural city's buildings draw from (ITU-R P.2040 names), and its ground.
CITY_MATERIALS = ("concrete", "brick", "glass", "marble", "metal")
CITY_GROUND = "asphalt_concrete"
#: Slab thickness [m] Sionna RT gives each material (flat shapes are crossed as slabs of this thickness).
THICKNESS_M = {"concrete": 0.25, "plasterboard": 0.1, "wood": 0.04, "glass": 0.01, "metal": 0.002, "brick": 0.2,
               "marble": 0.1, "asphalt_concrete": 0.3}


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


def misplaced_users(scene: Any, users_m: np.ndarray, *, min_clearance_m: float = np.inf,
                    on_ground: bool = True) -> np.ndarray:
    """Indices of users (n, 3) [m] who stand where no person can: less than ``min_clearance_m`` free height above
    (inf: not open sky -- inside a building, under a roof or a car), or, with ``on_ground``, something other than
    the ground (z = 0) right below the feet (a car's bonnet, a wall's top, a roof without a ceiling mesh)."""
    users = np.asarray(users_m, dtype=np.float64)
    bad = clearance_above_m(scene, users) < min_clearance_m
    if on_ground:
        drop_m = _cast(scene, users, (0.0, 0.0, -1.0))[0]
        # the first surface below must be the ground under the user's height (0.3 m of kerb or terrain allowed)
        bad |= np.abs(drop_m - users[:, 2]) > 0.3
    return np.flatnonzero(bad)


def draw_open_users(scene: Any, area_m: tuple[float, float, float, float], n: int, rng: np.random.Generator, *,
                    height_m: float, min_clearance_m: float = np.inf, on_ground: bool | None = None) -> np.ndarray:
    """``n`` users (n, 3) [m] uniform over ``area_m`` (x0, x1, y0, y1) at ``height_m``, kept only where
    :func:`misplaced_users` finds nothing wrong: at least ``min_clearance_m`` free height above (inf: open sky,
    i.e. outdoors and not under a car or roof; indoors: below the ceiling, not inside a wall or a cabinet) and,
    with ``on_ground`` (default: outdoors, when the clearance is inf), the ground right below."""
    on_ground = bool(np.isinf(min_clearance_m)) if on_ground is None else on_ground
    x0, x1, y0, y1 = area_m
    found: list[np.ndarray] = []
    count, tries = 0, 0
    while count < n:
        tries += 1
        if tries > 50:
            raise DataValidationError(f"could not place {n} users with {min_clearance_m} m clearance in {area_m}: "
                                      f"found {count}; the area is almost all covered")
        cand = np.column_stack([rng.uniform(x0, x1, 4 * n), rng.uniform(y0, y1, 4 * n), np.full(4 * n, height_m)])
        ok = np.delete(cand, misplaced_users(scene, cand, min_clearance_m=min_clearance_m, on_ground=on_ground), 0)
        found.append(ok)
        count += len(ok)
    return np.concatenate(found)[:n]


def grid_users(scene: Any, area_m: tuple[float, float, float, float], spacing_m: float, *, height_m: float,
               min_clearance_m: float = np.inf, on_ground: bool | None = None) -> np.ndarray:
    """Users (n, 3) [m] on the nodes of a ``spacing_m`` grid over ``area_m`` (x0, x1, y0, y1; nodes from the
    lower-left corner), keeping the nodes where :func:`misplaced_users` finds nothing wrong (see
    :func:`draw_open_users`): a dense reference survey of the open ground."""
    if spacing_m <= 0:
        raise DataValidationError(f"grid spacing must be > 0 m, got {spacing_m}")
    on_ground = bool(np.isinf(min_clearance_m)) if on_ground is None else on_ground
    x0, x1, y0, y1 = area_m
    gx, gy = np.meshgrid(np.arange(x0, x1 + 1e-9, spacing_m), np.arange(y0, y1 + 1e-9, spacing_m))
    nodes = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, height_m)])
    return np.delete(nodes, misplaced_users(scene, nodes, min_clearance_m=min_clearance_m, on_ground=on_ground), 0)


def walk_users(scene: Any, area_m: tuple[float, float, float, float], n: int, rng: np.random.Generator, *,
               step_m: float = 0.5, height_m: float, turn_deg: float = 15.0) -> np.ndarray:
    """A pedestrian's track (n, 3) [m]: ``n`` positions ``step_m`` apart on open ground inside ``area_m``, the heading
    wandering by N(0, ``turn_deg``) per step and turning away where the next step would leave the area or the open
    ground (:func:`misplaced_users`)."""
    x0, x1, y0, y1 = area_m
    start = draw_open_users(scene, area_m, 1, rng, height_m=height_m)[0]
    track, heading = [start], rng.uniform(0, 2 * np.pi)
    while len(track) < n:
        for attempt in range(64):
            turn = rng.normal(0.0, np.radians(turn_deg)) if attempt == 0 else rng.uniform(np.pi / 2, 3 * np.pi / 2)
            h = heading + turn
            nxt = track[-1] + step_m * np.array([np.cos(h), np.sin(h), 0.0])
            inside = x0 <= nxt[0] <= x1 and y0 <= nxt[1] <= y1
            if inside and len(misplaced_users(scene, nxt[None])) == 0:
                heading = h
                track.append(nxt)
                break
        else:
            raise DataValidationError(f"the walk in {area_m} is boxed in at {track[-1][:2].round(2).tolist()} m")
    return np.array(track)


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


def _scene_xml(shapes: Sequence[tuple[str, str, tuple, tuple]]) -> str:
    """Mitsuba XML of boxes and slabs (name, ITU material, low corner, high corner [m]), one BSDF per material."""
    lines = ['<scene version="2.1.0">']
    for m in dict.fromkeys(material for _, material, _, _ in shapes):
        lines.append(f'  <bsdf type="itu-radio-material" id="{m}"><string name="type" value="{m}"/>'
                     f'<float name="thickness" value="{THICKNESS_M[m]}"/></bsdf>')
    lines += [_shape_xml(*b) for b in shapes]
    lines.append("</scene>")
    return "\n".join(lines) + "\n"


def office_xml(layout: OfficeLayout, day: int, seed: int = 0) -> str:
    """Mitsuba XML of the office on ``day`` (ITU materials; thicknesses in metres)."""
    return _scene_xml(office_shapes(layout, day, seed))


def write_office_xml(folder: str | Path, layout: OfficeLayout, day: int, seed: int = 0) -> Path:
    """Write (atomically) and return ``folder/office-day{day}.xml``."""
    from xloc.io import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"office-s{seed}-day{day}.xml"
    atomic_write_text(path, office_xml(layout, day, seed))
    return path


@dataclass(frozen=True)
class CityLayout:
    """A procedural city district of ``size_m`` (x, y) [m] centred on the origin: blocks of ``block_m`` (min, max)
    [m] between streets of ``street_m`` (min, max) [m]; each block holds 1-4 buildings of ``height_m`` (min, max) [m]
    with facades drawn from :data:`CITY_MATERIALS`, or (with ``square_share``) is left open as a square."""

    size_m: tuple[float, float] = (220.0, 220.0)
    block_m: tuple[float, float] = (22.0, 55.0)
    street_m: tuple[float, float] = (8.0, 22.0)
    height_m: tuple[float, float] = (6.0, 45.0)
    square_share: float = 0.15


def _cuts(rng: np.random.Generator, size_m: float, block_m: tuple[float, float],
          street_m: tuple[float, float]) -> list[tuple[float, float]]:
    """Block extents (lo, hi) [m] along one axis, separated by streets, covering [-size/2, size/2]."""
    pos, blocks = -size_m / 2 + rng.uniform(*street_m) / 2, []
    while pos < size_m / 2:
        width = rng.uniform(*block_m)
        blocks.append((pos, min(pos + width, size_m / 2)))
        pos += width + rng.uniform(*street_m)
    return blocks


def city_shapes(layout: CityLayout, seed: int) -> list[tuple[str, str, tuple, tuple]]:
    """(name, ITU material, low corner, high corner) [m] of the ground and every building of a random district:
    a grid of blocks with random street widths, each block split along its longer side into 1-4 buildings of
    random height and facade material. ``seed`` fixes the district."""
    rng = np.random.default_rng([seed, 7919])
    sx, sy = layout.size_m
    shapes: list[tuple[str, str, tuple, tuple]] = [
        ("ground", CITY_GROUND, (-sx / 2 - 20, -sy / 2 - 20, 0.0), (sx / 2 + 20, sy / 2 + 20, 0.0))]
    for i, (x0, x1) in enumerate(_cuts(rng, sx, layout.block_m, layout.street_m)):
        for j, (y0, y1) in enumerate(_cuts(rng, sy, layout.block_m, layout.street_m)):
            if rng.random() < layout.square_share:
                continue
            n = int(rng.integers(1, 5))
            along_x = (x1 - x0) >= (y1 - y0)
            lo, hi = (x0, x1) if along_x else (y0, y1)
            edges = np.sort(np.r_[lo, rng.uniform(lo, hi, n - 1), hi])
            for k in range(n):
                if edges[k + 1] - edges[k] < 4.0:  # too thin to be a building: a gap
                    continue
                height = float(rng.uniform(*layout.height_m))
                material = str(rng.choice(CITY_MATERIALS))
                a, b = float(edges[k]), float(edges[k + 1])
                box = ((a, y0, 0.0), (b, y1, height)) if along_x else ((x0, a, 0.0), (x1, b, height))
                shapes.append((f"b{i}-{j}-{k}", material, *box))
    return shapes


def city_xml(layout: CityLayout, seed: int) -> str:
    """Mitsuba XML of the district ``seed`` (buildings are closed boxes; the ground a slab at z = 0)."""
    return _scene_xml(city_shapes(layout, seed))


def write_city_xml(folder: str | Path, layout: CityLayout, seed: int) -> Path:
    """Write (atomically) and return ``folder/city-s{seed}.xml``."""
    from xloc.io import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"city-s{seed}.xml"
    atomic_write_text(path, city_xml(layout, seed))
    return path
