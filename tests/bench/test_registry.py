import inspect

import pytest

from xloc.bench.registry import BENCHES, BenchContext, get, specs
from xloc.errors import ConfigError


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_every_bench_resolves_its_runner_report_and_parts(spec):
    run = spec.runner()
    assert list(inspect.signature(run).parameters) == ["ctx"]
    render = spec.renderer()
    assert render is not None and list(inspect.signature(render).parameters)[0] == "doc"
    assert all(isinstance(e, str) for e in spec.experiment_names())


def test_unknown_bench_names_the_valid_ones():
    with pytest.raises(ConfigError, match="expected one of p1, p2"):
        get("p9")


def test_result_files_are_distinct():
    assert len({s.result for s in BENCHES.values()}) == len(BENCHES)


def test_context_selects_its_own_parts_and_writes_rows_with_provenance(tmp_path):
    ctx = BenchContext(out=tmp_path, command="xloc bench --protocol x", seeds=[0, 1], experiments=["rain", "main"])
    assert ctx.select(["single", "rain"]) == ["rain"]
    assert ctx.select(["sodindoorloc", "o1-drive"]) == ["sodindoorloc", "o1-drive"]  # none of its parts named
    path = ctx.write("x", [{"protocol": "x", "method": "m", "mean_m": 1.0}])
    import json

    doc = json.loads(path.read_text())
    assert doc["seeds"] == [0, 1] and doc["rows"][0]["command"] == "xloc bench --protocol x"


def test_resume_keeps_only_the_rows_this_commit_wrote(tmp_path, monkeypatch):
    from xloc.eval import results

    monkeypatch.setattr(results, "git_commit", lambda cwd=None: "old")
    BenchContext(out=tmp_path, command="a").write("x", [{"protocol": "x", "method": "m", "seed": 0, "mean_m": 1.0}])
    monkeypatch.setattr(results, "git_commit", lambda cwd=None: "new")
    ctx = BenchContext(out=tmp_path, command="b", append=True, resume=True)
    assert ctx.finished_rows("x") == []  # another commit's work is redone, not trusted
    ctx.write("x", [{"protocol": "x", "method": "m", "seed": 1, "mean_m": 2.0}])
    assert [r["seed"] for r in ctx.finished_rows("x")] == [1]
    assert BenchContext(out=tmp_path, command="c").finished_rows("x") == []  # without --resume: nothing
    monkeypatch.setattr(results, "git_commit", lambda cwd=None: "new+dirty")
    assert BenchContext(out=tmp_path, command="d", resume=True).finished_rows("x") == []
