import numpy as np
import pytest

from xloc.baselines.csi import CsiRegressor, MultiTaskCsi
from xloc.data.fingerprints import FingerprintSet
from xloc.errors import DataValidationError, NotFittedError
from xloc.eval.metrics import localization_errors_m
from xloc.sim.presets import simulate_scenario


@pytest.fixture(scope="module")
def mo1():
    return simulate_scenario("mo1", 250, 0), simulate_scenario("mo1", 60, 0, split="test")


def error(pred, fp):
    return localization_errors_m(pred, fp.positions_m[:, :2]).mean()


@pytest.mark.parametrize("arch", ["cnn", "ad_cnn", "mfcnet"])
def test_baselines_learn_a_cell_better_than_its_centre(mo1, arch):
    train, test = mo1
    cell = "mo1-cell1"
    model = CsiRegressor(arch, epochs=15, lr=3e-3).fit(train[cell])
    pred = model.predict(test[cell].measurements)
    assert pred.shape == (60, 2)
    centre = np.repeat(train[cell].positions_m[:, :2].mean(0, keepdims=True), 60, 0)
    assert error(pred, test[cell]) < 0.7 * error(centre, test[cell])


def test_fine_tune_is_a_copy_and_reports_every_epoch(mo1):
    train, test = mo1
    model = CsiRegressor("ad_cnn", epochs=3).fit(train["mo1-cell1"])
    before = model.predict(test["mo1-cell2"].measurements)
    seen = []
    tuned = model.fine_tune(train["mo1-cell2"], 4, callback=lambda e, m: seen.append(e))
    assert seen == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(model.predict(test["mo1-cell2"].measurements), before)  # source model untouched
    assert error(tuned.predict(test["mo1-cell2"].measurements), test["mo1-cell2"]) < error(before, test["mo1-cell2"])


def test_multi_task_new_head_leaves_the_backbone_and_other_heads_alone(mo1):
    train, test = mo1
    model = MultiTaskCsi("ad_cnn", epochs=3).fit(FingerprintSet(train[c] for c in ("mo1-cell1", "mo1-cell2")))
    before = model.predict(test["mo1-cell1"].measurements, "mo1-cell1")
    model.add_scenario(train["mo1-cell3"], 3)
    np.testing.assert_allclose(model.predict(test["mo1-cell1"].measurements, "mo1-cell1"), before)
    assert model.predict(test["mo1-cell3"].measurements, "mo1-cell3").shape == (60, 2)
    with pytest.raises(DataValidationError, match="no head for scenario 'mo1-cell4'"):
        model.predict(test["mo1-cell4"].measurements, "mo1-cell4")
    with pytest.raises(DataValidationError, match="already has a head"):
        model.add_scenario(train["mo1-cell3"], 1)


def test_errors(mo1):
    with pytest.raises(DataValidationError, match="architecture"):
        CsiRegressor("resnet")
    with pytest.raises(NotFittedError):
        CsiRegressor().predict(mo1[1]["mo1-cell1"].measurements)
    images = simulate_scenario("hall", 10, 0, days=1)  # CSI images, not CSI
    with pytest.raises(DataValidationError, match="kind 'csi'"):
        CsiRegressor().fit(images)
