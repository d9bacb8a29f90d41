import numpy as np
import pytest
from scipy.optimize import minimize

from xloc.errors import DataValidationError
from xloc.eval.bounds import SPEED_OF_LIGHT_M_S, position_crb_m, range_bearing_crb

M, K, SPACING = 8, 32, 0.5
OFFSETS_HZ = (np.arange(K) - K / 2) * 40e6 / K  # 40 MHz
TAU_S, U = 2.0e-7, 0.3


def _steering(tau_s, u):
    return (np.exp(2j * np.pi * SPACING * np.arange(M) * u)[:, None]
            * np.exp(-2j * np.pi * OFFSETS_HZ * tau_s)[None, :])


def _ml(y):
    """Maximum likelihood (tau, u) of one path with an unknown complex gain: max |s(tau, u)^H y|^2."""
    def cost(p):
        return -np.abs(np.vdot(_steering(p[0] * 1e-9, p[1]), y)) ** 2

    grid = [(t, u) for t in np.linspace(150, 250, 21) for u in np.linspace(0.1, 0.5, 21)]
    start = min(grid, key=cost)
    best = minimize(cost, start, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-12})
    return best.x[0] * 1e-9, best.x[1]


def test_the_maximum_likelihood_estimator_reaches_the_bound_and_never_beats_it():
    rng = np.random.default_rng(0)
    snr_db = 0.0  # per element and subcarrier; 256 of them
    clean = _steering(TAU_S, U) * np.exp(1j * 0.7)
    estimates = np.array([_ml(clean + (rng.normal(size=(M, K)) + 1j * rng.normal(size=(M, K))) / np.sqrt(2))
                          for _ in range(300)])
    sigma_r, sigma_theta = range_bearing_crb(M, OFFSETS_HZ, snr_db, spacing_wavelengths=SPACING,
                                             aoa_rad=np.arcsin(U))
    measured_r = SPEED_OF_LIGHT_M_S * estimates[:, 0].std()
    measured_theta = np.arcsin(np.clip(estimates[:, 1], -1, 1)).std()
    # efficient at this SNR: within the Monte Carlo spread (300 trials: the std is known to about 4 %)
    assert 0.88 < measured_r / sigma_r < 1.2 and 0.88 < measured_theta / sigma_theta < 1.2
    assert sigma_r < 0.3  # 40 MHz, 8 x 32 samples at 0 dB: decimetres of range


def test_position_bound_grows_with_range_and_falls_with_snr():
    near, far = position_crb_m(np.array([10.0, 100.0]), M, OFFSETS_HZ, 20.0)
    assert far > near > 0
    assert position_crb_m(50.0, M, OFFSETS_HZ, 30.0) < position_crb_m(50.0, M, OFFSETS_HZ, 10.0)
    assert range_bearing_crb(M, OFFSETS_HZ, 20.0, aoa_rad=np.radians(80))[1] > range_bearing_crb(
        M, OFFSETS_HZ, 20.0, aoa_rad=0.0)[1]  # end-fire is worse than broadside
    with pytest.raises(DataValidationError, match="2 antennas"):
        range_bearing_crb(1, OFFSETS_HZ, 20.0)


def test_linear_masked_patch_level_reads_structure_and_not_noise():
    from xloc.eval.bounds import masked_patch_lmmse
    from xloc.learn.lwlm import random_masks

    rng = np.random.default_rng(0)

    def paths(n):  # three paths per channel from a small set of angles and delays: structure to interpolate
        h = np.zeros((n, M, K), complex)
        for _ in range(3):
            tau = rng.choice([5e-8, 1e-7, 2e-7], n)
            u = rng.choice([-0.4, 0.1, 0.5], n)
            gain = rng.normal(size=n) + 1j * rng.normal(size=n)
            h += gain[:, None, None] * np.stack([_steering(t, v) for t, v in zip(tau, u, strict=True)])
        return h

    masks = random_masks(200, (M // 4, K // 4), 0.4, rng)
    structured = masked_patch_lmmse(paths(2000), paths(200), masks, (4, 4))
    white = masked_patch_lmmse(*(rng.normal(size=(n, M, K)) + 1j * rng.normal(size=(n, M, K)) for n in (2000, 200)),
                               masks, (4, 4))
    assert structured < 0.05 and 0.45 < white < 0.55  # predicting zero scores 0.5
    with pytest.raises(DataValidationError, match="masks must be"):
        masked_patch_lmmse(paths(10), paths(5), masks, (4, 4))
