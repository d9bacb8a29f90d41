"""``auto`` and ``auto-drift``: a method that chooses among registered candidates from the data a user has.

``fit`` fits every candidate on the sources (other sites, or for ``auto-drift`` the site's earlier survey).
``adapt`` scores each candidate by leave-one-point-out on the labelled support: every reference point in turn is
held out, the candidate is adapted on the others (with the same unlabelled scans) and locates the held-out point's
samples (beyond ``max_folds`` points, the points are dealt into that many folds, each held out in turn).
The first candidate -- WKNN on the support; for drift ``map-correct``, which itself keeps the stale survey or the
pooled map where its fresh points say so -- is the default; another candidate replaces the current choice only
when its held-out mean error is lower by more than ``margin`` of it *and* by more than ``z`` standard errors of the
paired per-point differences: with 3-10 labelled points the estimate is noisy, and a choice made on noise costs
more than it gains. With fewer than ``min_points`` labelled points there is no evidence and the default stands. The
chosen candidate is then adapted on the whole support; ``choice_`` names it (it lands in the result rows) and
``scores_m_`` holds every candidate's held-out mean error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.base import Estimator
from xloc.methods.registry import Capabilities, MethodSpec, get, load_model, register

__all__ = ["Auto", "DEFAULT_CANDIDATES"]

#: (drift?, data kind) -> candidates, the default first
DEFAULT_CANDIDATES: dict[tuple[bool, str], tuple[str, ...]] = {
    (False, "rss"): ("wknn", "graph-lp", "mlp", "centroid"),
    (False, "csi"): ("wknn", "mlp", "centroid"),
    (False, "csi_image"): ("wknn", "histogram-knn", "centroid"),
    (True, "rss"): ("map-correct", "wknn-stale", "wknn-pooled", "wknn"),
    (True, "csi"): ("map-correct", "wknn-stale", "wknn-pooled", "wknn"),
    (True, "csi_image"): ("map-correct", "wknn-stale", "wknn-pooled", "wknn"),
}


@dataclass(frozen=True)
class AutoConfig:
    """Hyper-parameters of the chooser."""

    #: registered candidates, the default (simple baseline) first; empty: :data:`DEFAULT_CANDIDATES` for the data
    candidates: tuple[str, ...] = ()
    #: the site's earlier survey is what ``fit`` gets (the drift protocol): drift candidates
    drift: bool = False
    #: a candidate replaces the current choice only if its held-out mean error is this fraction lower ...
    margin: float = 0.05
    #: ... and lower by more than this many standard errors of the paired per-point differences
    z: float = 1.0
    #: labelled reference points needed to choose at all (fewer: the default candidate)
    min_points: int = 3
    #: at most this many held-out folds: with more labelled points than this, the points are dealt into this many
    #: groups, each held out in turn (k-fold over points; the cost stays that of ``max_folds`` adaptations)
    max_folds: int = 10
    #: hyper-parameters per candidate, e.g. {"mlp": {"epochs": 200}}
    candidate_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: seed of every candidate
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.candidates:
            spec = get(name)
            if spec.capabilities.stale_survey != self.drift:
                raise DataValidationError(f"candidate {name!r} {'does not take' if self.drift else 'takes'} the "
                                          f"site's earlier survey; {'auto-drift' if self.drift else 'auto'} "
                                          "candidates must share its protocol")
            if spec.capabilities.needs_coarse_fix or spec.capabilities.site_twins:
                raise DataValidationError(f"candidate {name!r} needs a coarse fix or site twins, which auto does "
                                          "not pass on")
        if len(set(self.candidates)) != len(self.candidates):
            raise DataValidationError(f"candidates repeat a name: {list(self.candidates)}")
        unknown = set(self.candidate_params) - set(self.candidates or
                                                   {c for cs in DEFAULT_CANDIDATES.values() for c in cs})
        if unknown:
            raise DataValidationError(f"candidate_params names {sorted(unknown)}, which are not candidates")
        if not 0.0 <= self.margin < 1.0 or self.z < 0.0:
            raise DataValidationError(f"margin must be in [0, 1) and z >= 0, got {self.margin!r}, {self.z!r}")
        if isinstance(self.min_points, bool) or not isinstance(self.min_points, int) or self.min_points < 2:
            raise DataValidationError(f"min_points must be an integer >= 2, got {self.min_points!r}")
        if isinstance(self.max_folds, bool) or not isinstance(self.max_folds, int) or self.max_folds < 2:
            raise DataValidationError(f"max_folds must be an integer >= 2, got {self.max_folds!r}")


class Auto(Estimator):
    """Chooses one registered candidate per support by leave-one-point-out (module text)."""

    Config = AutoConfig
    kinds = ("rss", "csi", "csi_image")

    def _candidates(self, kind: str) -> tuple[str, ...]:
        names = self.config.candidates or DEFAULT_CANDIDATES[(self.config.drift, kind)]
        return tuple(n for n in names if kind in get(n).kinds)

    def fit(self, sources: FingerprintSet | None = None) -> Auto:
        """Fit every candidate that accepts the data on ``sources``."""
        kind = self._check_kind(sources, "source")
        if self.config.drift and kind is None:
            raise DataValidationError(f"{self._owner()}: fit needs the site's earlier survey as sources")
        self.fitted_ = {}
        for name in self._candidates(kind or "rss") if kind else (self.config.candidates or ("wknn",)):
            model = get(name).create(self.config.seed, **self.config.candidate_params.get(name, {}))
            self.fitted_[name] = model.fit(sources)
        if not self.fitted_:
            raise DataValidationError(f"{self._owner()}: no candidate accepts {kind!r} data")
        self.choice_ = next(iter(self.fitted_))
        return self

    def _held_out_errors(self, name: str, support: Fingerprints, unlabelled: Fingerprints | None,
                         points: np.ndarray) -> np.ndarray:
        model = self.fitted_[name]
        uses_unlabelled = get(name).capabilities.uses_unlabelled
        errors = []
        # one fold per point, or max_folds folds of interleaved points (the same folds for every candidate)
        folds = np.arange(len(points)) % min(len(points), self.config.max_folds)
        for f in range(folds.max() + 1):
            rest = support.select_points(list(points[folds != f]))
            held = support.select_points(list(points[folds == f]))
            adapted = model.adapt(rest, unlabelled=unlabelled if uses_unlabelled else None)
            guess = np.asarray(adapted.predict(held.measurements))
            dims = min(guess.shape[1], held.dims)
            errors.append(float(np.linalg.norm(guess[:, :dims] - held.positions_m[:, :dims], axis=1).mean()))
        return np.asarray(errors)

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> Auto:
        """Score the candidates on the support (module text), adapt the chosen one on all of it."""
        self._require("fitted_")
        kind = self._check_kind(support, "support")
        names = [n for n in self.fitted_ if kind in get(n).kinds]
        if not names:
            raise DataValidationError(f"{self._owner()}: no fitted candidate accepts {kind!r} data")
        points = np.unique(support.point_ids)
        choice, scores = names[0], {}
        if len(points) >= self.config.min_points and len(names) > 1:
            errors = {n: self._held_out_errors(n, support, unlabelled, points) for n in names}
            scores = {n: float(e.mean()) for n, e in errors.items()}
            for name in names[1:]:
                gain = errors[choice] - errors[name]
                noise = self.config.z * gain.std(ddof=1) / np.sqrt(len(gain))
                if gain.mean() > max(self.config.margin * errors[choice].mean(), noise):
                    choice = name
        uses_unlabelled = get(choice).capabilities.uses_unlabelled
        adapted = self.fitted_[choice].adapt(support, steps=steps, unlabelled=unlabelled if uses_unlabelled else None)
        inner = getattr(adapted, "choice_", None)
        return self._adapted_copy(adapted_=adapted, sample_shape_=support.measurements.shape[1:],
                                  choice_=choice if inner is None else f"{choice} ({inner})", scores_m_=scores,
                                  adapt_steps_=int(getattr(adapted, "adapt_steps_", 0)))

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        """Positions [m] from the chosen candidate (before ``adapt``: the default candidate, where it predicts
        after ``fit`` -- auto-drift's stale survey)."""
        self._require("fitted_")
        if hasattr(self, "adapted_"):
            return self.adapted_.predict(measurements)
        first = next(iter(self.fitted_.values()))
        if not get(next(iter(self.fitted_))).capabilities.predicts_after_fit:
            self._require("adapted_", what="adapt(support)")
        return first.predict(measurements)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        parts: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        if hasattr(self, "fitted_"):
            meta["candidates"] = list(self.fitted_)
            parts.update({f"candidate-{i}": model.save for i, model in enumerate(self.fitted_.values())})
        if hasattr(self, "adapted_"):
            parts["adapted"] = self.adapted_.save
            meta.update(choice=self.choice_, scores_m=self.scores_m_, sample_shape=list(self.sample_shape_))
        return {}, meta, parts

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "candidates" in meta:
            self.fitted_ = {name: load_model(folder / f"candidate-{i}") for i, name in enumerate(meta["candidates"])}
            self.choice_ = meta["candidates"][0]
        if (folder / "adapted").is_dir():
            self.adapted_ = load_model(folder / "adapted")
            self.choice_, self.scores_m_ = meta["choice"], meta.get("scores_m", {})
            self.sample_shape_ = tuple(meta["sample_shape"])


register(MethodSpec("auto", "chooses among registered candidates (WKNN first; graph-lp, MLP, ... by data kind) by "
                    "leave-one-point-out on the labelled support; a candidate replaces WKNN only when clearly "
                    "better", Auto, ("rss", "csi", "csi_image"),
                    Capabilities(trains_on_sources=True, uses_unlabelled=True), {"drift": False}, "issue 42",
                    check_params={"candidate_params": {"mlp": {"steps": 100}}}))
register(MethodSpec("auto-drift", "chooses among wknn-stale, wknn-pooled, map-correct and WKNN on the fresh points "
                    "by leave-one-point-out on the fresh labelled points (the stale survey unless another is "
                    "clearly better)", Auto, ("rss", "csi", "csi_image"),
                    Capabilities(trains_on_sources=True, predicts_after_fit=True, stale_survey=True),
                    {"drift": True}, "issue 42"))
