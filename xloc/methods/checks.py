"""``check_localizer``: the checks every registered method must pass (in the spirit of scikit-learn's
``check_estimator``), on small problems of each data kind that a method of that kind should solve.

The checks: hyper-parameter manners (``get_params`` / ``set_params`` / ``clone``, misspelled names rejected
with the valid ones listed); predict before fit raises :class:`NotFittedError`; ``fit`` returns ``self``;
seeded determinism; ``adapt`` returns a new estimator and leaves the original unchanged; save -> load gives
identical predictions; the wrong data kind is a :class:`DataKindError` naming method and kind; NaN / infinity
and wrong shapes are :class:`DataValidationError` at the boundary; and the method beats the trivial answer of its
setting on the small problem: the support set's centroid, plus (zero-shot methods) the mean of the references
and (coarse-fix methods) the coarse fix it was given.

The learning check may take a larger budget than the others (``learn_params``): the manners, determinism and
save/load checks then run at the cheap budget (two fits) and one more fit at the larger one is judged, so a method
that needs 100 meta-iterations to learn is not trained twice at 100 for a determinism check.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import ConfigError, DataKindError, DataValidationError, NotFittedError, XlocError
from xloc.learn.alloc import coarse_from_truth
from xloc.learn.base import Estimator, clone
from xloc.methods.drift import DRIFT_BASELINES
from xloc.methods.registry import MethodSpec, get, load_model

__all__ = ["Problem", "problem", "check_localizer", "CheckReport"]

#: Coarse-fix error l [m] of the check problems (truth + U[-l, l] per axis, ALLoc's eq. 11).
COARSE_ERROR_M = 4.0
#: Users per cell of the CSI check problem (mo1); dense enough that references resolve a coarse fix.
CSI_USERS = 600


@dataclass(frozen=True)
class Problem:
    """Sources to fit on, a target environment's support set, its test set and its unlabelled rest."""

    kind: str
    sources: FingerprintSet
    support: Fingerprints
    test: Fingerprints
    unlabelled: Fingerprints | None


def _errors_m(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(np.asarray(pred)[:, :2] - truth[:, :2], axis=1))


@cache
def problem(kind: str, drift: bool = False) -> Problem:
    """The small problem of ``kind`` (cached per process); ``drift``: the sources are the target site's earlier
    survey (RSS: a simulated site after every drift of :mod:`xloc.sim.drift`; CSI: the o2 road under another
    traffic condition; CSI images: the lab room's first two days as the survey of its third)."""
    if drift:
        return _drift_problem(kind)
    if kind == "rss":
        from xloc.sim.pathloss import PathLossConfig, simulate_pathloss_environment

        envs = [simulate_pathloss_environment(PathLossConfig(family=f, n_aps=10, n_test_points=150,
                                                             measurement_noise_db=2.0), seed=10 + i,
                                              name=f"check-{f}") for i, f in enumerate("abcd")]
        sources = FingerprintSet(ref for ref, _ in envs[:3])
        reference, test = envs[3]
        support = reference.sample_points(25, np.random.default_rng(0))
    elif kind == "csi":
        from xloc.sim.presets import simulate_scenario

        train = simulate_scenario("mo1", CSI_USERS, 0)
        names = list(train)[:3]
        test_set = simulate_scenario("mo1", 80, 0, split="test")
        sources = FingerprintSet(train[n] for n in names[:2])
        reference, test = train[names[2]], test_set[names[2]]
        support = reference
    elif kind == "csi_image":
        from xloc.sim.presets import simulate_scenario

        # 8 images per point and day: MetaLoc's meta-training tasks take 3 support + 5 query images per RP
        days = simulate_scenario("lab", 720, 0, days=3)
        test = simulate_scenario("lab", 90, 0, days=3, split="test")["lab-day3"]
        test = test.subset(np.arange(0, len(test), 6))  # 15 test images keep per-image adaptation quick
        names = list(days)
        sources = FingerprintSet(days[n] for n in names[:2])
        reference = days[names[2]]
        # MetaLoc's CSI setting: 3 images of every RP of the new day (the paper's 3 x 90)
        support = reference.first_samples(3)
    else:
        raise ConfigError(f"no check problem for kind {kind!r}")
    rest = np.flatnonzero(~np.isin(reference.point_ids, np.unique(support.point_ids)))
    return Problem(kind, sources, support, test, reference.subset(rest) if rest.size else None)


