import h5py
import numpy as np
import pytest

from xloc.data import FingerprintSet, list_splits, load_fingerprints, save_fingerprints
from xloc.data.storage import FORMAT_VERSION
from xloc.errors import DataValidationError, FileFormatError


def assert_same(a, b):
    assert a.environment == b.environment
    np.testing.assert_array_equal(a.measurements, b.measurements)
    np.testing.assert_array_equal(a.positions_m, b.positions_m)
    np.testing.assert_array_equal(a.point_ids, b.point_ids)
    for col in ("device", "session", "time_s"):
        x, y = getattr(a, col), getattr(b, col)
        assert (x is None) == (y is None)
        if x is not None:
            assert list(x) == list(y)


def test_round_trip_keeps_everything(tmp_path, rss_set, rss_env):
    path = save_fingerprints(tmp_path / "d.h5", {"train": rss_set, "test": FingerprintSet([rss_env])})
    assert sorted(list_splits(path)) == ["test", "train"]
    loaded = load_fingerprints(path)
    for name in rss_set:
        assert_same(rss_set[name], loaded["train"][name])
    assert_same(rss_env, loaded["test"]["lab"])
    with h5py.File(path) as f:
        assert f["splits/train/a/measurements"].attrs["units"] == "dBm"
        assert f["splits/train/a/positions_m"].attrs["units"] == "m"
    assert list(load_fingerprints(path, "test")) == ["test"]


def test_interrupted_save_leaves_no_file(tmp_path, rss_set, monkeypatch):
    target = tmp_path / "d.h5"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(KeyboardInterrupt):
        save_fingerprints(target, {"train": rss_set})
    assert list(tmp_path.iterdir()) == []


def test_save_keeps_old_file_until_new_one_is_complete(tmp_path, rss_set, rss_env, monkeypatch):
    target = save_fingerprints(tmp_path / "d.h5", {"train": FingerprintSet([rss_env])})
    monkeypatch.setattr(h5py.Group, "create_dataset", lambda *a, **k: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        save_fingerprints(target, {"train": rss_set})
    assert list(load_fingerprints(target)["train"]) == ["lab"]


def test_not_ours_truncated_and_newer_files_are_rejected(tmp_path, rss_set):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(FileFormatError, match="not an xloc fingerprint file"):
        load_fingerprints(other)
    good = save_fingerprints(tmp_path / "good.h5", {"train": rss_set})
    truncated = tmp_path / "trunc.h5"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(FileFormatError, match="trunc.h5"):
        load_fingerprints(truncated)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match="not a readable HDF5"):
        load_fingerprints(text)
    with h5py.File(good, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(FileFormatError, match="newer than this xloc reads"):
        load_fingerprints(good)
    with pytest.raises(FileFormatError, match="no such file"):
        load_fingerprints(tmp_path / "missing.h5")


def test_unknown_split_and_conflicting_metadata(tmp_path, rss_set):
    path = save_fingerprints(tmp_path / "d.h5", {"train": rss_set})
    with pytest.raises(FileFormatError, match="no split 'test'"):
        load_fingerprints(path, "test")
    from tests.conftest import make_rss_env

    with pytest.raises(DataValidationError, match="different metadata"):
        save_fingerprints(tmp_path / "x.h5", {"train": rss_set, "test": FingerprintSet([make_rss_env("a", seed=9)])})
