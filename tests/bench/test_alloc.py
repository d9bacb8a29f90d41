import numpy as np

from xloc.bench.alloc import (
    QUICK,
    UNSEEN_CELL_COARSE_M,
    bar_chart,
    complexity,
    multi_scenario,
    run,
    run_p3,
    unseen_cell_markdown,
)
from xloc.bench.registry import BenchContext


def test_bar_chart_writes_a_png(tmp_path):
    rows = [{"method": m, "target": t, "mean_m": 2.0, "p10_m": 1.0, "p90_m": 3.0} for m in "ab" for t in "xy"]
    path = bar_chart(rows, "target", tmp_path / "bars.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_multi_scenario_rows_and_figures(tmp_path):
    rows = multi_scenario(QUICK, tmp_path)
    unseen = [r for r in rows if r["setting"] == "multi-unseen"]
    assert {r["method"] for r in unseen} >= {"alloc", "cnn", "ad_cnn", "mfcnet", "ad_cnn (scenario-specific)", "gnss"}
    assert all(r["target"] == "mo1-cell3" and np.isfinite(r["mean_m"]) and r["p10_m"] <= r["p90_m"] for r in unseen)
    # ALLoc's rows carry its uncertainty's calibration, beside the fused estimate and WKNN among its references
    by_method = {r["method"]: r for r in unseen}
    assert {"alloc-fused", "neighbourhood-wknn", "neighbourhood-mean"} <= set(by_method)
    for name in ("alloc", "alloc-fused"):
        assert 0 <= by_method[name]["within_1sigma"] <= by_method[name]["within_2sigma"] <= 1
        assert by_method[name]["sigma_mean_m"] > 0
    assert by_method["alloc-fused"]["sigma_mean_m"] < min(by_method["alloc"]["sigma_mean_m"], 1 / np.sqrt(3))
    curve = [r for r in rows if r["setting"] == "multi-tuning"]
    assert sorted({r["epoch"] for r in curve}) == list(range(QUICK.tune_epochs + 1))
    assert (tmp_path / "p3_multi.png").is_file() and (tmp_path / "p3_multi_tuning.png").is_file()


def test_unseen_cell_runs_once_per_seed_and_tabulates_mean_std_and_the_ratio_to_wknn(tmp_path):
    import json

    run(BenchContext(out=tmp_path, command="xloc bench --protocol p3", quick=True, seeds=[0, 1],
                     experiments=["unseen-cell"]))
    doc = json.loads((tmp_path / "p3.json").read_text())
    rows = doc["rows"]
    assert doc["seeds"] == [0, 1] and {r["seed"] for r in rows} == {0, 1}
    methods = {"alloc", "alloc-fused", "alloc-c2f", "alloc-c2f-fused", "gnss", "neighbourhood-mean",
               "neighbourhood-wknn"}
    for seed in (0, 1):
        for l_m in UNSEEN_CELL_COARSE_M:
            assert {r["method"] for r in rows if r["seed"] == seed and r["l_m"] == l_m} == methods
    # the fix's error grows with l (eq. 11: mean about 0.77 l)
    gnss = [np.mean([r["mean_m"] for r in rows if r["method"] == "gnss" and r["l_m"] == l_m]) for l_m in
            UNSEEN_CELL_COARSE_M]
    assert gnss == sorted(gnss) and 0.6 < gnss[0] < 0.95
    table = unseen_cell_markdown(rows)
    assert "seeds 0, 1" in table and "x WKNN" in table and " ± " in table
    assert len([line for line in table.splitlines() if line.startswith("| alloc")]) == 4


def test_quick_rain_traffic_and_complexity(tmp_path):
    rows = run_p3(QUICK, tmp_path, ["rain", "traffic"])
    assert {r["rain_mm_h"] for r in rows if r["setting"] == "rain"} == {0.0, 10.0, 25.0, 50.0, 100.0}
    assert {r["setting"] for r in rows} >= {"traffic-one", "traffic-many", "traffic-same"}
    speed = complexity(QUICK, tmp_path, n_values=(8, 16), batch=16, repeats=1)
    assert [r["n_references"] for r in speed if r["setting"] == "throughput"] == [8, 16]
    assert all(r["value"] > 0 for r in speed)
