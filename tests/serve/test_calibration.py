"""A served version reports the uncertainty its method gives: ALLoc's calibrated per-axis std, fused with the coarse
fix for ``alloc-fused``."""

import numpy as np
import pytest

from xloc.errors import DataValidationError
from xloc.learn.alloc import coarse_from_truth
from xloc.methods import create
from xloc.serve.calibration import load_version
from xloc.sim.presets import simulate_scenario

TINY = {"steps": 5, "d_model": 16, "depth": 1, "n_heads": 2, "d_ff": 32, "batch_size": 8, "n_neighbors": 16,
        "refs_range": (8, 16), "queries_range": (1, 8)}


@pytest.mark.parametrize("method", ["alloc", "alloc-fused"])
def test_an_alloc_version_locates_with_an_uncertainty_and_needs_the_coarse_fix(tmp_path, method):
    train = simulate_scenario("o1", 200, 0)
    test = simulate_scenario("o1", 12, 0, split="test")["o1"]
    adapted = create(method, 0, **TINY).fit(train).adapt(train["o1"])
    adapted.save(tmp_path / "v1")
    served = load_version(tmp_path / "v1")
    coarse = coarse_from_truth(test.positions_m, 4.0)
    positions, sigma = served.locate(test.measurements, coarse)
    assert positions.shape == (12, 2) and sigma is not None and sigma.shape == (12,) and (sigma > 0).all()
    np.testing.assert_allclose(positions, adapted.predict(test.measurements, coarse_positions_m=coarse)[:, :2])
    if method == "alloc-fused":  # the fused spread is below both of its parts
        assert (sigma < 2.31).all()
    with pytest.raises(DataValidationError, match="coarse"):
        served.locate(test.measurements, None)
