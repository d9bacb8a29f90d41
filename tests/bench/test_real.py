"""The real-data bench at quick sizes on the real files (three CSU paths, three UMinho surveys): rows with
provenance for every part, WKNN beside every method, the README table rendered from the rows."""

from tests.conftest import skip_or_fail
from xloc.bench import real
from xloc.bench.registry import BenchContext
from xloc.data.shared import CSU_CSI_ROOT, UMDSI_ROOT
from xloc.eval.results import read_results


def test_each_later_survey_is_paired_with_the_first_and_with_the_one_before():
    assert real.umdsi_pairs(["a", "b", "c", "d"]) == [("b", ("a",)), ("c", ("a",)), ("d", ("a",)), ("c", ("b",)),
                                                      ("d", ("c",))]


def test_quick_real_bench(tmp_path):
    for root in (CSU_CSI_ROOT, UMDSI_ROOT):
        if not root.is_dir():
            skip_or_fail("data", f"{root} is not there")
    ctx = BenchContext(out=tmp_path, command="xloc bench --protocol real --quick", quick=True, seeds=[0],
                       methods=["wknn", "auto", "map-correct"], experiments=["csu", "umdsi"], log=lambda text: None)
    real.run(ctx)
    doc = read_results(tmp_path / "real.json")
    assert all(r["commit"] and r["command"] == ctx.command for r in doc["rows"])
    csu = {(r["method"], r["k"]) for r in doc["rows"] if r["dataset"] == "csu-csi" and r["target"] == "all"}
    assert {("wknn", 10), ("auto", 10), ("support-centroid", 10), ("wknn", None)} <= csu
    umdsi = [r for r in doc["rows"] if r["dataset"] == "umdsi" and r["target"] != "all"]
    assert {r["method"] for r in umdsi} >= {"map-correct", "wknn-stale", "wknn-pooled", "wknn"}
    # the third survey is paired with the first and with the second: both pairs keep their rows
    third = {tuple(r["against"]) for r in umdsi if r["method"] == "map-correct" and r["k"] == 10}
    assert third == {("first",), ("previous",), ("first", "previous")}
    section = real.report(doc, tmp_path)
    assert "each later survey against the first one" in section and "| auto |" in section
    assert "What changed between the UMinho surveys" in section
    table = real.readme_table(doc)
    assert "| csu-csi | 10 |" in table and "×" in table
