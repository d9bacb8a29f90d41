"""Graph propagation as registered methods: unlabelled fingerprints turn a few labelled points into a radio map."""

from __future__ import annotations

import numpy as np
import pytest

from xloc.errors import ConfigError
from xloc.eval.metrics import localization_errors_m
from xloc.methods import create, load_model
from xloc.sim.pathloss import PathLossConfig, simulate_pathloss_environment


@pytest.fixture(scope="module")
def floor():
    cfg = PathLossConfig(room_size_m=(20.0, 20.0), grid_spacing_m=1.0, n_test_points=200)
    ref, test = simulate_pathloss_environment(cfg, seed=3, name="floor")
    return ref, test


def test_graph_lp_beats_wknn_on_the_same_support_and_the_support_centroid(floor):
    ref, test = floor
    support = ref.sample_points(6, np.random.default_rng(0))
    unlabelled = ref.subset(np.flatnonzero(~np.isin(ref.point_ids, support.point_ids)))
    lp = create("graph-lp").fit(None).adapt(support, unlabelled=unlabelled)
    wknn = create("wknn").fit(None).adapt(support)
    err_lp = localization_errors_m(lp.predict(test.measurements), test.positions_m).mean()
    err_wknn = localization_errors_m(wknn.predict(test.measurements), test.positions_m).mean()
    centroid = localization_errors_m(np.repeat(support.positions_m.mean(0, keepdims=True), len(test), 0),
                                     test.positions_m).mean()
    assert err_lp < 0.8 * err_wknn and err_lp < 0.6 * centroid, (err_lp, err_wknn, centroid)
    # without unlabelled fingerprints the map is the support's points: WKNN on them
    alone = create("graph-lp").fit(None).adapt(support)
    np.testing.assert_allclose(alone.predict(test.measurements), wknn.predict(test.measurements), atol=1e-6)


def test_maml_dg_graph_chooses_its_pull_on_the_support_and_round_trips(floor, tmp_path):
    ref, test = floor
    sources = {}
    from xloc.data.fingerprints import FingerprintSet
    for i in range(2):
        cfg = PathLossConfig(room_size_m=(20.0, 20.0), grid_spacing_m=1.0, n_test_points=10)
        sources[f"s{i}"] = simulate_pathloss_environment(cfg, seed=10 + i, name=f"s{i}")[0]
    model = create("maml-dg-graph", seed=0, prior_iterations=2, prior_weights=[0.0, 1.0]).fit(
        FingerprintSet(sources.values()))
    support = ref.sample_points(4, np.random.default_rng(1))
    unlabelled = ref.subset(np.flatnonzero(~np.isin(ref.point_ids, support.point_ids)))
    adapted = model.adapt(support, unlabelled=unlabelled)
    assert adapted.prior_weight_ in (0.0, 1.0)
    assert set(adapted.prior_weight_scores_) == {"0.0", "1.0"}
    path = adapted.save(tmp_path / "m")
    np.testing.assert_allclose(load_model(path).predict(test.measurements), adapted.predict(test.measurements))


def test_a_prior_that_is_not_a_method_is_named():
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        create("maml-dg-graph", prior="nope")


@pytest.fixture(scope="module")
def pathloss_sources():
    from xloc.data.fingerprints import FingerprintSet
    cfg = PathLossConfig(room_size_m=(20.0, 20.0), grid_spacing_m=1.0, n_test_points=10)
    return FingerprintSet(simulate_pathloss_environment(cfg, seed=20 + i, name=f"s{i}")[0] for i in range(2))


def test_graph_lp_tuned_chooses_its_graph_on_the_sources_alone(floor, pathloss_sources, tmp_path):
    ref, test = floor
    model = create("graph-lp-tuned", seed=0, settings=[(1, 10), (2, 10)], tune_ks=[5, 20], tune_draws=2) \
        .fit(pathloss_sources)
    # the harmonic energy goes flat with few labels (module docstring): the sources say so at k = 5
    assert model.setting_scores_[5][(2, 10)] < model.setting_scores_[5][(1, 10)], model.setting_scores_
    support = ref.sample_points(6, np.random.default_rng(0))
    unlabelled = ref.subset(np.flatnonzero(~np.isin(ref.point_ids, support.point_ids)))
    adapted = model.adapt(support, unlabelled=unlabelled)
    assert (adapted.order_, adapted.n_neighbours_) == (2, 10)
    err = localization_errors_m(adapted.predict(test.measurements), test.positions_m).mean()
    wknn = create("wknn").fit(None).adapt(support)
    assert err < 0.8 * localization_errors_m(wknn.predict(test.measurements), test.positions_m).mean()
    # a fitted model saved before adaptation keeps its choice
    reloaded = load_model(model.save(tmp_path / "fitted"))
    np.testing.assert_allclose(reloaded.adapt(support, unlabelled=unlabelled).predict(test.measurements),
                               adapted.predict(test.measurements))


def test_graph_lp_tuned_needs_sources_and_valid_settings():
    from xloc.errors import DataValidationError
    with pytest.raises(DataValidationError, match="needs the historical environments"):
        create("graph-lp-tuned").fit(None)
    with pytest.raises(ConfigError, match="graph-lp-tuned: settings: orders must be 1, 2 or 3"):
        create("graph-lp-tuned", settings=[(4, 10)])
    with pytest.raises(ConfigError, match="prior_params given without a prior"):
        create("graph-lp-tuned", prior_params={"adapt_steps": 5})
