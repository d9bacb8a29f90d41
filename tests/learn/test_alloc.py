import numpy as np
import pytest
import torch

from xloc.errors import DataValidationError, NotFittedError
from xloc.eval.metrics import localization_errors_m
from xloc.learn.alloc import (
    Analogical,
    coarse_from_truth,
    fuse_with_coarse,
    iterative_search,
    track,
    uniform_coarse_sigma_m,
)
from xloc.learn.references import ReferenceDB
from xloc.sim.presets import simulate_scenario

TINY = {"d_model": 32, "depth": 2, "n_heads": 2, "d_ff": 64, "batch_size": 16, "n_neighbors": 16,
        "refs_range": (8, 16), "queries_range": (1, 8), "lr": 3e-3}


def linear_scenario(seed, n=400):
    """Features that are a scenario-specific linear map of the location: the same law, another frame."""
    rng = np.random.default_rng(seed)
    a, c = rng.normal(size=(8, 2)), rng.normal(size=8)
    x = rng.uniform(0, 20, (n, 2))
    return ReferenceDB((x / 10) @ a.T + c, x, f"s{seed}")


def test_neighbourhood_sampling_returns_the_true_nearest_pairs():
    db = linear_scenario(0)
    centres = np.array([[3.0, 4.0], [15.0, 1.0]])
    idx = db.neighbourhood(centres, 10)
    for c, row in zip(centres, idx, strict=True):
        d = np.linalg.norm(db.positions_m - c, axis=1)
        assert set(row.tolist()) == set(np.argsort(d)[:10].tolist())
    rnd = db.random(np.random.default_rng(0), 3, 10)
    assert rnd.shape == (3, 10) and all(len(set(r)) == 10 for r in rnd)


def fourier_frame(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1 / 2.0, (16, 2)), rng.uniform(0, 2 * np.pi, 16)


def fourier_features(x, seed):
    """A scenario's features of positions ``x`` [m]: random Fourier features of a 2 m length scale in a frame of its
    own -- nearby positions look alike, as with CSI, but the map differs from scenario to scenario."""
    w, b = fourier_frame(seed)
    return np.cos(x @ w.T + b) / np.sqrt(8)


def fourier_scenario(seed, n=400):
    x = np.random.default_rng([seed, 1]).uniform(0, 20, (n, 2))
    return ReferenceDB(fourier_features(x, seed), x, f"f{seed}")


@pytest.fixture(scope="module")
def fourier_model():
    return Analogical(steps=300, **TINY).fit_references([fourier_scenario(s) for s in range(8)])


