import numpy as np
import pytest

from xloc.baselines.model_based import aoa_beam_scan, bs_axes, multi_bs_position, single_bs_position, toa_first_peak
from xloc.errors import DataValidationError
from xloc.learn.channel_tasks import SPEED_OF_LIGHT_M_S

DF_HZ = 40e6 / 32
M, K = 32, 32


def single_path(toa_s: np.ndarray, aoa_rad: np.ndarray, elevation_rad: float = 0.0) -> np.ndarray:
    """Noiseless one-path ULA-OFDM channels (the simulator's model): (n, M, K)."""
    m = np.arange(M) - (M - 1) / 2
    f = 3.5e9 + (np.arange(K) - (K - 1) / 2) * DF_HZ
    u = np.cos(elevation_rad) * np.sin(aoa_rad)
    return (np.exp(2j * np.pi * 0.5 * m[None, :, None] * u[:, None, None])
            * np.exp(-2j * np.pi * f[None, None, :] * toa_s[:, None, None]))


def test_toa_and_aoa_recover_a_noiseless_single_path():
    rng = np.random.default_rng(0)
    toa = rng.uniform(20e-9, 600e-9, 50)
    aoa = rng.uniform(-1.2, 1.2, 50)
    h = single_path(toa, aoa)
    toa_hat = toa_first_peak(h, DF_HZ, oversample=16)
    assert np.abs(toa_hat - toa).max() <= 1 / (K * 16 * DF_HZ)  # within one oversampled tap (1.6 ns)
    aoa_hat = aoa_beam_scan(h, toa_hat, DF_HZ, grid=4001)
    assert np.degrees(np.abs(aoa_hat - aoa)).max() < 0.3


def test_elevation_is_undone_when_given():
    h = single_path(np.array([100e-9]), np.array([0.6]), elevation_rad=0.5)
    toa = toa_first_peak(h, DF_HZ)
    assert abs(aoa_beam_scan(h, toa, DF_HZ, elevation_rad=0.5)[0] - 0.6) < 0.01
    assert abs(aoa_beam_scan(h, toa, DF_HZ)[0] - 0.6) > 0.05  # ignoring it biases the azimuth


def test_first_path_not_the_strongest():
    h = 0.3 * single_path(np.array([100e-9]), np.array([0.2])) + single_path(np.array([300e-9]), np.array([-0.4]))
    assert abs(toa_first_peak(h, DF_HZ, oversample=16)[0] - 100e-9) < 2e-9


def test_positions_from_exact_ranges_and_bearings():
    rng = np.random.default_rng(1)
    bs = np.array([[0.0, -10.0, 6.0], [60.0, 10.0, 8.0], [120.0, -10.0, 7.0]])
    orient = np.array([0.0, np.pi + 0.3, -0.2])
    users = np.column_stack([rng.uniform(10, 110, 40), rng.uniform(-8, 8, 40)])
    toa, aoa = np.zeros((40, 3)), np.zeros((40, 3))
    for j, (b, o) in enumerate(zip(bs, orient, strict=True)):
        d = users - b[:2]
        toa[:, j] = np.sqrt((d**2).sum(1) + (2.0 - b[2]) ** 2) / SPEED_OF_LIGHT_M_S
        axis, broadside = bs_axes(o)
        aoa[:, j] = np.arctan2(d @ axis, d @ broadside)
    assert np.abs(single_bs_position(toa[:, 0], aoa[:, 0], bs[0], orient[0], 2.0) - users).max() < 1e-6
    noisy = toa.copy()
    noisy[:, 1] += 30.0 / SPEED_OF_LIGHT_M_S  # one BS with a 30 m NLoS range bias: the Huber loss limits it
    assert np.abs(multi_bs_position(toa, aoa, bs, orient, 2.0) - users).max() < 1e-6
    err = np.sqrt(((multi_bs_position(noisy, aoa, bs, orient, 2.0) - users) ** 2).sum(1))
    assert np.median(err) < 3.0


def test_bad_shapes_are_refused():
    with pytest.raises(DataValidationError, match="complex"):
        toa_first_peak(np.ones((3, 4, 8)), DF_HZ)
    with pytest.raises(DataValidationError, match="toa_s must be"):
        aoa_beam_scan(np.ones((3, 4, 8), complex), np.zeros(2), DF_HZ)
    with pytest.raises(DataValidationError, match=r"bs_positions_m \(B, 3\)"):
        multi_bs_position(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 3)), np.zeros(2), 2.0)
