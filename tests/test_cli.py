import json

import numpy as np
from typer.testing import CliRunner

from xloc.cli import app
from xloc.data import load_fingerprints

runner = CliRunner()


def flat(output: str) -> str:
    """CLI output with rich's box borders and line wrapping removed."""
    return " ".join(output.replace("│", " ").split())


def test_demo_prints_table_and_draws_its_picture(tmp_path):
    result = runner.invoke(app, ["demo", "--points", "10", "--plot", str(tmp_path / "demo.png")])
    assert result.exit_code == 0, result.output
    for method in ("wknn", "maml-dg", "tl", "ri", "support centroid"):
        assert method in result.output
    assert (tmp_path / "demo.png").stat().st_size > 20_000


def test_simulate_then_info(tmp_path):
    out = tmp_path / "sim.h5"
    result = runner.invoke(app, ["simulate", "--out", str(out), "--family", "c", "--test-points", "20"])
    assert result.exit_code == 0, result.output
    splits = load_fingerprints(out)
    assert len(splits["test"]["office_mixed_single_slope-s0"]) == 20
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "office_mixed_single_slope-s0" in info.output


def test_import_csv_and_bad_input(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("x,y,AP1,AP2\n0,0,-50,100\n1,1,-60,-70\n")
    out = tmp_path / "s.h5"
    ok = runner.invoke(app, ["import", "csv", str(csv), "--out", str(out), "--rss-prefix", "AP", "--env", "home"])
    assert ok.exit_code == 0, ok.output
    assert np.isnan(load_fingerprints(out)["train"]["home"].measurements[0, 1])
    csv.write_text("x,y,AP1\n0,0,loud\n")
    bad = runner.invoke(app, ["import", "csv", str(csv), "--out", str(out), "--rss-prefix", "AP"])
    assert bad.exit_code == 2 and "row 2" in bad.output and "Traceback" not in bad.output


def _survey_csv(path, split_code: int) -> None:
    """Three floors of one building (six shared APs) as a survey CSV, one row per sample."""
    from xloc.sim.pathloss import PathLossConfig, simulate_pathloss_environment

    lines = ["floor,x,y," + ",".join(f"AP{i}" for i in range(6))]
    for floor, family in enumerate("abc"):
        ref, test = simulate_pathloss_environment(PathLossConfig(family=family, n_aps=6, n_test_points=30,
                                                                 grid_spacing_m=4.0), seed=floor, name=family)
        fp = ref if split_code == 0 else test
        for (x, y), rss in zip(fp.positions_m[:, :2], fp.measurements, strict=True):
            cells = ["100" if np.isnan(v) else f"{v:.1f}" for v in rss]  # SODIndoorLoc's "not heard" sentinel
            lines.append(f"F{floor},{x:.2f},{y:.2f}," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def test_evaluate_any_method_on_an_imported_survey(tmp_path):
    train_csv, test_csv, data = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "survey.h5"
    _survey_csv(train_csv, 0)
    _survey_csv(test_csv, 1)
    common = ["--out", str(data), "--rss-prefix", "AP", "--env-column", "floor", "--not-heard", "100"]
    assert runner.invoke(app, ["import", "csv", str(train_csv), *common]).exit_code == 0
    r = runner.invoke(app, ["import", "csv", str(test_csv), *common, "--split", "test"])
    assert r.exit_code == 0 and "splits: train, test" in r.output, r.output  # the test split does not replace train
    out = tmp_path / "results"
    r = runner.invoke(app, ["evaluate", "--data", str(data), "--method", "knn", "--method", "wknn", "--method",
                            "agnn", "--param", "agnn.adapt_steps=20", "--k", "5", "--seeds", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "loeo.json").read_text())["rows"]
    methods = {row["method"] for row in rows if row["target"] == "all"}
    assert methods == {"knn", "wknn", "agnn", "support-centroid"} and (out / "loeo_cdf.png").is_file()
    assert all(row["commit"] and row["command"].startswith("xloc ") and row["date"] for row in rows)
    assert "| knn |" in r.output
    bad = runner.invoke(app, ["evaluate", "--data", str(data), "--method", "alloc", "--out", str(out)])
    assert bad.exit_code == 2 and "accepts csi data" in flat(bad.output)
    typo = runner.invoke(app, ["evaluate", "--data", str(data), "--method", "knn", "--param", "knn.kk=3",
                               "--out", str(out)])
    assert typo.exit_code == 2 and "valid: k, weighted" in flat(typo.output)


def test_import_sodindoorloc(tmp_path, sod_root):
    out = tmp_path / "sod.h5"
    result = runner.invoke(app, ["import", "sodindoorloc", str(sod_root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sum(len(f) for f in load_fingerprints(out, "train")["train"].values()) == 955 + 11370 + 8880


def test_evaluate_p2(tmp_path):
    result = runner.invoke(app, ["evaluate", "--protocol", "p2", "--seeds", "1", "--method", "knn", "--method", "wknn",
                                 "--k", "10", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p2.json").is_file() and (tmp_path / "p2_cdf.png").is_file()
    bad = runner.invoke(app, ["evaluate", "--protocol", "p2", "--method", "magic", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown method 'magic'" in bad.output


def test_simulate_scenario_with_plot(tmp_path):
    out, png = tmp_path / "o2.h5", tmp_path / "o2.png"
    result = runner.invoke(app, ["simulate", "--scenario", "o2", "--users", "20", "--test-users", "5",
                                 "--conditions", "2", "-o", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    splits = load_fingerprints(out)
    assert list(splits["train"]) == ["o2-cond01", "o2-cond02"] and len(splits["test"]["o2-cond02"]) == 5
    assert splits["train"]["o2-cond01"].labels["toa_s"].shape == (20, 1)
    assert png.stat().st_size > 10_000
    bad = runner.invoke(app, ["simulate", "--scenario", "o9", "-o", str(out)])
    assert bad.exit_code != 0 and "unknown scenario" in bad.output


def test_bench_sim_speed(tmp_path):
    # the geometric simulator only: the Sionna RT profile needs the raytrace extra (the bench itself runs it)
    result = runner.invoke(app, ["bench", "--protocol", "sim-speed", "--experiment", "simulator", "--users", "3",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert {r["dataset"] for r in rows} >= {"o1", "mo1", "hall"} and all(r["value"] > 0 for r in rows)


def test_train_adapt_predict(tmp_path):
    data = tmp_path / "pl.h5"
    assert runner.invoke(app, ["simulate", "-o", str(data), "--family", "a", "--family", "b", "--family", "c",
                               "--test-points", "40"]).exit_code == 0
    meta, adapted, preds = tmp_path / "meta", tmp_path / "adapted", tmp_path / "p.csv"
    r = runner.invoke(app, ["train", "--data", str(data), "--exclude", "log_distance-s0", "--method", "maml-dg",
                            "--iterations", "20", "-o", str(meta)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["adapt", "--model", str(meta), "--data", str(data), "--env", "log_distance-s0",
                            "--points", "8", "--steps", "3", "-o", str(adapted)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["predict", "--model", str(adapted), "--data", str(data), "--env", "log_distance-s0",
                            "-o", str(preds)])
    assert r.exit_code == 0, r.output
    lines = preds.read_text().splitlines()
    assert lines[0].startswith("x_m,y_m") and len(lines) == 41
    bad = runner.invoke(app, ["adapt", "--model", str(meta), "--data", str(data), "--env", "nope", "-o", str(adapted)])
    assert bad.exit_code == 2 and "no environment 'nope'" in bad.output and "Traceback" not in bad.output
    wrong = runner.invoke(app, ["predict", "--model", str(meta), "--data", str(data), "--env", "log_distance-s0",
                                "-o", str(preds)])
    assert wrong.exit_code != 0 and "adapt(support)" in wrong.output


def test_train_alloc_and_predict_with_references(tmp_path):
    o1, o1b = tmp_path / "o1.h5", tmp_path / "o1b.h5"
    for name, path in (("o1", o1), ("o1b", o1b)):
        r = runner.invoke(app, ["simulate", "--scenario", name, "--users", "120", "--test-users", "15",
                                "-o", str(path)])
        assert r.exit_code == 0, r.output
    model, rnd, preds = tmp_path / "alloc", tmp_path / "alloc-random", tmp_path / "p.csv"
    for method, path in (("alloc", model), ("alloc-random", rnd)):
        r = runner.invoke(app, ["train", "--data", str(o1), "--method", method, "--iterations", "3", "-o", str(path)])
        assert r.exit_code == 0, r.output
    # an unseen scenario, served by handing over its labelled pairs: no gradient step
    base = ["predict", "--model", str(model), "--data", str(o1b), "--env", "o1b", "-o", str(preds)]
    r = runner.invoke(app, [*base, "--references", str(o1b), "--coarse-error-m", "1"])
    assert r.exit_code == 0, r.output
    assert len(preds.read_text().splitlines()) == 16 and "error mean" in r.output
    assert preds.read_text().splitlines()[0].endswith(",uncertainty_m") and "within 1 / 2 sigma" in flat(r.output)
    coarse = tmp_path / "gnss.csv"
    coarse.write_text("x_m,y_m\n" + "50,0\n" * 15)
    assert runner.invoke(app, [*base, "--references", str(o1b), "--coarse", str(coarse)]).exit_code == 0
    r = runner.invoke(app, [*base, "--references", str(o1b), "--random-model", str(rnd)])
    assert r.exit_code == 0, r.output
    # one user's track: only the first coarse fix is used, each next one is the previous estimate
    r = runner.invoke(app, [*base, "--references", str(o1b), "--coarse-error-m", "1", "--track"])
    assert r.exit_code == 0 and "error mean" in r.output, r.output
    missing = runner.invoke(app, [*base, "--coarse-error-m", "1"])
    assert missing.exit_code != 0 and "references" in missing.output
    no_coarse = runner.invoke(app, [*base, "--references", str(o1b)])
    assert no_coarse.exit_code != 0 and "exactly one of" in no_coarse.output
    coarse.write_text("x_m,y_m\n1,2\n")
    short = runner.invoke(app, [*base, "--references", str(o1b), "--coarse", str(coarse)])
    assert short.exit_code != 0 and "1 rows" in flat(short.output) and "Traceback" not in short.output
    # adapting an analogical model binds the references (0 steps); it then needs only the coarse fix
    bound = runner.invoke(app, ["adapt", "--model", str(model), "--data", str(o1b), "--env", "o1b", "-o",
                                str(tmp_path / "bound")])
    assert bound.exit_code == 0 and "0 steps" in bound.output, bound.output
    r = runner.invoke(app, ["predict", "--model", str(tmp_path / "bound"), "--data", str(o1b), "--env", "o1b",
                            "--coarse-error-m", "1", "-o", str(preds)])
    assert r.exit_code == 0 and "error mean" in r.output, r.output


def test_twin_train_adapt_predict_agml(tmp_path, sod_root):
    sod, twins, meta, adapted, preds = (tmp_path / n for n in ("sod.h5", "twins.h5", "agml", "adapted", "p.csv"))
    assert runner.invoke(app, ["import", "sodindoorloc", str(sod_root), "--out", str(sod)]).exit_code == 0
    r = runner.invoke(app, ["twin", "--data", str(sod), "--env", "CETC331-F3", "--copies", "2", "--grid-spacing-m", "3",
                            "--root", str(sod_root), "-o", str(twins)])
    assert r.exit_code == 0 and "floor loss" in r.output, r.output
    r = runner.invoke(app, ["train", "--data", str(twins), "--method", "agml", "--iterations", "2", "-o", str(meta)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["adapt", "--model", str(meta), "--data", str(sod), "--env", "CETC331-F3", "--points",
                            "5", "--steps", "2", "--param", "alignment=moments", "-o", str(adapted)])
    assert r.exit_code == 0 and "unlabelled fingerprints" in r.output, r.output
    r = runner.invoke(app, ["predict", "--model", str(adapted), "--data", str(sod), "--env", "CETC331-F3",
                            "-o", str(preds)])
    assert r.exit_code == 0, r.output
    assert len(preds.read_text().splitlines()) == 1 + len(load_fingerprints(sod, "test")["test"]["CETC331-F3"])
    wrong = runner.invoke(app, ["adapt", "--model", str(meta), "--data", str(sod), "--env", "SYL", "-o",
                                str(adapted)])
    assert wrong.exit_code != 0 and "AP list differs" in flat(wrong.output)


def test_bench_help_names_every_experiment_of_every_bench():
    from xloc.bench.registry import specs
    from xloc.cli.eval import BENCH_EXPERIMENTS_HELP

    for spec in specs():
        if spec.experiment_names():
            listed = BENCH_EXPERIMENTS_HELP.split(f"; {spec.name} " if f"; {spec.name} " in BENCH_EXPERIMENTS_HELP
                                                  else f": {spec.name} ")[1].split(";")[0].split(" (")[0]
            assert listed.split(", ") == list(spec.experiment_names()), spec.name


def test_bench_p3_quick_writes_after_each_experiment(tmp_path):
    r = runner.invoke(app, ["bench", "--protocol", "p3", "--quick", "--experiment", "complexity", "--out",
                            str(tmp_path)])
    assert r.exit_code == 0, r.output
    import json

    doc = json.loads((tmp_path / "p3.json").read_text())
    assert doc["wall_s"] > 0 and {r["setting"] for r in doc["rows"]} == {"latency", "throughput"}
    bad = runner.invoke(app, ["bench", "--protocol", "p3", "--experiment", "weather", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown experiment" in flat(bad.output)


def test_corpus_then_pretraining_from_it_with_a_checkpoint(tmp_path):
    built = runner.invoke(app, ["corpus", "--out", str(tmp_path / "corpus"), "--channels", "40", "--chunk", "20"])
    assert built.exit_code == 0 and "geometric" in built.output, built.output
    args = ["pretrain", "--corpus", str(tmp_path / "corpus"), "--epochs", "1", "--param", "batch_size=8",
            "--param", "d_model=16", "--param", "depth=1", "--param", "heads=2", "--param", "patch=[4, 4]",
            "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "pre")]
    pre = runner.invoke(app, args)
    assert pre.exit_code == 0 and "pretrained LWLM on" in pre.output and " steps in " in pre.output, pre.output
    assert (tmp_path / "ckpt" / "weights.safetensors").is_file() and (tmp_path / "pre" / "meta.json").is_file()
    again = runner.invoke(app, args + ["--resume"])  # finished: resuming changes nothing
    assert again.exit_code == 0, again.output
    both = runner.invoke(app, ["pretrain", "--corpus", str(tmp_path / "corpus"), "--data", "x.h5", "--out", "y"])
    assert both.exit_code == 2 and "exactly one of --data" in flat(both.output)
    missing = runner.invoke(app, ["pretrain", "--corpus", str(tmp_path), "--out", str(tmp_path / "z")])
    assert missing.exit_code != 0 and "not a channel corpus" in flat(missing.output)


def test_pretrain_finetune_predict_lwlm(tmp_path):
    data = tmp_path / "city.h5"
    ok = runner.invoke(app, ["simulate", "--scenario", "city", "--users", "24", "--test-users", "10",
                             "--out", str(data)])
    assert ok.exit_code == 0, ok.output
    pre = runner.invoke(app, ["pretrain", "--data", str(data), "--env", "city-A-cond1", "--epochs", "1",
                              "--out", str(tmp_path / "pre")])
    assert pre.exit_code == 0 and "pretrained LWLM" in pre.output, pre.output
    for task in ("toa", "multi-bs"):
        ft = runner.invoke(app, ["finetune", "--model", str(tmp_path / "pre"), "--data", str(data), "--env",
                                 "city-A-cond1", "--task", task, "--label-fraction", "0.5", "--steps", "2",
                                 "--out", str(tmp_path / task)])
        assert ft.exit_code == 0 and "(pretrained) on 12 labelled users" in ft.output, ft.output
    toa = runner.invoke(app, ["predict", "--model", str(tmp_path / "toa"), "--data", str(data), "--env",
                              "city-A-cond1", "--out", str(tmp_path / "toa.csv")])
    assert toa.exit_code == 0 and "40 toa estimates" in toa.output, toa.output
    lines = (tmp_path / "toa.csv").read_text().splitlines()
    assert lines[0] == "user,bs,toa_ns,true_toa_ns" and len(lines) == 41
    pos = runner.invoke(app, ["predict", "--model", str(tmp_path / "multi-bs"), "--data", str(data), "--env",
                              "city-A-cond1", "--out", str(tmp_path / "p.csv")])
    assert pos.exit_code == 0 and "10 positions" in pos.output, pos.output
    scratch = runner.invoke(app, ["finetune", "--data", str(data), "--env", "city-A-cond1", "--task", "aoa",
                                  "--steps", "1", "--out", str(tmp_path / "scratch")])
    assert scratch.exit_code == 0 and "from scratch" in scratch.output
    bad = runner.invoke(app, ["finetune", "--data", str(data), "--env", "city-A-cond1", "--task", "depth",
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "task must be one of" in flat(bad.output)


def test_version():
    from xloc import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"xloc {__version__}"


def test_help_texts_keep_units_and_extras_in_brackets():
    assert "x column [m]" in flat(runner.invoke(app, ["import", "csv", "--help"]).output)
    assert "receiver SNR [dB]" in flat(runner.invoke(app, ["simulate", "--help"]).output)
    assert "(the raytrace extra)" in flat(runner.invoke(app, ["twins", "--help"]).output)
    assert "writes OUT/PROTOCOL.json" in flat(runner.invoke(app, ["evaluate", "--help"]).output)


def test_no_help_text_holds_what_markdown_would_eat():
    """Help is rendered as Markdown: `<name>` would vanish as an HTML tag (write NAME instead)."""
    import re

    import typer.main

    def texts(command, path):
        yield path, command.help or ""
        for param in command.params:
            yield f"{path} {param.name}", getattr(param, "help", None) or ""
        for name, sub in getattr(command, "commands", {}).items():
            yield from texts(sub, f"{path} {name}")

    eaten = [(where, text) for where, text in texts(typer.main.get_command(app), "xloc")
             if re.search(r"<[A-Za-z_][A-Za-z_ -]*>", text)]
    assert not eaten, eaten


def test_the_command_line_starts_without_torch_pandas_or_matplotlib() -> None:
    """`xloc --help`, `--version` and every `--help` start in well under a second: the heavy libraries load in
    the commands that use them, not when the command line is built."""
    import subprocess
    import sys

    code = ("import sys; from xloc.cli import app; "
            "print(','.join(m for m in ('torch', 'pandas', 'matplotlib', 'scipy.spatial', 'sklearn') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"building the CLI imported {loaded}"
