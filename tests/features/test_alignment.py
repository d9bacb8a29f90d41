import numpy as np
import pytest

from xloc.errors import DataValidationError, NotFittedError
from xloc.features.alignment import Alignment


def data(seed=0):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(2000, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]]) + [1, -2, 3]
    syn = rng.normal(size=(3000, 3)) @ np.array([[0.5, 0.0, 0.2], [0.1, 2.0, 0.0], [0.0, 0.4, 1.0]]) + [-1, 0, 5]
    return real, syn


def test_moment_matching_maps_mean_and_std_exactly():
    real, syn = data()
    out = Alignment("moments").fit(real, syn).transform(real)
    np.testing.assert_allclose(out.mean(0), syn.mean(0), atol=1e-4)
    np.testing.assert_allclose(out.std(0), syn.std(0), rtol=1e-4)


def test_coral_maps_mean_and_covariance():
    real, syn = data()
    out = Alignment("coral", eps=1e-9).fit(real, syn).transform(real)
    np.testing.assert_allclose(out.mean(0), syn.mean(0), atol=1e-4)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(syn, rowvar=False), atol=1e-4)


def test_none_and_errors():
    real, syn = data()
    np.testing.assert_allclose(Alignment("none").fit(real, syn).transform(real), real.astype(np.float32))
    with pytest.raises(DataValidationError, match="alignment must be"):
        Alignment("magic")
    with pytest.raises(NotFittedError):
        Alignment("coral").transform(real)
    with pytest.raises(DataValidationError, match="real has 3 features, synthetic 2"):
        Alignment().fit(real, syn[:, :2])
    with pytest.raises(DataValidationError, match="finite"):
        Alignment().fit(np.full((4, 3), np.nan), syn)


def test_moments_leave_a_feature_constant_in_the_real_data_unscaled():
    real, syn = data()
    real[:, 1] = 0.0  # an AP the real survey never heard
    align = Alignment("moments").fit(real, syn)
    probe = real[:5].copy()
    probe[:, 1] = 0.2  # heard later: shifted like the rest, not multiplied by ~1e9
    out = align.transform(probe)
    assert np.all(np.abs(out[:, 1] - (0.2 + syn[:, 1].mean())) < 1e-5)


@pytest.mark.parametrize("method", ["moments", "coral"])
def test_one_fingerprint_maps_as_it_does_among_many(method):
    # fitting needs covariances; mapping does not: a single query (the service's case) gets the same answer
    real, syn = data()
    align = Alignment(method).fit(real, syn)
    np.testing.assert_allclose(align.transform(real[:1]), align.transform(real)[:1], rtol=1e-6)
    with pytest.raises(DataValidationError, match="n >= 2"):
        Alignment(method).fit(real[:1], syn)
