import json

from typer.testing import CliRunner

from xloc.cli import app
from xloc.learn import maml
from xloc.progress import Bar

runner = CliRunner()


def test_plain_lines_with_percentage_rate_and_eta_outside_a_terminal(capsys):
    bar = Bar("work", 40, enabled=True)
    for _ in range(40):
        bar.advance(loss="0.5")
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[0].startswith("work:  10% (4/40), ") and "ETA" in lines[0]
    assert lines[-1].startswith("work: 100% (40/40)") and lines[-1].endswith("loss 0.5")


def test_ctrl_c_keeps_the_best_model_marks_it_and_exits_130(tmp_path, monkeypatch):
    data = tmp_path / "pl.h5"
    assert runner.invoke(app, ["simulate", "-o", str(data), "--family", "a", "--family", "c"]).exit_code == 0
    calls = {"n": 0}
    real = maml.meta_gradient

    def stop_at_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(maml, "meta_gradient", stop_at_the_fourth)
    r = runner.invoke(app, ["train", "--data", str(data), "--method", "maml", "--iterations", "50", "-o",
                            str(tmp_path / "m")])
    assert r.exit_code == 130, r.output
    assert "interrupted" in r.output and "after 3 of 50" in r.output
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["interrupted"] == {"what": "maml all", "done": 3, "total": 50}
    assert meta["params"]["iterations"] == 50  # the budget asked for; "interrupted" says what was spent
    from xloc.methods import load_model

    assert load_model(tmp_path / "m").get_params()["iterations"] == 50  # and it loads


def test_verbose_logs_details_and_quiet_silences_progress(tmp_path):
    data = tmp_path / "pl.h5"
    assert runner.invoke(app, ["simulate", "-o", str(data), "--family", "a", "--family", "c"]).exit_code == 0
    train = ["train", "--data", str(data), "--method", "maml", "--iterations", "20", "-o", str(tmp_path / "m")]
    loud = runner.invoke(app, ["-v", *train])
    assert loud.exit_code == 0 and "validation loss" in loud.output and "ETA" in loud.output
    normal = runner.invoke(app, train)
    assert "ETA" in normal.output and "validation loss" not in normal.output
    quiet = runner.invoke(app, ["-q", *train])
    assert quiet.exit_code == 0 and "ETA" not in quiet.output and "validation loss" not in quiet.output
    assert runner.invoke(app, ["-v", "-q", "methods"]).exit_code == 2


def test_ctrl_c_anywhere_else_exits_130_without_a_traceback(monkeypatch):
    import xloc.methods

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(xloc.methods, "specs", interrupted)  # `xloc methods` imports it when it runs
    r = runner.invoke(app, ["methods"])
    assert r.exit_code == 130 and "interrupted" in r.output and "Traceback" not in r.output
