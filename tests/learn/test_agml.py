import numpy as np
import pytest
import torch

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import ConfigError, DataValidationError, NotFittedError
from xloc.eval.metrics import localization_errors_m
from xloc.learn.agml import AGML, AGNNLocalizer, node_features

APS = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 20.0], [30.0, 20.0], [15.0, 10.0], [15.0, 0.0], [0.0, 10.0],
                [30.0, 10.0]])


def room(name, n, seed, noise_db=6.0, gain_db=0.0):
    """RSS of 8 APs in a 30 m x 20 m room: log-distance law plus heavy per-sample noise."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([0, 0], [30, 20], (n, 2))
    d = np.linalg.norm(pos[:, None] - APS[None], axis=-1)
    rss = -30 - 25 * np.log10(np.maximum(d, 1)) + gain_db + rng.normal(0, noise_db, (n, 8))
    meta = EnvironmentMeta(name=name, kind="rss", ap_ids=tuple(f"AP{i}" for i in range(8)), ap_positions_m=APS)
    return Fingerprints(meta, rss, pos, np.arange(n))


def err(pred, fp):
    return localization_errors_m(pred, fp.positions_m).mean()


def test_agnn_with_unlabelled_nodes_beats_an_mlp_with_few_labels():
    labelled, unlabelled, test = room("r", 12, 0), room("r", 500, 1), room("r", 200, 2)
    agnn = AGNNLocalizer(hidden=32, latent=16).fit(labelled, unlabelled, steps=300)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ELU(), torch.nn.Linear(32, 2))
    opt = torch.optim.Adam(mlp.parameters(), lr=3e-3)
    x, y = torch.from_numpy(node_features(labelled)), torch.tensor(labelled.positions_m, dtype=torch.float32)
    for _ in range(300):
        loss = ((mlp(x) - y) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    mlp_err = err(mlp(torch.from_numpy(node_features(test))).detach().numpy(), test)
    agnn_err = err(agnn.predict(test.measurements), test)
    assert agnn_err < 0.75 * mlp_err, (agnn_err, mlp_err)


def test_unlabelled_nodes_change_predictions():
    labelled, unlabelled, test = room("r", 12, 0), room("r", 200, 1), room("r", 30, 2)
    with_u = AGNNLocalizer(hidden=16, latent=8).fit(labelled, unlabelled, steps=5)
    without = AGNNLocalizer(hidden=16, latent=8).fit(labelled, None, steps=5)
    assert with_u.n_nodes == 212 and without.n_nodes == 12
    assert not np.allclose(with_u.predict(test.measurements), without.predict(test.measurements), atol=1e-3)


def test_agml_meta_trains_adapts_and_round_trips(tmp_path):
    synthetic = FingerprintSet(room(f"twin{i}", 300, 10 + i, noise_db=3.0) for i in range(3))
    model = AGML(hidden=16, latent=8, iterations=20, meta_batch=2, task_nodes=64, task_support=8).fit(synthetic)
    assert len(model.history_) == 20 and np.isfinite(model.history_).all()
    real = room("twin0", 10, 20, gain_db=-8.0)  # a gain offset: the sim-to-real gap alignment removes
    unlabelled, test = room("twin0", 100, 21, gain_db=-8.0), room("twin0", 40, 22, gain_db=-8.0)
    steps = []
    adapted = model.adapt(real, unlabelled, steps=3, callback=lambda s, m: steps.append(s))
    assert steps == [0, 1, 2, 3] and adapted.adapt_steps_ == 3
    pred = adapted.predict(test.measurements)
    assert pred.shape == (40, 2) and np.isfinite(pred).all()
    model.save(tmp_path / "agml")
    again = AGML.load(tmp_path / "agml")
    np.testing.assert_allclose(again.adapt(real, unlabelled, steps=3).predict(test.measurements), pred, atol=1e-4)


def test_errors():
    with pytest.raises(DataValidationError, match="alignment"):
        AGML(alignment="magic")
    with pytest.raises(DataValidationError, match="max_grad_norm"):
        AGML(max_grad_norm=0.0)
    with pytest.raises(NotFittedError):
        AGML().adapt(room("r", 10, 0))
    synthetic = FingerprintSet([room("a", 100, 0)])
    model = AGML(hidden=8, latent=4, iterations=1, task_nodes=32, task_support=4).fit(synthetic)
    other = room("r", 10, 0)
    other = Fingerprints(EnvironmentMeta(name="r", kind="rss", ap_ids=tuple(f"X{i}" for i in range(8))),
                         other.measurements, other.positions_m, other.point_ids)
    with pytest.raises(DataValidationError, match="AP list differs"):
        model.adapt(other)


def test_diverging_meta_training_is_an_error_naming_the_iteration_not_nan_positions():
    synthetic = FingerprintSet([room("a", 100, 0)])
    with pytest.raises(ConfigError, match=r"diverged at iteration \d+ .*lower inner_lr"):
        AGML(hidden=8, latent=4, iterations=20, task_nodes=32, task_support=4, inner_lr=1e12).fit(synthetic)
