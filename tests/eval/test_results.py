import json
import os
import stat

import pytest

from xloc.bench.report import write_report
from xloc.eval.results import read_results, sample_std, write_results


def _row(method, commit=None, **extra):
    row = {"protocol": "p1", "method": method, "dataset": "d", "setting": "loeo", "target": "all", "k": 5,
           "mean_m": 1.0, **extra}
    if commit is not None:
        row["commit"] = commit
    return row


def test_every_row_is_stamped_with_its_provenance(tmp_path):
    doc = write_results(tmp_path / "p1.json", [_row("wknn")], command="xloc bench --protocol p1", seeds=[0],
                        wall_s=1.0)
    row = doc["rows"][0]
    assert row["command"] == "xloc bench --protocol p1"
    assert row["commit"] and row["commit"] != "unknown"
    assert len(row["date"]) == 10 and row["xloc_version"]
    assert read_results(tmp_path / "p1.json") == json.loads((tmp_path / "p1.json").read_text())


def test_rows_of_another_commit_are_dropped_unless_appended(tmp_path):
    path = tmp_path / "p1.json"
    write_results(path, [_row("knn", commit="old"), _row("tl", commit="old")], command="a", seeds=[0], wall_s=1)
    with pytest.warns(UserWarning, match="dropped 2 row"):
        doc = write_results(path, [_row("wknn")], command="b", seeds=[0], wall_s=1)
    assert [r["method"] for r in doc["rows"]] == ["wknn"]
    write_results(path, [_row("knn", commit="old")], command="a", seeds=[0], wall_s=1, append=True)
    doc = write_results(path, [_row("tl")], command="c", seeds=[0], wall_s=1, append=True)
    assert sorted(r["method"] for r in doc["rows"]) == ["knn", "tl", "wknn"]
    assert len(doc["commits"]) == 2
    report = write_report(tmp_path, tmp_path / "REPORT.md").read_text()
    assert "from several runs" in report and "`old`" in report


def test_same_commit_rows_merge_by_key(tmp_path):
    path = tmp_path / "p1.json"
    write_results(path, [_row("knn"), _row("wknn")], command="a", seeds=[0], wall_s=1)
    doc = write_results(path, [_row("knn", mean_m=2.0)], command="b", seeds=[0], wall_s=1)
    assert {(r["method"], r["mean_m"]) for r in doc["rows"]} == {("knn", 2.0), ("wknn", 1.0)}


def test_rows_of_different_seeds_are_different_rows(tmp_path):
    path = tmp_path / "p1.json"
    write_results(path, [_row("knn", seed=0)], command="a", seeds=[0], wall_s=1)
    doc = write_results(path, [_row("knn", seed=1, mean_m=2.0)], command="b", seeds=[1], wall_s=1)
    assert sorted((r["seed"], r["mean_m"]) for r in doc["rows"]) == [(0, 1.0), (1, 2.0)]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_result_files_follow_the_umask(tmp_path, umask):
    path = tmp_path / "p1.json"
    old = os.umask(umask)
    try:
        write_results(path, [_row("knn")], command="a", seeds=[0], wall_s=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_sample_std_uses_ddof_one():
    assert sample_std([1.0, 3.0]) == pytest.approx(2 ** 0.5)
    assert sample_std([1.0]) is None


def test_markdown_table_reads_a_missing_k_as_all_labels_and_any_other_missing_value_as_a_dash():
    from xloc.eval.results import markdown_table

    table = markdown_table([{"method": "wknn", "k": None, "mean_m": 1.234, "nmse_db": None, "std_m": None}],
                           [("method", "method"), ("k", "k"), ("error", "mean_m|std_m"), ("NMSE", "nmse_db")])
    assert table.splitlines()[-1] == "| wknn | all | 1.23 | – |"


def test_any_tracked_change_but_results_and_prose_marks_a_run_dirty(tmp_path):
    """A run from a tree with an edited test, Makefile or module is not the commit it names; rewritten result files
    and prose (the bench writes those itself) are."""
    import subprocess

    from xloc.eval.results import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for name in ("Makefile", "README.md", "benchmarks/results/p1.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert not git_commit(tmp_path).endswith("+dirty")
    (tmp_path / "README.md").write_text("b\n")
    (tmp_path / "benchmarks/results/p1.json").write_text("b\n")
    assert not git_commit(tmp_path).endswith("+dirty")
    (tmp_path / "Makefile").write_text("b\n")
    assert git_commit(tmp_path).endswith("+dirty")
