"""The drift bench's quick run writes its rows with provenance and a report section with every baseline."""

from xloc.bench import drift
from xloc.bench.registry import BenchContext
from xloc.eval.results import read_results


def test_quick_drift_bench(tmp_path):
    ctx = BenchContext(out=tmp_path, command="xloc bench --protocol drift --quick", quick=True, seeds=[0],
                       methods=["map-correct"], log=lambda text: None)
    drift.run(ctx)
    doc = read_results(tmp_path / "drift.json")
    assert all(r["commit"] and r["command"] == ctx.command for r in doc["rows"])
    detect = [r for r in doc["rows"] if r["protocol"] == "drift-detect"]
    assert {r["target"] for r in detect} == {"none", "device", "aps", "furniture", "all"}
    assert all(r["auc"] >= 0.5 for r in detect if "auc" in r)
    text = drift.report(doc, tmp_path)
    for column in ("wknn-stale", "wknn-pooled", "map-correct", "best / best baseline", "ROC AUC"):
        assert column in text
