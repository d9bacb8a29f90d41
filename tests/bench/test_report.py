import json
from pathlib import Path

from xloc.bench.registry import specs
from xloc.bench.report import write_report

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_report_is_rebuilt_from_the_committed_results(tmp_path):
    out = write_report(RESULTS, tmp_path / "REPORT.md")
    text = out.read_text()
    for spec in specs():
        if (RESULTS / f"{spec.result}.json").is_file():
            assert f"## {spec.title}" in text
            assert json.loads((RESULTS / f"{spec.result}.json").read_text())["command"] in text
    assert "| wknn |" in text and "(results/p1_cdf.png)" in text


def test_missing_results_are_listed_not_invented(tmp_path):
    (tmp_path / "results").mkdir()
    text = write_report(tmp_path / "results").read_text()
    assert "## Not run yet" in text and "`p4`" in text and "| wknn |" not in text
