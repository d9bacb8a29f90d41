import numpy as np
import pytest

from xloc.errors import DataValidationError
from xloc.eval.metrics import error_cdf, localization_errors_m, prob_within, summarize_errors


def test_errors_2d_and_3d():
    pred = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 0.0]])
    true = np.zeros((2, 3))
    assert localization_errors_m(pred, true).tolist() == [5.0, 0.0]
    assert localization_errors_m(pred, true, dims=3).tolist() == [13.0, 0.0]
    with pytest.raises(DataValidationError, match="both be"):
        localization_errors_m(pred[:, :2], true)
    with pytest.raises(DataValidationError, match="NaN"):
        localization_errors_m(np.full((1, 2), np.nan), np.zeros((1, 2)))


def test_summary_cdf_and_within():
    e = np.arange(1, 11, dtype=float)
    s = summarize_errors(e)
    assert (s.mean_m, s.median_m, s.max_m, s.n) == (5.5, 5.5, 10.0, 10)
    assert s.p90_m == pytest.approx(np.percentile(e, 90))
    x, p = error_cdf(e[::-1])
    assert x.tolist() == e.tolist() and p[-1] == 1.0 and p[0] == 0.1
    assert prob_within(e, 5.0) == 0.4
    with pytest.raises(DataValidationError):
        summarize_errors(np.array([]))
