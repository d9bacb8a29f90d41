import json

import numpy as np
import pytest

from xloc.data import FingerprintSet
from xloc.eval.protocols import run_leave_one_out, run_p1, run_p2
from xloc.eval.report import save_protocol_result
from xloc.sim.pathloss import PathLossConfig, simulate_pathloss_environment


def tiny_data(seed):
    refs, tests = [], []
    for i, fam in enumerate("abc"):
        ref, test = simulate_pathloss_environment(
            PathLossConfig(family=fam, n_aps=8, n_test_points=60, grid_spacing_m=4.0), seed=seed * 10 + i, name=fam
        )
        refs.append(ref)
        tests.append(test)
    return FingerprintSet(refs), FingerprintSet(tests)


def test_leave_one_out_rows_and_learning_curve(tmp_path):
    res = run_leave_one_out("p2", "tiny", tiny_data, ["knn", "wknn"], [3, 20], seeds=[0, 1], progress=False)
    keys = {(r["method"], r["target"], r["k"]) for r in res.rows}
    assert ("wknn", "all", None) in keys and ("knn", "a", 3) in keys and ("knn", "all", 20) in keys
    by = {(r["method"], r["target"], r["k"]): r for r in res.rows}
    # more reference points help (a method that learns something from its support)
    assert by[("wknn", "all", 20)]["mean_m"] < by[("wknn", "all", 3)]["mean_m"]
    assert by[("knn", "a", 3)]["n_seeds"] == 2 and by[("knn", "a", 3)]["std_m"] >= 0
    assert res.errors_m[("knn", 3)].size == 2 * 3 * 60
    paths = save_protocol_result(res, tmp_path, command="test", wall_s=1.0)
    doc = json.loads(paths["json"].read_text())
    assert {"command", "seeds", "versions", "machine", "wall_s", "rows"} <= set(doc)
    assert paths["cdf"].stat().st_size > 1000 and "| method |" in paths["markdown"].read_text()
    # a second run replaces rows with the same key instead of duplicating them
    save_protocol_result(res, tmp_path, command="again", wall_s=1.0)
    assert len(json.loads(paths["json"].read_text())["rows"]) == len(res.rows)


class Spy:
    """A stand-in method that records what the protocol gives it: sources in ``fit``, supports in ``adapt``."""

    fitted: dict = {}
    supports: dict = {}

    def __init__(self, name, seed):
        self.name = name

    def fit(self, sources):
        Spy.fitted.setdefault(self.name, []).append(sorted(sources))
        return self

    def adapt(self, support, *, steps=None, unlabelled=None):
        Spy.supports.setdefault((support.name, len(support)), set()).add(tuple(np.sort(support.point_ids)))
        return self

    def predict(self, x, *, references=None, coarse_positions_m=None):
        return np.zeros((len(x), 2))


@pytest.fixture
def spy():
    Spy.fitted, Spy.supports = {}, {}
    return Spy


def test_same_support_for_every_method(spy):
    run_leave_one_out("t", "tiny", tiny_data, ["knn", "mlp"], [4], seeds=[0], all_data_reference=False,
                      progress=False, factory=spy)
    seen = spy.supports
    assert all(len(v) == 1 for v in seen.values())


def test_site_twin_methods_fit_on_the_targets_twins_and_the_others_on_the_other_environments(spy):
    def twins_of(train, target):
        return FingerprintSet([train[target].subset(np.arange(5))])  # stands in for simulated twins

    run_leave_one_out("t", "tiny", tiny_data, ["agml", "maml"], [4], seeds=[0], all_data_reference=False,
                      progress=False, factory=spy, twins_of=twins_of, targets=["a"])
    assert spy.fitted == {"agml": [["a"]], "maml": [["b", "c"]]}


def test_p1_runs_on_real_data(sod_root):
    res = run_p1(["wknn"], root=str(sod_root), ks=[50], seeds=[0], targets=["CETC331-F3"], progress=False)
    row = next(r for r in res.rows if r["target"] == "CETC331-F3" and r["k"] == 50 and r["method"] == "wknn")
    centroid = next(r for r in res.rows if r["target"] == "CETC331-F3" and r["k"] == 50
                    and r["method"] == "support-centroid")
    assert row["mean_m"] < 0.8 * centroid["mean_m"]  # WKNN must beat the trivial answer of the setting clearly


def test_p2_default_families():
    res = run_p2(["knn"], rs=[10], seeds=[0], progress=False)
    targets = {r["target"] for r in res.rows} - {"all"}
    assert len(targets) == 5
    assert all(0.0 <= r["p_within_5m"] <= 1.0 for r in res.rows)


def test_unknown_target_is_rejected():
    from xloc.errors import DataValidationError

    with pytest.raises(DataValidationError, match="unknown target"):
        run_leave_one_out("t", "tiny", tiny_data, ["knn"], [3], seeds=[0], targets=["zz"], progress=False)


def test_unlabelled_and_trivial_rows(tmp_path):
    res = run_leave_one_out("t", "tiny", tiny_data, ["agnn"], [6], seeds=[0], targets=["a"], progress=False,
                            params={"agnn": {"adapt_steps": 5, "hidden": 16, "latent": 8}})
    methods = {r["method"] for r in res.rows}
    assert methods == {"agnn", "support-centroid", "wknn"}
    from xloc.errors import ConfigError
    from xloc.sim.presets import simulate_scenario

    cells = simulate_scenario("mo1", 8, 0)
    with pytest.raises(ConfigError, match="needs a coarse position"):
        run_leave_one_out("t", "cells", lambda seed: (cells, cells), ["alloc"], [3], seeds=[0], progress=False)


def test_kind_mismatch_and_unknown_params_are_refused():
    from xloc.errors import ConfigError

    with pytest.raises(ConfigError, match="accepts csi data"):
        run_leave_one_out("t", "tiny", tiny_data, ["alloc-random"], [3], seeds=[0], progress=False)
    with pytest.raises(ConfigError, match="not among the methods"):
        run_leave_one_out("t", "tiny", tiny_data, ["knn"], [3], seeds=[0], progress=False, params={"tl": {}})


def test_run_on_file_with_a_test_split(tmp_path):
    from xloc.data.storage import save_fingerprints
    from xloc.errors import DataValidationError
    from xloc.eval.protocols import run_on_file

    train, test = tiny_data(0)
    path = tmp_path / "survey.h5"
    save_fingerprints(path, {"train": train, "test": test})
    res = run_on_file(str(path), ["wknn"], [5, None], [0, 1], progress=False)
    assert {(r["dataset"], r["protocol"]) for r in res.rows} == {("survey", "loeo")}
    assert {r["k"] for r in res.rows} == {5, None}
    save_fingerprints(path, {"train": train})
    with pytest.raises(DataValidationError, match="no split 'test'"):
        run_on_file(str(path), ["wknn"], [5], [0], progress=False)
