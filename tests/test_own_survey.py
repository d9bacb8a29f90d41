"""Bring your own survey, end to end through the command line: a long-format CSV (one row per scan and AP, blank
readings, ISO times) -> import with held-out points -> three methods evaluated -> predictions and data exported."""

import csv
import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from xloc.cli import app

runner = CliRunner()


def write_long_survey(path, seed=0):
    """Three floors of a 30 m x 20 m building, 8 APs per floor, 36 reference points x 2 scans, log-distance RSS
    with shadowing; APs a phone did not hear are left out of the scan, a few readings are blank."""
    rng = np.random.default_rng(seed)
    aps = rng.uniform([0, 0], [30, 20], (8, 2))
    grid = np.stack(np.meshgrid(np.linspace(1, 29, 6), np.linspace(1, 19, 6)), -1).reshape(-1, 2)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["scan", "bssid", "rssi", "x", "y", "floor", "time"])
        scan = 0
        for f, (p0, gamma) in enumerate([(-38, 2.8), (-41, 3.1), (-36, 2.6)]):
            for x, y in grid:
                for _ in range(2):
                    scan += 1
                    d = np.hypot(aps[:, 0] - x, aps[:, 1] - y) + 1.0
                    rss = p0 - 10 * gamma * np.log10(d) + rng.normal(0, 3, 8)
                    stamp = pd.Timestamp("2026-11-30T09:00:00Z") + pd.Timedelta(seconds=2 * scan)
                    for j in np.flatnonzero(rss > -88):
                        reading = "" if rng.random() < 0.02 else f"{rss[j]:.0f}"
                        w.writerow([f"s{scan}", f"aa:bb:{j:02x}", reading, f"{x:.2f}", f"{y:.2f}", f"floor{f}",
                                    stamp.isoformat()])


def test_own_long_survey_to_three_methods_and_exports(tmp_path):
    survey, site = tmp_path / "scans.csv", tmp_path / "site.h5"
    write_long_survey(survey)
    r = runner.invoke(app, ["import", "csv", str(survey), "-o", str(site), "--layout", "long", "--ap-column",
                            "bssid", "--rss-column", "rssi", "--env-column", "floor", "--time-column", "time",
                            "--holdout-points", "0.25"])
    assert r.exit_code == 0, r.output
    assert "splits: train, test" in r.output and "floor2" in r.output
    out = tmp_path / "results"
    r = runner.invoke(app, ["evaluate", "--data", str(site), "--method", "wknn", "--method", "knn", "--method",
                            "maml-dg", "--k", "10", "--seeds", "2", "--param", "maml-dg.iterations=30",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(next(out.glob("*.json")).read_text())
    errors = {}
    for row in doc["rows"]:
        if row.get("metric") == "mean_error_m" or "mean_m" in row:
            errors.setdefault(row["method"], []).append(row.get("mean_m", row.get("value")))
    assert {"wknn", "knn", "maml-dg"} <= set(errors), errors.keys()
    centroid = [v for k, v in errors.items() if "centroid" in k]
    assert centroid, f"the runner reports the trivial answer beside the methods: {errors.keys()}"
    assert np.mean(errors["wknn"]) < 0.8 * np.mean(centroid[0])  # learning beats the support centroid
    # predictions of one method on the held-out points of one floor, as CSV
    model, adapted, preds = tmp_path / "wknn", tmp_path / "wknn-f0", tmp_path / "preds.csv"
    assert runner.invoke(app, ["train", "--data", str(site), "--method", "wknn", "-o", str(model)]).exit_code == 0
    r = runner.invoke(app, ["adapt", "--model", str(model), "--data", str(site), "--env", "floor0", "--points", "10",
                            "-o", str(adapted)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["predict", "--model", str(adapted), "--data", str(site), "--env", "floor0", "-o",
                            str(preds)])
    assert r.exit_code == 0, r.output
    pred = pd.read_csv(preds)
    assert list(pred.columns) == ["x_m", "y_m", "true_x_m", "true_y_m", "error_m", "uncertainty_m"] and len(pred) == 18
    # the data itself, for other tools
    r = runner.invoke(app, ["export", str(site), "-o", str(tmp_path / "site.parquet"), "--split", "test"])
    assert r.exit_code == 0, r.output
    frame = pd.read_parquet(tmp_path / "site.parquet")
    assert set(frame["environment"]) == {"floor0", "floor1", "floor2"} and frame["time_s"].notna().all()
