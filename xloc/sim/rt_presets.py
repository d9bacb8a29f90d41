"""The ray-traced twin collection: Sionna RT scenario presets for multi-scenario training, a traffic change and a
procedural indoor office, generated once (``make twins`` / ``xloc twins``) and loaded by path.

Outdoor presets put three street-level base stations (8-element ULA, 3.5 GHz, 40 MHz, 32 subcarriers, 10 m high)
at the most open sites of a shipped scene (:func:`~xloc.sim.rt_scenes.place_base_stations`) and users at 1.5 m
on open ground. ``canyon`` and ``canyon-cars`` share their base stations and users exactly (users stand where no
car is), so they are one street in two traffic states. ``office`` is a procedural floor (concrete shell,
plasterboard and glass partitions, wooden desks and metal cabinets) with three ceiling WiFi APs (4 antennas, 5 GHz,
20 MHz, 52 subcarriers); each day moves the furniture, never the walls. Stored CSI is noise-free; experiments add
their own noise. Positions are in each area's frame: the area centre is the origin.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.storage import load_fingerprints, save_fingerprints
from xloc.errors import DataValidationError
from xloc.io import atomic_write_text

__all__ = ["RTPreset", "RT_PRESETS", "PATCH_PRESETS", "TwinSizes", "FULL_SIZES", "QUICK_SIZES", "generate_twin",
           "generate_twins", "load_twin", "twins_dir", "plot_twin", "preset_sites", "preset_users"]

Area = tuple[float, float, float, float]


@dataclass(frozen=True)
class RTPreset:
    """One ray-traced scenario: scene, user area (x0, x1, y0, y1) [m] in the scene frame, BS and radio settings."""

    description: str
    scene: str
    area_m: Area
    n_bs: int = 3
    bs_height_m: float = 10.0
    bs_spacing_m: float = 60.0
    users_scene: str | None = None
    carrier_hz: float = 3.5e9
    bandwidth_hz: float = 40e6
    n_subcarriers: int = 32
    n_antennas: int = 8
    max_depth: int = 3
    user_height_m: float = 1.5
    days: int = 0
    pretrain: bool = False
    #: dense reference patch: "train" users on the nodes of a grid of this spacing [m] over ``area_m`` (open ground
    #: only), "test" users uniform over the patch (off the grid)
    grid_m: float | None = None
    #: BS sites are chosen over ``area_m`` grown by this much [m] on every side (a patch's BSs may stand outside it)
    sites_margin_m: float = 0.0
    #: procedural district (``scene == "city"``): :func:`~xloc.sim.rt_scenes.city_shapes`'s seed
    city_seed: int | None = None
    #: never used for training by the benches (an unseen scene)
    unseen: bool = False
    #: rays per BS: outdoors 10^5 gives 10x the throughput of 10^6 at a channel NMSE of -32 dB against it, within a
    #: few dB of two runs of 10^6 rays (``xloc bench --protocol sim-speed --experiment sionna`` measures it);
    #: the office (unmeasured indoors) keeps Sionna RT's 10^6
    samples_per_src: int = 100_000


_CANYON_AREA: Area = (-90.0, 90.0, -55.0, 55.0)
_CITY_AREA: Area = (-80.0, 80.0, -80.0, 80.0)
#: name -> preset. Five distinct outdoor scenes (plus the canyon's traffic twin) and one indoor office.
RT_PRESETS: dict[str, RTPreset] = {
    "canyon": RTPreset("simple_street_canyon, no traffic; 3 BSs", "simple_street_canyon", _CANYON_AREA,
                       users_scene="simple_street_canyon_with_cars", pretrain=True),
    "canyon-cars": RTPreset("the same street, BSs and users with parked and moving cars (traffic change)",
                            "simple_street_canyon_with_cars", _CANYON_AREA,
                            users_scene="simple_street_canyon_with_cars", pretrain=True),
    "munich": RTPreset("Munich old town (shipped scene), 160 x 160 m around the origin; 3 BSs", "munich",
                       _CITY_AREA),
    "etoile": RTPreset("Paris Place de l'Etoile, 160 x 160 m; 3 BSs", "etoile", _CITY_AREA),
    "florence": RTPreset("Florence centre, 160 x 160 m; 3 BSs", "florence", _CITY_AREA),
    "munich-east": RTPreset("Munich, a denser block 300 m east and 150 m north of the origin; 3 BSs", "munich",
                            (220.0, 380.0, 70.0, 230.0)),
    "office": RTPreset("procedural office floor 24 x 14 x 3 m, 3 ceiling WiFi APs at 5 GHz; furniture moves "
                       "each day", "office", (0.3, 23.7, 0.3, 13.7), bs_height_m=2.7, carrier_hz=5.0e9,
                       bandwidth_hz=20e6, n_subcarriers=52, n_antennas=4, user_height_m=1.0, days=5,
                       samples_per_src=1_000_000),
}

def _patch(description: str, scene: str, centre_m: tuple[float, float], *, half_m: float = 20.0, grid_m: float = 1.0,
           unseen: bool = False, city_seed: int | None = None) -> RTPreset:
    """A dense reference patch of 2 half_m x 2 half_m around ``centre_m`` with three BSs within 40 m of it."""
    cx, cy = centre_m
    return RTPreset(description, scene, (cx - half_m, cx + half_m, cy - half_m, cy + half_m), bs_spacing_m=40.0,
                    grid_m=grid_m, sites_margin_m=40.0, city_seed=city_seed, unseen=unseen)


#: Dense reference patches (ALLoc's neighbourhoods at the paper's density): 40 x 40 m windows about 60 % open
#: ground in the shipped scenes and at the centre of procedural districts; 1 m grids to train on, 0.5 m grids in the
#: unseen scenes (their 1 m sub-grid is the sparser reference set).
PATCH_PRESETS: dict[str, RTPreset] = {
    "patch-canyon": _patch("street canyon: a crossing and two street segments", "simple_street_canyon", (-40, 5)),
    "patch-munich": _patch("Munich old town: streets around a block", "munich", (-70, -100)),
    "patch-munich-east": _patch("Munich east: streets and a courtyard entrance", "munich", (290, 120)),
    "patch-etoile": _patch("Place de l'Etoile: an avenue's mouth on the roundabout", "etoile", (50, 0)),
    "patch-city2": _patch("procedural district 2 (random blocks, heights, facades)", "city", (0, 0), city_seed=2),
    "patch-city3": _patch("procedural district 3", "city", (0, 0), city_seed=3),
    "patch-florence": _patch("Florence, Piazza San Giovanni between the Baptistery and the cathedral (unseen)",
                             "florence", (-10, -30), grid_m=0.5, unseen=True),
    "patch-city1": _patch("procedural district 1, generated for testing only (unseen)", "city", (0, 0), grid_m=0.5,
                          unseen=True, city_seed=1),
}
RT_PRESETS.update(PATCH_PRESETS)
OUTDOOR_SCENES = ("canyon", "munich", "munich-east", "etoile", "florence")
#: Office APs: fixed ceiling positions [m] (x, y, z) and yaw [deg]; one per side of the corridor, one at its end.
OFFICE_APS = (((3.0, 3.0, 2.7), 90.0), ((12.0, 11.0, 2.7), -90.0), ((21.0, 7.0, 2.7), 180.0))


@dataclass(frozen=True)
class TwinSizes:
    """Users per split and environment (office: per day)."""

    train: int = 500
    test: int = 150
    pretrain: int = 800
    office_train: int = 250
    office_test: int = 80
    #: random test users per dense patch, and samples of its pedestrian track (0.5 m apart)
    patch_test: int = 300
    patch_track: int = 240
    #: replaces every patch's grid spacing [m] (smoke tests: a coarse grid)
    patch_grid_m: float | None = None


FULL_SIZES = TwinSizes()
QUICK_SIZES = TwinSizes(train=12, test=6, pretrain=10, office_train=10, office_test=5, patch_test=6, patch_track=5,
                         patch_grid_m=8.0)


def twins_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where the collection lives: ``root``, else ``$XLOC_TWINS_DIR``, else ``twins/`` in the working directory."""
    return Path(root or os.environ.get("XLOC_TWINS_DIR") or "twins")


