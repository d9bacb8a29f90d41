"""The regime runner changes what each regime names and nothing else: the target's survey (support), its queries,
and the sources; the sources stay as measured."""

import numpy as np

from xloc.bench.regimes import regime_rows, report
from xloc.data.fingerprints import FingerprintSet
from xloc.sim.drift import DriftConfig, simulate_drift_site

CONFIG = DriftConfig(grid_spacing_m=4.0, n_test_points=40)


def _data():
    return simulate_drift_site(CONFIG, 0, kinds=("none", "furniture"))


def _mean(rows, method, target="all"):
    return next(r["mean_m"] for r in rows if r["method"] == method and r["target"] == target and r["k"] == 5)


def test_survey_and_query_changes_reach_the_target_and_sources_stay_as_measured():
    data = _data()
    seen = []

    def sources(measured: FingerprintSet, target: str) -> FingerprintSet:
        seen.append(measured)
        return measured.without(target)

    def shifted(fp):  # a survey whose labels are 100 m off
        from xloc.data.fingerprints import Fingerprints
        return Fingerprints(fp.environment, fp.measurements, fp.positions_m + 100.0, fp.point_ids)

    common = {"methods": ["wknn"], "seeds": [0], "ks": (5,), "progress": False}
    plain = regime_rows("x", "plain", data, sources=sources, **common)
    assert all(s is data[0] for s in seen)  # the measured sources, not the changed ones
    moved = regime_rows("x", "moved survey", data, survey=shifted, **common)
    assert _mean(moved, "wknn") > _mean(plain, "wknn") + 90  # the support carries the survey change
    garbled = regime_rows("x", "noise queries", data,
                          queries=lambda fp: fp.with_measurements(
                              np.random.default_rng(0).uniform(-90, -30, fp.measurements.shape)), **common)
    assert _mean(garbled, "wknn") > _mean(plain, "wknn")  # the queries carry the query change
    assert {(r["experiment"], r["regime"]) for r in moved} == {("x", "moved survey")}


def test_report_puts_metaloc_against_tl():
    rows = [{"experiment": "device", "regime": "queries only", "k": 10, "method": m, "target": "all", "mean_m": v,
             "std_m": 0.1, "median_m": v, "p90_m": v} for m, v in (("maml", 6.0), ("maml-dg", 5.0), ("tl", 10.0))]
    text = report({"rows": rows}, None)
    assert "| device | queries only | 10 | maml-dg | 0.50 |" in text
