"""One entry point for every CSI scenario preset: outdoor families and indoor WiFi rooms."""

from __future__ import annotations

import numpy as np

from xloc.data.fingerprints import FingerprintSet
from xloc.errors import DataValidationError
from xloc.sim.csi_images import ROOMS, room_points, room_scene, simulate_room_day
from xloc.sim.geometry import Scene
from xloc.sim.scenarios import OUTDOOR_PRESETS, build_outdoor, simulate_outdoor

__all__ = ["SCENARIOS", "simulate_scenario", "simulate_drive", "scenario_scene", "SPLITS"]

SPLITS = ("train", "test")
#: preset name -> description
SCENARIOS: dict[str, str] = {name: desc for name, (_, desc) in OUTDOOR_PRESETS.items()}
SCENARIOS["hall"] = "MetaLoc LOS hall, 3 APs at 5 GHz / 20 MHz, 52 x 50 x 3 CSI images, one environment per day"
SCENARIOS["lab"] = "MetaLoc cluttered NLOS lab, 3 APs at 5 GHz / 20 MHz, CSI images, one environment per day"


def simulate_scenario(
    name: str,
    n_users: int,
    seed: int,
    *,
    split: str = "train",
    snr_db: float | None = None,
    conditions: int | None = None,
    days: int = 5,
    progress: bool = False,
) -> FingerprintSet:
    """Simulate preset ``name``: every environment with ``n_users`` users (rooms: images per day).

    The geometry depends on ``seed`` only; users (and image noise) come from a stream keyed by
    ``(seed, environment, split)``, so ``train`` and ``test`` are independent draws of the same environments.
    """
    if split not in SPLITS:
        raise DataValidationError(f"split must be one of {SPLITS}, got {split!r}")
    if n_users < 1:
        raise DataValidationError(f"n_users must be >= 1, got {n_users}")
    split_code = SPLITS.index(split)
    if name in ROOMS:
        if days < 1:
            raise DataValidationError(f"days must be >= 1, got {days}")
        per_point = max(1, n_users // room_points(name).shape[0])
        return FingerprintSet(
            simulate_room_day(name, d, per_point, seed, np.random.default_rng([seed, d, split_code]),
                              snr_db=25.0 if snr_db is None else snr_db)
            for d in range(1, days + 1)
        )
    options = {} if conditions is None else {"conditions": conditions}
    envs = build_outdoor(name, seed, **options)
    return FingerprintSet(
        simulate_outdoor(env, n_users, np.random.default_rng([seed, i, split_code]), preset=name, seed=seed,
                         snr_db=snr_db, progress=progress)
        for i, env in enumerate(envs)
    )


def simulate_drive(name: str, seed: int, *, spacing_m: float = 0.5, lanes: int = 4,
                   snr_db: float | None = None) -> FingerprintSet:
    """Unlabelled-collection runs: every environment of outdoor preset ``name`` sampled along ``lanes`` lanes
    every ``spacing_m`` metres (positions are kept for evaluation; AGML treats them as unlabelled)."""
    if name in ROOMS:
        raise DataValidationError(f"simulate_drive needs an outdoor preset, not the room {name!r}")
    envs = build_outdoor(name, seed)
    return FingerprintSet(
        simulate_outdoor(env, 0, np.random.default_rng([seed, i, 7]), preset=name, seed=seed, snr_db=snr_db,
                         users_m=env.drive(spacing_m, lanes))
        for i, env in enumerate(envs)
    )


def scenario_scene(name: str, seed: int, environment: str, *, conditions: int | None = None) -> Scene:
    """The scene behind one environment of a preset (for plots and inspection)."""
    if name in ROOMS:
        day = int(environment.rsplit("day", 1)[-1])
        return room_scene(name, seed, day)
    options = {} if conditions is None else {"conditions": conditions}
    for env in build_outdoor(name, seed, **options):
        if env.name == environment:
            return env.scene
    raise DataValidationError(f"preset {name!r} has no environment {environment!r}")