def _preset(name: str) -> RTPreset:
    if name not in RT_PRESETS:
        raise DataValidationError(f"unknown ray-traced preset {name!r}; available: {', '.join(RT_PRESETS)}")
    return RT_PRESETS[name]


def _scene_name(preset: RTPreset, day: int, folder: Path, seed: int) -> str:
    """The scene Sionna RT loads: a shipped scene's name, or the path of the procedural XML it is written to."""
    from xloc.sim.rt_scenes import CityLayout, OfficeLayout, write_city_xml, write_office_xml

    if preset.scene == "city":
        return str(write_city_xml(folder / "scenes", CityLayout(), preset.city_seed or 0))
    if preset.scene == "office":
        return str(write_office_xml(folder / "scenes", OfficeLayout(), day, seed))
    return preset.scene


def _grow(area_m: Area, margin_m: float) -> Area:
    x0, x1, y0, y1 = area_m
    return (x0 - margin_m, x1 + margin_m, y0 - margin_m, y1 + margin_m)


def preset_sites(rt: Any, preset: RTPreset, scene_name: str) -> list[Any]:
    """The preset's base stations (office: fixed APs; outdoor: placed on ``scene_name``'s open ground)."""
    from xloc.sim.raytrace import RTBaseStation, _load_scene
    from xloc.sim.rt_scenes import place_base_stations

    if preset.scene == "office":
        return [RTBaseStation(p, yaw, preset.n_antennas) for p, yaw in OFFICE_APS]
    sites = place_base_stations(_load_scene(rt, scene_name), _grow(preset.area_m, preset.sites_margin_m),
                                preset.n_bs, height_m=preset.bs_height_m, spacing_m=preset.bs_spacing_m)
    return [RTBaseStation(s.position_m, s.yaw_deg, preset.n_antennas) for s in sites]