def _drift_problem(kind: str) -> Problem:
    if kind == "rss":
        from xloc.sim.drift import DriftConfig, simulate_drift_site

        train, test_set = simulate_drift_site(DriftConfig(n_test_points=150), 0, ("all",), site="check")
        sources, reference, test = FingerprintSet([train["check-t0"]]), train["check-t1-all"], test_set["check-t1-all"]
        support = reference.sample_points(25, np.random.default_rng(0))
    elif kind == "csi":
        from xloc.sim.presets import simulate_scenario

        train = simulate_scenario("o2", 300, 0, conditions=2)
        first, second = list(train)
        sources, reference = FingerprintSet([train[first]]), train[second]
        test = simulate_scenario("o2", 80, 0, conditions=2, split="test")[second]
        support = reference.sample_points(60, np.random.default_rng(0))
    elif kind == "csi_image":
        # the lab room's first two days are the survey of its third (furniture and people moved)
        days = problem("csi_image")
        sources, test, reference = days.sources, days.test, days.support  # 3 images of each of the day's 90 points
        support = reference.sample_points(25, np.random.default_rng(0))
    else:
        raise ConfigError(f"no drift check problem for kind {kind!r}")
    rest = np.flatnonzero(~np.isin(reference.point_ids, np.unique(support.point_ids)))
    return Problem(kind, sources, support, test, reference.subset(rest) if rest.size else None)


@dataclass
class CheckReport:
    """What :func:`check_localizer` measured (mean errors [m])."""

    method: str
    kind: str
    mean_m: float
    trivial_m: dict[str, float]


