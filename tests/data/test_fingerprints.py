import numpy as np
import pytest

from xloc.data import EnvironmentMeta, Fingerprints, FingerprintSet
from xloc.errors import DataValidationError

META = EnvironmentMeta("lab", "rss", ("a", "b"))


def test_views(rss_env):
    assert len(rss_env) == 12 and rss_env.n_points == 6 and rss_env.dims == 2
    sub = rss_env.select_points([0, 3])
    assert sorted(set(sub.point_ids.tolist())) == [0, 3] and len(sub) == 4
    drawn = rss_env.sample_points(3, np.random.default_rng(0))
    assert drawn.n_points == 3 and len(drawn) == 6  # all samples of a drawn point
    with pytest.raises(DataValidationError, match="cannot draw k=7"):
        rss_env.sample_points(7, np.random.default_rng(0))


def test_first_samples_keeps_the_first_of_every_point_in_order(rss_env):
    one = rss_env.first_samples(1)
    assert one.n_points == rss_env.n_points and len(one) == rss_env.n_points
    first = [int(np.flatnonzero(rss_env.point_ids == p)[0]) for p in np.unique(rss_env.point_ids)]
    np.testing.assert_array_equal(one.measurements, rss_env.measurements[sorted(first)])
    assert len(rss_env.first_samples(5)) == len(rss_env)  # points with fewer samples keep all of them
    with pytest.raises(DataValidationError, match="samples per point must be >= 1"):
        rss_env.first_samples(0)


def test_with_measurements_keeps_positions_and_checks_the_new_values(rss_env):
    moved = rss_env.with_measurements(rss_env.measurements - 3.0)
    np.testing.assert_array_equal(moved.positions_m, rss_env.positions_m)
    np.testing.assert_allclose(moved.measurements, rss_env.measurements - 3.0)
    with pytest.raises(DataValidationError, match="convert a sentinel"):
        rss_env.with_measurements(np.full_like(rss_env.measurements, 100.0))


def test_point_means_counts_not_heard_as_floor(rss_env):
    rss, pos, ids = rss_env.point_means(floor_dbm=-100.0)
    assert rss.shape == (6, 4) and pos.shape == (6, 2) and ids.tolist() == list(range(6))
    expected = (-100.0 + rss_env.measurements[1, 0]) / 2  # sample 0 is NaN at AP 0
    assert rss[0, 0] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    "meas, pos, pid, match",
    [
        (np.zeros((0, 2)), np.zeros((0, 2)), [], "no samples"),
        (np.full((2, 2), -50.0), np.zeros((3, 2)), [0, 1], "lengths must match"),
        (np.full((2, 2), -50.0), [[0, 0], [np.nan, 1]], [0, 1], "must be finite"),
        (np.full((2, 2), 100.0), np.zeros((2, 2)), [0, 1], "convert a sentinel"),
        (np.full((2, 2), -np.inf), np.zeros((2, 2)), [0, 1], "infinite"),
        (np.full((2, 3), -50.0), np.zeros((2, 2)), [0, 1], "3 APs/BSs but the environment lists 2"),
        (np.full((2, 2), -50.0), np.zeros((2, 4)), [0, 1], r"shape \(n, 2\|3\)"),
        (np.full((2, 2), -50.0), np.zeros((2, 2)), [0.5, 1], "integers"),
        (np.full((2,), -50.0), np.zeros((2, 2)), [0, 1], "n_samples, n_ap"),
    ],
)
def test_invalid_samples_are_rejected(meas, pos, pid, match):
    with pytest.raises(DataValidationError, match=match):
        Fingerprints(META, np.asarray(meas), np.asarray(pos), np.asarray(pid))


def test_csi_must_be_complex():
    meta = EnvironmentMeta("cell", "csi", ("bs0",), frequency_hz=3.5e9)
    ok = Fingerprints(meta, np.ones((2, 1, 4, 8), dtype=np.complex64), np.zeros((2, 3)), [0, 1])
    assert ok.dims == 3
    with pytest.raises(DataValidationError, match="CSI must be complex"):
        Fingerprints(meta, np.ones((2, 1, 4, 8)), np.zeros((2, 2)), [0, 1])


def test_set_rejects_duplicates_and_supports_leave_one_out(rss_set, rss_env):
    assert list(rss_set) == ["a", "b"] and list(rss_set.without("a")) == ["b"]
    assert rss_set["b"].environment.n_aps == 3  # different AP sets per environment
    with pytest.raises(DataValidationError, match="appears twice"):
        FingerprintSet([rss_env, rss_env])
    with pytest.raises(DataValidationError, match="at least one"):
        FingerprintSet([])
    with pytest.raises(KeyError, match="no environment .zzz."):
        rss_set["zzz"]
