"""The drift bench's quick run writes its rows with provenance and a report section with every baseline."""

from xloc.bench import drift
from xloc.bench.registry import BenchContext
from xloc.eval.results import read_results


def test_quick_drift_bench(tmp_path):
    ctx = BenchContext(out=tmp_path, command="xloc bench --protocol drift --quick", quick=True, seeds=[0],
                       methods=["map-correct", "tl-corrected"], log=lambda text: None)
    drift.run(ctx)
    doc = read_results(tmp_path / "drift.json")
    assert all(r["commit"] and r["command"] == ctx.command for r in doc["rows"])
    # the RSS-only method runs on the RSS sites, not on the o2 road's CSI
    assert {r["method"] for r in doc["rows"] if r.get("dataset") == "o2-traffic"} >= {"map-correct", "wknn-stale"}
    assert "tl-corrected" not in {r["method"] for r in doc["rows"] if r.get("dataset") == "o2-traffic"}
    assert "tl-corrected" in {r["method"] for r in doc["rows"] if r.get("dataset") == "rss-sites"}
    detect = [r for r in doc["rows"] if r["protocol"] == "drift-detect"]
    assert {r["target"] for r in detect} == {"none", "device", "aps", "furniture", "all"}
    assert all(r["auc"] >= 0.5 for r in detect if "auc" in r)
    text = drift.report(doc, tmp_path)
    for column in ("wknn-stale", "wknn-pooled", "map-correct", "best / best baseline", "ROC AUC"):
        assert column in text
