"""auto chooses among its candidates by held-out points on the support: it falls back to the centroid where the
signal says nothing, keeps WKNN where WKNN is as good as anything, and scores at most max_folds folds."""

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.methods import create
from xloc.methods.knn import KNN


def _site(name: str, rng: np.random.Generator, informative: bool, points: int = 30, per_point: int = 4
          ) -> Fingerprints:
    """RSS of 6 APs on a 30 m x 30 m floor, log-distance (informative) or pure noise (not)."""
    aps = rng.uniform(0, 30, (6, 2))
    xy = rng.uniform(0, 30, (points, 2))
    pos = np.repeat(xy, per_point, axis=0)
    if informative:
        d = np.linalg.norm(pos[:, None] - aps[None], axis=2) + 1.0
        rss = -40 - 30 * np.log10(d) + rng.normal(0, 2, d.shape)
    else:
        rss = rng.uniform(-90, -40, (len(pos), 6))
    meta = EnvironmentMeta(name, "rss", tuple(f"ap{i}" for i in range(6)))
    return Fingerprints(meta, rss.astype(np.float32), pos, np.repeat(np.arange(points), per_point))


def _errors(model, test: Fingerprints) -> float:
    return float(np.linalg.norm(model.predict(test.measurements) - test.positions_m[:, :2], axis=1).mean())


def test_where_the_signal_says_nothing_auto_falls_back_to_the_centroid_and_beats_wknn():
    chosen, auto_m, wknn_m = [], [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        site = _site("noise", rng, informative=False)
        support, test = site.select_points(list(range(10))), site.select_points(list(range(10, 30)))
        auto = create("auto", 0, candidates=("wknn", "centroid")).fit(None).adapt(support)
        chosen.append(auto.choice_)
        auto_m.append(_errors(auto, test))
        wknn_m.append(_errors(create("wknn", 0).fit(None).adapt(support), test))
    assert chosen.count("centroid") >= 4, chosen
    assert np.mean(auto_m) < np.mean(wknn_m)


def test_where_wknn_locates_auto_keeps_it():
    rng = np.random.default_rng(0)
    sources = FingerprintSet([_site("other", rng, informative=True)])
    site = _site("target", rng, informative=True)
    support, test = site.select_points(list(range(15))), site.select_points(list(range(15, 30)))
    auto = create("auto", 0, candidates=("wknn", "centroid")).fit(sources).adapt(support)
    assert auto.choice_ == "wknn" and auto.scores_m_["wknn"] < auto.scores_m_["centroid"]
    wknn = create("wknn", 0).fit(None).adapt(support)
    np.testing.assert_allclose(auto.predict(test.measurements), wknn.predict(test.measurements))


def test_many_labelled_points_are_scored_in_max_folds_folds(monkeypatch):
    calls = []
    original = KNN.adapt

    def counting(self, support, **kwargs):
        calls.append(support.n_points)
        return original(self, support, **kwargs)

    monkeypatch.setattr(KNN, "adapt", counting)
    site = _site("target", np.random.default_rng(1), informative=True, points=25)
    create("auto", 0, candidates=("wknn", "centroid"), max_folds=5).fit(None).adapt(site)
    # five folds of five points held out (20 points kept each time), then the chosen WKNN on all 25 (if chosen)
    assert calls[:5] == [20] * 5 and set(calls[5:]) <= {25}


def test_auto_drift_starts_from_map_correct():
    rng = np.random.default_rng(2)
    survey = _site("t0", rng, informative=True)
    fresh = survey.select_points([0, 1])  # two points: too few to choose, the default stands
    model = create("auto-drift", 0).fit(FingerprintSet([survey])).adapt(fresh)
    assert model.choice_.startswith("map-correct")
