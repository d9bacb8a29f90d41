"""Simulator speed (``xloc bench --protocol sim-speed``): rows with ``metric``, ``value`` and ``unit``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from xloc.bench.registry import BenchContext
from xloc.eval.results import markdown_table
from xloc.sim.presets import SCENARIOS, simulate_scenario

__all__ = ["simulator_speed_rows", "run", "report"]

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


def run(ctx: BenchContext) -> None:
    rows = simulator_speed_rows(200 if ctx.quick else ctx.users)
    ctx.write("speed", rows, seeds=[0])
    ctx.log(markdown_table(rows, _COLUMNS))


def report(doc: dict[str, Any], _results: Path) -> str:
    return ("CSI simulator throughput (all paths up to second-order reflections):\n\n"
            + markdown_table(doc["rows"], _COLUMNS))
