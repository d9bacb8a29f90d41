import numpy as np
import pytest

from xloc.errors import DataValidationError
from xloc.sim.impairments import add_awgn, coarse_locations, gnss_fixes, multiplicative_disturbance


def test_awgn_hits_the_requested_snr():
    rng = np.random.default_rng(0)
    h = (rng.standard_normal((200, 2, 8, 16)) + 1j * rng.standard_normal((200, 2, 8, 16))).astype(np.complex64)
    h[:, 1] *= 100  # a stronger BS keeps the same SNR
    noisy = add_awgn(h, 10.0, rng)
    for b in range(2):
        snr = (np.abs(h[:, b]) ** 2).mean() / (np.abs(noisy[:, b] - h[:, b]) ** 2).mean()
        assert 10 * np.log10(snr) == pytest.approx(10.0, abs=0.2)


def test_multiplicative_disturbance_statistics():
    rng = np.random.default_rng(1)
    h = np.ones((100_000,), dtype=np.complex64)
    d = multiplicative_disturbance(h, 0.3, rng)
    assert d.mean() == pytest.approx(1.0, abs=0.01) and np.abs(d - 1).std() > 0
    assert (np.abs(d - 1) ** 2).mean() == pytest.approx(0.09, rel=0.03)
    real = multiplicative_disturbance(h, 0.3, rng, complex_noise=False)
    assert np.abs(real.imag).max() == 0 and real.real.std() == pytest.approx(0.3, rel=0.03)
    np.testing.assert_array_equal(multiplicative_disturbance(h[:10], 0.0, rng), h[:10])


def test_coarse_locations_are_uniform_within_l():
    rng = np.random.default_rng(2)
    pos = np.zeros((50_000, 3))
    coarse = coarse_locations(pos, 1.0, rng)
    assert np.abs(coarse[:, :2]).max() <= 1.0 and (coarse[:, 2] == 0).all()
    assert coarse[:, 0].std() == pytest.approx(1 / np.sqrt(3), rel=0.02)
    with pytest.raises(DataValidationError, match="error_m"):
        coarse_locations(pos, -1.0, rng)


def test_gnss_fixes_have_the_stated_accuracy_a_shared_bias_nearby_and_more_error_where_the_sky_is_blocked():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 2000, (4000, 2))
    blocked = np.arange(4000) % 2 == 1
    fixes, sigma_m = gnss_fixes(pos, blocked, rng)
    err = fixes - pos
    np.testing.assert_allclose(sigma_m, np.where(blocked, 8.0, 2.0))
    assert err[~blocked].std() == pytest.approx(2.0, rel=0.1) and err[blocked].std() == pytest.approx(8.0, rel=0.1)
    r95 = np.quantile(np.linalg.norm(err[~blocked], axis=1), 0.95)
    assert 4.0 < r95 < 6.0  # GPS.gov's 4.9 m under open sky
    # users 1 m apart share most of their error, users 200 m apart do not
    pairs = [gnss_fixes(np.array([[0.0, 0.0], [d, 0.0]]), np.zeros(2, bool), np.random.default_rng(s),
                        white_fraction=0.0)[0] - np.array([[0.0, 0.0], [d, 0.0]]) for d in (1.0, 200.0)
             for s in range(300)]
    close = np.array([p[:, 0] for p in pairs[:300]])
    far = np.array([p[:, 0] for p in pairs[300:]])
    assert np.corrcoef(close.T)[0, 1] > 0.95 and abs(np.corrcoef(far.T)[0, 1]) < 0.2
    with pytest.raises(DataValidationError, match="blocked"):
        gnss_fixes(pos, blocked[:3], rng)
    with pytest.raises(DataValidationError, match="correlation_m"):
        gnss_fixes(pos, blocked, rng, correlation_m=0.0)
