import numpy as np
import pytest

from xloc.errors import DataValidationError
from xloc.features.mmd import median_bandwidth, mmd2_unbiased


def test_zero_for_identical_samples_and_grows_with_shift():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3))
    assert mmd2_unbiased(x, x) < 1e-2
    same = mmd2_unbiased(x, rng.standard_normal((200, 3)))
    shifts = [mmd2_unbiased(x, rng.standard_normal((200, 3)) + s, bandwidth=1.0) for s in (0.5, 1.0, 2.0)]
    assert abs(same) < 0.02 and shifts[0] < shifts[1] < shifts[2]


def test_unbiased_estimator_by_brute_force():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((5, 2)) + 1
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / 2.0)  # noqa: E731 (sigma = 1)
    xx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / 30
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(a, b) for a in x for b in y) / 30
    assert mmd2_unbiased(x, y, bandwidth=1.0) == pytest.approx(xx + yy - 2 * xy)
    z = np.concatenate([x, y])
    d = [np.linalg.norm(z[i] - z[j]) for i in range(11) for j in range(11) if i != j]
    assert median_bandwidth(x, y) == pytest.approx(np.median(d))
    with pytest.raises(DataValidationError, match="at least 2"):
        mmd2_unbiased(x[:1], y)
