import numpy as np
import pytest

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.sim.twin import PathLossTwin, fit_pathloss_twin, simulate_twins

TRUTH = PathLossTwin((-35.0, -42.0), (2.3, 2.1), (0.15, 0.05), 18.0, 0.0)


def building(name, floor, seed):
    rng = np.random.default_rng(seed)
    aps = rng.uniform(0, 40, (10, 2))
    meta = EnvironmentMeta(name=name, kind="rss", ap_ids=tuple(f"M{i}" for i in range(10)), ap_positions_m=aps,
                           ap_frequency_hz=np.array([2.412e9, 5.745e9] * 5), attrs={"floor": floor})
    return meta


FLOORS = {f"b{f}": {f"M{i}": 1 + i % 3 for i in range(10)} for f in (1, 2, 3)}


def test_fit_recovers_the_parameters_of_noise_free_data():
    envs = []
    for f in (1, 2, 3):
        meta = building(f"b{f}", f, f)
        pos = np.random.default_rng(10 + f).uniform(0, 40, (200, 2))
        ap_floor = np.array([FLOORS[meta.name][a] for a in meta.ap_ids], dtype=float)
        rss = TRUTH.rss_dbm(meta, ap_floor, pos, float(f))
        envs.append(Fingerprints(meta, rss, pos, np.arange(200)))
    fit = fit_pathloss_twin(FingerprintSet(envs), FLOORS)
    np.testing.assert_allclose(fit.p0_dbm, TRUTH.p0_dbm, atol=1e-3)
    np.testing.assert_allclose(fit.exponent, TRUTH.exponent, atol=1e-4)
    np.testing.assert_allclose(fit.excess_db_per_m, TRUTH.excess_db_per_m, atol=1e-5)
    assert fit.floor_loss_db == pytest.approx(18.0, abs=1e-3) and fit.residual_db < 1e-3


def test_twins_are_perturbed_copies_on_a_grid():
    meta = building("b1", 1, 1)
    noisy = PathLossTwin(TRUTH.p0_dbm, TRUTH.exponent, TRUTH.excess_db_per_m, TRUTH.floor_loss_db, 4.0)
    twins = simulate_twins(meta, FLOORS, noisy, (0.0, 30.0, 0.0, 15.0), copies=3, spacing_m=3.0, seed=0)
    assert list(twins) == ["b1-twin0", "b1-twin1", "b1-twin2"]
    a, b = twins["b1-twin0"], twins["b1-twin1"]
    assert len(a) == 11 * 6 and a.environment.ap_ids == meta.ap_ids
    assert not np.allclose(np.nan_to_num(a.measurements), np.nan_to_num(b.measurements))
    assert np.nanmax(a.measurements) < 0 and (np.isnan(a.measurements) | (a.measurements >= -100)).all()
    with pytest.raises(DataValidationError, match="no floor known"):
        simulate_twins(meta, {}, TRUTH, (0.0, 30.0, 0.0, 15.0))