def _other_kind(accepted: tuple[str, ...]) -> Fingerprints | None:
    """A tiny environment of a kind the method does not accept (None: it accepts every kind)."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 5, (4, 2))
    if "rss" not in accepted:
        return Fingerprints(EnvironmentMeta("other-kind", "rss", ("AP1", "AP2")), rng.uniform(-90, -40, (4, 2)),
                            pos, np.arange(4))
    if "csi_image" not in accepted:
        return Fingerprints(EnvironmentMeta("other-kind", "csi_image", ("AP1",)),
                            rng.random((4, 3, 5, 6)).astype(np.float32), pos, np.arange(4))
    if "csi" not in accepted:
        csi = (rng.normal(size=(4, 1, 2, 3)) + 1j * rng.normal(size=(4, 1, 2, 3))).astype(np.complex64)
        return Fingerprints(EnvironmentMeta("other-kind", "csi", ("BS1",)), csi, pos, np.arange(4))
    return None


def _predict(model: Estimator, spec: MethodSpec, x: np.ndarray, coarse: np.ndarray | None) -> np.ndarray:
    return model.predict(x, coarse_positions_m=coarse if spec.capabilities.needs_coarse_fix else None)


def _expect(error: type[Exception], what: str, fn: Any, *words: str) -> None:
    try:
        fn()
    except error as exc:
        text = str(exc)
        missing = [w for w in words if w not in text]
        if missing:
            raise AssertionError(f"{what}: the error does not name {missing}: {text!r}") from None
        return
    except Exception as exc:  # noqa: BLE001 -- a wrong error type is what this reports
        raise AssertionError(f"{what}: expected {error.__name__}, got {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{what}: expected {error.__name__}, nothing was raised")


def check_localizer(name: str, *, params: dict[str, Any] | None = None, kind: str | None = None,
                    learn_params: dict[str, Any] | None = None) -> CheckReport:
    """Run every check on registered method ``name`` with its ``check_params`` (updated by ``params``) on the
    problem of ``kind`` (default: its first kind); the learning check with ``learn_params`` updated on top (one
    more fit) when given. Raises AssertionError naming the failed check."""
    spec = get(name)
    kind = kind or spec.kinds[0]
    prob = problem(kind, drift=spec.capabilities.stale_survey)
    hyper = {**spec.check_params, **(params or {})}
    caps = spec.capabilities

    # --- hyper-parameter manners
    est = spec.create(0, **hyper)
    assert est.get_params() == clone(est).get_params(), f"{name}: clone changed the hyper-parameters"
    _expect(ConfigError, f"{name}: misspelled hyper-parameter", lambda: est.set_params(no_such_param=1),
            "no_such_param", next(iter(est.get_params())))
    _expect(ConfigError, f"{name}: misspelled hyper-parameter in the registry", lambda: spec.create(0, nope=1),
            "nope", name)

    # --- not fitted
    x_test, truth = prob.test.measurements, prob.test.positions_m[:, :2]
    coarse = coarse_from_truth(truth, COARSE_ERROR_M, 0)
    _expect(NotFittedError, f"{name}: predict before fit", lambda: _predict(spec.create(0, **hyper), spec, x_test,
                                                                              coarse))

    # --- fit, adapt, determinism, no mutation
    fitted = est.fit(prob.sources if caps.trains_on_sources else None)
    assert fitted is est, f"{name}: fit must return self"
    before = dict(vars(fitted))
    adapted = fitted.adapt(prob.support, unlabelled=prob.unlabelled if caps.uses_unlabelled else None)
    assert adapted is not fitted, f"{name}: adapt must return a new estimator"
    assert vars(fitted).keys() == before.keys() and all(vars(fitted)[k] is v for k, v in before.items()), \
        f"{name}: adapt changed the original estimator"
    if caps.predicts_after_fit:  # k = 0: what fit learned, with no support
        unadapted = _predict(fitted, spec, x_test, coarse)
        assert unadapted.shape == (len(x_test), unadapted.shape[1]) and np.isfinite(unadapted).all(), \
            f"{name}: predict after fit (no support) must give finite positions, got {unadapted.shape}"
    pred = _predict(adapted, spec, x_test, coarse)
    assert pred.ndim == 2 and len(pred) == len(x_test) and pred.shape[1] in (2, 3) and np.isfinite(pred).all(), \
        f"{name}: predictions must be finite positions (n, 2|3), got {pred.shape}"
    again = fitted.adapt(prob.support, unlabelled=prob.unlabelled if caps.uses_unlabelled else None)
    np.testing.assert_allclose(_predict(again, spec, x_test, coarse), pred, rtol=1e-5, atol=1e-5,
                               err_msg=f"{name}: a second adapt of the same model differs (adapt mutated it?)")
    twin = spec.create(0, **hyper).fit(prob.sources if caps.trains_on_sources else None)
    twin_pred = _predict(twin.adapt(prob.support, unlabelled=prob.unlabelled if caps.uses_unlabelled else None),
                         spec, x_test, coarse)
    np.testing.assert_allclose(twin_pred, pred, rtol=1e-5, atol=1e-5,
                               err_msg=f"{name}: the same seed gave different predictions")

    # --- save -> load
    with tempfile.TemporaryDirectory() as tmp:
        adapted.save(Path(tmp) / "adapted")
        loaded = load_model(Path(tmp) / "adapted")
        assert type(loaded) is type(adapted) and loaded.get_params() == adapted.get_params(), \
            f"{name}: load gave another estimator or other hyper-parameters"
        np.testing.assert_allclose(_predict(loaded, spec, x_test, coarse), pred, rtol=1e-5, atol=1e-5,
                                   err_msg=f"{name}: predictions changed after save -> load")
        if caps.trains_on_sources:
            fitted.save(Path(tmp) / "fitted")
            refit = load_model(Path(tmp) / "fitted").adapt(
                prob.support, unlabelled=prob.unlabelled if caps.uses_unlabelled else None)
            np.testing.assert_allclose(_predict(refit, spec, x_test, coarse), pred, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name}: a loaded fitted model adapts differently")

    # --- bad data at the boundary
    other = _other_kind(spec.kinds)
    if other is not None:
        _expect(DataKindError, f"{name}: wrong data kind", lambda: fitted.adapt(other), name,
                other.environment.kind)
    _expect(DataValidationError, f"{name}: wrong measurement shape",
            lambda: _predict(adapted, spec, x_test[..., :1], coarse))
    bad = np.array(x_test[:3], copy=True)
    bad.flat[0] = np.inf
    _expect(DataValidationError, f"{name}: infinite measurement", lambda: _predict(adapted, spec, bad, coarse[:3]))
    if kind != "rss":  # NaN is "not heard" in RSS; anywhere else it is bad data
        bad.flat[0] = np.nan
        _expect(DataValidationError, f"{name}: NaN measurement", lambda: _predict(adapted, spec, bad, coarse[:3]))
    _expect(XlocError, f"{name}: object array", lambda: _predict(adapted, spec, np.array([[None]], dtype=object),
                                                                 coarse[:1]))

    # --- beats the trivial answer
    if learn_params:
        hyper = {**hyper, **learn_params}
        learner = spec.create(0, **hyper).fit(prob.sources if caps.trains_on_sources else None)
        pred = _predict(learner.adapt(prob.support, unlabelled=prob.unlabelled if caps.uses_unlabelled else None),
                        spec, x_test, coarse)
    mean_m = float(_errors_m(pred, truth).mean())
    trivial = {"support centroid": prob.support.positions_m[:, :2].mean(0, keepdims=True).repeat(len(truth), 0)}
    if caps.zero_shot_references and caps.needs_coarse_fix:  # Mateformer's x_init: the sampled references' mean
        from scipy.spatial import cKDTree

        ref_m = prob.support.positions_m[:, :2]
        n = min(int(hyper.get("n_neighbors", spec.defaults().get("n_neighbors", 64))), len(ref_m))
        trivial["reference mean"] = ref_m[cKDTree(ref_m).query(coarse, k=n)[1].reshape(len(coarse), n)].mean(1)
    elif caps.zero_shot_references:
        trivial["reference mean"] = trivial["support centroid"]
    if caps.needs_coarse_fix:
        trivial["coarse fix"] = coarse
    trivial_m = {k: float(_errors_m(v, truth).mean()) for k, v in trivial.items()}
    for what, value in trivial_m.items():
        assert mean_m < value, f"{name}: mean error {mean_m:.2f} m does not beat the {what} ({value:.2f} m)"
    if caps.stale_survey and name not in DRIFT_BASELINES:  # the stale bar: every drift method but the baselines
        # a drift method has the stale survey and the fresh points: it must never do worse than the survey alone
        stale = get("wknn-stale").create(0).fit(prob.sources).adapt(prob.support).predict(x_test)
        stale_m = float(_errors_m(stale, truth).mean())
        assert mean_m <= stale_m + 1e-9, f"{name}: mean error {mean_m:.2f} m is worse than the stale survey's " \
                                         f"({stale_m:.2f} m)"
    return CheckReport(name, kind, mean_m, trivial_m)
