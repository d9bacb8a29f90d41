import json
from pathlib import Path

from xloc.bench.registry import specs
from xloc.bench.report import README_MARK, render_readme_tables, write_report

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


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_tables_are_the_result_files():
    """Every `xloc report` block of the README is exactly what `xloc report` renders from the committed results: a
    hand-edited cell, or rows rerun without `xloc report`, fail here."""
    text = README.read_text()
    assert README_MARK.search(text), "the README has no rendered result table"
    assert render_readme_tables(text, RESULTS) == text, "README tables differ from benchmarks/results: run xloc report"


def test_a_hand_edited_readme_cell_is_rendered_back(tmp_path):
    text = README.read_text()
    body = README_MARK.search(text)["body"]
    edited = text.replace(body, body.replace("|", "| 0.01 |", 3), 1)
    assert edited != text and render_readme_tables(edited, RESULTS) == text