def preset_users(rt: Any, preset: RTPreset, scene_name: str, n: int, seed: int, split: str,
                 grid_m: float | None = None) -> np.ndarray:
    """``n`` user positions (scene frame) of ``split``: open ground outdoors, free floor space indoors; a dense
    patch's "train" split is every open node of its grid (``grid_m`` overrides the preset's spacing; ``n`` unused)."""
    from xloc.sim.raytrace import _load_scene
    from xloc.sim.rt_scenes import draw_open_users, grid_users, walk_users

    scene = _load_scene(rt, preset.users_scene or scene_name)
    indoor = preset.scene == "office"
    if preset.grid_m is not None and split == "train":
        return grid_users(scene, preset.area_m, grid_m or preset.grid_m, height_m=preset.user_height_m)
    if split == "track":
        return walk_users(scene, preset.area_m, n, np.random.default_rng([seed, 3]), height_m=preset.user_height_m)
    rng = np.random.default_rng([seed, ("train", "test", "pretrain").index(split)])
    return draw_open_users(scene, preset.area_m, n, rng, height_m=preset.user_height_m,
                           min_clearance_m=1.5 if indoor else np.inf)


def _split_sizes(preset: RTPreset, sizes: TwinSizes) -> dict[str, int]:
    if preset.grid_m is not None:  # train: the grid; track: one pedestrian's walk through the patch
        return {"train": 0, "test": sizes.patch_test, "track": sizes.patch_track}
    if preset.scene == "office":
        return {"train": sizes.office_train, "test": sizes.office_test}
    out = {"train": sizes.train, "test": sizes.test}
    if preset.pretrain:
        out["pretrain"] = sizes.pretrain
    return out


