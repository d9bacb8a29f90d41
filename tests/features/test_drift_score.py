"""The drift score: calibrated by permutations, it stays quiet without drift and names what changed."""

import numpy as np
import pytest

from xloc.errors import DataValidationError
from xloc.features.drift_score import drift_score, roc_auc


def _scans(rng, n, shift=0.0):
    centre = np.array([-50.0, -60.0, -70.0, -80.0])
    return centre + shift + rng.normal(0, 4, (n, 4))


def test_quiet_without_drift_loud_with_a_shift():
    rng = np.random.default_rng(0)
    survey = _scans(rng, 200)
    same = drift_score(survey, _scans(rng, 40), seed=1)
    moved = drift_score(survey, _scans(rng, 40, shift=-6.0), seed=1)
    assert same.p_value > 0.05 and abs(same.z) < 3 and not same.drifted()
    assert moved.p_value < 0.01 and moved.z > 5 and moved.drifted()
    assert moved.mean_shift_db == pytest.approx(6.0, abs=1.5)


def test_gone_and_new_aps():
    rng = np.random.default_rng(1)
    survey, recent = _scans(rng, 100), _scans(rng, 30)
    survey[:, 3] = np.nan  # AP3 installed after the survey
    recent[:, 0] = np.nan  # AP0 switched off since
    score = drift_score(survey, recent)
    assert score.gone == (0,) and score.new == (3,)


def test_roc_auc_and_bad_input():
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert roc_auc(np.array([0.0, 1.0]), np.array([0.5, 0.5])) == 0.5
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5
    with pytest.raises(DataValidationError, match="same columns"):
        drift_score(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(DataValidationError, match="at least 2 scans"):
        drift_score(np.zeros((5, 3)), np.zeros((1, 3)))
