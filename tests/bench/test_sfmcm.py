import json

from xloc.bench.registry import BenchContext, get
from xloc.bench.sfmcm import VARIANTS, report


def test_sfmcm_bench_writes_levels_and_a_row_per_variant_and_seed(tmp_path):
    ctx = BenchContext(out=tmp_path, command="test", quick=True, seeds=[0], log=lambda _text: None,
                       experiments=["mcm-random", "all-block"])
    get("lwlm-sfmcm").runner()(ctx)
    doc = json.loads((tmp_path / "lwlm-sfmcm.json").read_text())
    rows = doc["rows"]
    levels = {r["masks"]: r["masked_mse"] for r in rows if r["method"] == "linear prediction"}
    # channels of streets are correlated across antennas and subcarriers: linear prediction beats zero, and more
    # so when the visible patches surround the masked ones
    assert levels["random"] < levels["block"] < 0.5
    runs = [r for r in rows if r["method"] == "lwlm"]
    assert [r["variant"] for r in runs] == ["sf-mcm, random masks", "all three, block masks"]
    assert runs[1]["objectives"] == list(VARIANTS["all three, block masks"][0]) and runs[0]["curve"]
    assert (tmp_path / "lwlm_sfmcm_curves.png").is_file()
    text = report(doc, tmp_path)
    assert "| linear prediction (LMMSE) | – | random |" in text and "| all three, block masks |" in text