def generate_twin(name: str, root: str | os.PathLike[str] | None = None, sizes: TwinSizes = FULL_SIZES, *,
                  seed: int = 0, progress: bool = False, force: bool = False) -> dict[str, Any]:
    """Ray-trace preset ``name`` into ``root/{name}.h5`` (splits train/test[/pretrain]; office: one environment
    per day) unless it exists; finished chunks are cached under ``root/.chunks`` so an interrupted run resumes.
    Returns the manifest entry (users, no-path users, seconds, file size)."""
    from xloc.sim.raytrace import RTConfig, require_sionna, simulate_raytraced

    preset = _preset(name)
    folder = twins_dir(root)
    out = folder / f"{name}.h5"
    if out.is_file() and not force:
        return {"name": name, "skipped": True}
    rt = require_sionna()
    t0 = time.perf_counter()
    centre = ((preset.area_m[0] + preset.area_m[1]) / 2, (preset.area_m[2] + preset.area_m[3]) / 2)
    origin = (0.0, 0.0) if preset.scene == "office" else centre
    days = range(1, preset.days + 1) if preset.days else [0]
    splits: dict[str, list[Fingerprints]] = {}
    for day in days:
        scene_name = _scene_name(preset, day, folder, seed)
        stations = preset_sites(rt, preset, preset.users_scene or scene_name)
        env_name = f"rt-{name}" + (f"-day{day}" if day else "")
        cfg = RTConfig(scene=scene_name, carrier_hz=preset.carrier_hz, bandwidth_hz=preset.bandwidth_hz,
                       n_subcarriers=preset.n_subcarriers, max_depth=preset.max_depth,
                       samples_per_src=preset.samples_per_src)
        for split, n in _split_sizes(preset, sizes).items():
            # office users differ per day (a new survey each day); outdoor users depend on the seed and split only
            users = preset_users(rt, preset, scene_name, n, seed + 1000 * day, split, grid_m=sizes.patch_grid_m)
            n = len(users)
            cache = folder / ".chunks" / f"{env_name}-s{seed}-{split}-{n}-r{cfg.samples_per_src}"
            fp = simulate_raytraced(cfg, stations, users, name=env_name, cache_dir=cache, progress=progress,
                                    origin_m=origin)
            splits.setdefault(split, []).append(fp)
    save_fingerprints(out, {k: FingerprintSet(v) for k, v in splits.items()})
    seconds = time.perf_counter() - t0
    fps = [fp for v in splits.values() for fp in v]
    return {"name": name, "scene": preset.scene, "environments": len(days), "seconds": round(seconds, 1),
            "users": int(sum(len(fp) for fp in fps)),
            "no_path_users": int(sum(int((fp.labels["path_count"].sum(1) == 0).sum()) for fp in fps)),
            "los_fraction": float(np.mean(np.concatenate([fp.labels["los"].any(1) for fp in fps]))),
            "bytes": out.stat().st_size, "preset": asdict(preset)}


def generate_twins(names: list[str] | None = None, root: str | os.PathLike[str] | None = None,
                   sizes: TwinSizes = FULL_SIZES, *, seed: int = 0, progress: bool = False,
                   force: bool = False) -> dict[str, Any]:
    """Generate every preset (or ``names``) and write ``root/manifest.json`` with sizes and wall times."""
    folder = twins_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("presets", {})
    t0 = time.perf_counter()
    for name in names or list(RT_PRESETS):
        entry = generate_twin(name, folder, sizes, seed=seed, progress=progress, force=force)
        if not entry.get("skipped"):
            manifest["presets"][name] = entry
            _write_json(manifest_path, manifest)
    manifest["sizes"] = asdict(sizes)
    manifest["last_run_s"] = round(time.perf_counter() - t0, 1)
    manifest["total_bytes"] = int(sum((folder / f"{n}.h5").stat().st_size for n in RT_PRESETS
                                      if (folder / f"{n}.h5").is_file()))
    _write_json(manifest_path, manifest)
    return manifest


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def load_twin(name: str, split: str = "train", root: str | os.PathLike[str] | None = None) -> FingerprintSet:
    """Preset ``name``'s ``split`` from the collection (generate it first with ``make twins``)."""
    _preset(name)
    path = twins_dir(root) / f"{name}.h5"
    if not path.is_file():
        raise DataValidationError(f"ray-traced twin {name!r} not found at {path}; generate the collection with "
                                  f"`make twins` (or `xloc twins --out {twins_dir(root)}`), or set XLOC_TWINS_DIR")
    return load_fingerprints(path, split)[split]