def test_alloc_learns_an_analogical_family_beyond_its_references_mean_the_coarse_fix_and_an_mlp(fourier_model):
    """In an unseen scenario ALLoc must beat what it is handed (the coarse fix, the mean of the references it
    samples) -- the linear family above only ever taught it to echo that mean -- and a data-to-label MLP."""
    train = [fourier_scenario(s) for s in range(8)]
    refs = fourier_scenario(100)
    x_q = np.random.default_rng(7).uniform(2, 18, (200, 2))
    h_q = fourier_features(x_q, 100)
    coarse = coarse_from_truth(x_q, 1.0)
    model = fourier_model
    alloc_err = localization_errors_m(model.predict(h_q, refs, coarse), x_q).mean()
    ref_mean_err = localization_errors_m(refs.positions_m[refs.neighbourhood(coarse, 16)].mean(1), x_q).mean()
    coarse_err = localization_errors_m(coarse, x_q).mean()
    # an MLP trained on the pooled scenarios (data-to-label) cannot know the new frame
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    opt = torch.optim.Adam(mlp.parameters(), lr=3e-3)
    xs = torch.tensor(np.concatenate([d.features for d in train]))
    ys = torch.tensor(np.concatenate([d.positions_m for d in train]), dtype=torch.float32)
    for _ in range(500):
        loss = ((mlp(xs) - ys) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    mlp_err = localization_errors_m(mlp(torch.tensor(h_q, dtype=torch.float32)).detach().numpy(), x_q).mean()
    # measured 2026-12-02: ALLoc 0.70 m, coarse fix 0.79, references' mean 0.86
    assert alloc_err < 0.95 * coarse_err and alloc_err < 0.9 * ref_mean_err, (alloc_err, coarse_err, ref_mean_err)
    assert alloc_err < 0.25 * mlp_err, (alloc_err, mlp_err)


def test_csi_scenario_fit_predict_save_load(tmp_path):
    train = simulate_scenario("o1", 300, 0)
    test = simulate_scenario("o1", 20, 0, split="test")["o1"]
    model = Analogical(steps=5, **TINY).fit(train)
    coarse = coarse_from_truth(test.positions_m, 1.0)
    pred = model.predict(test.measurements, train["o1"], coarse)
    assert pred.shape == (20, 2) and np.isfinite(pred).all()
    bound = model.adapt(train["o1"])
    np.testing.assert_allclose(bound.predict(test.measurements, coarse), pred)
    assert bound.adapt_steps_ == 0
    model.save(tmp_path / "alloc")
    again = Analogical.load(tmp_path / "alloc")
    np.testing.assert_allclose(again.predict(test.measurements, train["o1"], coarse), pred, atol=1e-5)
    rnd = Analogical(steps=5, sampling="random", **TINY).fit(train)
    est = iterative_search(rnd, model, test.measurements, train["o1"])
    assert est.shape == (20, 2)
    icl = Analogical(steps=5, architecture="icl", **TINY).fit(train)
    assert icl.predict(test.measurements, train["o1"], coarse).shape == (20, 2)


def test_errors():
    with pytest.raises(NotFittedError):
        Analogical().predict(np.zeros((1, 4)), linear_scenario(0))
    with pytest.raises(DataValidationError, match="sampling"):
        Analogical(sampling="everything")
    model = Analogical(steps=2, **TINY).fit_references([linear_scenario(0)])
    with pytest.raises(DataValidationError, match="coarse"):
        model.predict(np.zeros((2, 8), dtype=np.float32), linear_scenario(1))
    with pytest.raises(DataValidationError, match="features"):
        model.predict(np.zeros((2, 5), dtype=np.float32), linear_scenario(1), np.zeros((2, 2)))


def test_fusion_weighs_two_estimates_by_inverse_variance():
    a, c = np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([[4.0, 0.0], [4.0, 0.0]])
    fused, sigma = fuse_with_coarse(a, np.array([1.0, 1.0]), c, np.array([1.0, 1e3]))
    np.testing.assert_allclose(fused[0], [2.0, 0.0])  # equal trust: the midpoint
    np.testing.assert_allclose(sigma[0], 1 / np.sqrt(2))
    np.testing.assert_allclose(fused[1], [0.0, 0.0], atol=1e-5)  # a coarse fix that says nothing moves nothing
    assert uniform_coarse_sigma_m(3.0) == pytest.approx(np.sqrt(3.0))


def _unseen_linear_users(n=200):
    rng = np.random.default_rng(100)  # the frame of linear_scenario(100), the references
    a, c = rng.normal(size=(8, 2)), rng.normal(size=8)
    x_q = np.random.default_rng(7).uniform(2, 18, (n, 2))
    return (x_q / 10) @ a.T + c, x_q


def test_uncertainty_covers_the_error_in_an_unseen_scenario_and_fusion_stays_at_or_below_the_coarse_fix(tmp_path):
    """An untrained Mateformer (0 steps) is ALLoc at its least helpful: its calibrated uncertainty must still
    cover its error for coarse fixes from 1 to 10 m off, and fused with the coarse fix it must not do worse."""
    model = Analogical(steps=0, **TINY).fit_references([linear_scenario(s) for s in range(8)])
    refs = linear_scenario(100)
    h_q, x_q = _unseen_linear_users()
    for l_m in (1.0, 4.0, 10.0):
        coarse = coarse_from_truth(x_q, l_m)
        pos, sigma = model.predict_with_spread(h_q, refs, coarse)
        np.testing.assert_allclose(pos, model.predict(h_q, refs, coarse))  # the same estimate, with its spread
        err = localization_errors_m(pos, x_q)
        assert np.mean(err < 2 * sigma) >= 0.7, (l_m, np.mean(err < 2 * sigma))
        fused, _ = model.predict_with_spread(h_q, refs, coarse, coarse_sigma_m=uniform_coarse_sigma_m(l_m))
        assert localization_errors_m(fused, x_q).mean() <= 1.01 * localization_errors_m(coarse, x_q).mean(), l_m
    model.save(tmp_path / "m")
    again = Analogical.load(tmp_path / "m")
    coarse = coarse_from_truth(x_q, 4.0)
    np.testing.assert_allclose(again.predict_with_spread(h_q, refs, coarse)[1],
                               model.predict_with_spread(h_q, refs, coarse)[1], rtol=1e-5)
    with pytest.raises(DataValidationError, match="coarse"):
        model.predict_with_spread(h_q, refs, None, coarse_sigma_m=1.0)
    with pytest.raises(DataValidationError, match="coarse_sigma_m"):
        model.predict_with_spread(h_q, refs, coarse, coarse_sigma_m=-1.0)
    with pytest.raises(DataValidationError, match="coarse_sigma_m"):
        Analogical(coarse_sigma_m=0.0)


def test_tracking_from_one_gnss_fix_follows_a_walk_without_drifting(fourier_model):
    """Fig. 6c/d: each sample's coarse fix is the previous estimate; only the first comes from GNSS."""
    refs = fourier_scenario(100)
    t = np.linspace(0, 1, 240)
    walk_m = np.stack([3 + 14 * t, 5 + 8 * np.sin(np.pi * t)], 1)  # 0.07 m between samples, about 20 m long
    first = walk_m[0] + np.array([0.8, -0.6])
    est = track(fourier_model, fourier_features(walk_m, 100), refs, first)
    err = localization_errors_m(est, walk_m)
    assert err.mean() < 1.0, err.mean()  # within the reference spacing all along
    thirds = np.array_split(err, 3)
    assert thirds[2].mean() < 1.5 * thirds[0].mean() + 0.2, [e.mean() for e in thirds]  # no drift
    untrained = Analogical(steps=0, sampling="random", **TINY).fit_references([fourier_scenario(0)])
    assert np.isfinite(track(fourier_model, fourier_features(walk_m[:5], 100), refs,
                             random_model=untrained)).all()
    with pytest.raises(DataValidationError, match="first_coarse_m"):
        track(fourier_model, fourier_features(walk_m, 100), refs)
    with pytest.raises(DataValidationError, match="neighbourhood"):
        track(untrained, fourier_features(walk_m, 100), refs, first)


def test_sparse_neighbourhoods_draw_from_the_pool_nearest_and_count_within_counts():
    db = linear_scenario(0)
    centres = np.array([[3.0, 4.0], [15.0, 1.0]])
    idx = db.sparse_neighbourhood(centres, 10, np.array([40, 10]), np.random.default_rng(0))
    for c, row, pool in zip(centres, idx, (40, 10), strict=True):
        d = np.linalg.norm(db.positions_m - c, axis=1)
        assert len(set(row.tolist())) == 10 and set(row.tolist()) <= set(np.argsort(d)[:pool].tolist())
    assert set(idx[1].tolist()) == set(db.neighbourhood(centres[1:], 10)[0].tolist())
    counts = db.count_within(centres, np.array([2.0, 5.0]))
    expect = [(np.linalg.norm(db.positions_m - c, axis=1) <= r).sum() for c, r in zip(centres, (2.0, 5.0), strict=True)]
    np.testing.assert_array_equal(counts, expect)


def test_coarse_to_fine_search_recovers_from_a_far_coarse_fix():
    """A model trained on neighbourhoods up to 4x wider, searching from 2.5 sigma of a coarse fix 6 m off (eq. (11)),
    lands far closer than its own single neighbourhood around that fix and than the fix itself (measured
    2026-12-06: 2.21 m against 3.87 and 4.73 m; with the search off it is the single neighbourhood exactly)."""
    model = Analogical(steps=300, neighbourhood_scale=(1.0, 4.0), search_sigmas=2.5, **TINY).fit_references(
        [fourier_scenario(s) for s in range(8)])
    refs = fourier_scenario(100)
    x_q = np.random.default_rng(7).uniform(2, 18, (200, 2))
    h_q = fourier_features(x_q, 100)
    coarse = coarse_from_truth(x_q, 6.0)
    single = localization_errors_m(model.predict(h_q, refs, coarse), x_q).mean()
    searched = localization_errors_m(model.predict(h_q, refs, coarse, search_sigma_m=uniform_coarse_sigma_m(6.0)),
                                     x_q).mean()
    coarse_err = localization_errors_m(coarse, x_q).mean()
    assert searched < 0.75 * single and searched < 0.6 * coarse_err, (searched, single, coarse_err)
    with pytest.raises(DataValidationError, match="search_sigma_m"):
        model.predict(h_q, refs, coarse, search_sigma_m=-1.0)
    with pytest.raises(DataValidationError, match="neighbourhood_scale"):
        Analogical(neighbourhood_scale=(0.5, 2.0))
    with pytest.raises(DataValidationError, match="search_sigmas"):
        Analogical(search_sigmas=-1.0)
