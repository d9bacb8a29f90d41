from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xloc.data import EnvironmentMeta, Fingerprints, FingerprintSet
from xloc.data.sodindoorloc import DEFAULT_ROOT


def make_rss_env(name: str = "lab", n_points: int = 6, reps: int = 2, n_ap: int = 4, seed: int = 0) -> Fingerprints:
    rng = np.random.default_rng(seed)
    meta = EnvironmentMeta(
        name=name,
        kind="rss",
        ap_ids=tuple(f"AP{i}" for i in range(n_ap)),
        ap_positions_m=rng.uniform(0, 10, (n_ap, 2)),
        frequency_hz=2.44e9,
        grid_spacing_m=1.0,
        attrs={"note": "tiny", "floor": 1},
    )
    pos = np.repeat(rng.uniform(0, 10, (n_points, 2)), reps, axis=0)
    rss = rng.uniform(-90, -30, (n_points * reps, n_ap)).astype(np.float32)
    rss[0, 0] = np.nan
    return Fingerprints(
        meta,
        rss,
        pos,
        np.repeat(np.arange(n_points), reps),
        device=[f"d{i % 2}" for i in range(n_points * reps)],
        time_s=np.arange(n_points * reps, dtype=float),
    )


@pytest.fixture
def rss_env() -> Fingerprints:
    return make_rss_env()


@pytest.fixture
def rss_set() -> FingerprintSet:
    return FingerprintSet([make_rss_env("a", seed=1), make_rss_env("b", n_ap=3, seed=2)])


@pytest.fixture(scope="session")
def sod_root() -> Path:
    if not (DEFAULT_ROOT / "CETC331").is_dir():
        pytest.skip(f"SODIndoorLoc not found at {DEFAULT_ROOT}")
    return DEFAULT_ROOT
