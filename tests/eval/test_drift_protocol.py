"""The drift protocol: the same site's stale survey as sources, k fresh labelled points, the baselines always."""

import numpy as np
import pytest
from typer.testing import CliRunner

from xloc.cli import app
from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.data.storage import save_fingerprints
from xloc.errors import ConfigError, DataValidationError
from xloc.eval.protocols import DRIFT_BASELINES, drift_pairs, run_drift, run_leave_one_out, split_sessions
from xloc.sim.drift import DriftConfig, simulate_drift_site


@pytest.fixture(scope="module")
def site():
    return simulate_drift_site(DriftConfig(n_test_points=120), 0, ("none", "device"))


def _mean(rows, method, k, target="all"):
    return next(r["mean_m"] for r in rows if r["method"] == method and r["k"] == k and r["target"] == target)


def test_rows_baselines_and_k0(site):
    train, test = site
    pairs = drift_pairs(train)
    assert dict(pairs) == {"site0-t1-none": ("site0-t0",), "site0-t1-device": ("site0-t0",)}
    result = run_drift(train, test, pairs, ["map-correct"], ks=(0, 10), seeds=(0, 1), dataset="d", progress=False)
    methods = {(r["method"], r["k"]) for r in result.rows}
    for base in DRIFT_BASELINES:
        assert (base, 10) in methods
    assert ("wknn", 0) not in methods and ("wknn-stale", 0) in methods and ("map-correct", 0) in methods
    assert ("wknn", None) in methods  # all of the later collection's points
    # the phone changed: correcting the stale map beats every baseline; with no drift it stays as good as stale
    device = "site0-t1-device"
    best_baseline = min(_mean(result.rows, m, 10, device) for m in DRIFT_BASELINES)
    assert _mean(result.rows, "map-correct", 10, device) < 0.6 * best_baseline
    assert _mean(result.rows, "map-correct", 0, device) == _mean(result.rows, "wknn-stale", 0, device)
    assert _mean(result.rows, "map-correct", 10, "site0-t1-none") < 1.15 * _mean(result.rows, "wknn-stale", 10,
                                                                                 "site0-t1-none")


def test_one_collection_against_two_surveys_keeps_both_pairs_rows(site, tmp_path):
    # regression: --drift A:C --drift A+B:C wrote one set of rows for target C; one pair's results were gone
    from xloc.eval.results import read_results, write_results

    train, test = site
    pairs = drift_pairs(train, ["site0-t0:site0-t1-device", "site0-t0+site0-t1-none:site0-t1-device"])
    assert len(pairs) == 2
    result = run_drift(train, test, pairs, ["map-correct"], ks=(10,), seeds=(0,), dataset="d", progress=False)
    rows = [r for r in result.rows if r["method"] == "map-correct" and r["target"] != "all"]
    assert {(r["target"], r["survey"]) for r in rows} == {
        ("site0-t1-device (from site0-t0)", "site0-t0"),
        ("site0-t1-device (from site0-t0+site0-t1-none)", "site0-t0+site0-t1-none")}
    # two runs against different surveys, written to one file one after the other, both stay
    out = tmp_path / "drift.json"
    for spec in (["site0-t0:site0-t1-device"], ["site0-t0+site0-t1-none:site0-t1-device"]):
        one = run_drift(train, test, drift_pairs(train, spec), ["map-correct"], ks=(10,), seeds=(0,), dataset="d",
                        progress=False)
        write_results(out, one.rows, command="test", seeds=(0,), wall_s=0.0)
    surveys = {r["survey"] for r in read_results(out)["rows"] if r["method"] == "map-correct" and r["target"] != "all"}
    assert surveys == {"site0-t0", "site0-t0+site0-t1-none"}


def test_drift_methods_are_refused_outside_the_drift_protocol(site):
    train, test = site
    with pytest.raises(ConfigError, match="drift protocol"):
        run_leave_one_out("loeo", "d", lambda s: (train, test), ["map-correct"], [5], [0], progress=False)


def test_pairs_by_name_and_by_session(site):
    train, _ = site
    assert drift_pairs(train, ["site0-t0:site0-t1-device"]) == [("site0-t1-device", ("site0-t0",))]
    pooled = drift_pairs(train, ["site0-t0+site0-t1-none:site0-t1-device"])
    assert pooled == [("site0-t1-device", ("site0-t0", "site0-t1-none"))]
    with pytest.raises(ConfigError, match="must differ"):
        drift_pairs(train, ["site0-t0+site0-t1-device:site0-t1-device"])
    with pytest.raises(DataValidationError, match="no environment 'nope'"):
        drift_pairs(train, ["nope:site0-t0"])
    with pytest.raises(ConfigError, match="STALE:NEW"):
        drift_pairs(train, ["site0-t0"])
    t0, t1 = train["site0-t0"], train["site0-t1-device"]
    both = Fingerprints(EnvironmentMeta("floor1", "rss", t0.environment.ap_ids),
                        np.concatenate([t0.measurements, t1.measurements]),
                        np.concatenate([t0.positions_m, t1.positions_m]),
                        np.concatenate([t0.point_ids, t1.point_ids]),
                        session=["2026-01"] * len(t0) + ["2026-06"] * len(t1))
    split = split_sessions(FingerprintSet([both]))
    assert list(split) == ["floor1@2026-01", "floor1@2026-06"]
    assert drift_pairs(split) == [("floor1@2026-06", ("floor1@2026-01",))]


def test_cli_runs_the_drift_protocol_on_a_file_with_sessions(site, tmp_path):
    train, test = site
    t0, t1, t1_test = train["site0-t0"], train["site0-t1-device"], test["site0-t1-device"]

    def floor(parts, sessions):
        return Fingerprints(EnvironmentMeta("floor1", "rss", t0.environment.ap_ids),
                            np.concatenate([p.measurements for p in parts]),
                            np.concatenate([p.positions_m for p in parts]),
                            np.concatenate([p.point_ids + 1000 * i for i, p in enumerate(parts)]),
                            session=[s for p, s in zip(parts, sessions, strict=True) for _ in range(len(p))])

    path = tmp_path / "floor.h5"
    save_fingerprints(path, {"train": FingerprintSet([floor([t0, t1], ["s1", "s2"])]),
                             "test": FingerprintSet([floor([t1_test], ["s2"])])})
    out = tmp_path / "res"
    result = CliRunner().invoke(app, ["evaluate", "--data", str(path), "--sessions", "--method", "map-correct",
                                      "--k", "0", "--k", "10",
                                      "--seeds", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "drift.md").read_text()
    for method in ("map-correct", "wknn-stale", "wknn-pooled", "wknn"):
        assert f"| {method} |" in text
    bad = CliRunner().invoke(app, ["evaluate", "--protocol", "p2", "--drift", "auto"])
    assert bad.exit_code != 0 and "--data" in bad.output


def test_cli_drift_score_tells_drifted_from_fresh(site, tmp_path):
    train, test = site
    path = tmp_path / "site.h5"
    save_fingerprints(path, {"train": train, "test": test})
    result = CliRunner().invoke(app, ["drift-score", "--data", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "site0-t1" in line}
    assert "│ no " in rows["site0-t1-none"] and "│ yes " in rows["site0-t1-device"], result.output
