import math

import numpy as np
import pytest

from xloc.errors import DataValidationError
from xloc.sim.pathloss import (
    FAMILIES,
    PathLossConfig,
    los_probability,
    path_loss_db,
    simulate_pathloss_environment,
    simulate_rss_dbm,
)

F = 2.44e9
FG = 2.44
FSPL1 = 20 * math.log10(4 * math.pi * F / 299_792_458.0)


@pytest.mark.parametrize("d", [1.0, 7.3, 25.0])
def test_family_formulas(d):
    lg = math.log10(d)
    # (a) MetaLoc eq. (1), n = 2.7
    assert path_loss_db("a", d, F, True, path_loss_exponent=2.7) == pytest.approx(27 * lg + FSPL1)
    # (b) dual-slope ABG, below the 147 m breakpoint
    assert path_loss_db("b", d, F, False) == pytest.approx(29 * lg + 22.17 + 22.4 * math.log10(FG))
    # (c) TR 38.901 InH-Office
    los = 32.4 + 17.3 * lg + 20 * math.log10(FG)
    nlos = max(los, 38.3 * lg + 17.30 + 24.9 * math.log10(FG))
    assert path_loss_db("c", d, F, True) == pytest.approx(los)
    assert path_loss_db("c", d, F, False) == pytest.approx(nlos)
    # (d) CIF: n (1 + b (f - f0) / f0)
    n = 3.19 * (1 + 0.06 * (FG - 24.2) / 24.2)
    assert path_loss_db("d", d, F, False) == pytest.approx(FSPL1 + 10 * n * lg)
    assert path_loss_db("d", d, F, True) == pytest.approx(FSPL1 + 17.3 * lg)
    # (e) dual-slope CIF below the 110 m breakpoint
    n1 = 2.43 * (1 - 0.01 * (FG - 39.5) / 39.5)
    assert path_loss_db("e", d, F, False) == pytest.approx(FSPL1 + 10 * n1 * lg)


def test_dual_slopes_change_exponent_at_breakpoint():
    d = np.array([200.0, 400.0])
    pl = path_loss_db("b", d, F, False)
    assert pl[1] - pl[0] == pytest.approx(114.7 * math.log10(2))  # 10 * a2 * log10(2)
    n2 = 8.36 * (1 + 0.39 * (FG - 39.5) / 39.5)
    pl = path_loss_db("e", np.array([120.0, 240.0]), F, False)
    assert pl[1] - pl[0] == pytest.approx(10 * n2 * math.log10(2))


def test_los_probability_mixed_office():
    p = los_probability("c", np.array([1.0, 3.0, 10.0]))
    assert p == pytest.approx([1.0, math.exp(-1.8 / 4.7), 0.32 * math.exp(-3.5 / 32.6)])
    assert los_probability("b", np.array([1.0])) == pytest.approx([0.0])


@pytest.mark.parametrize("family", FAMILIES)
def test_simulated_rss_follows_formula_and_shadowing(family):
    cfg = PathLossConfig(family=family)
    rng = np.random.default_rng(0)
    aps = np.array([[0.0, 0.0]])
    points = rng.uniform(0, 40, (20000, 2))
    rss, los, mean = simulate_rss_dbm(cfg, aps, points, rng)
    resid = mean - rss
    sigma_los, sigma_nlos = cfg.sigma_db
    if los.any():
        assert resid[los].std() == pytest.approx(sigma_los, rel=0.05)
    if (~los).any():
        assert resid[~los].std() == pytest.approx(sigma_nlos, rel=0.05)
    assert abs(resid.mean()) < 0.2
    d2d = np.sqrt((points**2).sum(1))
    assert los.mean() == pytest.approx(los_probability(family, d2d).mean(), abs=0.02)


def test_environment_is_seeded_and_validated():
    cfg = PathLossConfig(family="e", n_aps=5, n_test_points=50, samples_per_point=2, measurement_noise_db=1.0)
    ref1, test1 = simulate_pathloss_environment(cfg, seed=3)
    ref2, _ = simulate_pathloss_environment(cfg, seed=3)
    ref3, _ = simulate_pathloss_environment(cfg, seed=4)
    np.testing.assert_array_equal(ref1.measurements, ref2.measurements)
    assert not np.allclose(ref1.measurements, ref3.measurements)
    assert ref1.n_points == 121 and len(ref1) == 242 and len(test1) == 100
    assert ref1.environment.attrs["family"] == "mall_mixed_dual_slope" and ref1.environment.attrs["seed"] == 3
    quiet = PathLossConfig(family="a", sensitivity_dbm=-40.0, n_test_points=10)
    ref, _ = simulate_pathloss_environment(quiet, seed=0)
    assert np.isnan(ref.measurements).any()
    with pytest.raises(DataValidationError, match="unknown path-loss family"):
        PathLossConfig(family="z")
    with pytest.raises(DataValidationError, match="n_aps"):
        PathLossConfig(n_aps=0)
    with pytest.raises(DataValidationError, match=">= 1 m"):
        path_loss_db("a", np.array([0.5]), F, True)
