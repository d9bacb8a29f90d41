"""Radio-map correction (xloc.learn.drift): a pure per-AP offset or gain is undone exactly; gone and new APs;
the residual spread fades away from the fresh points."""

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.learn.drift import fit_map_correction, interpolate_map, smooth_residuals
from xloc.methods import create


def _site(rng: np.random.Generator, n_aps: int = 6) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.meshgrid(np.arange(0.0, 20.0, 2.0), np.arange(0.0, 12.0, 2.0))
    pos = np.stack([xs.ravel(), ys.ravel()], 1)
    aps = rng.uniform(0, 20, (n_aps, 2))
    d = np.linalg.norm(pos[:, None] - aps[None], axis=-1)
    return -40 - 30 * np.log10(np.maximum(d, 1.0)) + rng.normal(0, 3, d.shape), pos


def _fp(name: str, rss: np.ndarray, pos: np.ndarray, ap_ids: tuple[str, ...] | None = None) -> Fingerprints:
    ids = ap_ids or tuple(f"AP{i}" for i in range(rss.shape[1]))
    return Fingerprints(EnvironmentMeta(name, "rss", ids), rss, pos, np.arange(len(pos)))


def test_a_pure_per_ap_offset_is_undone_exactly() -> None:
    rng = np.random.default_rng(0)
    stale, pos = _site(rng)
    offset = rng.uniform(-10, 10, stale.shape[1])
    fresh_all = stale + offset
    idx = rng.choice(len(pos), 10, replace=False)
    corr = fit_map_correction(interpolate_map(stale, pos, pos[idx]), fresh_all[idx])
    np.testing.assert_allclose(corr.gain, 1.0)
    np.testing.assert_allclose(corr.offset, offset, atol=1e-9)
    np.testing.assert_allclose(corr.apply(stale), fresh_all, atol=1e-9)
    # end to end: map-correct on the stale survey + 10 fresh points localizes like WKNN on the true new map
    queries = fresh_all + rng.normal(0, 1, fresh_all.shape)
    model = create("map-correct", 0, residual_length_m=0.0).fit(FingerprintSet([_fp("t0", stale, pos)]))
    adapted = model.adapt(_fp("t1", fresh_all[idx], pos[idx]))
    oracle = create("wknn").adapt(_fp("t1", fresh_all, pos))
    np.testing.assert_allclose(adapted.predict(queries), oracle.predict(queries), atol=1e-4)  # float32 maps
    stale_only = create("wknn-stale").fit(FingerprintSet([_fp("t0", stale, pos)])).predict(queries)
    assert np.linalg.norm(stale_only - pos, axis=1).mean() > np.linalg.norm(adapted.predict(queries) - pos,
                                                                           axis=1).mean()


def test_a_device_gain_and_offset_is_undone_exactly() -> None:
    rng = np.random.default_rng(1)
    stale, pos = _site(rng)
    idx = rng.choice(len(pos), 12, replace=False)
    fresh = 0.8 * stale[idx] - 7.0
    corr = fit_map_correction(interpolate_map(stale, pos, pos[idx]), fresh)
    np.testing.assert_allclose(corr.gain, 0.8, atol=1e-9)
    np.testing.assert_allclose(corr.offset, -7.0, atol=1e-8)


def test_gone_and_new_aps_and_columns_matched_by_id() -> None:
    rng = np.random.default_rng(2)
    stale, pos = _site(rng, 5)
    stale[:, 4] = np.nan  # AP4 was not installed at t0
    fresh = stale.copy()
    fresh[:, 0] = np.nan  # AP0 was removed
    fresh[:, 4] = -60.0
    idx = np.arange(0, len(pos), 6)
    corr = fit_map_correction(interpolate_map(stale, pos, pos[idx]), fresh[idx], gone_level=-90.0)
    assert corr.gone.tolist() == [True, False, False, False, False]
    assert corr.new.tolist() == [False, False, False, False, True]
    # the later collection lists its APs in another order: map-correct matches them by id
    order = [3, 1, 4, 0, 2]
    ids = tuple(f"AP{i}" for i in range(5))
    model = create("map-correct", 0).fit(FingerprintSet([_fp("t0", stale, pos, ids)]))
    shuffled = model.adapt(_fp("t1", fresh[idx][:, order], pos[idx], tuple(ids[i] for i in order)))
    straight = model.adapt(_fp("t1", fresh[idx], pos[idx], ids))
    np.testing.assert_allclose(shuffled.predict(fresh[:, order]), straight.predict(fresh), atol=1e-9)
    assert shuffled.used_columns_.tolist() == [True, True, False, False, True]  # AP4 new, AP0 gone


