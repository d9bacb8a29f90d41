import numpy as np
import pytest

from xloc.errors import DataValidationError
from xloc.features.knn_fingerprint import feature_dim, knn_rp_features


def test_features_pick_nearest_rps_and_invert():
    db = np.array([[-40.0, -80.0], [-60.0, -60.0], [-80.0, -40.0], [-50.0, -70.0]])
    pos = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [5.0, 0.0]])
    q = np.array([[-41.0, -79.0]])
    f = knn_rp_features(q, db, pos, 2, -100.0)
    assert f.features.shape == (1, feature_dim(2))
    d = f.features[0, :2] * 10 * np.sqrt(2)
    np.testing.assert_allclose(d, [np.sqrt(2), np.sqrt(9**2 + 9**2)], rtol=1e-5)  # RP 0 then RP 3
    np.testing.assert_allclose(f.centroid_m, [[2.5, 0.0]])
    truth = np.array([[1.0, 0.5]])
    np.testing.assert_allclose(f.positions(f.targets(truth)), truth, atol=1e-6)


def test_translation_invariance():
    rng = np.random.default_rng(0)
    db = rng.uniform(-90, -30, (20, 6))
    pos = rng.uniform(0, 30, (20, 2))
    q = rng.uniform(-90, -30, (5, 6))
    a = knn_rp_features(q, db, pos, 5, -100.0)
    b = knn_rp_features(q, db, pos + [800.0, 900.0], 5, -100.0)
    np.testing.assert_allclose(a.features, b.features, atol=1e-5)


def test_exclusion_and_padding():
    db = np.array([[-40.0], [-50.0], [-60.0]])
    pos = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    f = knn_rp_features(db, db, pos, 5, -100.0, db_ids=np.array([7, 8, 9]), exclude_ids=np.array([7, 8, 9]))
    # sample at RP 7 sees RPs 8 and 9 only; the last one is repeated to fill K = 5
    coords = f.features[0, 5:].reshape(5, 2) * f.scale_m[0] + f.centroid_m[0]
    np.testing.assert_allclose(coords[:, 0], [1.0, 2.0, 2.0, 2.0, 2.0], atol=1e-5)
    with pytest.raises(DataValidationError, match="no reference point left"):
        knn_rp_features(db[:1], db[:1], pos[:1], 2, -100.0, db_ids=np.array([7]), exclude_ids=np.array([7]))
    with pytest.raises(DataValidationError, match="do not match"):
        knn_rp_features(np.zeros((2, 3)), db, pos, 2, -100.0)
