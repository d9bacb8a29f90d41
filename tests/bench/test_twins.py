"""The dense-patch helpers of the twins bench: the coarser reference grid and the report's tables."""

import numpy as np

from xloc.bench.twins import patches_markdown, sub_grid
from xloc.data import EnvironmentMeta, Fingerprints


def _grid(spacing_m: float, half_m: float) -> Fingerprints:
    axis = np.arange(-half_m, half_m + 1e-9, spacing_m)
    xy = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    meta = EnvironmentMeta(name="patch", kind="rss", ap_ids=("a",), ap_positions_m=np.zeros((1, 2)))
    return Fingerprints(meta, np.zeros((len(xy), 1), np.float32), xy, np.arange(len(xy)))


def test_sub_grid_keeps_the_nodes_of_the_coarser_grid():
    fine = _grid(0.5, 2.0)  # 9 x 9 nodes
    coarse = sub_grid(fine, 1.0)
    assert len(coarse) == 25
    np.testing.assert_allclose(coarse.positions_m % 1.0, 0.0)


def _row(method: str, l_m: float, mean_m: float, seed: int, **extra):
    return {"protocol": "p3", "dataset": "rt-patches", "setting": "unseen", "target": "patch-x", "density": "0.5 m",
            "n_refs_total": 100, "coarse_model": "eq11", "sweep": "coarse_error_m", "sweep_value": l_m,
            "method": method, "mean_m": mean_m, "median_m": mean_m, "p90_m": mean_m, "seed": seed,
            "within_1sigma": 0.4, "within_2sigma": 0.9, **extra}


def test_patch_tables_average_over_seeds_and_give_the_ratios_to_the_coarse_fix_and_wknn():
    rows = []
    for seed, bump in ((0, 0.0), (1, 0.2)):
        rows += [_row("gnss", 2.0, 1.0 + bump, seed), _row("neighbourhood-wknn", 2.0, 0.8 + bump, seed),
                 _row("neighbourhood-mean", 2.0, 1.2, seed), _row("alloc", 2.0, 0.5 + bump, seed),
                 _row("alloc-fused", 2.0, 0.45, seed)]
    text = patches_markdown(rows)
    assert "| coarse fix | 1.10 ± 0.14 |" in text
    assert "| alloc / coarse fix | 0.55× |" in text  # 0.6 / 1.1
    assert "| alloc / WKNN among the n references | 0.67× |" in text  # 0.6 / 0.9
    assert patches_markdown([{"dataset": "rt-other"}]) == ""
