import numpy as np
import pytest

from xloc.baselines import KNNLocalizer
from xloc.errors import DataValidationError, NotFittedError


def brute_force(ref, pos, queries, k, weighted, floor):
    ref = np.where(np.isnan(ref), floor, ref)
    out = []
    for q in np.where(np.isnan(queries), floor, queries):
        d = np.sqrt(((ref - q) ** 2).sum(1))
        idx = np.argsort(d, kind="stable")[:k]
        w = 1 / (d[idx] + 1e-6) if weighted else np.ones(k)
        out.append((w[:, None] * pos[idx]).sum(0) / w.sum())
    return np.array(out)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_matches_brute_force(weighted, k):
    rng = np.random.default_rng(k)
    ref = rng.uniform(-90, -30, (50, 6))
    ref[rng.random(ref.shape) < 0.2] = np.nan
    pos = rng.uniform(0, 20, (50, 2))
    queries = rng.uniform(-90, -30, (30, 6))
    queries[0, :3] = np.nan
    model = KNNLocalizer(k, weighted=weighted, floor_dbm=-100.0).fit_arrays(ref, pos)
    np.testing.assert_allclose(model.predict(queries), brute_force(ref, pos, queries, k, weighted, -100.0))


def test_adapt_uses_point_means_and_does_not_touch_original(rss_env):
    base = KNNLocalizer(k=2)
    adapted = base.adapt(rss_env)
    assert adapted is not base and not hasattr(base, "radio_map_dbm_")
    assert adapted.radio_map_dbm_.shape == (6, 4)
    assert KNNLocalizer(k=2, average_points=False).adapt(rss_env).radio_map_dbm_.shape == (12, 4)
    # a query equal to a point's mean fingerprint with k=1 returns that point
    exact = KNNLocalizer(k=1).adapt(rss_env)
    rss, pos, _ = rss_env.point_means(-105.0)
    np.testing.assert_allclose(exact.predict(rss), pos)


def test_k_larger_than_support_uses_all(rss_env):
    model = KNNLocalizer(k=50).adapt(rss_env)
    _, pos, _ = rss_env.point_means(-105.0)
    pred = model.predict(rss_env.measurements[:2])
    np.testing.assert_allclose(pred, np.tile(pos.mean(0), (2, 1)))


def test_errors():
    with pytest.raises(NotFittedError, match="not fitted"):
        KNNLocalizer().predict(np.zeros((1, 3)))
    model = KNNLocalizer().fit_arrays(np.full((3, 3), -50.0), np.zeros((3, 2)))
    with pytest.raises(DataValidationError, match=r"shape \(n, 3\)"):
        model.predict(np.zeros((2, 4)))
    with pytest.raises(DataValidationError, match="k must be an integer >= 1"):
        KNNLocalizer(k=0).fit()


def test_wknn_near_ties_are_resolved_like_an_exact_float64_search():
    """The float32 search re-ranks near-ties in float64: six near-copies of each fingerprint put the k-th / (k+1)-th
    boundary inside a cluster whose distances differ far below float32's resolution."""
    rng = np.random.default_rng(3)
    base = rng.uniform(-100, -40, (50, 30))
    ref = np.concatenate([base + rng.normal(0, 1e-3, base.shape) for _ in range(6)])
    pos = rng.uniform(0, 40, (len(ref), 2))
    q = base[:20] + rng.normal(0, 1e-3, (20, 30))
    knn = KNNLocalizer(5, weighted=True).fit_arrays(ref, pos)
    d = np.sqrt(((ref[None] - q[:, None]) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :5]
    w = 1.0 / (np.take_along_axis(d, idx, 1) + 1e-6)
    expected = (w[..., None] * pos[idx]).sum(1) / w.sum(1, keepdims=True)
    np.testing.assert_allclose(knn.predict(q), expected, atol=1e-9)