def test_residual_spread_fades_away_from_the_fresh_points() -> None:
    fresh_pos = np.array([[0.0, 0.0]])
    spread = smooth_residuals(np.array([[4.0]]), fresh_pos, np.array([[0.0, 0.0], [2.0, 0.0], [30.0, 0.0]]), 3.0)
    assert spread[0, 0] == 2.0 and 0 < spread[1, 0] < 2.0 and abs(spread[2, 0]) < 1e-6


def test_the_correction_is_kept_only_where_it_locates_the_held_out_fresh_points_better() -> None:
    """A per-AP offset is what the correction models: it is kept at every site. Per-point changes with no per-AP
    pattern (the CSI-image rooms' days) are what it cannot model: spreading them misleads, and map-correct falls
    back to a simpler map -- the stale survey pooled with the fresh points, or the stale survey alone -- and then
    localizes exactly like wknn-pooled / wknn-stale."""
    kept, fallen_back = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        stale, pos = _site(rng)
        survey = FingerprintSet([_fp("t0", stale, pos)])
        idx = rng.choice(len(pos), 10, replace=False)
        shifted = stale + rng.uniform(-10, 10, stale.shape[1])
        stale_first = create("map-correct", 0, prefer="stale").fit(survey)
        kept.append(stale_first.adapt(_fp("t1", shifted[idx], pos[idx])).chosen_map_)
        scrambled = stale + rng.normal(0, 8, stale.shape)
        model = create("map-correct", 0, prefer="stale").fit(survey).adapt(_fp("t1", scrambled[idx], pos[idx]))
        fallen_back.append(model.chosen_map_)
        if model.chosen_map_ != "corrected":
            simpler = create(f"wknn-{model.chosen_map_}", 0).fit(survey).adapt(_fp("t1", scrambled[idx], pos[idx]))
            np.testing.assert_allclose(model.predict(scrambled), simpler.predict(scrambled))
    assert kept == ["corrected"] * 8
    assert len(fallen_back) - fallen_back.count("corrected") >= 6
    unchecked = create("map-correct", 0, select=False).fit(survey).adapt(_fp("t1", scrambled[idx], pos[idx]))
    assert unchecked.chosen_map_ == "corrected"


def test_fresh_points_that_refute_every_correction_leave_the_stale_map() -> None:
    """The site did not change: ten fresh points read what the survey says at their spots (2 dB of noise). No
    correction and no pooling locates them clearly better, so map-correct starting from the survey (prefer="stale")
    keeps it -- and then answers exactly like wknn-stale; tl-corrected does the same instead of fine-tuning on an
    unsupported map. (The default, prefer="corrected", keeps the corrected map here: it is the survey plus the
    fresh points, and nothing shows it worse.)"""
    chosen = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        stale, pos = _site(rng)
        survey = FingerprintSet([_fp("t0", stale, pos)])
        idx = rng.choice(len(pos), 10, replace=False)
        fresh = _fp("t1", stale[idx] + rng.normal(0, 2, (10, stale.shape[1])), pos[idx])
        model = create("map-correct", 0, prefer="stale").fit(survey).adapt(fresh)
        chosen.append(model.choice_)
        assert set(model.selection_errors_m_) == {"stale", "pooled", "corrected"}
        if model.choice_ == "stale":
            test = stale + rng.normal(0, 2, stale.shape)
            baseline = create("wknn-stale", 0).fit(survey).adapt(fresh)
            np.testing.assert_array_equal(model.predict(test), baseline.predict(test))
    assert chosen.count("stale") >= 7, chosen
    rng = np.random.default_rng(0)
    stale, pos = _site(rng)
    idx = rng.choice(len(pos), 10, replace=False)
    survey = FingerprintSet([_fp("t0", stale, pos)])
    fresh = _fp("t1", stale[idx] + rng.normal(0, 2, (10, stale.shape[1])), pos[idx])
    tl = create("tl-corrected", 0, iterations=20, prefer="stale").fit(survey).adapt(fresh)
    assert tl.choice_ == "stale map (wknn)"
    np.testing.assert_allclose(tl.predict(stale), create("wknn-stale", 0).fit(survey).adapt(fresh).predict(stale),
                               atol=1e-4)
