"""The drift bench's quick run writes its rows with provenance and a report section with every baseline, on every
dataset: the RSS sites, the o2 road, the CSI-image rooms and the ray-traced office (here a stand-in file in the
collection's place: its generation is tested in tests/sim/test_rt_presets.py)."""

import pytest

from xloc.bench import drift
from xloc.bench.registry import BenchContext
from xloc.data.fingerprints import FingerprintSet
from xloc.data.storage import save_fingerprints
from xloc.errors import DataValidationError
from xloc.eval.results import read_results
from xloc.sim.presets import simulate_scenario


@pytest.fixture
def office_collection(tmp_path, monkeypatch):
    """An ``office.h5`` with three days (CSI of the o2 road's traffic conditions under the office's names)."""
    splits = {}
    for split, users in (("train", 60), ("test", 20)):
        days = simulate_scenario("o2", users, 0, conditions=3, split=split).values()
        splits[split] = FingerprintSet(fp.renamed(f"office-day{i + 1}") for i, fp in enumerate(days))
    save_fingerprints(tmp_path / "twins" / "office.h5", splits)
    monkeypatch.setenv("XLOC_TWINS_DIR", str(tmp_path / "twins"))


def test_quick_drift_bench(tmp_path, office_collection):
    ctx = BenchContext(out=tmp_path, command="xloc bench --protocol drift --quick", quick=True, seeds=[0],
                       methods=["map-correct", "tl-corrected"], log=lambda text: None)
    drift.run(ctx)
    doc = read_results(tmp_path / "drift.json")
    assert all(r["commit"] and r["command"] == ctx.command for r in doc["rows"])
    by_dataset = {}
    for r in doc["rows"]:
        by_dataset.setdefault(r.get("dataset"), set()).add(r["method"])
    # the RSS-only method runs on the RSS sites, not on CSI or CSI images
    for dataset in ("o2-traffic", "csi-image-rooms", "rt-office"):
        assert by_dataset[dataset] >= {"map-correct", "wknn-stale", "wknn-pooled", "wknn"}, dataset
        assert "tl-corrected" not in by_dataset[dataset]
    assert "tl-corrected" in by_dataset["rss-sites"]
    # the rooms' and the office's last day is the later collection, its earlier days pooled are the survey
    assert {r["target"] for r in doc["rows"] if r.get("dataset") == "csi-image-rooms"} == {"hall-day3", "all"}
    assert {r["target"] for r in doc["rows"] if r.get("dataset") == "rt-office"} == {"office-day3", "all"}
    detect = [r for r in doc["rows"] if r["protocol"] == "drift-detect"]
    assert {r["target"] for r in detect} == {"none", "device", "aps", "furniture", "all"}
    assert all(r["auc"] >= 0.5 for r in detect if "auc" in r)
    text = drift.report(doc, tmp_path)
    for column in ("wknn-stale", "wknn-pooled", "map-correct", "best / best baseline", "ROC AUC", "csi-image-rooms",
                   "rt-office"):
        assert column in text


def test_the_office_part_asked_for_by_name_says_how_to_make_the_collection(tmp_path, monkeypatch):
    monkeypatch.setenv("XLOC_TWINS_DIR", str(tmp_path / "none"))
    ctx = BenchContext(out=tmp_path, command="xloc bench --protocol drift --experiment office", quick=True,
                       seeds=[0], experiments=["office"], log=lambda text: None)
    with pytest.raises(DataValidationError, match="make twins"):
        drift.run(ctx)
