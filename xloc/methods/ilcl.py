"""ILCL: incremental broad learning on CSI images (MetaLoc Table III's baseline [36]).

MetaLoc describes ILCL as a broad learning system "with 10 incremental steps" that "uses incremental learning and
expands neural nodes for adaptation", trained on the new environment's 3 × 90 images (Table III), prone to
overfit with few images per point. The cited paper is not in the spec, so xloc chooses, and says so:

* inputs: each AP's mean pixel per subcarrier over the packets (:func:`xloc.methods.knn.signal_features`),
  standardised on the support; outputs: positions [m], centred on the support's mean;
* the broad learning system of :mod:`xloc.baselines.bls` on the support alone (``fit`` learns nothing across
  environments, as Table III's image count says), then ``incremental_steps`` broad expansions of
  ``nodes_per_step`` enhancement nodes each, by Greville's update (no refit);
* the ridge λ of the output weights: BLS's 2^-30 interpolates the support (more nodes than images: 400 against
  Table III's 270), which is the overfitting MetaLoc reports. xloc chooses λ by 5-fold cross-validation over the
  support's reference points (grid 10^-3 ... 10^6: held-out points want strong smoothing, 10^3-10^4 on the
  simulated rooms) unless ``ridge`` is given;
* feature nodes are random and linear: the BLS paper refines them with a sparse autoencoder, which is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.baselines.bls import BroadLearningSystem
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.base import Estimator
from xloc.methods.knn import signal_features
from xloc.methods.registry import Capabilities, MethodSpec, register

__all__ = ["ILCL", "ILCLConfig", "RIDGE_GRID"]

#: ridge λ values ILCL's cross-validation chooses among
RIDGE_GRID = tuple(10.0**e for e in range(-3, 7))


@dataclass(frozen=True)
class ILCLConfig:
    """Hyper-parameters of ILCL."""

    #: feature-node groups and nodes per group
    feature_groups: int = 10
    nodes_per_group: int = 10
    #: enhancement nodes before the incremental steps
    enhancement_nodes: int = 100
    #: broad expansions after the first fit (MetaLoc: 10)
    incremental_steps: int = 10
    #: enhancement nodes added per step
    nodes_per_step: int = 20
    #: ridge λ of the output weights (None: chosen by cross-validation over the support's points; BLS: 2^-30)
    ridge: float | None = None
    #: enhancement pre-activations scaled to at most this magnitude
    shrink: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("feature_groups", "nodes_per_group", "enhancement_nodes", "nodes_per_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise DataValidationError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.incremental_steps, bool) or not isinstance(self.incremental_steps, int | np.integer) \
                or self.incremental_steps < 0:
            raise DataValidationError(f"incremental_steps must be an integer >= 0, got {self.incremental_steps!r}")
        if (self.ridge is not None and not self.ridge > 0) or not 0 < self.shrink <= 10:
            raise DataValidationError(f"ridge must be > 0 (or None) and shrink in (0, 10], got {self.ridge}, "
                                      f"{self.shrink}")


class ILCL(Estimator):
    """Incremental broad learning on the new environment's CSI images (see the module docstring)."""

    Config = ILCLConfig
    kinds = ("csi_image",)

    def fit(self, sources: FingerprintSet | None = None) -> ILCL:
        """Nothing is learned across environments (the sources' kind is still checked)."""
        self._check_kind(sources, "source")
        return self

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> ILCL:
        """Fit the BLS on the support, then ``incremental_steps`` (or ``steps``) broad expansions."""
        kind = self._check_kind(support, "support")
        x = signal_features(support.measurements, str(kind))
        n_steps = self.config.incremental_steps if steps is None else int(steps)
        ridge = self.config.ridge if self.config.ridge is not None else \
            self._cross_validated_ridge(x, support.positions_m, support.point_ids, n_steps)
        bls, x_mean, x_std, y_mean = self._fit_bls(x, support.positions_m, ridge, n_steps)
        return self._adapted_copy(bls_=bls, x_mean_=x_mean, x_std_=x_std, y_mean_=y_mean, ridge_=ridge,
                                  sample_shape_=support.measurements.shape[1:])

    def _fit_bls(self, x: np.ndarray, positions_m: np.ndarray, ridge: float, n_steps: int
                 ) -> tuple[BroadLearningSystem, np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        x_mean, x_std, y_mean = x.mean(0), x.std(0) + 1e-9, positions_m.mean(0)
        bls = BroadLearningSystem(int(cfg.feature_groups), int(cfg.nodes_per_group), int(cfg.enhancement_nodes),
                                  shrink=cfg.shrink, ridge=ridge, seed=int(cfg.seed))
        bls.fit((x - x_mean) / x_std, positions_m - y_mean)
        for _ in range(n_steps):
            bls.add_enhancement_nodes(int(cfg.nodes_per_step))
        return bls, x_mean, x_std, y_mean

    def _cross_validated_ridge(self, x: np.ndarray, positions_m: np.ndarray, point_ids: np.ndarray,
                               n_steps: int) -> float:
        """λ of the grid with the smallest mean error [m] over 5 folds of the support's reference points (the
        images of a point stay together, so a fold never sees its own point)."""
        points = np.unique(point_ids)
        if points.size < 2:
            return 1.0
        fold_of = {p: i % min(5, points.size) for i, p in
                   enumerate(np.random.default_rng(int(self.config.seed)).permutation(points))}
        folds = np.array([fold_of[p] for p in point_ids])
        summed_error_m = np.zeros(len(RIDGE_GRID))
        for f in np.unique(folds):
            train, test = folds != f, folds == f
            # the nodes do not depend on λ: build them once per fold, then solve for every λ of the grid
            bls, x_mean, x_std, y_mean = self._fit_bls(x[train], positions_m[train], RIDGE_GRID[0], n_steps)
            predicted = bls.nodes((x[test] - x_mean) / x_std) @ bls.ridge_path(RIDGE_GRID) + y_mean  # (r, n, k)
            summed_error_m += np.linalg.norm(predicted - positions_m[test], axis=-1).sum(1)
        errors = dict(zip(RIDGE_GRID, summed_error_m / len(x), strict=True))
        return min(errors, key=lambda r: errors[r])

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("bls_", what="adapt(support)")
        x = self._check_measurements(measurements, "csi_image", self.sample_shape_)
        features = (signal_features(x, "csi_image") - self.x_mean_) / self.x_std_
        return self.bls_.predict(features) + self.y_mean_

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not hasattr(self, "bls_"):
            return {}, {}, {}
        b = self.bls_
        arrays = {"w_feature": b.w_feature_, "w_enhancement": b.w_enh_, "enhancement_scale": b.enh_scale_,
                  "w_out": b.w_out_, "x_mean": self.x_mean_, "x_std": self.x_std_, "y_mean": self.y_mean_}
        return ({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
                {"sample_shape": list(self.sample_shape_), "ridge": self.ridge_}, {})

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if "w_out" not in tensors:
            return
        cfg = self.config
        self.ridge_ = float(meta["ridge"])
        bls = BroadLearningSystem(int(cfg.feature_groups), int(cfg.nodes_per_group), int(cfg.enhancement_nodes),
                                  shrink=cfg.shrink, ridge=self.ridge_, seed=int(cfg.seed))
        bls.w_feature_, bls.w_enh_ = tensors["w_feature"].numpy(), tensors["w_enhancement"].numpy()
        bls.enh_scale_, bls.w_out_ = tensors["enhancement_scale"].numpy(), tensors["w_out"].numpy()
        self.bls_ = bls
        self.x_mean_, self.x_std_, self.y_mean_ = (tensors[k].numpy() for k in ("x_mean", "x_std", "y_mean"))
        self.sample_shape_ = tuple(meta["sample_shape"])


register(MethodSpec("ilcl", "ILCL: a broad learning system on the support's CSI images, 10 incremental broad "
                    "expansions (MetaLoc Table III [36])", ILCL, ("csi_image",),
                    Capabilities(trains_on_sources=False), {}, "metaloc_jsac2023 Table III, ILCL [36]",
                    check_params={"enhancement_nodes": 40, "nodes_per_step": 10}))