def plot_twin(name: str, fp: Fingerprints, path: Path, *, seed: int = 0, day: int = 1,
              root: str | os.PathLike[str] | None = None) -> Path:
    """Top view of the preset (office: the floor plan of ``day``): surface heights in grey, base stations with
    their broadside, users coloured by the strongest BS's received power [dB]."""
    from xloc.figures import plt, save_figure
    from xloc.sim.raytrace import _load_scene, require_sionna
    from xloc.sim.rt_scenes import OfficeLayout, height_map_m, office_shapes

    preset = _preset(name)
    x0, x1, y0, y1 = preset.area_m
    origin = np.zeros(2) if preset.scene == "office" else np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    x0, x1, y0, y1 = _grow(preset.area_m, preset.sites_margin_m)  # a patch is drawn with its BSs' surroundings
    fig, ax = plt.subplots(figsize=(7.5, 6.0 * (y1 - y0) / (x1 - x0) + 1.0))
    if preset.scene == "office":  # draw the floor plan from its shapes
        for _, material, lo, hi in office_shapes(OfficeLayout(), day, seed):
            if lo[2] == hi[2]:  # floor, ceiling, desk tops
                if 0 < lo[2] < preset.bs_height_m:
                    ax.add_patch(plt.Rectangle(lo[:2], hi[0] - lo[0], hi[1] - lo[1], color="tan"))
            elif lo[0] == hi[0] or lo[1] == hi[1]:
                ax.plot([lo[0], hi[0]], [lo[1], hi[1]], color="tab:cyan" if material == "glass" else "0.3", lw=2)
            else:
                ax.add_patch(plt.Rectangle(lo[:2], hi[0] - lo[0], hi[1] - lo[1], color="0.2"))
    else:
        scene = _load_scene(require_sionna(), _scene_name(preset, day, twins_dir(root), seed))
        xs, ys = np.linspace(x0, x1, 320), np.linspace(y0, y1, 320)
        heights = height_map_m(scene, xs, ys)
        ax.imshow(np.nan_to_num(heights, nan=0.0), origin="lower", cmap="Greys", vmin=0,
                  extent=(x0 - origin[0], x1 - origin[0], y0 - origin[1], y1 - origin[1]))
    if preset.grid_m is not None:
        px0, px1, py0, py1 = preset.area_m
        ax.add_patch(plt.Rectangle((px0 - origin[0], py0 - origin[1]), px1 - px0, py1 - py0, fill=False, ls="--",
                                   ec="tab:blue", label=f"patch ({preset.grid_m:g} m grid)"))
    pos = fp.positions_m
    reached = fp.labels["path_count"].sum(1) > 0
    size = 5 if preset.grid_m is None else max(0.5, 2.0 * preset.grid_m)
    sc = ax.scatter(pos[reached, 0], pos[reached, 1], c=fp.labels["power_db"][reached].max(1), s=size,
                    cmap="viridis", lw=0)
    fig.colorbar(sc, ax=ax, label="strongest BS channel gain [dB]")
    if (~reached).any():
        ax.scatter(pos[~reached, 0], pos[~reached, 1], marker="x", s=12, color="crimson",
                   label=f"no path ({int((~reached).sum())})")
        ax.legend(loc="lower right", fontsize=8)
    aps = fp.environment.ap_positions_m
    yaws = [float(v) for v in str(fp.environment.attrs.get("bs_yaw_deg", "")).split(",") if v]
    for i, p in enumerate(aps if aps is not None else []):
        ax.plot(p[0], p[1], marker="^", color="red", ms=10, mec="k")
        if i < len(yaws):
            u = np.array([np.cos(np.radians(yaws[i])), np.sin(np.radians(yaws[i]))])
            ax.arrow(p[0], p[1], *(0.06 * (x1 - x0) * u), head_width=0.015 * (x1 - x0), color="red")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"{name}: {len(fp)} users, heights grey (darker = higher)", fontsize=9)
    return save_figure(fig, path)
