"""Speed benchmarks (not tests): rows in the results format with ``metric``, ``value`` and ``unit``."""

from __future__ import annotations

import time
from typing import Any

from xloc.sim.presets import SCENARIOS, simulate_scenario

__all__ = ["simulator_speed_rows"]


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
