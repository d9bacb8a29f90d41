import numpy as np
import pytest

from xloc.data import load_sodindoorloc
from xloc.data.sodindoorloc import ENVIRONMENTS, environment_ap_floors
from xloc.errors import DataValidationError


def test_training_counts(sod_root):
    train = load_sodindoorloc(sod_root, "train")
    assert tuple(train) == ENVIRONMENTS
    cetc = [train[f"CETC331-F{i}"] for i in (1, 2, 3)]
    assert sum(len(f) for f in cetc) == 955 and [len(f) for f in cetc] == [285, 340, 330]
    assert all(f.environment.n_aps == 52 for f in cetc)
    assert (len(train["HCXY"]), train["HCXY"].n_points, train["HCXY"].environment.n_aps) == (11370, 379, 56)
    assert (len(train["SYL"]), train["SYL"].n_points, train["SYL"].environment.n_aps) == (8880, 296, 46)
    assert sorted(set(train["HCXY"].device)) == [f"phone{i}" for i in range(4, 10)]


def test_testing_counts_and_sentinel(sod_root):
    test = load_sodindoorloc(sod_root, "test")
    assert sum(test[f"CETC331-F{i}"].n_points for i in (1, 2, 3)) == 84
    assert (len(test["HCXY"]), test["HCXY"].n_points) == (860, 86)
    assert (len(test["SYL"]), test["SYL"].n_points) == (1020, 102)
    rss = test["SYL"].measurements
    assert np.isnan(rss).any() and np.nanmax(rss) <= 0 and np.nanmin(rss) >= -104


def test_ap_positions_from_access_point_table(sod_root):
    meta = load_sodindoorloc(sod_root, "train", buildings=("CETC331",))["CETC331-F1"].environment
    i = meta.ap_ids.index("MAC1")
    assert meta.ap_positions_m[i] == pytest.approx([48.152, 18.698], abs=1e-3)
    assert meta.ap_frequency_hz[i] == pytest.approx(2.412e9)


def test_ap_positions_and_floors_belong_to_the_environments_building(sod_root):
    # MAC column names restart in every building: each building's APs must lie in its own survey area
    train = load_sodindoorloc(sod_root, "train")
    for fp in train.values():
        aps = fp.environment.ap_positions_m
        assert np.isfinite(aps).all()
        assert np.abs(aps - fp.positions_m.mean(0)).max() < 150.0, fp.name
    floors = environment_ap_floors(train, sod_root)
    assert set(floors["CETC331-F1"].values()) == {1, 2, 3} and set(floors["HCXY"].values()) == {4}
    assert len(floors["SYL"]) == 46


def test_bad_arguments(tmp_path, sod_root):
    with pytest.raises(DataValidationError, match="split must be"):
        load_sodindoorloc(sod_root, "validation")
    with pytest.raises(DataValidationError, match="is not a folder"):
        load_sodindoorloc(tmp_path / "nope")
    with pytest.raises(DataValidationError, match="missing SODIndoorLoc sheet"):
        load_sodindoorloc(tmp_path)
    with pytest.raises(DataValidationError, match="unknown SODIndoorLoc building"):
        load_sodindoorloc(sod_root, buildings=("XYZ",))
