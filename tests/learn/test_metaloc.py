import numpy as np
import pytest

from xloc.data import FingerprintSet
from xloc.errors import DataValidationError, NotFittedError
from xloc.eval.metrics import localization_errors_m
from xloc.learn.metaloc import AdaptedMetaLoc, MetaLoc
from xloc.sim.pathloss import PathLossConfig, simulate_pathloss_environment

FAST = {"iterations": 40, "meta_batch": 4, "val_every": 20, "val_tasks": 8, "hidden": (16, 16, 16, 16)}


def envs(families="abcd", seed=0):
    refs, tests = [], []
    for i, fam in enumerate(families):
        ref, test = simulate_pathloss_environment(
            PathLossConfig(family=fam, n_aps=8, n_test_points=60, grid_spacing_m=2.5), seed=seed + i, name=fam
        )
        refs.append(ref)
        tests.append(test)
    return FingerprintSet(refs), FingerprintSet(tests)


@pytest.mark.parametrize("paradigm", ["maml", "maml-ts", "maml-dg", "tl", "ri"])
def test_every_paradigm_fits_adapts_and_predicts(paradigm):
    train, test = envs()
    model = MetaLoc(paradigm, **FAST).fit(train.without("d"))
    support = train["d"].sample_points(10, np.random.default_rng(0))
    adapted = model.adapt(support, steps=3)
    pred = adapted.predict(test["d"].measurements)
    assert pred.shape == (60, 2) and np.isfinite(pred).all() and adapted.adapt_steps_ == 3
    assert model.adapt_lr_ > 0
    if paradigm == "maml-ts":
        assert set(adapted.mmds) == {"a", "b", "c"} and adapted.group == min(adapted.mmds, key=adapted.mmds.get)


def test_meta_training_beats_random_init_on_unseen_environment():
    train, test = envs("abcde")
    support = train["e"].sample_points(8, np.random.default_rng(1))
    errs = {}
    for paradigm in ("maml", "ri"):
        model = MetaLoc(paradigm, iterations=150, meta_batch=8, val_every=50, seed=0).fit(train.without("e"))
        pred = model.adapt(support, steps=10).predict(test["e"].measurements)
        errs[paradigm] = localization_errors_m(pred, test["e"].positions_m).mean()
    assert errs["maml"] < errs["ri"]


def test_callback_sees_every_step_and_zero_steps_is_the_meta_model():
    train, test = envs()
    model = MetaLoc("maml", **FAST).fit(train.without("d"))
    support = train["d"].sample_points(6, np.random.default_rng(0))
    seen = []
    model.adapt(support, steps=4, callback=lambda step, m: seen.append(step))
    assert seen == [0, 1, 2, 3, 4]
    zero = model.adapt(support, steps=0)
    for k, v in zero.params.items():
        assert (v == model.params_by_group_["all"][k]).all()


def test_save_load_round_trip(tmp_path):
    train, test = envs()
    model = MetaLoc("maml-ts", **FAST).fit(train.without("d"))
    model.save(tmp_path / "meta")
    again = MetaLoc.load(tmp_path / "meta")
    support = train["d"].sample_points(6, np.random.default_rng(0))
    a, b = model.adapt(support, steps=2), again.adapt(support, steps=2)
    np.testing.assert_allclose(a.predict(test["d"].measurements), b.predict(test["d"].measurements), atol=1e-6)
    a.save(tmp_path / "adapted")
    c = AdaptedMetaLoc.load(tmp_path / "adapted")
    np.testing.assert_allclose(c.predict(test["d"].measurements), a.predict(test["d"].measurements), atol=1e-6)
    assert not list(tmp_path.glob(".*"))  # no temporary folders left behind


def test_errors(tmp_path):
    train, _ = envs("ab")
    with pytest.raises(DataValidationError, match="paradigm must be one of"):
        MetaLoc("reptile")
    with pytest.raises(DataValidationError, match="iterations"):
        MetaLoc("maml", iterations=-1)
    with pytest.raises(NotFittedError):
        MetaLoc("maml").adapt(train["a"])
    with pytest.raises(DataValidationError, match="needs historical environments"):
        MetaLoc("maml", **FAST).fit(None)
    with pytest.raises(DataValidationError, match="at least two"):
        MetaLoc("maml-dg", **FAST).fit(train.without("b"))
    model = MetaLoc("ri").fit()
    with pytest.raises(DataValidationError, match="at least 2 reference points"):
        model.adapt(train["a"].select_points([0]))
    with pytest.raises(DataValidationError, match="expected RSS of shape"):
        model.adapt(train["a"].sample_points(5, np.random.default_rng(0))).predict(np.zeros((2, 3)))
    (tmp_path / "junk").mkdir()
    from xloc.errors import FileFormatError

    with pytest.raises(FileFormatError, match="not an xloc model folder"):
        MetaLoc.load(tmp_path / "junk")


def test_loading_the_wrong_kind_of_model_is_a_clear_error(tmp_path):
    from xloc.errors import FileFormatError

    train, _ = envs("ab")
    MetaLoc("ri").fit().save(tmp_path / "meta")
    with pytest.raises(FileFormatError, match="holds a 'MetaLoc' model, not AdaptedMetaLoc"):
        AdaptedMetaLoc.load(tmp_path / "meta")
