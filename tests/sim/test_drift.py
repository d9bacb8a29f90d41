"""The drift preset: one site, surveyed at t0 and collected again at t1 after a named drift."""

import numpy as np
import pytest

from xloc.errors import DataValidationError
from xloc.sim.drift import DriftConfig, simulate_drift_site, through_device

CONFIG = DriftConfig(n_test_points=50, measurement_noise_db=0.0, sensitivity_dbm=-200.0)


def test_same_site_and_each_drift_changes_what_it_names() -> None:
    train, test = simulate_drift_site(CONFIG, 3, ("none", "device", "aps"))
    assert list(train) == ["site3-t0", "site3-t1-none", "site3-t1-device", "site3-t1-aps"]
    t0, none, device, aps = (train[n].measurements.astype(np.float64) for n in train)
    for fp in train.values():
        np.testing.assert_array_equal(fp.environment.ap_positions_m, train["site3-t0"].environment.ap_positions_m)
        np.testing.assert_array_equal(fp.positions_m, train["site3-t0"].positions_m)
    new = CONFIG.n_aps  # the AP installed between t0 and t1
    assert np.isnan(t0[:, new]).all() and np.isnan(none[:, new]).all() and not np.isnan(aps[:, new]).any()
    np.testing.assert_allclose(none[:, :new], t0[:, :new], atol=1e-3)  # no noise, no drift: the same map
    np.testing.assert_allclose(device[:, :new], CONFIG.device_gain * t0[:, :new] + CONFIG.device_offset_db, atol=1e-3)
    removed = np.isnan(aps[:, :new]).all(0)
    assert removed.sum() == 1
    shift = (aps - t0)[:, :new][:, ~removed]
    assert np.allclose(shift, shift[0], atol=1e-3)  # re-powered APs: a constant per AP
    assert 1 <= (np.abs(shift[0]) >= 3).sum() < new
    again, _ = simulate_drift_site(CONFIG, 3, ("none", "device", "aps"))
    np.testing.assert_array_equal(again["site3-t1-aps"].measurements, train["site3-t1-aps"].measurements)
    assert len(test["site3-t1-aps"]) == 50


def test_shadowing_is_spatially_correlated() -> None:
    train, _ = simulate_drift_site(DriftConfig(measurement_noise_db=0.0, grid_spacing_m=1.0), 0, ("none",))
    fp = train["site0-t0"]
    x = fp.measurements[:, 0].astype(np.float64)
    pos = fp.positions_m
    near = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    pairs = np.argwhere(np.isclose(near, 1.0))
    # i.i.d. 6 dB shadowing would leave neighbours 1 m apart correlated far less
    assert np.corrcoef(x[pairs[:, 0]], x[pairs[:, 1]])[0, 1] > 0.9


def test_unknown_drift_is_refused() -> None:
    with pytest.raises(DataValidationError, match="drift kinds"):
        simulate_drift_site(CONFIG, 0, ("weather",))


def test_another_device_scales_shifts_and_loses_weak_aps() -> None:
    rss = np.array([[-40.0, -90.0, -95.0, np.nan]])
    out = through_device(rss, 0.9, -12.0, sensitivity_dbm=-95.0)
    np.testing.assert_allclose(out[0, :2], [-48.0, -93.0])  # 0.9 r - 12, both still heard
    assert np.isnan(out[0, 2]) and np.isnan(out[0, 3])  # -97.5 dBm is below the sensitivity; NaN stays NaN
