"""Simulator speed (``xloc bench --protocol sim-speed``): rows with ``metric``, ``value`` and ``unit``.

Two experiments: ``simulator`` (xloc's geometric presets, users/s) and ``sionna`` (a Sionna RT throughput profile
on the street canyon: rays per transmitter, depth, receivers per call, synthetic against traced arrays, each beside
the channels of the reference setting and beside xloc's geometric simulator on the same sites and users).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from xloc.bench.registry import BenchContext
from xloc.eval.results import markdown_table
from xloc.sim.presets import SCENARIOS, simulate_scenario

__all__ = ["PARTS", "simulator_speed_rows", "geometric_on_rt_layout_s", "sionna_profile_rows", "run", "report"]

_COLUMNS = [("preset", "dataset"), ("environments", "environments"), ("users", "n_users"), ("users/s", "value")]


def simulator_speed_rows(
    n_users: int = 5000, seed: int = 0, conditions: int = 5, days: int = 5
) -> list[dict[str, Any]]:
    """Users (rooms: CSI images) simulated per second for every CSI preset, all its environments included."""
    rows = []
    for name in SCENARIOS:
        t0 = time.perf_counter()
        fs = simulate_scenario(name, n_users, seed, conditions=conditions, days=days)
        wall_s = time.perf_counter() - t0
        total = sum(len(fp) for fp in fs.values())
        rows.append({
            "protocol": "speed", "method": "simulator", "dataset": name, "setting": "cpu", "target": name,
            "metric": "users_per_s", "value": total / wall_s, "unit": "users/s", "n_users": total,
            "environments": len(fs), "wall_s": wall_s,
        })
    return rows


def geometric_on_rt_layout_s(preset_name: str, sites: list[Any], users_m: np.ndarray, repeats: int = 3) -> float:
    """Best wall time [s] of xloc's geometric simulator (its city street: walls, blockers, scatterers, up to two
    bounces) for ``users_m`` (n, 3) [m, scene frame] and the ray-traced preset's ``sites``: the same BS offsets,
    arrays and user offsets as Sionna RT gets."""
    from xloc.sim.channel import simulate_channels
    from xloc.sim.geometry import BaseStation
    from xloc.sim.rt_presets import RT_PRESETS
    from xloc.sim.scenarios import build_outdoor

    preset = RT_PRESETS[preset_name]
    city = build_outdoor("city", 0)[0].scene
    stations = tuple(BaseStation(s.position_m, np.deg2rad(s.yaw_deg) - np.pi / 2, preset.n_antennas) for s in sites)
    scene = replace(city, base_stations=stations)
    centre = np.array([(preset.area_m[0] + preset.area_m[1]) / 2, (preset.area_m[2] + preset.area_m[3]) / 2, 0.0])
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        simulate_channels(scene, np.asarray(users_m) - centre)
        best = min(best, time.perf_counter() - t0)
    return float(best)


#: (label, RTConfig changes) of the Sionna RT profile; the first is the reference every other is compared with
PROFILE_SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("reference: depth 3, 10^6 rays/BS, synthetic array, all users per call", {}),
    ("3 x 10^5 rays/BS", {"samples_per_src": 300_000}),
    ("10^5 rays/BS", {"samples_per_src": 100_000}),
    ("depth 2", {"max_depth": 2}),
    ("depth 4", {"max_depth": 4}),
    ("50 users per call", {"chunk": 50}),
    ("traced array (every element its own rays)", {"synthetic_array": False}),
)


def sionna_profile_rows(n_users: int = 100, seed: int = 0, log: Any = print) -> list[dict[str, Any]]:
    """Sionna RT users/s on the street canyon (three BSs, 8-element ULA, 32 subcarriers) for each of
    :data:`PROFILE_SETTINGS`, warm (a first call pays Dr.Jit's compilation and is timed apart), with each setting's
    channel error against the reference setting (NMSE [dB] over users with a path in both, and the share of users
    whose first-path delay moved by more than 1 ns), and the geometric simulator on the same sites and users."""
    from xloc.sim.raytrace import RTBaseStation, RTConfig, require_sionna, simulate_raytraced
    from xloc.sim.rt_presets import RT_PRESETS, preset_sites, preset_users

    rt = require_sionna()
    preset = RT_PRESETS["canyon"]
    sites = preset_sites(rt, preset, preset.scene)
    users = preset_users(rt, preset, preset.scene, n_users, seed, "test")
    stations = [RTBaseStation(s.position_m, s.yaw_deg, preset.n_antennas) for s in sites]
    base = RTConfig(scene=preset.scene, carrier_hz=preset.carrier_hz, bandwidth_hz=preset.bandwidth_hz,
                    n_subcarriers=preset.n_subcarriers, max_depth=preset.max_depth, chunk=n_users)
    setting = f"{n_users} users x 3 BSs x 8 antennas x 32 subcarriers, simple_street_canyon (180 x 110 m)"
    rows: list[dict[str, Any]] = []
    reference = None
    for label, change in PROFILE_SETTINGS:
        cfg = replace(base, **change)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            fp = simulate_raytraced(cfg, stations, users, name="profile")
            times.append(time.perf_counter() - t0)
        h, toa = fp.measurements, fp.labels["toa_s"]
        is_reference = reference is None
        reference = reference or (h, toa)
        h0, toa0 = reference
        both = (np.abs(h0) ** 2).sum((1, 2, 3)) > 0
        nmse = (np.abs(h - h0) ** 2).sum((1, 2, 3))[both] / (np.abs(h0) ** 2).sum((1, 2, 3))[both]
        moved = np.nanmax(np.where(np.isfinite(toa0) & np.isfinite(toa), np.abs(toa - toa0), 0.0), axis=1) > 1e-9
        moved |= np.isfinite(toa0).any(1) != np.isfinite(toa).any(1)
        row = {"protocol": "speed", "method": "sionna-rt", "dataset": "canyon", "setting": label, "target": "canyon",
               "metric": "users_per_s", "value": n_users / times[1], "unit": "users/s", "n_users": n_users,
               "first_call_s": times[0], "warm_s": times[1],
               "nmse_db": None if is_reference else float(10 * np.log10(max(float(np.mean(nmse)), 1e-12))),
               "toa_moved_share": float(np.mean(moved)), "paths_per_link": float(fp.labels["path_count"].mean()),
               "layout": setting}
        rows.append(row)
        nmse_text = "reference" if is_reference else f"NMSE {row['nmse_db']:.1f} dB"
        log(f"  {label}: {row['value']:.1f} users/s (first call {times[0]:.1f} s), {nmse_text}")
    geometric_s = geometric_on_rt_layout_s("canyon", sites, users)
    rows.append({"protocol": "speed", "method": "xloc geometric simulator", "dataset": "canyon",
                 "setting": "same sites, arrays and users; its own street model, up to two bounces", "target": "canyon",
                 "metric": "users_per_s", "value": n_users / geometric_s, "unit": "users/s", "n_users": n_users,
                 "layout": setting})
    return rows


_PROFILE_COLUMNS = [("simulator", "method"), ("setting", "setting"), ("users/s", "value"),
                    ("first call [s]", "first_call_s"), ("NMSE vs reference [dB]", "nmse_db"),
                    ("first path moved > 1 ns", "toa_moved_share"), ("paths per link", "paths_per_link")]


#: the bench's parts (``--experiment``): the geometric simulator's presets, the Sionna RT profile (raytrace extra)
PARTS = ("simulator", "sionna")


def run(ctx: BenchContext) -> None:
    rows: list[dict[str, Any]] = []
    parts = ctx.select(PARTS)
    if "simulator" in parts:
        rows += simulator_speed_rows(200 if ctx.quick else ctx.users)
        ctx.log(markdown_table(rows, _COLUMNS))
    if "sionna" in parts:
        profile = sionna_profile_rows(20 if ctx.quick else min(100, ctx.users), log=ctx.log)
        ctx.log(markdown_table(profile, _PROFILE_COLUMNS))
        rows += profile
    ctx.write("speed", rows, seeds=[0])


def report(doc: dict[str, Any], _results: Path) -> str:
    sim = [r for r in doc["rows"] if r["method"] == "simulator"]
    profile = [r for r in doc["rows"] if r["method"] != "simulator"]
    text = "CSI simulator throughput (all paths up to second-order reflections):\n\n" + markdown_table(sim, _COLUMNS)
    if profile:
        text += (f"\n\nSionna RT throughput profile ({profile[0].get('layout', '')}); NMSE and delays against the "
                 "reference setting:\n\n" + markdown_table(profile, _PROFILE_COLUMNS))
    return text
